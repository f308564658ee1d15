"""Run phases in order, hosts in parallel: gather facts in one round trip, check, apply, report.

First, one round trip a host gathers the facts of every phase of the workflow, and every phase is checked
against them. Phases with nothing to do on any host are done then and there (a finished cluster costs one
round trip a host, as `plan` does; a dry run is decided from these facts alone). From the first phase with
something to do, the run goes phase by phase: each host's facts are gathered again right before it applies,
so what is applied is checked against the host as it is at that moment, after the phases before it. A phase
with a failed host stops the run: later phases depend on earlier ones (no workers join a control plane that
failed).
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from kbootstrap.engine.steps import UNIT_DIRS, Change, FilesStep, RunChanges, Step, Wants
from kbootstrap.errors import KbootstrapError
from kbootstrap.transport import remote
from kbootstrap.transport.base import Transport
from kbootstrap.transport.remote import HostFacts


@dataclass
class Phase:
    name: str
    steps: dict[str, list[Step]]  # host -> its steps, in order


@dataclass
class HostResult:
    host: str
    phase: str
    changes: list[Change] = field(default_factory=list)
    diffs: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    round_trips: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class RunResult:
    applied: bool
    hosts: list[HostResult] = field(default_factory=list)
    stopped_after: str | None = None

    @property
    def failed(self) -> list[HostResult]:
        return [h for h in self.hosts if not h.ok]

    @property
    def changes(self) -> int:
        return sum(len(h.changes) for h in self.hosts)


Listener = Callable[[HostResult], None]


def _wants(steps: list[Step]) -> Wants:
    wants = Wants()
    for s in steps:
        wants.merge(s.wants())
    return wants


def _gather(t: Transport, wants: Wants, programs: dict[str, dict[str, Any]] | None = None) -> HostFacts:
    return remote.gather(t, wants.files, wants.units, wants.probes, stat=wants.stat, programs=programs)


def _check_step(s: Step, facts: HostFacts, changed: RunChanges) -> list[Change]:
    """One step's changes; files it would write are added to `changed` (a later service restarts for them)."""
    changes = s.check(facts, changed)
    if isinstance(s, FilesStep):
        written = {c.target for c in changes if c.action in ("create", "update")}
        changed |= written
        changed.unreloaded |= {p for p in written if p.startswith(UNIT_DIRS)}
    return changes


def converge_host(t: Transport, phase: str, steps: list[Step], apply: bool, diffs: bool = False,
                  changed: RunChanges | None = None) -> HostResult:
    """`changed` carries the paths this run changed on the host in earlier phases: a service started in a
    later phase still restarts for a config file an earlier phase rewrote."""
    started, trips_before = time.monotonic(), t.round_trips.count
    result = HostResult(t.host, phase)
    changed = RunChanges() if changed is None else changed
    try:
        facts = _gather(t, _wants(steps))
        for s in steps:
            changes = _check_step(s, facts, changed)
            result.changes += changes
            if apply and changes:
                s.apply(t, changes)  # raises if it failed: past here, a daemon-reload it planned has run
                if any(c.action == "daemon-reload" for c in changes):
                    changed.unreloaded.clear()
        if diffs:
            result.diffs = _diffs(t, steps, result.changes)
    except KbootstrapError as e:
        result.error = str(e)
    result.round_trips = t.round_trips.count - trips_before
    result.seconds = time.monotonic() - started
    return result


@dataclass(frozen=True)
class GateAnswer:
    """What a gate's program answered on one host, and the controller's clock around the round trip."""

    result: Any = None
    error: str | None = None  # the program failed, or the round trip did
    sent_at: float = 0.0
    received_at: float = 0.0


class Gate(Protocol):
    """A check that must pass before anything is applied (preflight). Its program runs on each host in the
    up-front round trip, beside the facts; `check` reads every host's answer and raises to stop the run."""

    def program(self, host: str) -> dict[str, Any] | None: ...  # {"source", "call", "arg"}: hostside/agent.py

    def check(self, answers: dict[str, GateAnswer]) -> None: ...


@dataclass
class _Upfront:
    """One host's facts for every phase, from one round trip; each phase's probes under their own names."""

    facts: HostFacts
    seconds: float

    def of(self, phase: str) -> HostFacts:
        prefix = f"{phase}\0"
        return HostFacts(self.facts.files, self.facts.units, self.facts.mtimes,
                         {k[len(prefix):]: v for k, v in self.facts.probes.items() if k.startswith(prefix)})


GATE = "gate"


