"""`remove`'s decisions that need no host: what is refused whatever the hosts say, the inventory the staying
hosts are rendered from (pod subnets pinned), and the lines the operator adds once the node is out of the file."""

from __future__ import annotations

import pytest

from kbootstrap.model.spec import load_inventory
from kbootstrap.workflows.remove_nodes import REMOVE, moved_subnets, removal_problem, staying
from tests.conftest import REPO, kb

STACKED = REPO / "inventories" / "lab-stacked.yaml"
EXTERNAL = REPO / "inventories" / "lab-external.yaml"


def _nodes(spec, *names):
    return [spec.node(n) for n in names]


@pytest.mark.parametrize("names, why", [
    (("cp1", "cp2", "cp3"), "no control plane"),
    (("lb1",), "load balancer"),
    (("cp2", "cp3"), "one per run"),
    ((), "no node named"),
])
def test_refused_whatever_the_hosts(names, why):
    spec = load_inventory(STACKED)
    assert why in removal_problem(spec, _nodes(spec, *names))


def test_allowed():
    spec = load_inventory(STACKED)
    assert removal_problem(spec, _nodes(spec, "cp3")) is None
    assert removal_problem(spec, _nodes(spec, "w1", "w2")) is None  # workers: any number at once
    ext = load_inventory(EXTERNAL)
    etcd = [m.name for m in ext.etcd_members]
    assert removal_problem(ext, _nodes(ext, etcd[0])) is None  # an external etcd host, one at a time
    assert "one per run" in removal_problem(ext, _nodes(ext, *etcd[:2]))


def test_the_staying_inventory_keeps_every_pod_subnet():
    spec = load_inventory(STACKED)
    before = spec.pod_subnets
    after = staying(spec, _nodes(spec, "cp2"))
    assert "cp2" not in {n.name for n in after.nodes}
    assert after.pod_subnets == {k: v for k, v in before.items() if k != "cp2"}
    # Deleting cp2 from the file alone would move the subnets of the nodes after it: those lines are printed.
    moved = moved_subnets(spec, _nodes(spec, "cp2"))
    assert moved == {n: str(before[n]) for n in ("cp3", "w1", "w2")}
    assert moved_subnets(spec, _nodes(spec, "w2")) == {}  # the last node: nothing moves


def test_command_line_refusals_touch_no_host(tmp_path):
    p = kb("remove", "-i", str(STACKED), "--host", "cp3", home=tmp_path)
    assert p.returncode == 2 and "--yes" in p.stderr and "Traceback" not in p.stderr, p.stderr
    p = kb("remove", "-i", str(STACKED), "--host", "nope", "--yes", home=tmp_path)
    assert p.returncode == 2 and "not in the inventory: nope" in p.stderr, p.stderr
    p = kb("remove", "-i", str(STACKED), "--host", "cp1", "--host", "cp2", "--host", "cp3", "--yes", home=tmp_path)
    assert p.returncode == 2 and "no control plane" in p.stderr, p.stderr
    assert not (tmp_path / "clusters").exists()


def test_help_lists_the_phases():
    p = kb("remove", "--help")
    assert p.returncode == 0 and all(f"  {n} " in p.stdout for n in REMOVE.names)
