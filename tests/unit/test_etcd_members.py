"""The etcd members record: a control plane added later changes no running member's flags, and the new
one starts as `existing` with the members it joins; the checks of `join --control-plane` and `init`."""

from __future__ import annotations

import copy

import pytest
import yaml
from click.testing import CliRunner

from kbootstrap.cli.main import main
from kbootstrap.model.etcd_members import MembersRecord, MembersRecordError
from kbootstrap.model.spec import build_spec
from kbootstrap.phases.add_etcd_members import add_etcd_members, is_joining, promote_step
from kbootstrap.render import RenderContext, render_host
from kbootstrap.workflows.join_control_planes import JoinControlPlaneError, control_side, members_to_add
from tests.conftest import render_context


@pytest.fixture
def grown(stacked_data):
    """(spec with cp1 only, spec with cp1..cp3): the lab inventory before and after two control planes."""
    stacked_data["certificates"] = {"key_algorithm": "ecdsa-p256"}
    later = [n for n in stacked_data["nodes"] if n["name"] in ("cp2", "cp3")]
    before = copy.deepcopy(stacked_data)
    before["nodes"] = [n for n in stacked_data["nodes"] if n not in later]
    stacked_data["nodes"] = before["nodes"] + later
    return build_spec(before), build_spec(stacked_data)


def rendered(spec, root, record) -> dict[str, dict[str, bytes]]:
    ctx = render_context(spec, root, etcd_record=record)
    return {n.name: {a.path: a.content for a in render_host(ctx, n)} for n in spec.nodes}


def etcd_args(files: dict[str, bytes]) -> str:
    return files["/etc/kubernetes/manifests/etcd.yaml"].decode()


def test_without_a_record_every_member_is_new(grown):
    _, spec = grown
    start = MembersRecord().first_start(spec, spec.node("cp2"))
    assert start.state == "new" and start.flag() == ",".join(f"{n}=https://10.77.0.2{i}:2380" for i, n in
                                                              ((1, "cp1"), (2, "cp2"), (3, "cp3")))


def test_adding_a_control_plane_changes_no_running_members_files_but_routes_and_backends(grown, tmp_path):
    small, big = grown
    root = tmp_path / "c"
    record = MembersRecord(root)
    record.record(small, small.etcd_members)
    first = rendered(small, root, MembersRecord.load(root))
    assert members_to_add(big, MembersRecord.load(root), big.control_planes) == [big.node("cp2"), big.node("cp3")]
    record = MembersRecord.load(root)
    record.record(big, [big.node("cp2")])
    assert [n.name for n in control_side(big, record)] == ["lb1", "lb2", "cp1", "cp2"]  # cp3: the next run
    after = rendered(big, root, MembersRecord.load(root))
    changed = {p for p, c in after["cp1"].items() if first["cp1"].get(p) != c}
    assert changed == {"/etc/systemd/system/kbootstrap-pod-routes.service"}  # etcd and apiserver untouched
    assert "initial-cluster-state=new" in etcd_args(after["cp1"])
    cp2 = etcd_args(after["cp2"])
    assert "initial-cluster-state=existing" in cp2
    assert "initial-cluster=cp1=https://10.77.0.21:2380,cp2=https://10.77.0.22:2380" in cp2
    assert "etcd-servers=https://10.77.0.22:2379,https://10.77.0.21:2379" in \
        after["cp2"]["/etc/kubernetes/manifests/kube-apiserver.yaml"].decode()
    lb = {p for p, c in after["lb1"].items() if first["lb1"].get(p) != c}
    assert lb == {"/etc/haproxy/haproxy.cfg"}


def test_learner_added_through_an_original_member_and_promoted_on_itself(grown, tmp_path):
    small, big = grown
    root = tmp_path / "c"
    MembersRecord(root).record(small, small.etcd_members)
    record = MembersRecord.load(root)
    record.record(big, [big.node("cp2")])
    ctx = render_context(big, root, etcd_record=record)
    nodes = control_side(big, record)
    assert [n for n in nodes if is_joining(ctx, n)] == [big.node("cp2")]
    phase = add_etcd_members(ctx, nodes)
    [step] = phase.steps["cp1"]
    assert step.command[-2:] == ["cp2", "https://10.77.0.22:2380"] and "--learner" in step.command[2]
    assert "https://10.77.0.21:2379" in step.command[2] and "10.77.0.22:2379" not in step.command[2]
    promote = promote_step(ctx, big.node("cp2"))
    assert "member promote" in promote.command[2] and "10.77.0.22:2379" not in promote.command[2]
    # A cluster made by init alone has nothing to add.
    fresh = RenderContext(small, ctx.pki, ctx.secrets, etcd_record=MembersRecord.load(tmp_path / "none"))
    assert add_etcd_members(fresh, small.control_planes) is None


def test_join_control_plane_refusals(grown, tmp_path, external_data):
    small, big = grown
    with pytest.raises(JoinControlPlaneError, match="has not been made with `kbootstrap init`"):
        members_to_add(big, MembersRecord(tmp_path), big.control_planes)
    record = MembersRecord(tmp_path)
    record.record(big, [big.node("cp2")])  # cp1, the first control plane, is not a member
    with pytest.raises(JoinControlPlaneError, match="cp1 is the first control plane"):
        members_to_add(big, MembersRecord.load(tmp_path), big.control_planes)
    external = build_spec(external_data)
    record = MembersRecord(tmp_path / "ext")
    record.record(external, external.etcd_members[:1])
    with pytest.raises(JoinControlPlaneError, match="external etcd cluster is not supported"):
        members_to_add(external, MembersRecord.load(tmp_path / "ext"), external.control_planes)


def test_init_refuses_a_member_the_running_cluster_lacks_before_any_host(grown, tmp_path):
    small, big = grown
    home = tmp_path / "home"
    MembersRecord(home / "clusters" / big.cluster.name).record(small, small.etcd_members)
    inventory = tmp_path / "inv.yaml"
    data = big.model_dump(mode="json", exclude={"source", "warnings"}, exclude_none=True)
    inventory.write_text(yaml.safe_dump(data))
    r = CliRunner().invoke(main, ["init", "-i", str(inventory)], env={"KBOOTSTRAP_HOME": str(home)})
    assert r.exit_code == 2 and "cp2, cp3: etcd members" in r.output and "join --control-plane" in r.output


def test_a_damaged_record_is_named(tmp_path):
    (tmp_path / "etcd-members.yaml").write_text("members: {cp1: {state: maybe}}\n")
    with pytest.raises(MembersRecordError, match="etcd-members.yaml: not a kbootstrap etcd members record"):
        MembersRecord.load(tmp_path)


def test_load_balancers_reload_for_configuration_and_restart_for_a_new_unit():
    from kbootstrap.engine.steps import ServicesStep
    from kbootstrap.transport.remote import HostFacts

    running = HostFacts(units={"haproxy.service": {"ActiveState": "active", "UnitFileState": "enabled"}})
    step = ServicesStep(["haproxy"], {"haproxy": {"/etc/haproxy/haproxy.cfg", "/etc/systemd/system/haproxy.service"}},
                        reloadable=("haproxy",))
    assert [(c.action, c.target) for c in step.check(running, {"/etc/haproxy/haproxy.cfg"})] == [("reload", "haproxy")]
    actions = [c.action for c in step.check(running, {"/etc/systemd/system/haproxy.service"})]
    assert actions == ["daemon-reload", "restart"]
