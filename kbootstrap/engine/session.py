"""One locked, journaled run against a set of connected hosts: lock the cluster, load the PKI, connect, run
phases, journal each host's result, and log every line into the run log.

Nothing here prints. Lines go to `logging`: a host's result lines to the `kbootstrap.hosts` logger, notes
(preflight's report, a bootstrap token made, a stale lock broken) and the run's summary to `kbootstrap`. A
session writes both into its run log (cluster dir/runs/RUN.log); the command line decides what reaches the
terminal (cli/session.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from kbootstrap.engine.hosts import connect_all
from kbootstrap.engine.journal import ClusterLock, Journal
from kbootstrap.engine.runner import Gate, HostResult, Phase, RunResult, run_phases
from kbootstrap.errors import KbootstrapError
from kbootstrap.model.etcd_members import MembersRecord
from kbootstrap.model.spec import ClusterSpec, Node
from kbootstrap.pki.issue import Renewal, ensure_pki
from kbootstrap.pki.secrets import ensure_secrets
from kbootstrap.render import RenderContext
from kbootstrap.transport.base import Transport


class RunFailed(KbootstrapError):
    """The phases ran, and what came after them failed (a node not Ready): the run's result goes with it."""

    def __init__(self, message: str, result: RunResult):
        super().__init__(message)
        self.result = result


LOG = logging.getLogger("kbootstrap")
HOSTS = logging.getLogger("kbootstrap.hosts")


@dataclass
class Watch:
    """Who else follows a run as it goes (the command line's progress bars): phase started, host finished."""

    phase: Callable[[Phase, list[str]], None] | None = None
    host: Callable[[HostResult], None] | None = None


@dataclass
class Session:
    ctx: RenderContext
    transports: dict[str, Transport]
    journal: Journal
    root: Path  # the cluster directory (a local node: its state directory)
    watch: Watch = field(default_factory=Watch)

    def run(self, phases: list[Phase], apply: bool, parallel: int, diffs: bool = False,
            gate: Gate | None = None) -> RunResult:
        """Each host's result is journaled and logged as it finishes a phase; the summary once all are done.
        `gate` (preflight) is asked in the up-front round trip, before anything is applied (runner.run_phases)."""

        def on_host(r: HostResult) -> None:
            self.journal.record(r.host, r.phase, r.ok, len(r.changes), r.error, applied=apply)
            for line in host_lines(r, apply):
                HOSTS.info(line)
            if self.watch.host:
                self.watch.host(r)

        result = run_phases(self.transports, phases, apply=apply, parallel=parallel, diffs=diffs, on_host=on_host,
                            on_phase=self.watch.phase, gate=gate)
        self._summary(result)
        return result

    @property
    def members(self) -> MembersRecord:
        """The cluster directory's etcd members record (a session always loads it)."""
        assert self.ctx.etcd_record is not None
        return self.ctx.etcd_record

    def note(self, line: str) -> None:
        LOG.info(line)

    def commands_per_host(self) -> dict[str, int]:
        """Every SSH command of the run a host: the runner's and the command's own (join's token, etc.)."""
        return {h: t.round_trips.count for h, t in self.transports.items()}

    def _summary(self, result: RunResult) -> None:
        if result.failed:
            LOG.error(f"{len(result.failed)} host(s) failed (full log: {self.journal.log_path}):")
            for h in result.failed:
                LOG.error(f"  {h.error}")
            if result.stopped_after:
                LOG.error(f"stopped after phase '{result.stopped_after}': later phases depend on it. Fix and re-run.")
        verb = "made" if result.applied else "pending"
        LOG.info(f"{len({h.host for h in result.hosts})} host(s), {result.changes} change(s) {verb}; "
                 f"log: {self.journal.log_path}")


@contextmanager
def run_log(journal: Journal) -> Iterator[None]:
    """Every line of the `kbootstrap` loggers into the run log while the run lasts."""
    handler = logging.FileHandler(journal.log_path, delay=True)
    handler.setFormatter(logging.Formatter("%(message)s"))
    if LOG.level == logging.NOTSET:
        LOG.setLevel(logging.INFO)
    LOG.addHandler(handler)
    try:
        yield
    finally:
        LOG.removeHandler(handler)
        handler.close()


@contextmanager
def session(spec: ClusterSpec, root: Path, nodes: list[Node], command: str, accept_new: bool,
            renewal: Renewal | None = None) -> Iterator[Session]:
    with ClusterLock(root, command) as lock:
        journal = Journal(root, command)
        with run_log(journal):
            if lock.broke_stale:
                LOG.warning(f"note: {lock.broke_stale}")
            ctx = RenderContext(spec, ensure_pki(spec, root, renewal=renewal), ensure_secrets(root),
                                etcd_record=MembersRecord.load(root))
            with connect_all(spec, nodes, accept_new) as transports:
                yield Session(ctx, transports, journal, root)


def host_lines(r: HostResult, applied: bool) -> list[str]:
    head = f"{r.host} [{r.phase}]"
    if r.error:
        return [f"{head} FAILED: {r.error}"]
    trips = f"{r.round_trips} round trip{'s' if r.round_trips != 1 else ''}"
    if not r.changes:
        return [f"{head} no change ({trips}, {r.seconds:.1f}s)"]
    verb = "changed" if applied else "would change"
    lines = [f"{head} {verb} {len(r.changes)} ({trips}, {r.seconds:.1f}s):"]
    for c in r.changes:
        detail = f"  ({c.detail})" if c.detail else ""
        lines.append(f"  {c.action:<13} {c.target}{detail}{'  [secret: digest only]' if c.secret else ''}")
        if c.target in r.diffs:
            lines += ["    " + line for line in r.diffs[c.target].rstrip("\n").splitlines()]
    return lines


def as_json(result: RunResult, commands_per_host: dict[str, int] | None = None) -> dict:
    return {
        "applied": result.applied,
        "stopped_after": result.stopped_after,
        "hosts": [
            {"host": h.host, "phase": h.phase, "ok": h.ok, "error": h.error, "round_trips": h.round_trips,
             "seconds": round(h.seconds, 3),
             "changes": [{"step": c.step, "action": c.action, "target": c.target, "detail": c.detail,
                          "secret": c.secret} for c in h.changes],
             "diffs": h.diffs}
            for h in result.hosts
        ],
        "commands_per_host": commands_per_host or {},
    }