def gather_upfront(t: Transport, phases: list[Phase], gate_program: dict[str, Any] | None = None
                   ) -> tuple[_Upfront | None, GateAnswer]:
    """The facts of every phase for this host, and the gate's answer, in one round trip. Facts None when it
    failed: the phase-by-phase run then reports the error where it belongs (and the gate sees it)."""
    started, sent_at = time.monotonic(), time.time()
    wants = Wants()
    for phase in phases:
        w = _wants(phase.steps.get(t.host, []))
        w.probes = {f"{phase.name}\0{k}": v for k, v in w.probes.items()}  # two phases may name a step alike
        wants.merge(w)
    wants.files, wants.units, wants.stat = (list(dict.fromkeys(x)) for x in (wants.files, wants.units, wants.stat))
    try:
        facts = _gather(t, wants, {GATE: gate_program} if gate_program else None)
    except KbootstrapError as e:
        return None, GateAnswer(error=str(e).removeprefix(f"{t.host}: "), sent_at=sent_at, received_at=time.time())
    answer = facts.programs.get(GATE, {})
    return (_Upfront(facts, time.monotonic() - started),
            GateAnswer(answer.get("result"), answer.get("error"), sent_at, time.time()))


def check_upfront(t: Transport, phase: str, steps: list[Step], upfront: _Upfront, changed: RunChanges,
                  diffs: bool = False) -> HostResult:
    """A phase's result for a host from the facts gathered up front: nothing is applied."""
    started = time.monotonic()
    result = HostResult(t.host, phase)
    facts = upfront.of(phase)
    try:
        for s in steps:
            result.changes += _check_step(s, facts, changed)
        if diffs and result.changes:
            trips_before = t.round_trips.count
            result.diffs = _diffs(t, steps, result.changes)
            result.round_trips += t.round_trips.count - trips_before
    except KbootstrapError as e:
        result.error = str(e)
    result.seconds = time.monotonic() - started
    return result


def _diffs(t: Transport, steps: list[Step], changes: list[Change]) -> dict[str, str]:
    """Unified diffs of text files that would be updated; secrets show digests only (never content)."""
    files = {p: a for s in steps if isinstance(s, FilesStep) for p, a in s.artifacts.items()}
    wanted = [c.target for c in changes if c.action == "update" and not c.secret]
    current = remote.read_files(t, wanted) if wanted else {}
    out = {}
    for path in wanted:
        old, new = current.get(path) or b"", files[path].data()
        try:
            a, b = old.decode().splitlines(keepends=True), new.decode().splitlines(keepends=True)
        except UnicodeDecodeError:
            out[path] = "(binary file differs)\n"
            continue
        out[path] = "".join(difflib.unified_diff(a, b, f"{t.host}:{path}", f"rendered:{path}"))
    return out


def run_phases(transports: dict[str, Transport], phases: list[Phase], apply: bool, parallel: int = 10,
               diffs: bool = False, on_host: Listener | None = None,
               on_phase: Callable[[Phase, list[str]], None] | None = None, gate: Gate | None = None) -> RunResult:
    """`gate`: a check (preflight) asked in the up-front round trip; when it raises, nothing was applied."""
    result = RunResult(applied=apply)
    changed = {h: RunChanges() for h in transports}
    programs = {h: p for h in transports if gate is not None and (p := gate.program(h)) is not None}
    asked = [h for h in transports if h in programs or any(p.steps.get(h) for p in phases)]
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        gathered = dict(zip(asked, pool.map(lambda h: gather_upfront(transports[h], phases, programs.get(h)), asked),
                            strict=True))
        if gate is not None:
            gate.check({h: answer for h, (_, answer) in gathered.items() if h in programs})
        upfront = {h: u for h, (u, _) in gathered.items() if u is not None}
        unreported = {h: u.seconds for h, u in upfront.items()}  # the round trip, counted on a host's first phase
        fresh = len(upfront) == len(gathered)  # the up-front facts still describe every host: nothing applied yet
        for phase in phases:
            hosts = [h for h, steps in phase.steps.items() if steps]
            if on_phase:
                on_phase(phase, hosts)
            results: list[HostResult] = []
            if fresh:
                trial = {h: changed[h].copy() for h in hosts}
                checks = [pool.submit(check_upfront, transports[h], phase.name, phase.steps[h], upfront[h], trial[h],
                                      diffs) for h in hosts]
                results = [f.result() for f in checks]
                if apply and any(r.changes or not r.ok for r in results):
                    fresh, results = False, []  # from here on, phase by phase, facts gathered before each apply
                else:
                    changed.update(trial)
            if not results:
                futures = [pool.submit(converge_host, transports[h], phase.name, phase.steps[h], apply, diffs,
                                       changed[h]) for h in hosts]
                results = [f.result() for f in futures]
            for r in results:
                if r.host in unreported:
                    r.round_trips, r.seconds = r.round_trips + 1, r.seconds + unreported.pop(r.host)
            for r in results:
                result.hosts.append(r)
                if on_host:
                    on_host(r)
            if any(not r.ok for r in results):
                result.stopped_after = phase.name
                break
    return result
