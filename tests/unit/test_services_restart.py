"""A running service restarts when an input changed in this run, or changed after it last started or reloaded —
a run that wrote the file and stopped before the services step (a failure, ^C, `--only-phases files`) must not
leave it on the old configuration; and a reload counts as having read it (haproxy, keepalived)."""

from __future__ import annotations

from kbootstrap.engine.steps import ServicesStep
from kbootstrap.transport.remote import HostFacts

CFG = "/etc/haproxy/haproxy.cfg"


def _facts(started: int | None, mtime: float | None) -> HostFacts:
    unit = {"ActiveState": "active", "UnitFileState": "enabled"}
    if started is not None:
        unit["StartedAt"] = str(started)
    return HostFacts(units={"haproxy.service": unit}, mtimes={CFG: mtime})


def _actions(step: ServicesStep, facts: HostFacts, changed=frozenset()) -> list[tuple[str, str, str]]:
    return [(c.action, c.target, c.detail) for c in step.check(facts, set(changed))]


def test_an_input_written_after_the_last_start_restarts_or_reloads_it():
    step = ServicesStep(["haproxy"], {"haproxy": {CFG}}, reloadable=("haproxy",))
    assert step.wants().stat == [CFG]
    assert _actions(step, _facts(started=1000, mtime=1001.2)) == [("reload", "haproxy", f"changed since it started: {CFG}")]
    assert _actions(ServicesStep(["haproxy"], {"haproxy": {CFG}}), _facts(1000, 1001.2))[0][0] == "restart"


def test_nothing_when_the_service_started_or_reloaded_after_the_write():
    step = ServicesStep(["haproxy"], {"haproxy": {CFG}}, reloadable=("haproxy",))
    assert _actions(step, _facts(started=1002, mtime=1001.2)) == []
    assert _actions(step, _facts(started=1001, mtime=1001.9)) == []  # the same second: whole seconds compared


def test_without_a_start_time_or_the_file_only_this_runs_changes_count():
    step = ServicesStep(["haproxy"], {"haproxy": {CFG}})
    assert _actions(step, _facts(started=None, mtime=5000.0)) == []  # systemd < 248 gives no StartedAt
    assert _actions(step, _facts(started=1000, mtime=None)) == []
    assert _actions(step, _facts(started=None, mtime=None), changed={CFG}) == [("restart", "haproxy", f"changed: {CFG}")]
