"""`kbootstrap reset` without hosts: the phases and their order per role, each step's idempotence (no change
when there is nothing left to undo), the safety of what is removed, the refusals of the command line,
and the iptables clean-up run for real, on this machine, over a real node's `iptables-save` output."""

from __future__ import annotations

import os
import re
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from kbootstrap.engine.reset_steps import RemovePathsStep, StopServicesStep, check_removable, collapse
from kbootstrap.engine.runner import RunResult
from kbootstrap.engine.steps import ShellStep
from kbootstrap.errors import StepError
from kbootstrap.model.spec import build_spec
from kbootstrap.phases.reset import (
    IPTABLES_FILTER,
    detach_host,
    iptables_step,
    partial_reset_problem,
    reset_paths,
    services_to_stop,
    without_kube_rules,
)
from kbootstrap.pki.issue import ensure_pki
from kbootstrap.pki.secrets import ensure_secrets
from kbootstrap.render import RenderContext, render_host
from kbootstrap.transport.base import CommandResult, RoundTrips
from kbootstrap.transport.remote import FileFact, HostFacts
from kbootstrap.workflows import RESET, Inputs

INVENTORIES = Path(__file__).resolve().parents[2] / "inventories"
W1_IPTABLES = Path(__file__).parent / "data" / "iptables-save-w1.txt"  # `iptables-save` of a lab worker


def ctx_for(data: dict, root: Path) -> RenderContext:
    data["certificates"] = {"key_algorithm": "ecdsa-p256"}
    spec = build_spec(data)
    return RenderContext(spec, ensure_pki(spec, root), ensure_secrets(root))


@pytest.fixture(scope="module")
def stacked(tmp_path_factory) -> RenderContext:
    data = yaml.safe_load((INVENTORIES / "lab-stacked.yaml").read_text())
    return ctx_for(data, tmp_path_factory.mktemp("stacked"))


def steps_of(phase, host):
    return phase.steps.get(host, [])


def labels(steps) -> list[str]:
    facts = HostFacts(files={}, units={}, probes={})  # nothing answered: every step has something to do
    return [c.target for s in steps if isinstance(s, ShellStep) for c in s.check(facts, set())]


# ------------------------------------------------------------------------------------------------------
# phases


def test_full_reset_phases_in_order_on_the_hosts_they_concern(stacked):
    spec = stacked.spec
    phases = RESET.build(Inputs(stacked, spec.nodes))
    assert [p.name for p in phases] == ["stop", "containers", "files", "network"]
    stop, containers, files, network = phases
    assert set(stop.steps) == set(files.steps) == {n.name for n in spec.nodes}
    assert set(containers.steps) == {"cp1", "cp2", "cp3", "w1", "w2"}  # no runtime on load balancers
    assert [s.services for s in stop.steps["cp1"]] == [["kubelet", "kube-proxy", "kbootstrap-pod-routes"]]
    assert [s.services for s in stop.steps["lb1"]] == [["haproxy", "keepalived"]]
    assert labels(containers.steps["w1"]) == ["crictl rmp -fa"]
    assert [s.services for s in containers.steps["w1"] if isinstance(s, StopServicesStep)] == [["containerd"]]
    assert labels(files.steps["w1"]) == ["umount /var/lib/kubelet/*", "ip netns delete cni-*", "/etc/hosts: the kbootstrap block"]
    assert labels(files.steps["lb1"]) == ["/etc/hosts: the kbootstrap block"]
    assert labels(network.steps["lb1"]) == ["10.77.0.10/32 on eth0"]
    assert labels(network.steps["w1"]) == [
        "cni0 bridge", "10.244.0.0/24 via 10.77.0.21", "10.244.1.0/24 via 10.77.0.22", "10.244.2.0/24 via 10.77.0.23",
        "10.244.4.0/24 via 10.77.0.32", "iptables: KUBE-*, CNI-* chains and the rules jumping to them",
        "ip6tables: KUBE-*, CNI-* chains and the rules jumping to them"]


