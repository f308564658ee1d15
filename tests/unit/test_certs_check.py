"""`certs check`'s host side reads certificates and never a key; the controller dates them. The program runs
here as the agent runs it on a host (exec of its source, the call by name) over files laid out as a host's."""

from __future__ import annotations

import base64
import datetime as dt
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kbootstrap.pki.held import by_expiry, parse_held
from kbootstrap.workflows.certs_check import PROGRAM, CertsReport


def _cert(cn: str, days: int, ca: bool = False) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=days, hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def _run_program(arg):
    g: dict = {"__name__": "kbootstrap-certificates"}
    exec(compile(PROGRAM.read_text(), "certificates", "exec"), g)
    return g["certificates"](arg)


def test_reads_certificates_of_files_kubeconfigs_and_the_kubelets_current_ones_never_a_key(tmp_path):
    etc, kubelet = tmp_path / "etc/kubernetes", tmp_path / "var/lib/kubelet/pki"
    (etc / "pki/etcd").mkdir(parents=True)
    kubelet.mkdir(parents=True)
    ca, ca_key = _cert("kubernetes", 3650, ca=True)
    (etc / "pki/ca.crt").write_bytes(ca)
    (etc / "pki/ca.key").write_bytes(ca_key)
    server, server_key = _cert("kube-apiserver", 365)
    (etc / "pki/apiserver.crt").write_bytes(server)
    peer, _ = _cert("cp1", 20)
    (etc / "pki/etcd/peer.crt").write_bytes(peer)
    client, client_key = _cert("kubernetes-admin", 300)
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    (etc / "admin.conf").write_text(
        f"apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {b64(ca)}\n    server: https://x:6443\n"
        f"  name: c\nusers:\n- name: admin\n  user:\n    client-certificate-data: {b64(client)}\n"
        f"    client-key-data: {b64(client_key)}\n")
    current, current_key = _cert("system:node:w1", 200)
    old, _ = _cert("system:node:w1", 1)
    (kubelet / "kubelet-client-2026-12-07-10-00-00.pem").write_bytes(current + current_key)
    (kubelet / "kubelet-client-2025-12-07-10-00-00.pem").write_bytes(old)  # rotated out: not in use
    os.symlink("kubelet-client-2026-12-07-10-00-00.pem", kubelet / "kubelet-client-current.pem")

    raw = _run_program({"roots": [str(etc), str(kubelet), str(tmp_path / "absent")]})
    text = repr(raw)
    assert "PRIVATE KEY" not in text and b64(client_key) not in text and b64(server_key) not in text
    assert {(os.path.relpath(r["path"], tmp_path), r["field"]) for r in raw} == {
        ("etc/kubernetes/pki/ca.crt", ""), ("etc/kubernetes/pki/apiserver.crt", ""),
        ("etc/kubernetes/pki/etcd/peer.crt", ""), ("etc/kubernetes/admin.conf", "certificate-authority-data"),
        ("etc/kubernetes/admin.conf", "client-certificate-data"),
        ("var/lib/kubelet/pki/kubelet-client-current.pem", ""),
    }

    rows = by_expiry(parse_held("cp1", raw))
    now = dt.datetime.now(dt.UTC)
    assert [r.subject for r in rows][:2] == ["cp1", "system:node:w1"]
    assert rows[0].days_left(now) == 20 and rows[-1].is_ca and rows[-1].days_left(now) == 3650
    assert {r.file for r in rows if r.field} == {f"{etc}/admin.conf (CA)", f"{etc}/admin.conf (client)"}
    report = CertsReport(rows, now=now)
    assert [r.subject for r in report.due(30)] == ["cp1"]
    assert report.due(20) == [] and len(report.due(3651)) == len(rows)


def test_a_block_that_does_not_parse_is_skipped():
    good, _ = _cert("ok", 10)
    rows = parse_held("h", [{"path": "/x.crt", "field": "", "pem": "-----BEGIN CERTIFICATE-----\nAAAA\n"
                             "-----END CERTIFICATE-----"}, {"path": "/y.crt", "field": "", "pem": good.decode()}])
    assert [r.path for r in rows] == ["/y.crt"]
