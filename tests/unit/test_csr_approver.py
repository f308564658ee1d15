"""kbootstrap/hostside/csr_approver.py: the DER reader, decide() on real CSRs, and the program run as the service runs it."""

from __future__ import annotations

import base64
import ipaddress
import json
import random
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from kbootstrap.hostside import csr_approver as ca

SCRIPT = Path(ca.__file__)
NODES = {"mw1": "10.77.0.221", "mw2": "10.77.0.222"}
RSA_USAGES = ["digital signature", "key encipherment", "server auth"]
EC_USAGES = ["digital signature", "server auth"]


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key():
    return ec.generate_private_key(ec.SECP256R1())


def make_pem(key, cn="system:node:mw2", orgs=("system:nodes",), sans=None) -> bytes:
    """A real PKCS#10 request; sans=None gives what the kubelet sends for mw2 (its name and address)."""
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    if cn is not None:
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs))
    if sans is None:
        sans = [x509.DNSName("mw2"), x509.IPAddress(ipaddress.ip_address("10.77.0.222"))]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(Encoding.PEM)


def wrap(pem: bytes, name="csr-abc12", user="system:node:mw2", groups=("system:nodes", "system:authenticated"),
         usages=EC_USAGES, signer=ca.SIGNER, conditions=None) -> dict:
    """The object as `kubectl get csr -o json` lists it."""
    obj = {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
           "metadata": {"name": name},
           "spec": {"request": base64.b64encode(pem).decode(), "signerName": signer, "username": user,
                    "groups": list(groups), "usages": list(usages)},
           "status": {}}
    if conditions:
        obj["status"]["conditions"] = [{"type": c, "status": "True"} for c in conditions]
    return obj


# --- approved --------------------------------------------------------------------------------------------------

def test_good_rsa_csr_is_approved(rsa_key):
    ok, why = ca.decide(wrap(make_pem(rsa_key), usages=RSA_USAGES), NODES)
    assert ok, why
    assert why == "mw2: serving certificate for DNS ['mw2'] IP ['10.77.0.222']"


def test_good_ecdsa_csr_is_approved(ec_key):
    assert ca.decide(wrap(make_pem(ec_key)), NODES) == (True, "mw2: serving certificate for DNS ['mw2'] IP ['10.77.0.222']")


def test_only_ip_or_only_dns_is_enough(ec_key):
    assert ca.decide(wrap(make_pem(ec_key, sans=[x509.IPAddress(ipaddress.ip_address("10.77.0.222"))])), NODES)[0]
    assert ca.decide(wrap(make_pem(ec_key, sans=[x509.DNSName("mw2")])), NODES)[0]


@pytest.mark.tools
@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl program")
@pytest.mark.parametrize("newkey, usages", [("ec", EC_USAGES), ("rsa:2048", RSA_USAGES)])
def test_a_csr_made_by_openssl_is_read(tmp_path, newkey, usages):
    """Not made by Python: openssl's own DER (its string types, attribute order, length forms)."""
    opts = ["-pkeyopt", "ec_paramgen_curve:P-256"] if newkey == "ec" else []
    subprocess.run(["openssl", "req", "-new", "-newkey", newkey, *opts, "-nodes", "-keyout", str(tmp_path / "k"),
                    "-out", str(tmp_path / "r"), "-subj", "/O=system:nodes/CN=system:node:mw2",
                    "-addext", "subjectAltName=DNS:mw2,IP:10.77.0.222",
                    "-addext", "keyUsage=critical,digitalSignature"],
                   check=True, capture_output=True)
    pem = (tmp_path / "r").read_bytes()
    assert ca.parse_csr(pem) == {"cn": ["system:node:mw2"], "o": ["system:nodes"], "dns": ["mw2"],
                                 "ip": ["10.77.0.222"], "other": []}
    assert ca.decide(wrap(pem, usages=usages), NODES)[0]


