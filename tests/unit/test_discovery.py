"""Token discovery: upstream's JWS vectors, kubeadm's pin against openssl, and discovery against a real TLS
server on loopback serving cluster-info (right token and pin accepted; every mismatch refused)."""

from __future__ import annotations

import base64
import datetime as dt
import http.server
import ipaddress
import json
import ssl
import subprocess
import threading

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from kbootstrap.local.discovery import (
    CLUSTER_INFO,
    DiscoveryError,
    _b64url,
    ca_pin,
    discover,
    jws_detached_valid,
    parse_token,
)

# staging/src/k8s.io/cluster-bootstrap/token/jws/jws_test.go
CONTENT = "Hello from the other side. I must have called a thousand times."
VECTORS = [
    ("eyJhbGciOiJIUzI1NiIsImtpZCI6Impvc2h1YSJ9..VShe2taLd-YTrmWuRkcL_8QTNDHYxQIEBsAYYiIj1_8", CONTENT, "my voice is my passcode"),
    ("eyJhbGciOiJIUzI1NiIsImtpZCI6Impvc2h1YSJ9..7Ui1ALizW4jXphVUB7xUqC9vLYLL9RZeOFfVLoB7Tgk", "", "my voice is my passcode"),
    ("eyJhbGciOiJIUzI1NiIsImtpZCI6Impvc2h1YSJ9..UfkqvDGiIFxrMnFseDj9LYJOLNrvjW8aHhF71mvvAs8", CONTENT, ""),
]
TOKEN = "abcdef.0123456789abcdef"


@pytest.mark.parametrize("jws,content,secret", VECTORS)
def test_upstream_vectors_verify_and_any_change_is_refused(jws, content, secret):
    assert jws_detached_valid(jws, content, "joshua", secret)
    assert not jws_detached_valid(jws + "x", content, "joshua", secret)
    assert not jws_detached_valid(jws, content + " ", "joshua", secret)
    assert not jws_detached_valid(jws, content, "joshub", secret)
    assert not jws_detached_valid(jws, content, "joshua", secret + "x")
    none = _b64url(b'{"alg":"none","kid":"joshua"}') + ".." + jws.split("..")[1]
    assert not jws_detached_valid(none, content, "joshua", secret)


def _sign(content: str, token_id: str, secret: str) -> str:
    import hashlib
    import hmac

    header = _b64url(json.dumps({"alg": "HS256", "kid": token_id}, separators=(",", ":")).encode())
    mac = hmac.new(secret.encode(), f"{header}.{_b64url(content.encode())}".encode(), hashlib.sha256).digest()
    return f"{header}..{_b64url(mac)}"


def test_a_signer_built_the_same_way_reproduces_the_vectors():
    assert [_sign(c, "joshua", s) for _, c, s in VECTORS] == [j for j, _, _ in VECTORS]


def _cert(key, subject: str, issuer=None, issuer_key=None, ca=False, ip=None) -> x509.Certificate:
    now = dt.datetime.now(dt.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
         .issuer_name(issuer.subject if issuer else x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - dt.timedelta(minutes=1)).not_valid_after(now + dt.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ip:
        b = b.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False)
    return b.sign(issuer_key or key, hashes.SHA256())


@pytest.mark.parametrize("make_key", [lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
                                      lambda: ec.generate_private_key(ec.SECP256R1())], ids=["rsa", "ecdsa"])
def test_pin_is_kubeadms_openssl_pipeline(make_key, tmp_path):
    pem = _cert(make_key(), "kubernetes", ca=True).public_bytes(serialization.Encoding.PEM)
    (tmp_path / "ca.crt").write_bytes(pem)
    out = subprocess.run(f"openssl x509 -pubkey -noout -in {tmp_path / 'ca.crt'} | openssl pkey -pubin -outform der "
                         "| openssl dgst -sha256 -hex", shell=True, capture_output=True, text=True, check=True)
    assert ca_pin(pem) == "sha256:" + out.stdout.split()[-1]


@pytest.fixture(scope="module")
def pki():
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert(ca_key, "kubernetes", ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    return ca, ca_key, _cert(key, "kube-apiserver", issuer=ca, issuer_key=ca_key, ip="127.0.0.1"), key


@pytest.fixture
def apiserver(pki, tmp_path):
    """A TLS server on loopback answering cluster-info with the next of `server.bodies` (the last repeats)."""
    ca, _, cert, key = pki
    (tmp_path / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "tls.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = srv.bodies.pop(0) if len(srv.bodies) > 1 else srv.bodies[0]
            self.send_response(200 if self.path == CLUSTER_INFO else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
    srv.socket = context.wrap_socket(srv.socket, server_side=True)
    srv.url = f"https://127.0.0.1:{srv.server_address[1]}"
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()


def cluster_info(ca: x509.Certificate, server: str = "https://10.77.0.10:6443", sign_with: str | None = TOKEN) -> bytes:
    kubeconfig = yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "clusters": [{"name": "", "cluster": {
        "server": server,
        "certificate-authority-data": base64.b64encode(ca.public_bytes(serialization.Encoding.PEM)).decode()}}]})
    data = {"kubeconfig": kubeconfig}
    if sign_with:
        token_id, secret = sign_with.split(".")
        data[f"jws-kubeconfig-{token_id}"] = _sign(kubeconfig, token_id, secret)
    return json.dumps({"kind": "ConfigMap", "data": data}).encode()


def test_right_token_and_pin_give_the_ca_and_the_server(apiserver, pki):
    ca = pki[0]
    apiserver.bodies = [cluster_info(ca)]
    found = discover(apiserver.url, TOKEN, ca_pin(ca.public_bytes(serialization.Encoding.PEM)))
    assert found.server == "https://10.77.0.10:6443" and x509.load_pem_x509_certificate(found.ca_pem) == ca


def test_every_mismatch_is_refused_with_what_did_not_match(apiserver, pki):
    ca = pki[0]
    pin = ca_pin(ca.public_bytes(serialization.Encoding.PEM))
    apiserver.bodies = [cluster_info(ca)]
    with pytest.raises(DiscoveryError, match="--ca-cert-hash says sha256:0000"):
        discover(apiserver.url, TOKEN, "sha256:" + "0" * 64)
    with pytest.raises(DiscoveryError, match="secret does not match"):
        discover(apiserver.url, "abcdef.0123456789abcde1", pin)
    with pytest.raises(DiscoveryError, match="token zzzzzz is unknown .* or has expired"):
        discover(apiserver.url, "zzzzzz.0123456789abcdef", pin, wait=0.5, interval=0.1)
    # A man in the middle with his own CA (signed correctly: he knows the token) fails the pin.
    other = _cert(ec.generate_private_key(ec.SECP256R1()), "mitm", ca=True)
    apiserver.bodies = [cluster_info(other)]
    with pytest.raises(DiscoveryError, match="--ca-cert-hash says"):
        discover(apiserver.url, TOKEN, pin)
    # The verified read must give the same kubeconfig as the first.
    apiserver.bodies = [cluster_info(ca), cluster_info(ca, server="https://10.0.0.66:6443")]
    with pytest.raises(DiscoveryError, match="changed between the unverified and the verified read"):
        discover(apiserver.url, TOKEN, pin)


def test_malformed_arguments_are_named():
    with pytest.raises(DiscoveryError, match="--token"):
        parse_token("ABCDEF.0123456789abcdef")
    with pytest.raises(DiscoveryError, match="--ca-cert-hash"):
        discover("https://127.0.0.1:1", TOKEN, "md5:abc")