def test_every_rendered_file_and_state_directory_is_removed(stacked):
    spec = stacked.spec
    for node in spec.nodes:
        remove = next(s for s in RESET.build(Inputs(stacked, [node]))[2].steps[node.name] if isinstance(s, RemovePathsStep))
        covered = lambda p: any(p == r or p.startswith(r + "/") for r in remove.paths)  # noqa: E731
        assert all(covered(a.path) for a in render_host(stacked, node)), node.name
        assert "/etc/kubernetes" in remove.paths
    cp1, w1, lb1 = (set(reset_paths(stacked, spec.node(n))) for n in ("cp1", "w1", "lb1"))
    assert {"/var/lib/etcd", "/var/lib/kubelet", "/var/lib/kube-proxy", "/var/lib/cni", "/run/kubernetes"} <= cp1
    assert {"/var/lib/kubelet", "/var/lib/cni", "/var/log/pods"} <= w1 and "/var/lib/etcd" not in w1
    assert "/var/lib/kubelet" not in lb1 and "/etc/haproxy/haproxy.cfg" in lb1
    assert "/etc/systemd/system/multi-user.target.wants/kubelet.service" in w1
    assert not any(p.startswith(("/usr/local/bin", "/opt/cni/bin")) for p in cp1 | w1 | lb1)  # binaries stay


def test_systemd_form_and_external_etcd_stop_their_services(tmp_path):
    data = yaml.safe_load((INVENTORIES / "lab-external.yaml").read_text())  # external etcd, systemd form
    ctx = ctx_for(data, tmp_path)
    spec = ctx.spec
    assert services_to_stop(ctx, spec.node("xcp1")) == [
        "kubelet", "kube-proxy", "kbootstrap-pod-routes", "kube-apiserver", "kube-controller-manager", "kube-scheduler"]
    assert services_to_stop(ctx, spec.node("xetcd1")) == ["etcd"]
    assert "/var/lib/etcd" in reset_paths(ctx, spec.node("xetcd1"))
    assert "/var/lib/etcd" not in reset_paths(ctx, spec.node("xcp1"))


def test_single_load_balancer_without_vip_has_no_keepalived_or_vip_step(tmp_path):
    ctx = ctx_for(yaml.safe_load((INVENTORIES / "lab-mini.yaml").read_text()), tmp_path)
    phases = RESET.build(Inputs(ctx, ctx.spec.nodes))
    assert [s.services for s in phases[0].steps["mlb1"]] == [["haproxy"]]
    assert "mlb1" not in phases[3].steps


def test_resetting_some_workers_detaches_their_node_objects_through_a_control_plane(stacked):
    spec = stacked.spec
    w2 = [spec.node("w2")]
    phases = RESET.build(Inputs(stacked, w2))
    assert [p.name for p in phases] == ["stop", "containers", "files", "network", "detach"]
    assert list(phases[-1].steps) == ["cp1"] and labels(phases[-1].steps["cp1"]) == ["node/w2"]
    assert detach_host(spec, w2) == spec.node("cp1")
    assert detach_host(spec, spec.nodes) is None  # the whole cluster: nothing to detach from
    assert detach_host(spec, [spec.node("lb1")]) is None  # no Node object for a load balancer
    assert partial_reset_problem(spec, w2) is None


def test_purge_removes_the_binaries_it_is_given(stacked):
    phases = RESET.build(Inputs(stacked, stacked.spec.nodes, purge={"w1": ["/usr/local/bin/kubelet", "/var/lib/kbootstrap"]}))
    assert phases[-1].name == "purge" and list(phases[-1].steps) == ["w1"]
    assert phases[-1].steps["w1"][0].paths == ["/usr/local/bin/kubelet", "/var/lib/kbootstrap"]


def test_purge_paths_follow_the_bundle_manifest(stacked):
    from kbootstrap.artifacts.catalog import Kind
    from kbootstrap.artifacts.manifest import Install, ManifestFile
    from kbootstrap.phases.reset import purge_paths

    def f(component, dest, roles):
        return ManifestFile(path=f"{component}/x", sha256="0" * 64, size=1, kind=Kind.BINARY, component=component, version="1",
                            roles=roles, install=(Install(dest, None, 0o755),))

    class M:
        files = [f("kubelet", "/usr/local/bin/kubelet", ("node",)), f("etcd", "/usr/local/bin/etcd", ("etcd",))]

    spec = stacked.spec
    assert purge_paths(spec, spec.node("w1"), M()) == ["/usr/local/bin/kubelet", "/var/lib/kbootstrap"]
    assert purge_paths(spec, spec.node("cp1"), M()) == ["/usr/local/bin/kubelet", "/usr/local/bin/etcd",
                                                         "/var/lib/kbootstrap"]


