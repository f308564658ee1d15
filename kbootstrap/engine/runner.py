"""Run phases in order, hosts in parallel: gather facts in one round trip, check, apply, report.

Facts are gathered by each host's task right before it applies, so what is applied is checked against
the host as it is at that moment, not as it was when `plan` printed. A phase with a failed host stops
the run: later phases depend on earlier ones (no workers join a control plane that failed).
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from kbootstrap.engine.steps import UNIT_DIRS, Change, FilesStep, RunChanges, Step, Wants
from kbootstrap.errors import KbootstrapError
from kbootstrap.transport import remote
from kbootstrap.transport.base import Transport


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


def converge_host(t: Transport, phase: str, steps: list[Step], apply: bool, diffs: bool = False,
                  changed: RunChanges | None = None) -> HostResult:
    """`changed` carries the paths this run changed on the host in earlier phases: a service started in a
    later phase still restarts for a config file an earlier phase rewrote."""
    started, trips_before = time.monotonic(), t.round_trips.count
    result = HostResult(t.host, phase)
    changed = RunChanges() if changed is None else changed
    try:
        wants = Wants()
        for s in steps:
            wants.merge(s.wants())
        facts = remote.gather(t, wants.files, wants.units, wants.probes, stat=wants.stat)
        for s in steps:
            changes = s.check(facts, changed)
            if isinstance(s, FilesStep):
                written = {c.target for c in changes if c.action in ("create", "update")}
                changed |= written
                changed.unreloaded |= {p for p in written if p.startswith(UNIT_DIRS)}
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


def _diffs(t: Transport, steps: list[Step], changes: list[Change]) -> dict[str, str]:
    """Unified diffs of text files that would be updated; secrets show digests only (never content)."""
    files = {p: a for s in steps if isinstance(s, FilesStep) for p, a in s.artifacts.items()}
    wanted = [c.target for c in changes if c.action == "update" and not c.secret]
    current = remote.read_files(t, wanted) if wanted else {}
    out = {}
    for path in wanted:
        old, new = current.get(path) or b"", files[path].content
        try:
            a, b = old.decode().splitlines(keepends=True), new.decode().splitlines(keepends=True)
        except UnicodeDecodeError:
            out[path] = "(binary file differs)\n"
            continue
        out[path] = "".join(difflib.unified_diff(a, b, f"{t.host}:{path}", f"rendered:{path}"))
    return out


def run_phases(transports: dict[str, Transport], phases: list[Phase], apply: bool, parallel: int = 10,
               diffs: bool = False, on_host: Listener | None = None,
               on_phase: Callable[[Phase, list[str]], None] | None = None) -> RunResult:
    result = RunResult(applied=apply)
    changed = {h: RunChanges() for h in transports}
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        for phase in phases:
            if on_phase:
                on_phase(phase, [h for h, steps in phase.steps.items() if steps])
            futures = [pool.submit(converge_host, transports[h], phase.name, steps, apply, diffs, changed[h])
                       for h, steps in phase.steps.items() if steps]
            for f in futures:
                r = f.result()
                result.hosts.append(r)
                if on_host:
                    on_host(r)
            if any(not r.ok for r in result.hosts if r.phase == phase.name):
                result.stopped_after = phase.name
                break
    return result
