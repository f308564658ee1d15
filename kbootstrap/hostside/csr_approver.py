"""Approve kubelet serving-certificate CSRs (signer kubernetes.io/kubelet-serving) for the nodes kbootstrap knows.

Runs as kbootstrap-csr-approver.service on every control plane: `python3 csr_approver.py --kubeconfig K --nodes F`.
Standard library only (the file is copied alone to /usr/local/lib/kbootstrap/); it must not import kbootstrap.

Why it exists: kube-controller-manager signs kubelet-serving CSRs, but core Kubernetes never approves them.

Trust model. spec.username and spec.groups are set by kube-apiserver from the authenticated requester, and the
request's signature is checked on create (kubernetes/kubernetes:pkg/registry/certificates/certificates/strategy.go
PrepareForCreate/Validate), so `system:node:N` really is node N's credential. Neither a node nor a bootstrap-token
holder is given the right to approve: with it, any node could get a serving certificate for another node's name or
IP and be trusted by kube-apiserver as that node. This program holds that right instead and pins every requested
name and address to the operator's list (the nodes file, {name: IP}), so no requester gets a name or IP outside it.
It cannot tell N from someone else holding N's credentials (a bootstrap-token holder can get a client certificate
for any system:node:* name through the auto-approved nodeclient CSR). Anything refused stays Pending, so a person
may still approve it by hand.
"""

from __future__ import annotations

import argparse
import base64
import ipaddress
import json
import re
import subprocess
import sys
import time

SIGNER = "kubernetes.io/kubelet-serving"
NODE_PREFIX = "system:node:"
NODES_GROUP = "system:nodes"
# The signer accepts exactly these two sets (kubernetes/kubernetes:pkg/apis/certificates/helpers.go
# ValidateKubeletServingCSR); the kubelet asks for key encipherment with RSA keys only
# (kubernetes/kubernetes:staging/src/k8s.io/client-go/util/certificate/certificate_manager.go
# DefaultKubeletServingGetUsages). Any other set would be approved here and then fail at the signer.
USAGES_RSA = frozenset({"digital signature", "key encipherment", "server auth"})
USAGES_NO_RSA = frozenset({"digital signature", "server auth"})
OID_CN, OID_O = "2.5.4.3", "2.5.4.10"
OID_EXTENSION_REQUEST, OID_SAN = "1.2.840.113549.1.9.14", "2.5.29.17"
GENERAL_NAMES = {0: "otherName", 1: "rfc822Name", 2: "dNSName", 3: "x400Address", 4: "directoryName",
                 5: "ediPartyName", 6: "URI", 7: "iPAddress", 8: "registeredID"}
STRING_TAGS = {0x0C: "utf-8", 0x13: "ascii", 0x16: "ascii", 0x14: "latin-1", 0x1E: "utf-16-be"}
# kube-apiserver accepts any CSR name (kubernetes/kubernetes:pkg/apis/certificates/validation/validation.go
# ValidateCertificateRequestName); the kubelet's are csr-xxxxx. A plain name is never read by kubectl as a flag.
CSR_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
PEM = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----\s*(.*?)\s*-----END \1-----", re.S)


# --- DER: just enough to read a PKCS#10 CertificationRequest (RFC 2986) ---------------------------------------
def _tlv(data: bytes) -> tuple[int, bytes, bytes]:
    """The first tag-length-value of data: (tag, value, rest). Definite lengths only, as DER requires."""
    if len(data) < 2:
        raise ValueError("DER: truncated element")
    tag, n, pos = data[0], data[1], 2
    if tag & 0x1F == 0x1F:
        raise ValueError("DER: multi-byte tags are not used in a CSR")
    if n & 0x80:
        k = n & 0x7F
        if k == 0 or k > 4:
            raise ValueError("DER: indefinite or oversized length")
        if len(data) < 2 + k:
            raise ValueError("DER: truncated length")
        n, pos = int.from_bytes(data[2:2 + k], "big"), 2 + k
        if n < 0x80 or data[2] == 0:
            raise ValueError("DER: length not in its shortest form")
    if len(data) < pos + n:
        raise ValueError(f"DER: element of {n} bytes runs past the end of its parent")
    return tag, data[pos:pos + n], data[pos + n:]