def test_partial_etcd_reset_is_refused(stacked, tmp_path):
    spec = stacked.spec
    assert "resetting cp3 but not the other etcd members" in partial_reset_problem(spec, [spec.node("cp3")])
    assert partial_reset_problem(spec, [spec.node(n) for n in ("cp1", "cp2", "cp3")]) is None
    ext = build_spec(yaml.safe_load((INVENTORIES / "lab-external.yaml").read_text()))
    assert partial_reset_problem(ext, [ext.node("xetcd2")]) is not None
    assert partial_reset_problem(ext, [ext.node("xcp2")]) is None  # a control plane of external etcd: stateless


# ------------------------------------------------------------------------------------------------------
# steps: a second reset finds nothing to do


def unit(active: str, enabled: str, load: str = "loaded") -> dict:
    return {"LoadState": load, "ActiveState": active, "SubState": "running" if active == "active" else "dead",
            "UnitFileState": enabled}


def test_stop_services_changes_only_what_runs_or_is_enabled():
    step = StopServicesStep(["kubelet", "kube-proxy", "etcd", "haproxy"])
    assert step.wants().units == ["kubelet.service", "kube-proxy.service", "etcd.service", "haproxy.service"]
    facts = HostFacts(units={"kubelet.service": unit("active", "enabled"),
                             "kube-proxy.service": unit("failed", "disabled"),
                             "etcd.service": unit("inactive", "", load="not-found"),
                             "haproxy.service": unit("inactive", "enabled")})
    assert [(c.action, c.target) for c in step.check(facts, set())] == [
        ("stop", "kubelet"), ("disable", "kubelet"), ("reset-failed", "kube-proxy"), ("disable", "haproxy")]
    after = HostFacts(units={f"{s}.service": unit("inactive", "", load="not-found") for s in step.services})
    assert step.check(after, set()) == []


class Recorder:
    host = "h"

    def __init__(self, rc: int = 0):
        self.rc, self.commands, self.round_trips = rc, [], RoundTrips()

    def run(self, argv, *, sudo=False, stdin=b"", timeout=120) -> CommandResult:
        self.commands.append(argv)
        return CommandResult("h", argv[0], self.rc, b"", b"failed" if self.rc else b"")

    def close(self) -> None:
        pass


def test_stop_services_apply_stops_in_order_then_disables():
    step = StopServicesStep(["kubelet", "kube-proxy", "haproxy"])
    facts = HostFacts(units={"kubelet.service": unit("active", "enabled"), "kube-proxy.service": unit("active", "enabled"),
                             "haproxy.service": unit("inactive", "enabled")})
    t = Recorder()
    step.apply(t, step.check(facts, set()))
    assert t.commands == [["sh", "-ec", "systemctl stop kubelet.service && systemctl stop kube-proxy.service && "
                           "systemctl disable kubelet.service kube-proxy.service haproxy.service && "
                           "{ systemctl reset-failed kubelet.service kube-proxy.service haproxy.service 2>/dev/null "
                           "|| true; }"]]
    with pytest.raises(StepError, match="stop services"):
        step.apply(Recorder(rc=1), step.check(facts, set()))


def test_remove_paths_removes_what_exists_and_reloads_systemd_for_units():
    step = RemovePathsStep(["/var/lib/kubelet/config.yaml", "/var/lib/kubelet", "/etc/systemd/system/kubelet.service",
                            "/etc/kubernetes"])
    assert step.paths == ["/etc/kubernetes", "/etc/systemd/system/kubelet.service", "/var/lib/kubelet"]
    there = FileFact("ab" * 32, 0o644, "root", "root", 10)
    facts = HostFacts(files={"/etc/kubernetes": FileFact(None, 0o755, "root", "root", 4096),
                             "/etc/systemd/system/kubelet.service": there, "/var/lib/kubelet": None})
    changes = step.check(facts, set())
    assert [(c.action, c.target, c.detail) for c in changes] == [
        ("remove", "/etc/kubernetes", "directory or link"), ("remove", "/etc/systemd/system/kubelet.service", "10 bytes")]
    t = Recorder()
    step.apply(t, changes)
    assert t.commands == [["sh", "-ec", "rm -rf -- /etc/kubernetes /etc/systemd/system/kubelet.service "
                           "&& systemctl daemon-reload"]]
    assert step.check(HostFacts(files=dict.fromkeys(step.paths)), set()) == []