def test_parse_reads_every_o_and_every_san_type(ec_key):
    pem = make_pem(ec_key, orgs=("system:nodes", "evil"), sans=[
        x509.DNSName("mw2"), x509.IPAddress(ipaddress.ip_address("fd00::1")), x509.RFC822Name("a@b.c"),
        x509.UniformResourceIdentifier("spiffe://x/y"), x509.RegisteredID(x509.ObjectIdentifier("1.2.3.4")),
        x509.OtherName(x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.3"), b"\x0c\x01a")])
    assert ca.parse_csr(pem) == {"cn": ["system:node:mw2"], "o": ["system:nodes", "evil"], "dns": ["mw2"],
                                 "ip": ["fd00::1"], "other": ["rfc822Name", "URI", "registeredID", "otherName"]}


# --- refused: the first rule that fails is named ---------------------------------------------------------------

FOREIGN_IP = [x509.DNSName("mw2"), x509.IPAddress(ipaddress.ip_address("10.0.0.9"))]


@pytest.mark.parametrize("pem_args, wrap_args, reason", [
    ({"sans": FOREIGN_IP}, {}, "mw2: IP SAN 10.0.0.9 is not mw2's address 10.77.0.222"),
    ({"sans": [x509.DNSName("mw2"), x509.DNSName("kubernetes.default")]}, {},
     "mw2: DNS SAN 'kubernetes.default' is not the node's name"),
    ({"sans": [x509.DNSName("mw1")]}, {}, "mw2: DNS SAN 'mw1' is not the node's name"),
    ({"sans": [x509.IPAddress(ipaddress.ip_address("10.77.0.221"))]}, {},
     "mw2: IP SAN 10.77.0.221 is not mw2's address 10.77.0.222"),
    ({"sans": [x509.DNSName("mw2"), x509.UniformResourceIdentifier("https://mw2")]}, {},
     "mw2: SAN types other than DNS and IP: URI"),
    ({"sans": [x509.DNSName("mw2"), x509.RFC822Name("root@mw2")]}, {},
     "mw2: SAN types other than DNS and IP: rfc822Name"),
    ({"sans": []}, {}, "mw2: no subjectAltName"),
    ({"cn": "system:node:mw1"}, {}, "mw2: subject CN ['system:node:mw1'] is not ['system:node:mw2']"),
    ({"cn": None}, {}, "mw2: subject CN [] is not ['system:node:mw2']"),
    ({"orgs": ("system:nodes", "system:masters")}, {},
     "mw2: subject O ['system:nodes', 'system:masters'] is not ['system:nodes']"),
    ({"orgs": ()}, {}, "mw2: subject O [] is not ['system:nodes']"),
    ({}, {"user": "system:bootstrap:abcdef"}, "requested by 'system:bootstrap:abcdef', not by a node"),
    ({}, {"user": "mw2"}, "requested by 'mw2', not by a node"),
    ({}, {"groups": ["system:authenticated"]}, "mw2: requester is not in group system:nodes"),
    ({}, {"groups": "system:nodes"}, "mw2: requester is not in group system:nodes"),  # a string, not a list
    ({"cn": "system:node:mw3"}, {"user": "system:node:mw3"}, "mw3: not in the nodes file"),
    ({}, {"usages": EC_USAGES + ["client auth"]}, "mw2: usages ["),
    ({}, {"usages": ["digital signature", "key encipherment"]}, "mw2: usages ["),
    ({}, {"usages": ["server auth"]}, "mw2: usages ["),
    ({}, {"signer": "kubernetes.io/kube-apiserver-client-kubelet"}, "signerName 'kubernetes.io/kube-apiserver"),
    ({}, {"name": "--force"}, "odd CSR name '--force'"),
])
def test_refused(ec_key, pem_args, wrap_args, reason):
    ok, why = ca.decide(wrap(make_pem(ec_key, **pem_args), **wrap_args), NODES)
    assert not ok
    assert why.startswith(reason), why


@pytest.mark.parametrize("request_b64, reason", [
    ("!!!not base64!!!", "mw2: unreadable request: "),
    (base64.b64encode(b"garbage").decode(), "mw2: unreadable request: PEM block type must be CERTIFICATE REQUEST"),
    (base64.b64encode(b"-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n").decode(),
     "mw2: unreadable request: DER: "),
    (base64.b64encode(b"-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n").decode(),
     "mw2: unreadable request: PEM block type must be CERTIFICATE REQUEST"),
    (None, "mw2: unreadable request: spec.request is missing"),
])
def test_garbage_request_is_refused_with_a_reason(ec_key, request_b64, reason):
    csr = wrap(make_pem(ec_key))
    csr["spec"]["request"] = request_b64
    ok, why = ca.decide(csr, NODES)
    assert not ok and why.startswith(reason), why


@pytest.mark.parametrize("obj", [{}, {"metadata": [], "spec": {}}, {"metadata": {"name": "x"}, "spec": None}])
def test_not_a_csr_object_is_refused(obj):
    assert ca.decide(obj, NODES)[0] is False


def test_pending():
    assert ca.pending({"status": {}}) and ca.pending({}) and ca.pending({"status": {"conditions": None}})
    assert ca.pending({"status": "odd"}) and ca.pending({"status": {"conditions": "odd"}})
    assert ca.pending({"status": {"conditions": [{"type": "Failed", "status": "True"}]}})
    assert not ca.pending({"status": {"conditions": [{"type": "Approved", "status": "True"}]}})
    assert not ca.pending({"status": {"conditions": [{"type": "Denied", "status": "True"}]}})


# --- the DER reader on broken input: always a ValueError ---------------------------------------------------------

def _der(pem: bytes) -> bytes:
    return base64.b64decode("".join(pem.decode().splitlines()[1:-1]))


def _pem(der: bytes) -> bytes:
    return b"-----BEGIN CERTIFICATE REQUEST-----\n" + base64.encodebytes(der) + b"-----END CERTIFICATE REQUEST-----\n"


def test_multi_byte_lengths_are_read(rsa_key):
    der = _der(make_pem(rsa_key))
    assert der[1] == 0x82  # an RSA-2048 request is longer than 255 bytes
    assert ca.parse_csr(_pem(der))["dns"] == ["mw2"]


def test_every_truncation_is_a_value_error(rsa_key):
    der = _der(make_pem(rsa_key))
    for n in range(len(der)):
        with pytest.raises(ValueError):
            ca.parse_csr(_pem(der[:n]))


def test_corrupted_bytes_never_raise_anything_but_value_error(ec_key):
    der = bytearray(_der(make_pem(ec_key)))
    rng = random.Random(1234)
    for _ in range(3000):
        bad = bytearray(der)
        for _ in range(rng.randint(1, 3)):
            bad[rng.randrange(len(bad))] = rng.randrange(256)
        try:
            ca.parse_csr(_pem(bytes(bad)))
        except ValueError:
            pass


@pytest.mark.parametrize("der, message", [
    (b"\x30\x80\x00\x00", "indefinite"),
    (b"\x30\x85\x01\x00\x00\x00\x00", "oversized length"),
    (b"\x30\x00\x00", "trailing bytes"),
    (b"\x1f\x01\x00", "multi-byte tags"),
    (b"\x30\x05\x02\x01", "runs past the end"),
    (b"\x30\x81\x02\x05\x00", "shortest form"),
    (b"\x30\x82\x00\x82" + bytes(130), "shortest form"),
])
def test_der_errors_are_clear(der, message):
    with pytest.raises(ValueError, match=message):
        ca.parse_csr(_pem(der))


def _tlv(tag: int, *parts: bytes) -> bytes:
    body = b"".join(parts)
    n = len(body)
    length = bytes([n]) if n < 0x80 else bytes([0x81, n]) if n < 0x100 else b"\x82" + n.to_bytes(2, "big")
    return bytes([tag]) + length + body


def test_two_san_extensions_are_refused(ec_key):
    """Which of two SAN extensions counts is ambiguous; Go's x509 (go1.26 here) refuses such a request as well."""
    der = _der(make_pem(ec_key, sans=[x509.DNSName("mw2")]))
    _, info, _ = ca._tlv(ca._tlv(der)[1])
    version, subject, spki, attrs = (_tlv(t, v) for t, v in ca._items(info))
    san_oid = _tlv(0x06, bytes([0x55, 0x1D, 0x11]))
    second = _tlv(0x30, san_oid, _tlv(0x04, _tlv(0x30, _tlv(0x82, b"evil"))))
    first = _tlv(0x30, san_oid, _tlv(0x04, _tlv(0x30, _tlv(0x82, b"mw2"))))
    ext_req = _tlv(0x30, _tlv(0x06, bytes.fromhex("2a864886f70d01090e")), _tlv(0x31, _tlv(0x30, first, second)))
    forged = _tlv(0x30, _tlv(0x30, version, subject, spki, _tlv(0xA0, ext_req)),
                  _tlv(0x30, _tlv(0x06, bytes.fromhex("2a8648ce3d040302"))), _tlv(0x03, b"\x00"))
    with pytest.raises(ValueError, match="more than one subjectAltName"):
        ca.parse_csr(_pem(forged))
    ok, why = ca.decide(wrap(_pem(forged)), NODES)
    assert not ok and "more than one subjectAltName" in why


# --- the program, run as a script ---------------------------------------------------------------------------------

def fake_kubectl(tmp_path: Path, listing: dict, fail_first: int = 0) -> Path:
    """A stand-in for kubectl: a real API server cannot run in a unit test. It answers `get csr` with a canned
    list, records every argv in calls.log, and exits 1 (API down) on its first `fail_first` calls."""
    (tmp_path / "list.json").write_text(json.dumps(listing))
    script = tmp_path / "kubectl"
    script.write_text(f"""#!/bin/sh
echo "$*" >> {tmp_path}/calls.log
n=$(wc -l < {tmp_path}/calls.log)
if [ "$n" -le {fail_first} ]; then echo "The connection to the server 10.77.0.10:6443 was refused" >&2; exit 1; fi
case "$3" in
  get) cat {tmp_path}/list.json ;;
  certificate) echo "certificatesigningrequest.certificates.k8s.io/$5 approved" ;;
  *) echo "unexpected: $*" >&2; exit 3 ;;
esac
""")
    script.chmod(0o755)
    return script


def calls(tmp_path: Path) -> list[str]:
    log = tmp_path / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


GET = f"--kubeconfig /etc/kubernetes/csr-approver.conf get csr --field-selector spec.signerName={ca.SIGNER} -o json"


@pytest.fixture
def listing(ec_key, rsa_key):
    return {"kind": "CertificateSigningRequestList", "items": [
        wrap(make_pem(ec_key), name="csr-good"),
        wrap(make_pem(ec_key, sans=FOREIGN_IP), name="csr-foreign"),
        wrap(make_pem(rsa_key), name="csr-done", usages=RSA_USAGES, conditions=["Approved"]),
        wrap(make_pem(ec_key), name="csr-denied", conditions=["Denied"]),
    ]}


def run_script(tmp_path, kubectl, *extra):
    (tmp_path / "nodes.json").write_text(json.dumps(NODES))
    return subprocess.run([sys.executable, str(SCRIPT), "--once", "--kubeconfig", "/etc/kubernetes/csr-approver.conf",
                           "--nodes", str(tmp_path / "nodes.json"), "--kubectl", str(kubectl), *extra],
                          capture_output=True, text=True, timeout=60)


def test_once_approves_exactly_the_good_csr(tmp_path, listing):
    p = run_script(tmp_path, fake_kubectl(tmp_path, listing))
    assert p.returncode == 0, p.stderr
    assert calls(tmp_path) == [GET, "--kubeconfig /etc/kubernetes/csr-approver.conf certificate approve csr-good"]
    assert p.stdout.splitlines() == [
        "approved csr-good: mw2: serving certificate for DNS ['mw2'] IP ['10.77.0.222']",
        "left csr-foreign pending: mw2: IP SAN 10.0.0.9 is not mw2's address 10.77.0.222"]
    assert p.stderr == ""


def test_once_with_a_failing_kubectl_prints_one_line_and_exits_1(tmp_path, listing):
    p = run_script(tmp_path, fake_kubectl(tmp_path, listing, fail_first=1))
    assert p.returncode == 1
    assert p.stdout == ""
    assert p.stderr.splitlines() == [
        f"kubectl {GET.split(' ', 2)[2]}: exit 1: The connection to the server 10.77.0.10:6443 was refused"]


def test_missing_kubectl_is_a_failed_pass_not_a_crash(tmp_path):
    p = run_script(tmp_path, tmp_path / "no-such-kubectl")
    assert p.returncode == 1 and "No such file" in p.stderr and "Traceback" not in p.stderr


def test_loop_survives_an_api_outage_tells_once_and_rereads_the_nodes_file(tmp_path, listing, monkeypatch, capsys):
    kubectl = fake_kubectl(tmp_path, listing, fail_first=1)
    nodes = tmp_path / "nodes.json"
    nodes.write_text(json.dumps(NODES))
    passes = []

    class Stop(Exception):
        pass

    def sleep(seconds):
        passes.append(seconds)
        if len(passes) == 3:  # the operator corrects mw2's address; the foreign-IP CSR now matches
            nodes.write_text(json.dumps({"mw2": "10.0.0.9"}))
        if len(passes) == 4:
            raise Stop

    # Only the module's own `time` is replaced: subprocess.run also sleeps (time.sleep) while it waits.
    monkeypatch.setattr(ca, "time", SimpleNamespace(sleep=sleep))
    with pytest.raises(Stop):
        ca.main(["--kubeconfig", "/etc/kubernetes/csr-approver.conf", "--nodes", str(nodes),
                 "--kubectl", str(kubectl), "--interval", "2"])
    out, err = capsys.readouterr()
    assert passes == [2, 2, 2, 2]
    assert err.count("was refused") == 1  # pass 1: API down, the loop went on
    assert out.splitlines() == [
        "approved csr-good: mw2: serving certificate for DNS ['mw2'] IP ['10.77.0.222']",  # pass 2
        "left csr-foreign pending: mw2: IP SAN 10.0.0.9 is not mw2's address 10.77.0.222",  # told once
        "approved csr-good: mw2: serving certificate for DNS ['mw2'] IP ['10.77.0.222']",  # pass 3 (canned list)
        "left csr-good pending: mw2: IP SAN 10.77.0.222 is not mw2's address 10.0.0.9",  # pass 4: new file
        "approved csr-foreign: mw2: serving certificate for DNS ['mw2'] IP ['10.0.0.9']"]


def test_a_bad_nodes_file_fails_the_pass(tmp_path, listing):
    kubectl = fake_kubectl(tmp_path, listing)
    (tmp_path / "nodes.json").write_text('{"mw2": "10.77.0.2222"}')
    p = subprocess.run([sys.executable, str(SCRIPT), "--once", "--kubeconfig", "k", "--nodes",
                        str(tmp_path / "nodes.json"), "--kubectl", str(kubectl)], capture_output=True, text=True)
    assert p.returncode == 1 and "does not appear to be an IPv4 or IPv6 address" in p.stderr
    assert calls(tmp_path) == []  # nothing listed, nothing approved


@pytest.mark.parametrize("args", [[], ["--kubeconfig", "k"], ["--kubeconfig", "k", "--nodes", "n", "--interval", "0"],
                                  ["--kubeconfig", "k", "--nodes", "n", "--bogus"]])
def test_bad_arguments_exit_2(args):
    p = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True)
    assert p.returncode == 2, p.stderr


def test_the_script_needs_only_the_standard_library():
    """-I -S: no site-packages, no PYTHONPATH, no current directory; what the hosts' bare python3 offers."""
    p = subprocess.run([sys.executable, "-I", "-S", str(SCRIPT), "--help"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "--kubeconfig" in p.stdout


def test_unit_renders():
    from kbootstrap.render.templates import render_text
    unit = render_text("csr-approver/kbootstrap-csr-approver.service.j2").decode()
    assert "ExecStart=/usr/bin/python3 \\\n  /usr/local/lib/kbootstrap/csr_approver.py \\\n" in unit
    exec_lines = unit.split("ExecStart=", 1)[1].split("\nRestart=", 1)[0].replace(" \\\n  ", " ")
    assert exec_lines == ("/usr/bin/python3 /usr/local/lib/kbootstrap/csr_approver.py "
                          "--kubeconfig /etc/kubernetes/csr-approver.conf --nodes /etc/kubernetes/kbootstrap/nodes.json "
                          "--kubectl /usr/local/bin/kubectl")
    for line in ("Restart=always", "RestartSec=5", "After=network-online.target", "WantedBy=multi-user.target"):
        assert line in unit.splitlines()