def _items(data: bytes, tag: int | None = None) -> list[tuple[int, bytes]]:
    """Every element of a constructed value; with tag, data must first be exactly one element with that tag."""
    if tag is not None:
        t, data, rest = _tlv(data)
        if t != tag or rest:
            raise ValueError(f"DER: expected one element with tag 0x{tag:02x}, got 0x{t:02x}"
                             + (" and trailing bytes" if rest else ""))
    out = []
    while data:
        t, value, data = _tlv(data)
        out.append((t, value))
    return out


def _oid(value: bytes) -> str:
    if not value or value[-1] & 0x80:
        raise ValueError("DER: malformed OBJECT IDENTIFIER")
    arcs, n = [], 0
    for b in value:
        n = (n << 7) | (b & 0x7F)
        if not b & 0x80:
            arcs.append(n)
            n = 0
    first = min(arcs[0] // 40, 2)
    return ".".join(str(a) for a in [first, arcs[0] - 40 * first, *arcs[1:]])


def _string(tag: int, value: bytes) -> str:
    if tag not in STRING_TAGS:
        raise ValueError(f"DER: unsupported string type 0x{tag:02x}")
    try:
        return value.decode(STRING_TAGS[tag])
    except UnicodeDecodeError as e:
        raise ValueError(f"DER: bad string: {e}") from None


def parse_csr(pem: bytes) -> dict:
    """{"cn": [...], "o": [...], "dns": [...], "ip": [...], "other": [...]} from a PEM CERTIFICATE REQUEST."""
    m = PEM.search(pem.decode("ascii", "replace"))
    if not m or m.group(1) != "CERTIFICATE REQUEST":  # like upstream ParseCSR: the first block, this type
        raise ValueError("PEM block type must be CERTIFICATE REQUEST")
    try:
        der = base64.b64decode("".join(m.group(2).split()), validate=True)
    except ValueError as e:
        raise ValueError(f"PEM: bad base64: {e}") from None
    request = _items(der, 0x30)
    if len(request) != 3 or request[0][0] != 0x30:
        raise ValueError("not a CertificationRequest (SEQUENCE of info, algorithm, signature)")
    info = _items(request[0][1])
    if [t for t, _ in info] != [0x02, 0x30, 0x30, 0xA0]:
        raise ValueError("not a CertificationRequestInfo (version, subject, key, [0] attributes)")
    out: dict[str, list[str]] = {"cn": [], "o": [], "dns": [], "ip": [], "other": []}
    for rdn in _items(info[1][1]):  # Name: SEQUENCE OF RDN; RDN: SET OF (type, value); O may repeat
        for atv in _children(rdn, 0x31, "subject RDN"):
            oid, value = _pair(atv, 0x06, None, "subject attribute")
            if oid in (OID_CN, OID_O):
                out["cn" if oid == OID_CN else "o"].append(_string(*value))
    sans = 0
    for attribute in _items(info[3][1]):
        oid, values = _pair(attribute, 0x06, 0x31, "attribute")
        if oid != OID_EXTENSION_REQUEST:
            continue
        for extensions in _items(values[1]):
            for ext in _children(extensions, 0x30, "extensionRequest"):
                fields = _children(ext, 0x30, "extension")
                if not 2 <= len(fields) <= 3 or fields[0][0] != 0x06 or fields[-1][0] != 0x04:
                    raise ValueError("extension is not (OID, [critical], OCTET STRING)")
                if _oid(fields[0][1]) != OID_SAN:
                    continue
                sans += 1  # two would be ambiguous; Go's x509 (the signer's reader) refuses them too
                for t, raw in _items(fields[-1][1], 0x30):
                    if t == 0x82:  # [2] dNSName, an IA5String
                        out["dns"].append(_string(0x16, raw))
                    elif t == 0x87 and len(raw) in (4, 16):  # [7] iPAddress
                        out["ip"].append(str(ipaddress.ip_address(raw)))
                    elif t == 0x87:
                        raise ValueError(f"iPAddress SAN of {len(value)} bytes")
                    else:  # recorded so that decide() refuses it
                        out["other"].append(GENERAL_NAMES.get(t & 0x1F, f"[{t & 0x1F}]"))
    if sans > 1:
        raise ValueError("more than one subjectAltName extension")
    return out


def _children(element: tuple[int, bytes], tag: int, what: str) -> list[tuple[int, bytes]]:
    if element[0] != tag:
        raise ValueError(f"{what} is not a {'SET' if tag == 0x31 else 'SEQUENCE'}")
    return _items(element[1])


def _pair(element: tuple[int, bytes], first: int, second: int | None, what: str) -> tuple[str, tuple[int, bytes]]:
    """An (OID, value) SEQUENCE: the OID as a string and the value element."""
    pair = _children(element, 0x30, what)
    if len(pair) != 2 or pair[0][0] != first or second is not None and pair[1][0] != second:
        raise ValueError(f"{what} is not (OID, value)")
    return _oid(pair[0][1]), pair[1]


# --- the decision ------------------------------------------------------------------------------------------------
def pending(csr: dict) -> bool:
    """Neither Approved nor Denied yet."""
    conditions = _get(csr, "status").get("conditions")
    return not any(isinstance(c, dict) and c.get("type") in ("Approved", "Denied")
                   for c in (conditions if isinstance(conditions, list) else []))


def _get(obj: dict, key: str) -> dict:
    value = obj.get(key)
    return value if isinstance(value, dict) else {}


def decide(csr: dict, nodes: dict[str, str]) -> tuple[bool, str]:
    """(approve?, reason): the reason names the first rule that failed, or what is approved."""
    meta, spec = csr.get("metadata"), csr.get("spec")
    if not isinstance(meta, dict) or not isinstance(spec, dict):
        return False, "not a CertificateSigningRequest object"
    if not isinstance(meta.get("name"), str) or not CSR_NAME.match(meta["name"]):
        return False, f"odd CSR name {meta.get('name')!r}"
    if spec.get("signerName") != SIGNER:
        return False, f"signerName {spec.get('signerName')!r} is not {SIGNER}"
    user, groups = spec.get("username"), spec.get("groups")
    if not isinstance(user, str) or not user.startswith(NODE_PREFIX):
        return False, f"requested by {user!r}, not by a node ({NODE_PREFIX}<name>)"
    node = user[len(NODE_PREFIX):]
    if not isinstance(groups, list) or NODES_GROUP not in groups:
        return False, f"{node}: requester is not in group {NODES_GROUP} (groups {groups!r})"
    if node not in nodes:
        return False, f"{node}: not in the nodes file"
    usages = spec.get("usages")
    if not isinstance(usages, list) or not all(isinstance(u, str) for u in usages) \
            or frozenset(usages) not in (USAGES_RSA, USAGES_NO_RSA):
        return False, f"{node}: usages {usages!r} are not {sorted(USAGES_NO_RSA)} (+ key encipherment for RSA)"
    try:
        if not isinstance(spec.get("request"), str):
            raise ValueError("spec.request is missing")
        req = parse_csr(base64.b64decode(spec["request"], validate=True))
    except ValueError as e:  # binascii.Error is a ValueError too
        return False, f"{node}: unreadable request: {e}"
    if req["cn"] != [user]:
        return False, f"{node}: subject CN {req['cn']!r} is not [{user!r}]"
    if req["o"] != [NODES_GROUP]:
        return False, f"{node}: subject O {req['o']!r} is not [{NODES_GROUP!r}]"
    if req["other"]:
        return False, f"{node}: SAN types other than DNS and IP: {', '.join(req['other'])}"
    if not req["dns"] and not req["ip"]:
        return False, f"{node}: no subjectAltName"
    for dns in req["dns"]:
        if dns != node:
            return False, f"{node}: DNS SAN {dns!r} is not the node's name"
    want = ipaddress.ip_address(nodes[node])
    for ip in req["ip"]:
        if ipaddress.ip_address(ip) != want:
            return False, f"{node}: IP SAN {ip} is not {node}'s address {want}"
    return True, f"{node}: serving certificate for DNS {req['dns']} IP {req['ip']}"


# --- the loop ------------------------------------------------------------------------------------------------------
def load_nodes(path: str) -> dict[str, str]:
    with open(path, encoding="utf-8") as f:
        nodes = json.load(f)
    if not isinstance(nodes, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in nodes.items()):
        raise ValueError("expected a JSON object {node name: IP address}")
    for ip in nodes.values():
        ipaddress.ip_address(ip)  # a typo fails the pass here instead of refusing every CSR of that node
    return nodes


def _err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _kubectl(args: argparse.Namespace, *argv: str) -> str | None:
    """kubectl's stdout, or None after printing one line (the API may be down while a control plane restarts)."""
    cmd = [args.kubectl, "--kubeconfig", args.kubeconfig, *argv]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        _err(f"kubectl {' '.join(argv)}: {e}")
        return None
    if p.returncode != 0:
        said = " / ".join(line.strip() for line in p.stderr.splitlines() if line.strip())
        _err(f"kubectl {' '.join(argv)}: exit {p.returncode}: {said}")
        return None
    return p.stdout


def run_pass(args: argparse.Namespace, told: dict[str, str]) -> bool:
    """One list-and-approve pass; False if anything failed. told: CSR name -> refusal reason already printed."""
    try:
        nodes = load_nodes(args.nodes)  # re-read every pass: an updated file takes effect without a restart
    except (OSError, ValueError) as e:
        _err(f"nodes file {args.nodes}: {e}")
        return False
    # spec.signerName is a CSR field selector (kubernetes/kubernetes:pkg/apis/certificates/v1/conversion.go,
    # pkg/registry/certificates/certificates/strategy.go SelectableFields); decide() checks the signer again.
    out = _kubectl(args, "get", "csr", "--field-selector", f"spec.signerName={SIGNER}", "-o", "json")
    if out is None:
        return False
    try:
        items = json.loads(out)["items"]
    except (ValueError, KeyError, TypeError):
        items = None
    if not isinstance(items, list):
        _err(f"kubectl get csr: not a CSR list: {out[:200]!r}")
        return False
    ok, seen = True, set()
    for csr in items:
        if not isinstance(csr, dict) or not pending(csr):
            continue
        name = str(_get(csr, "metadata").get("name"))
        seen.add(name)
        try:
            approve, reason = decide(csr, nodes)
        except Exception as e:  # a bug must not stop the service for every other CSR
            approve, reason = False, f"internal error: {e!r}"
        if approve:
            # Several control planes race here: kubectl leaves an already-Approved CSR alone and exits 0
            # (kubernetes/kubernetes:staging/src/k8s.io/kubectl/pkg/cmd/certificates/certificates.go).
            if _kubectl(args, "certificate", "approve", name) is None:
                ok = False
            else:
                print(f"approved {name}: {reason}", flush=True)
        elif told.get(name) != reason:  # once per CSR (again only if the reason changes)
            told[name] = reason
            print(f"left {name} pending: {reason}", flush=True)
    for name in set(told) - seen:  # gone or no longer pending
        del told[name]
    return ok


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Approve kubelet-serving CSRs whose names and IPs match the nodes file.")
    p.add_argument("--kubeconfig", required=True, help="kubeconfig allowed to list and approve CSRs")
    p.add_argument("--nodes", required=True, help="JSON file {node name: IP address}, re-read every pass")
    p.add_argument("--interval", type=float, default=5.0, help="seconds between passes (default 5)")
    p.add_argument("--once", action="store_true", help="one pass, then exit 0 (1 if anything failed)")
    p.add_argument("--kubectl", default="kubectl", help="kubectl program (default: kubectl from PATH)")
    args = p.parse_args(argv)
    if not args.interval > 0:
        p.error("--interval must be more than 0")
    told: dict[str, str] = {}
    while True:
        ok = run_pass(args, told)
        if args.once:
            return 0 if ok else 1
        time.sleep(args.interval)


if __name__ == "__main__":
    sys.exit(main())