@pytest.mark.parametrize("path", ["/", "/etc", "/var/lib", "/usr/local/bin", "etc/kubernetes", "/etc/kubernetes/",
                                  "/etc/../var", "/opt/cni/bin"])
def test_system_directories_are_never_removed(path):
    with pytest.raises(ValueError, match="refusing to remove"):
        RemovePathsStep([path])
    assert check_removable("/etc/kubernetes") == "/etc/kubernetes"


def test_collapse_keeps_the_outermost_paths():
    assert collapse(["/etc/kubernetes/pki/ca.crt", "/etc/kubernetes", "/etc/kubernetes-extra", "/a/b", "/a/b"]) == [
        "/a/b", "/etc/kubernetes", "/etc/kubernetes-extra"]


def test_shell_steps_run_only_when_their_probe_fails_and_are_valid_shell(stacked):
    step = ShellStep("delete cni0", probe="! ip link show cni0", command="ip link del cni0", label="cni0 bridge")
    assert step.check(HostFacts(probes={"delete cni0": {"rc": 0}}), set()) == []
    [c] = step.check(HostFacts(probes={"delete cni0": {"rc": 1}}), set())
    assert (c.action, c.target) == ("run", "cni0 bridge")
    for phase in RESET.build(Inputs(stacked, stacked.spec.nodes[:3] + [stacked.spec.node("w1")])):
        for steps in phase.steps.values():
            for s in steps:
                if isinstance(s, ShellStep):
                    for script in (s.probe[-1], s.command[-1]):
                        r = subprocess.run(["sh", "-n", "-c", script], capture_output=True, text=True)
                        assert r.returncode == 0, (s.name, script, r.stderr)


# ------------------------------------------------------------------------------------------------------
# iptables: the clean-up, run for real over a real node's rules


USER_RULES = """\
# Generated by iptables-save v1.8.9 (nf_tables)
*filter
:INPUT DROP [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:DOCKER-USER - [0:0]
-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT
-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -j DOCKER-USER
-A FORWARD -o docker0 -j DOCKER
-A DOCKER-USER -j RETURN
COMMIT
"""

BUILTIN_TARGETS = {"ACCEPT", "DROP", "RETURN", "REJECT", "MASQUERADE", "DNAT", "SNAT", "MARK", "LOG", "CONNMARK"}


def consistent(save: str) -> list[str]:
    """What iptables-restore would refuse: a rule in, or a jump to, a chain its table does not declare."""
    problems, declared = [], set()
    for line in save.splitlines():
        if line.startswith("*"):
            declared = set()
        elif line.startswith(":"):
            declared.add(line[1:].split()[0])
        elif line.startswith("-A "):
            chain = line.split()[1]
            target = re.search(r" -[jg] (\S+)", line)
            if chain not in declared:
                problems.append(f"rule in undeclared chain: {line}")
            if target and target.group(1) not in declared | BUILTIN_TARGETS:
                problems.append(f"jump to undeclared chain: {line}")
    return problems


def test_filter_keeps_every_other_rule_and_leaves_a_loadable_ruleset():
    save = W1_IPTABLES.read_text() + USER_RULES
    assert consistent(save) == []
    kept = without_kube_rules(save)
    assert not re.search("KUBE-|CNI-", kept)
    assert USER_RULES in kept  # nothing of anyone else's is touched
    assert kept.count("COMMIT") == save.count("COMMIT") and kept.count("*nat") == 1
    assert ":POSTROUTING ACCEPT [0:0]" in kept
    assert consistent(kept) == []
    # the same filter as the shell command that runs on the hosts
    r = subprocess.run(["sh", "-c", IPTABLES_FILTER], input=save, capture_output=True, text=True)
    assert r.stdout == kept


