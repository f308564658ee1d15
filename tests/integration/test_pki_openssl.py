"""Every rendered certificate verified by the openssl CLI against the chain each host holds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

INVENTORIES = Path(__file__).resolve().parents[2] / "inventories"

CA_OF = {  # which CA file on the host signs a leaf in that directory
    "etcd": "etcd/ca.crt",
    "front-proxy-client.crt": "front-proxy-ca.crt",
    "apiserver-etcd-client.crt": "etcd/ca.crt",
}
PURPOSE = {"apiserver.crt": "sslserver", "kubelet-serving.crt": "sslserver", "etcd/server.crt": "sslserver",
           "etcd/peer.crt": "sslserver", "apiserver-kubelet-client.crt": "sslclient",
           "apiserver-etcd-client.crt": "sslclient", "front-proxy-client.crt": "sslclient",
           "etcd/healthcheck-client.crt": "sslclient"}


@pytest.fixture(scope="module", params=["lab-stacked", "lab-external"])
def rendered(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(request.param)
    subprocess.run([sys.executable, "-m", "kbootstrap", "render", "-i", str(INVENTORIES / f"{request.param}.yaml"),
                    "-o", str(out / "tree"), "--cluster-dir", str(out / "cluster")], check=True)
    return out / "tree"


def _openssl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", *args], capture_output=True, text=True)


def test_every_leaf_verifies_against_its_ca_on_the_same_host(rendered):
    checked = 0
    for host in sorted(rendered.iterdir()):
        pki = host / "etc/kubernetes/pki"
        for crt in sorted(pki.rglob("*.crt")) if pki.exists() else []:
            rel = str(crt.relative_to(pki))
            if rel.endswith("ca.crt"):
                r = _openssl("verify", "-CAfile", str(crt), str(crt))  # self-signed CA
            else:
                ca = pki / CA_OF.get(rel, CA_OF.get(rel.split("/")[0], "ca.crt"))
                args = ["verify", "-CAfile", str(ca)]
                if rel in PURPOSE:
                    args += ["-purpose", PURPOSE[rel]]
                r = _openssl(*args, str(crt))
            assert r.returncode == 0 and r.stdout.strip().endswith("OK"), (host.name, rel, r.stdout, r.stderr)
            checked += 1
    assert checked > 30


def test_keys_match_their_certificates(rendered):
    pairs = 0
    for key in rendered.rglob("pki/**/*.key"):
        crt = key.with_suffix(".crt")
        if not crt.exists():
            continue  # sa.key has no certificate
        pub_from_key = _openssl("pkey", "-in", str(key), "-pubout").stdout
        pub_from_crt = _openssl("x509", "-in", str(crt), "-noout", "-pubkey").stdout
        assert pub_from_key and pub_from_key == pub_from_crt, key
        pairs += 1
    assert pairs > 20


def test_wrong_ca_is_refused_by_openssl(rendered):
    """The check can fail: an etcd cert does not verify against the cluster CA."""
    host = next(h for h in rendered.iterdir() if (h / "etc/kubernetes/pki/etcd/server.crt").exists())
    pki = host / "etc/kubernetes/pki"
    ca = pki / "ca.crt" if (pki / "ca.crt").exists() else None
    if ca is None:  # external etcd hosts hold no cluster CA: use the one of a control plane
        ca = next(rendered.glob("*/etc/kubernetes/pki/ca.crt"))
    r = _openssl("verify", "-CAfile", str(ca), str(pki / "etcd/server.crt"))
    assert r.returncode != 0
