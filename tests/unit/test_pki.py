"""The PKI against kubeadm's own table (tests/reference/kubeadm_pki.yaml, transcribed from kubeadm's source),
who receives which file, and the cluster directory's load-or-create rules."""

from __future__ import annotations

import base64
import ipaddress
import shutil
import stat
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kbootstrap.errors import PKIError
from kbootstrap.model.spec import build_spec
from kbootstrap.pki.issue import ensure_pki
from kbootstrap.pki.secrets import ensure_secrets
from kbootstrap.render import RenderContext, render_host

REFERENCE = yaml.safe_load((Path(__file__).resolve().parents[1] / "reference/kubeadm_pki.yaml").read_text())
EKU = {"serverAuth": ExtendedKeyUsageOID.SERVER_AUTH, "clientAuth": ExtendedKeyUsageOID.CLIENT_AUTH}


@pytest.fixture
def stacked(stacked_data):
    return build_spec(stacked_data)


@pytest.fixture(scope="module")
def issued_once(tmp_path_factory):
    """RSA keys take ~40 ms each: issue the lab PKI once, and give each test its own copy of the directory."""
    root = tmp_path_factory.mktemp("pki") / "cluster"
    data = yaml.safe_load((Path(__file__).resolve().parents[2] / "inventories/lab-stacked.yaml").read_text())
    ensure_pki(build_spec(data), root)
    return root


@pytest.fixture
def pki(stacked, tmp_path, issued_once):
    shutil.copytree(issued_once, tmp_path / "cluster")
    loaded = ensure_pki(stacked, tmp_path / "cluster")
    assert not loaded.report.created and not loaded.report.reissued
    return loaded


def _cn(cert):
    return cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def _orgs(cert):
    return [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]


def _sans(cert):
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set(), set()
    return set(san.get_values_for_type(x509.DNSName)), {str(i) for i in san.get_values_for_type(x509.IPAddress)}


def _substitute(items, spec, node):
    values = {
        "<nodeName>": node.name if node else "", "<advertiseAddress>": str(node.address) if node else "",
        "<dnsDomain>": spec.cluster.domain, "<firstServiceIP>": str(spec.first_service_ip),
        "<controlPlaneEndpointHost>": spec.api_host,
    }
    out = set()
    for item in items:
        for k, v in values.items():
            item = item.replace(k, v)
        out.add(item)
    return out


@pytest.mark.parametrize("ref", REFERENCE["certificates"], ids=lambda r: r["name"])
def test_cert_matches_kubeadm(ref, stacked, pki):
    """Name, file, issuer, CN, O, key usages, extended key usages and SANs as kubeadm makes them."""
    from kbootstrap.pki.table import CERT_BY_NAME, subjects

    row = CERT_BY_NAME[ref["name"]]
    assert row.base == ref["base_name"]
    assert row.ca == ref["ca"]
    for node in subjects(stacked, row.per_node):
        kc = pki.get(ref["name"], node.name if node else None)
        cert = kc.cert
        assert _cn(cert) == _substitute([ref["common_name"]], stacked, node).pop()
        assert _orgs(cert) == ref["organizations"]
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        assert {u for u in ("digital_signature", "key_encipherment", "key_cert_sign") if getattr(ku, u)} == {
            {"digitalSignature": "digital_signature", "keyEncipherment": "key_encipherment",
             "keyCertSign": "key_cert_sign"}[u] for u in ref["key_usage"]}
        if ref["is_ca"]:
            assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        else:
            eku = set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
            assert eku == {EKU[u] for u in ref["ext_key_usage"]}
            issuer = pki.ca(ref["ca"]).cert
            assert cert.issuer == issuer.subject
            cert.verify_directly_issued_by(issuer)
        dns, ips = _sans(cert)
        want_dns = _substitute(ref["sans"]["dns"], stacked, node)
        want_ips = _substitute(ref["sans"]["ip"], stacked, node)
        if ref["name"] == "apiserver":  # kubeadm adds the controlPlaneEndpoint host: our VIP
            want_ips.add(stacked.api_host)
        assert want_dns <= dns and want_ips <= ips, (ref["name"], dns, ips)
        extra_dns, extra_ips = dns - want_dns, ips - want_ips
        if ref["name"] == "apiserver":  # deliberately more: each LB's own address, so a single LB is reachable
            assert extra_ips <= {str(n.address) for n in stacked.loadbalancers} and not extra_dns
        else:
            assert not extra_dns and not extra_ips


