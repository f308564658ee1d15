"""The engine's pieces on this machine through the local transport: the agent really runs (python3),
files really land. The lab tests (tests/e2e/test_engine.py) prove the same over SSH on real hosts."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from kbootstrap.engine.journal import ClusterLock, Journal, LockHeld
from kbootstrap.engine.runner import Phase, run_phases
from kbootstrap.engine.steps import CommandStep, FilesStep
from kbootstrap.errors import StepError
from kbootstrap.model.artifact import Artifact
from kbootstrap.transport import remote
from kbootstrap.transport.local import LocalTransport


def converge(t, steps, apply=True, diffs=False):
    r = run_phases({t.host: t}, [Phase("p", {t.host: steps})], apply=apply, diffs=diffs)
    return r.hosts[0]


def test_files_create_update_chmod_then_nothing(tmp_path):
    t = LocalTransport()
    a = Artifact(str(tmp_path / "etc/x.conf"), b"one\n", 0o640)
    r = converge(t, [FilesStep([a])])
    assert [(c.action, c.target) for c in r.changes] == [("create", a.path)]
    assert (tmp_path / "etc/x.conf").read_bytes() == b"one\n"
    assert os.stat(a.path).st_mode & 0o7777 == 0o640
    assert converge(t, [FilesStep([a])]).changes == []
    os.chmod(a.path, 0o644)
    assert [c.action for c in converge(t, [FilesStep([a])]).changes] == ["chmod"]
    b = Artifact(a.path, b"two\n", 0o640)
    plan = converge(t, [FilesStep([b])], apply=False, diffs=True)
    assert [c.action for c in plan.changes] == ["update"]
    assert "-one\n+two\n" in plan.diffs[a.path]
    assert (tmp_path / "etc/x.conf").read_bytes() == b"one\n"  # plan changed nothing
    converge(t, [FilesStep([b])])
    assert (tmp_path / "etc/x.conf").read_bytes() == b"two\n"


def test_no_op_is_one_round_trip(tmp_path):
    t = LocalTransport()
    arts = [Artifact(str(tmp_path / f"f{i}"), b"%d\n" % i) for i in range(50)]
    converge(t, [FilesStep(arts)])
    r = converge(t, [FilesStep(arts)])
    assert r.changes == [] and r.round_trips == 1


def test_write_leaves_no_temp_files_and_replaces_atomically(tmp_path):
    t = LocalTransport()
    path = tmp_path / "d" / "f"
    remote.write_files(t, [Artifact(str(path), b"old")])
    (tmp_path / "d" / ".f.kbtmp-leftover").write_bytes(b"half")  # as a write cut off mid-way leaves it
    inode_before = path.stat().st_ino
    remote.write_files(t, [Artifact(str(path), b"new" * 1000)])
    assert path.read_bytes() == b"new" * 1000
    assert path.stat().st_ino != inode_before  # a new file renamed into place, not rewritten in place
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["f"]


def test_short_write_input_is_refused_and_target_untouched(tmp_path):
    t = LocalTransport()
    path = tmp_path / "g"
    path.write_bytes(b"keep")
    header = json.dumps([{"path": str(path), "mode": 0o644, "owner": "root", "group": "root", "size": 100}])
    r = t.run([*remote._agent_argv(), "write"], stdin=header.encode() + b"\n" + b"only ten b")
    assert r.rc != 0 and b"short input" in r.stderr
    assert path.read_bytes() == b"keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g"]


def test_command_step_runs_only_when_its_probe_fails(tmp_path):
    t = LocalTransport()
    marker = tmp_path / "done"
    step = CommandStep("touch-marker", ["test", "-e", str(marker)], ["touch", str(marker)])
    assert [c.action for c in converge(t, [step]).changes] == ["run"]
    assert marker.exists()
    assert converge(t, [step]).changes == []
    bad = CommandStep("fails", ["false"], ["sh", "-c", "echo boom >&2; exit 7"])
    r = converge(t, [bad])
    assert r.error and "fails: `sh -c echo boom >&2; exit 7` exited 7" in r.error and "boom" in r.error


def test_lock_refuses_a_live_holder_and_breaks_a_stale_one(tmp_path):
    with ClusterLock(tmp_path, "apply"):
        with pytest.raises(LockHeld, match=f"pid {os.getpid()}"):
            with ClusterLock(tmp_path, "apply"):
                pass
    # A lock left by a process that has exited (a real one: it ran and is gone).
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    import socket

    (tmp_path / "lock").write_text(json.dumps({"pid": int(gone.stdout), "host": socket.gethostname(),
                                               "command": "apply", "started": "earlier"}))
    with ClusterLock(tmp_path, "plan") as lock:
        assert "broke a stale lock left by pid" in lock.broke_stale
    assert not (tmp_path / "lock").exists()


def test_journal_records_each_host_phase(tmp_path):
    j = Journal(tmp_path, "init")
    j.record("cp1", "files", True, 3, applied=True)
    j.record("w1", "files", False, 0, "w1: cannot reach", applied=True)
    j.record("w1", "files", True, 2, applied=True)
    assert [(e["host"], e["status"], e["applied"]) for e in j.entries()] == [
        ("cp1", "done", True), ("w1", "failed", True), ("w1", "done", True)]
    assert j.configured_hosts() == {"cp1", "w1"}


def test_step_error_names_host_step_command_code_and_stderr():
    e = StepError("cp1", "services", "systemctl start kubelet.service", 5, "Unit kubelet.service not found.")
    assert str(e) == "cp1: services: `systemctl start kubelet.service` exited 5\n    Unit kubelet.service not found."


def test_wait_step_passes_once_its_probe_does_and_times_out_with_what_and_why(tmp_path):
    from kbootstrap.engine.steps import WaitStep

    t = LocalTransport()
    flag = tmp_path / "ready"
    subprocess.Popen(["sh", "-c", f"sleep 1; touch {flag}"])
    r = converge(t, [WaitStep("ready", ["test", "-e", str(flag)], timeout=20, interval=0.2, what="the flag")])
    assert r.ok and [(c.action, c.target) for c in r.changes] == [("wait", "the flag")]
    assert converge(t, [WaitStep("ready", ["test", "-e", str(flag)], timeout=20)]).changes == []  # already true
    r = converge(t, [WaitStep("never", ["sh", "-c", "echo not yet >&2; exit 1"], timeout=0.5, interval=0.1)])
    assert not r.ok and "not ready after 0s" in r.error and "not yet" in r.error


def test_daemon_reload_once_per_run_even_when_services_come_in_a_later_phase():
    """A unit written in one phase and started in a later one: the later ServicesStep reloads only if no reload
    ran since the write, and still restarts for the change (its decisions, from facts alone)."""
    from kbootstrap.engine.steps import RunChanges, ServicesStep

    unit = "/etc/systemd/system/x.service"
    changed = RunChanges()
    changed |= {unit}  # what run_phases records when a FilesStep writes a unit
    changed.unreloaded |= {unit}
    later = ServicesStep(["x"], {"x": {unit}})
    facts = remote.HostFacts(units={"x.service": {"UnitFileState": "enabled", "ActiveState": "active",
                                                  "NeedDaemonReload": "no"}})
    assert [c.action for c in later.check(facts, changed)] == ["daemon-reload", "restart"]
    changed.unreloaded.clear()  # what the runner does once a daemon-reload ran
    assert [c.action for c in later.check(facts, changed)] == ["restart"]


def test_a_workflow_with_nothing_to_do_costs_one_round_trip_a_host(tmp_path):
    """The facts of every phase are gathered in one round trip; phases with nothing to do need no other."""
    t = LocalTransport()
    arts = [Artifact(str(tmp_path / f"f{i}"), b"%d\n" % i) for i in range(3)]
    phases = [Phase(f"p{i}", {t.host: [FilesStep([a]), CommandStep("probe", ["test", "-d", str(tmp_path)], ["false"])]})
              for i, a in enumerate(arts)]  # the steps of each phase share a name: the facts keep them apart
    first = run_phases({t.host: t}, phases, apply=True)
    assert not first.failed and first.changes == 3
    again = run_phases({t.host: t}, phases, apply=True)
    assert again.changes == 0
    assert [h.round_trips for h in again.hosts] == [1, 0, 0]


def test_from_the_first_phase_with_changes_each_phase_reads_the_host_again(tmp_path):
    """Up front, p2's probe fails (p1 has not written its file yet); p1 then writes it, and p2, asked again
    after p1 applied, has nothing to do: its command (which would fail) never runs."""
    t = LocalTransport()
    made = Artifact(str(tmp_path / "made"), b"x")
    p1 = Phase("p1", {t.host: [FilesStep([made])]})
    p2 = Phase("p2", {t.host: [CommandStep("needs made", ["test", "-e", made.path], ["false"])]})
    plan = run_phases({t.host: t}, [p1, p2], apply=False)
    assert [len(h.changes) for h in plan.hosts] == [1, 1]  # a dry run decides from the up-front facts
    r = run_phases({t.host: t}, [p1, p2], apply=True)
    assert not r.failed, r.hosts
    assert [(h.phase, len(h.changes)) for h in r.hosts] == [("p1", 1), ("p2", 0)]


class _Gate:
    def __init__(self, refuse: bool):
        self.refuse, self.answers = refuse, None

    def program(self, host):
        return {"source": "def double(arg):\n    return arg * 2\n", "call": "double", "arg": 21}

    def check(self, answers):
        self.answers = answers
        if self.refuse:
            raise StepError("gate", "preflight", "refused", 1, "")


def test_a_gate_answers_in_the_same_round_trip_and_its_refusal_applies_nothing(tmp_path):
    t = LocalTransport()
    a = Artifact(str(tmp_path / "f"), b"x")
    gate = _Gate(refuse=True)
    with pytest.raises(StepError):
        run_phases({t.host: t}, [Phase("p", {t.host: [FilesStep([a])]})], apply=True, gate=gate)
    assert gate.answers[t.host].result == 42 and gate.answers[t.host].error is None
    assert not (tmp_path / "f").exists()
    ok = _Gate(refuse=False)
    r = run_phases({t.host: t}, [Phase("p", {t.host: [FilesStep([a])]})], apply=True, gate=ok)
    assert r.changes == 1 and (tmp_path / "f").exists()
    assert r.hosts[0].round_trips == 3  # facts with the gate, then facts again before apply, then the write
