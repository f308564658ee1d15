"""`etcd restore` refuses, before any host is contacted (exit 2, one line, no traceback), what is not a snapshot of
this cluster as it was taken; and the snapshot's retention keeps the newest. Real files, no hosts."""

from __future__ import annotations

import json
import struct

import pytest

from kbootstrap.errors import Refused
from kbootstrap.model.spec import load_inventory
from kbootstrap.workflows.etcd_restore import BOLT_MAGIC, RESTORE, load_snapshot
from kbootstrap.workflows.etcd_snapshot import prune
from tests.conftest import REPO, kb

INVENTORY = REPO / "inventories" / "lab-stacked.yaml"


def _bolt(size: int = 8192) -> bytes:
    """The first bytes of a bbolt file: a page header (16 bytes), then the meta page's magic."""
    head = bytearray(size)
    struct.pack_into("<I", head, 16, BOLT_MAGIC)
    return bytes(head)


def _snapshot(tmp_path, cluster="lab-stacked", data=None):
    import hashlib

    data = data if data is not None else _bolt()
    db = tmp_path / "etcd-x-20261207T000000Z.db"
    db.write_bytes(data)
    db.with_suffix(".json").write_text(json.dumps({"sha256": hashlib.sha256(data).hexdigest(), "cluster": cluster}))
    return db


def test_a_snapshot_of_this_cluster_as_taken_is_accepted(tmp_path):
    spec = load_inventory(INVENTORY)
    snap = load_snapshot(_snapshot(tmp_path), spec)
    assert snap.restore_id == snap.sha256 and snap.size == 8192
    again = load_snapshot(_snapshot(tmp_path), spec, again_as="20261207T1")
    assert again.restore_id == f"{snap.sha256}-20261207T1" and again.token != snap.token


@pytest.mark.parametrize("case, message", [
    ("missing", "no such file"),
    ("not-bolt", "not an etcd snapshot"),
    ("altered", "changed since"),
    ("other-cluster", "taken from cluster 'prod'"),
])
def test_refused(tmp_path, case, message):
    spec = load_inventory(INVENTORY)
    if case == "missing":
        path = tmp_path / "none.db"
    elif case == "not-bolt":
        path = _snapshot(tmp_path, data=b"x" * 8192)
    elif case == "altered":
        path = _snapshot(tmp_path)
        path.write_bytes(_bolt(8193))
    else:
        path = _snapshot(tmp_path, cluster="prod")
    with pytest.raises(Refused, match=message):
        load_snapshot(path, spec)


def test_the_command_line_refuses_before_any_host(tmp_path):
    p = kb("etcd", "restore", str(tmp_path / "none.db"), "-i", str(INVENTORY), home=tmp_path)
    assert p.returncode == 2 and "--yes" in p.stderr and "Traceback" not in p.stderr, p.stderr
    p = kb("etcd", "restore", str(tmp_path / "none.db"), "-i", str(INVENTORY), "--yes", home=tmp_path)
    assert p.returncode == 2 and "no such file" in p.stderr and "Traceback" not in p.stderr, p.stderr
    p = kb("etcd", "snapshot", "-i", str(INVENTORY), "--member", "w1", home=tmp_path)
    assert p.returncode == 2 and "w1: not an etcd member" in p.stderr, p.stderr
    assert not (tmp_path / "clusters").exists() or not list((tmp_path / "clusters").rglob("journal.jsonl"))


def test_restore_help_lists_its_phases():
    p = kb("etcd", "restore", "--help")
    assert p.returncode == 0
    for name in RESTORE.names:
        assert f"  {name} " in p.stdout, name


def test_prune_keeps_the_newest_of_kbootstraps_snapshots(tmp_path):
    for t in ("20261201T000000Z", "20261202T000000Z", "20261203T000000Z"):
        (tmp_path / f"etcd-c-{t}.db").write_bytes(b"x")
        (tmp_path / f"etcd-c-{t}.json").write_text("{}")
    (tmp_path / "etcd-mine.db").write_bytes(b"x")  # not kbootstrap's (no .json): never removed
    gone = prune(tmp_path, 2)
    assert [p.name for p in gone] == ["etcd-c-20261201T000000Z.db"]
    assert sorted(p.name for p in tmp_path.glob("*.db")) == ["etcd-c-20261202T000000Z.db", "etcd-c-20261203T000000Z.db",
                                                              "etcd-mine.db"]
    assert prune(tmp_path, 0) == []