@pytest.fixture
def fake_iptables(tmp_path):
    """`iptables-save` printing a real node's rules plus a host's own, `iptables-restore` keeping its input,
    first on PATH: the step's probe and command run as they would on a host."""
    bin_dir, state = tmp_path / "bin", tmp_path / "rules"
    bin_dir.mkdir()
    state.write_text(W1_IPTABLES.read_text() + USER_RULES)
    (bin_dir / "iptables-save").write_text(f"#!/bin/sh\ncat {state}\n")
    (bin_dir / "iptables-restore").write_text(f"#!/bin/sh\ncat > {state}.new && mv {state}.new {state}\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}, state


def test_iptables_step_cleans_once_then_finds_nothing_to_do(fake_iptables):
    env, state = fake_iptables
    step = iptables_step("iptables")

    def sh(argv):
        return subprocess.run(argv, env=env, capture_output=True, text=True).returncode

    assert sh(step.probe) != 0  # KUBE-/CNI- rules present: work to do
    assert sh(step.command) == 0
    assert sh(step.probe) == 0  # the second reset: no change
    assert state.read_text() == without_kube_rules(W1_IPTABLES.read_text() + USER_RULES)
    assert USER_RULES in state.read_text()
    missing = iptables_step("ip6tables")  # not installed (the fake has none): nothing to clean
    assert sh(["sh", "-c", missing.probe[-1].replace("ip6tables", "kb-no-such-tool")]) == 0


# ------------------------------------------------------------------------------------------------------
# the command line


@pytest.fixture
def fake_session(monkeypatch, stacked):
    import kbootstrap.cli.session as engine_cli

    calls = []

    class FakeSession:
        ctx = stacked

        def run(self, phases, apply, parallel, diffs=False):
            calls.append({"phases": [p.name for p in phases], "apply": apply, "parallel": parallel})
            return RunResult(applied=apply)

        def report(self, result):
            pass

    @contextmanager
    def session(spec, cluster_dir, nodes, command, accept_new, output):
        calls.append({"nodes": [n.name for n in nodes], "command": command})
        yield FakeSession()

    monkeypatch.setattr(engine_cli, "session", session)
    return calls


INV = str(INVENTORIES / "lab-stacked.yaml")


def test_reset_refuses_without_yes_and_touches_no_host(fake_session):
    from kbootstrap.cli.reset import reset

    r = CliRunner().invoke(reset, ["-i", INV])
    assert r.exit_code == 2 and "refusing" in r.output and "--yes" in r.output and "--dry-run" in r.output
    assert fake_session == []


def test_dry_run_needs_no_yes_and_applies_nothing(fake_session):
    from kbootstrap.cli.reset import reset

    r = CliRunner().invoke(reset, ["-i", INV, "--dry-run", "--parallel", "4"])
    assert r.exit_code == 0, r.output
    assert fake_session == [{"nodes": ["lb1", "lb2", "cp1", "cp2", "cp3", "w1", "w2"], "command": "reset"},
                            {"phases": ["stop", "containers", "files", "network"], "apply": False, "parallel": 4}]


def test_yes_applies_and_a_worker_reset_also_connects_the_control_plane_that_detaches_it(fake_session):
    from kbootstrap.cli.reset import reset

    r = CliRunner().invoke(reset, ["-i", INV, "--yes", "--host", "w2"])
    assert r.exit_code == 0, r.output
    assert fake_session[0]["nodes"] == ["w2", "cp1"]
    assert fake_session[1] == {"phases": ["stop", "containers", "files", "network", "detach"], "apply": True,
                               "parallel": 10}


def test_partial_etcd_reset_is_refused_on_the_command_line(fake_session):
    from kbootstrap.cli.reset import reset

    r = CliRunner().invoke(reset, ["-i", INV, "--yes", "--host", "cp2"])
    assert r.exit_code == 2 and "etcd" in r.output and fake_session == []


def test_verify_and_reset_register_on_the_main_group():
    """What kbootstrap/cli/main.py does with them: `main.add_command(verify)`, `main.add_command(reset)`."""
    from kbootstrap.cli.main import main
    from kbootstrap.cli.reset import reset
    from kbootstrap.verify.cli import verify

    main.add_command(verify)
    main.add_command(reset)
    for name, words in (("verify", "Changes nothing"), ("reset", "Undo init and join")):
        r = CliRunner().invoke(main, [name, "--help"])
        assert r.exit_code == 0 and words in r.output, r.output
    r = CliRunner().invoke(main, ["reset", "-i", INV])
    assert r.exit_code == 2 and "refusing" in r.output