@pytest.mark.parametrize("ref", REFERENCE["kubeconfigs"]["files"], ids=lambda r: r["file"])
def test_kubeconfig_clients_match_kubeadm(ref, stacked, pki, tmp_path):
    ctx = RenderContext(stacked, pki, ensure_secrets(tmp_path / "cluster"))
    cp1 = stacked.node("cp1")
    files = {a.path: a for a in render_host(ctx, cp1)}
    doc = yaml.safe_load(files[f"/etc/kubernetes/{ref['file']}"].content)
    cert = x509.load_pem_x509_certificate(base64.b64decode(doc["users"][0]["user"]["client-certificate-data"]))
    assert _cn(cert) == ref["client_common_name"].replace("<nodeName>", "cp1")
    assert _orgs(cert) == ref["client_organizations"]
    server = doc["clusters"][0]["cluster"]["server"]
    expected = "https://10.77.0.21:6443" if ref["server"] == "localAPIEndpoint" else stacked.api_server_url
    assert server == expected
    assert set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == {ExtendedKeyUsageOID.CLIENT_AUTH}


def test_who_holds_which_key(stacked, pki, tmp_path):
    """No CA key on workers or load balancers; the etcd and front-proxy CA keys on no host at all."""
    ctx = RenderContext(stacked, pki, ensure_secrets(tmp_path / "cluster"))
    held = {n.name: {a.path for a in render_host(ctx, n)} for n in stacked.nodes}
    for name, paths in held.items():
        assert "/etc/kubernetes/pki/etcd/ca.key" not in paths, name
        assert "/etc/kubernetes/pki/front-proxy-ca.key" not in paths, name
        if name.startswith(("w", "lb")):
            assert not {p for p in paths if p.endswith(".key") and "ca" in Path(p).name}, name
            assert "/etc/kubernetes/pki/sa.key" not in paths
    assert "/etc/kubernetes/pki/ca.key" in held["cp2"]
    assert held["lb1"] == {"/etc/haproxy/haproxy.cfg", "/etc/keepalived/keepalived.conf",
                           "/etc/kubernetes/pki/ca.crt", "/etc/sysctl.d/99-kbootstrap.conf"}
    assert "/etc/kubernetes/super-admin.conf" in held["cp1"] and "/etc/kubernetes/super-admin.conf" not in held["cp2"]


def test_external_etcd_hosts_get_only_etcd_material(external_data, tmp_path):
    spec = build_spec(external_data)
    pki = ensure_pki(spec, tmp_path / "c")
    ctx = RenderContext(spec, pki, ensure_secrets(tmp_path / "c"))
    etcd_files = {a.path for a in render_host(ctx, spec.node("xetcd1"))}
    assert {p for p in etcd_files if p.startswith("/etc/kubernetes/pki")} == {
        "/etc/kubernetes/pki/etcd/ca.crt", "/etc/kubernetes/pki/etcd/server.crt", "/etc/kubernetes/pki/etcd/server.key",
        "/etc/kubernetes/pki/etcd/peer.crt", "/etc/kubernetes/pki/etcd/peer.key",
        "/etc/kubernetes/pki/etcd/healthcheck-client.crt", "/etc/kubernetes/pki/etcd/healthcheck-client.key"}
    assert "/etc/systemd/system/etcd.service" in etcd_files  # no kubelet on external etcd hosts
    cp_files = {a.path for a in render_host(ctx, spec.node("xcp1"))}
    assert "/etc/kubernetes/pki/etcd/ca.crt" in cp_files and "/etc/kubernetes/pki/etcd/server.key" not in cp_files


