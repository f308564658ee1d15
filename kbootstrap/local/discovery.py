"""Token discovery, as `kubeadm join` does it: learn and trust the cluster CA from a bootstrap token and a CA
public-key pin, before the node holds anything of the cluster. The first piece of `join --local`
(docs/design-join-local.md), which is not built yet.

The `cluster-info` ConfigMap in kube-public is world-readable and carries a kubeconfig with the CA;
kube-controller-manager's bootstrapsigner adds `jws-kubeconfig-<token id>`, a detached JWS (HS256, the token
secret as key) over that kubeconfig, for every token with `usage-bootstrap-signing`. So:
1. fetch cluster-info without verifying TLS (there is no CA yet);
2. the signature proves the server knows the token secret (not just anyone on the path);
3. the pin proves the CA is the operator's (sha256 of its SubjectPublicKeyInfo, kubeadm's `--discovery-token-ca-cert-hash`);
4. fetch again, verifying TLS against that CA, and require the same kubeconfig.
Everything here only reads: a refusal leaves the node as it was.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import re
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from kbootstrap.engine.poll import Pending, poll
from kbootstrap.errors import Refused

TOKEN = re.compile(r"\A([a-z0-9]{6})\.([a-z0-9]{16})\Z")  # cluster-bootstrap/token/api/types.go
TOKEN_ID = re.compile(r"\A[a-z0-9]{6}\Z")
PIN = re.compile(r"\Asha256:[0-9a-f]{64}\Z")
CLUSTER_INFO = "/api/v1/namespaces/kube-public/configmaps/cluster-info"


class DiscoveryError(Refused):
    pass


@dataclass(frozen=True)
class Discovered:
    server: str  # the API server URL cluster-info names (the load balancer / VIP)
    ca_pem: bytes


def parse_token(token: str) -> tuple[str, str]:
    m = TOKEN.match(token)
    if not m:
        raise DiscoveryError("--token: expected <6 of a-z0-9>.<16 of a-z0-9> (a bootstrap token)")
    return m.group(1), m.group(2)


def _b64url(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def _unb64url(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def jws_detached_valid(detached: str, content: str, token_id: str, token_secret: str) -> bool:
    """`header..signature` over `content` (RFC 7515 appendix F), as cluster-bootstrap/token/jws signs it.
    HMAC pads short keys with zeros itself, so go-jose's padding of the secret to 32 bytes changes nothing."""
    parts = detached.split(".")
    if len(parts) != 3 or parts[1] != "":
        return False
    try:
        header, signature = json.loads(_unb64url(parts[0])), _unb64url(parts[2])
    except ValueError:
        return False
    if not isinstance(header, dict) or header.get("alg") != "HS256" or header.get("kid") != token_id:
        return False
    mac = hmac.new(token_secret.encode(), f"{parts[0]}.{_b64url(content.encode())}".encode(), hashlib.sha256)
    return hmac.compare_digest(mac.digest(), signature)


def ca_pin(ca_pem: bytes) -> str:
    """kubeadm's pin: sha256 of the CA certificate's DER SubjectPublicKeyInfo."""
    spki = x509.load_pem_x509_certificate(ca_pem).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(spki).hexdigest()


def https_get(server: str, path: str, ca_pem: bytes | None, *, token: str | None = None,
              client_cert: str | None = None, timeout: float = 10) -> tuple[int, bytes]:
    """(status, body) of a GET to the API server. ca_pem None: TLS unverified (discovery's first read only);
    else verified against that CA, host name included. Authenticated by a bearer token or a client
    certificate file (cert and key in one PEM), or anonymous. A failed connection is a DiscoveryError."""
    url = urlsplit(server)
    if url.scheme != "https" or not url.hostname:
        raise DiscoveryError(f"--server {server}: expected https://HOST[:PORT]")
    if ca_pem is None:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # no CA yet: the JWS and pin decide
    else:
        context = ssl.create_default_context(cadata=ca_pem.decode())
    headers = {"Accept": "application/json"}
    if client_cert:
        context.load_cert_chain(client_cert)
    elif token:
        headers["Authorization"] = f"Bearer {token}"
    conn = http.client.HTTPSConnection(url.hostname, url.port or 443, timeout=timeout, context=context)
    try:
        conn.request("GET", path, headers=headers)
        r = conn.getresponse()
        return r.status, r.read()
    except (OSError, http.client.HTTPException) as e:
        raise DiscoveryError(f"{server}: GET {path} failed ({e})") from e
    finally:
        conn.close()


def _get(server: str, ca_pem: bytes | None, timeout: float) -> bytes:
    status, body = https_get(server, CLUSTER_INFO, ca_pem, timeout=timeout)
    if status != 200:
        raise DiscoveryError(f"{server}: cluster-info answered HTTP {status} (is anonymous read of "
                             "kube-public/cluster-info allowed, and was the cluster made by kbootstrap init?)")
    return body


def _kubeconfig(body: bytes, server: str) -> tuple[str, dict[str, str]]:
    try:
        data = json.loads(body)["data"]
        return data["kubeconfig"], data
    except (ValueError, KeyError, TypeError) as e:
        raise DiscoveryError(f"{server}: cluster-info has no kubeconfig") from e


def discover(server: str, token: str, ca_cert_hash: str, timeout: float = 10, wait: float = 30,
             interval: float = 2) -> Discovered:
    """The CA and API server URL of the cluster at `server`, trusted by token and pin; or a DiscoveryError
    that names what did not match. Waits up to `wait` s for the signature of a token made just now."""
    token_id, secret = parse_token(token)
    if not PIN.match(ca_cert_hash):
        raise DiscoveryError("--ca-cert-hash: expected sha256:<64 hex digits> (kbootstrap token create prints it)")

    def signed() -> tuple[str, str] | Pending:
        kubeconfig, data = _kubeconfig(_get(server, None, timeout), server)
        signature = data.get(f"jws-kubeconfig-{token_id}")
        return Pending() if signature is None else (kubeconfig, signature)

    found = poll(signed, timeout=wait, interval=interval)
    if isinstance(found, Pending):
        raise DiscoveryError(f"token {token_id} is unknown to the cluster at {server} or has expired "
                             f"(no signature for it in cluster-info after {wait:.0f}s)")
    kubeconfig, signature = found
    if not jws_detached_valid(signature, kubeconfig, token_id, secret):
        raise DiscoveryError(f"the token's secret does not match cluster-info's signature at {server}: "
                             "refusing this API server")
    try:
        cluster = yaml.safe_load(kubeconfig)["clusters"][0]["cluster"]
        ca_pem = base64.b64decode(cluster["certificate-authority-data"])
        pin = ca_pin(ca_pem)
    except (yaml.YAMLError, KeyError, IndexError, TypeError, ValueError) as e:
        raise DiscoveryError(f"{server}: cluster-info's kubeconfig has no usable CA ({e})") from e
    if pin != ca_cert_hash:
        raise DiscoveryError(f"the cluster CA's public key is {pin}, --ca-cert-hash says {ca_cert_hash}: refusing")
    if _kubeconfig(_get(server, ca_pem, timeout), server)[0] != kubeconfig:
        raise DiscoveryError(f"{server}: cluster-info changed between the unverified and the verified read: refusing")
    return Discovered(server=cluster.get("server", server), ca_pem=ca_pem)
