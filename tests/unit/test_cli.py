"""The command line: clean errors before anything is written, and a render that is byte-for-byte repeatable."""

from __future__ import annotations

import stat
from pathlib import Path

import yaml

from tests.conftest import INVENTORIES, kb


def _tree(root: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(root)): (p.read_bytes(), stat.S_IMODE(p.stat().st_mode))
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_bad_inventory_exits_2_listing_every_problem_and_writes_nothing(tmp_path):
    data = yaml.safe_load((INVENTORIES / "lab-stacked.yaml").read_text())
    data["nodes"][3]["address"] = data["nodes"][2]["address"]
    del data["load_balancer"]["vip"]
    inv = tmp_path / "bad.yaml"
    inv.write_text(yaml.safe_dump(data))
    r = kb("render", "-i", str(inv), "-o", str(tmp_path / "out"), "--cluster-dir", str(tmp_path / "cd"))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "nodes[3] (cp2).address: duplicate address 10.77.0.21" in r.stderr
    assert "load_balancer.vip: 2 loadbalancer nodes need a virtual IP" in r.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "cd").exists()


def test_render_twice_is_identical(tmp_path):
    for run in ("a", "b"):
        r = kb("render", "-i", str(INVENTORIES / "lab-external.yaml"), "-o", str(tmp_path / run),
               "--cluster-dir", str(tmp_path / "cd"))
        assert r.returncode == 0, r.stderr
    first, second = _tree(tmp_path / "a"), _tree(tmp_path / "b")
    assert first == second
    assert first["xcp1/etc/kubernetes/pki/ca.key"][1] == 0o600
    assert first["xcp1/etc/kubernetes/admin.conf"][1] == 0o600
    assert "reused all" in r.stderr


def test_render_one_host_and_unknown_host(tmp_path):
    r = kb("render", "-i", str(INVENTORIES / "lab-mini.yaml"), "-o", str(tmp_path / "o"),
           "--cluster-dir", str(tmp_path / "cd"), "--host", "mw1")
    assert r.returncode == 0, r.stderr
    assert [p.name for p in (tmp_path / "o").iterdir()] == ["mw1"]
    assert "warning: 1 etcd member(s)" in r.stderr
    r = kb("render", "-i", str(INVENTORIES / "lab-mini.yaml"), "-o", str(tmp_path / "o"), "--host", "nope")
    assert r.returncode == 2 and "not in the inventory: nope" in r.stderr


def test_certs_list_names_hosts(tmp_path):
    r = kb("certs", "list", "-i", str(INVENTORIES / "lab-stacked.yaml"))
    assert r.returncode == 0, r.stderr
    line = next(l for l in r.stdout.splitlines() if "│ etcd-ca " in l)
    assert "cp1, cp2, cp3" in line and "(operator only)" in line


def test_help_teaches():
    r = kb("--help")
    assert r.returncode == 0 and "kbootstrap render" in r.stdout and "certs" in r.stdout