def test_keys_are_private_on_disk_and_in_render(stacked, pki, tmp_path):
    root = tmp_path / "cluster"
    keys = list(root.rglob("*.key"))
    assert len(keys) > 20
    for k in keys:
        assert stat.S_IMODE(k.stat().st_mode) == 0o600, k
    for d in [root, *[p for p in root.rglob("*") if p.is_dir()]]:
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    ctx = RenderContext(stacked, pki, ensure_secrets(root))
    for a in render_host(ctx, stacked.node("cp1")):
        if a.path.endswith(".key") or a.path.startswith("/etc/kubernetes/") and a.path.endswith(".conf") \
                or "encryption" in a.path:
            assert a.mode == 0o600 and a.secret, a.path


def test_second_run_reuses_everything(stacked, pki, tmp_path):
    again = ensure_pki(stacked, tmp_path / "cluster")
    assert not again.report.created and not again.report.reissued
    assert again.ca("ca").cert == pki.ca("ca").cert


def test_new_node_gets_only_its_own_certs(stacked_data, stacked, pki, tmp_path):
    stacked_data["nodes"].append({"name": "w3", "address": "10.77.0.33", "roles": ["worker"]})
    grown = ensure_pki(build_spec(stacked_data), tmp_path / "cluster")
    assert grown.report.created == ["kubelet-serving (w3)"]
    assert not grown.report.reissued


def test_changed_san_reissues_only_that_leaf(stacked_data, pki, tmp_path):
    stacked_data["load_balancer"]["dns_names"] = ["api.lab.example"]
    again = ensure_pki(build_spec(stacked_data), tmp_path / "cluster")
    assert sorted(label for label, _ in again.report.reissued) == ["apiserver (cp1)", "apiserver (cp2)", "apiserver (cp3)"]
    assert {why for _, why in again.report.reissued} == {"subject alternative names changed"}
    assert "api.lab.example" in _sans(again.get("apiserver", "cp1").cert)[0]


def test_never_replaces_a_ca(stacked, pki, tmp_path):
    root = tmp_path / "cluster"
    (root / "pki/etcd/ca.key").unlink()
    with pytest.raises(PKIError, match="missing while its pair exists"):
        ensure_pki(stacked, root)
    # A foreign key beside the CA cert: refused too, and the CA cert is left as it was.
    other = ensure_pki(stacked, tmp_path / "other")
    (root / "pki/etcd/ca.key").write_bytes(other.ca("etcd-ca").key_pem)
    before = (root / "pki/etcd/ca.crt").read_bytes()
    with pytest.raises(PKIError, match="never replaces a CA"):
        ensure_pki(stacked, root)
    assert (root / "pki/etcd/ca.crt").read_bytes() == before


def test_ecdsa_option(stacked_data, tmp_path):
    stacked_data["certificates"] = {"key_algorithm": "ecdsa-p256"}
    pki = ensure_pki(build_spec(stacked_data), tmp_path / "c")
    kc = pki.get("apiserver", "cp1")
    assert isinstance(kc.key, ec.EllipticCurvePrivateKey) and kc.key.curve.name == "secp256r1"
    # keyEncipherment is meaningless for ECDSA keys: kbootstrap leaves it out (kubeadm sets it; see
    # kubernetes/kubernetes PR #142037, which proposes the same). RSA keys get it, as kubeadm does.
    assert not kc.cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_encipherment
    assert isinstance(pki.keypairs["sa"], ec.EllipticCurvePrivateKey)


def test_validity_and_backdate(stacked, pki):
    ca, leaf = pki.ca("ca").cert, pki.get("apiserver", "cp1").cert
    assert 3649 <= (ca.not_valid_after_utc - ca.not_valid_before_utc).days <= 3651
    assert 364 <= (leaf.not_valid_after_utc - leaf.not_valid_before_utc).days <= 366
    assert isinstance(pki.get("apiserver", "cp1").key, rsa.RSAPrivateKey)
    assert pki.get("apiserver", "cp1").key.key_size == 2048


def test_apiserver_cert_names_the_vip_and_every_lb(stacked, pki):
    dns, ips = _sans(pki.get("apiserver", "cp2").cert)
    assert {"10.77.0.10", "10.77.0.11", "10.77.0.12", "10.77.0.22", "10.96.0.1"} <= ips
    assert ipaddress.ip_address("10.77.0.21").exploded not in ips  # another control plane's address is not
    assert "cp2" in dns and "kubernetes.default.svc.cluster.local" in dns
