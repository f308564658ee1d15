"""Between parsing and printing: lock the cluster, load the PKI, connect, run phases, journal, report."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from kbootstrap.cli.common import default_cluster_dir, err, labelled, out, select_nodes
from kbootstrap.engine.hosts import connect_all
from kbootstrap.engine.journal import ClusterLock, Journal
from kbootstrap.engine.runner import HostResult, Phase, RunResult, run_phases
from kbootstrap.model.etcd_members import MembersRecord
from kbootstrap.model.spec import ClusterSpec, Node
from kbootstrap.phases.configure_files import configure_files
from kbootstrap.pki.issue import ensure_pki
from kbootstrap.pki.secrets import ensure_secrets
from kbootstrap.render import RenderContext
from kbootstrap.transport.base import Transport


@dataclass
class Session:
    """One locked, journaled run against a set of connected hosts; phases are run through it."""

    ctx: RenderContext
    transports: dict[str, Transport]
    journal: Journal
    output: str
    root: Path  # the cluster directory

    def run(self, phases: list[Phase], apply: bool, parallel: int, diffs: bool = False) -> RunResult:
        """Host lines on stdout (and in the run log) as each host finishes a phase; on a terminal, a rich
        progress bar per phase (hosts done / hosts in the phase) on stderr as well."""
        progress = Progress(TextColumn("{task.description:<14}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("hosts"), TimeElapsedColumn(), TextColumn("{task.fields[last]}"),
                            console=err, transient=False) if self.output == "text" and err.is_terminal else None
        tasks: dict[str, TaskID] = {}

        def on_phase(phase: Phase, hosts: list[str]) -> None:
            if progress is not None and hosts:
                tasks[phase.name] = progress.add_task(phase.name, total=len(hosts), last="")

        def on_host(r: HostResult) -> None:
            self.journal.record(r.host, r.phase, r.ok, len(r.changes), r.error, applied=apply)
            for line in _host_lines(r, apply):
                self.journal.log(line)
                if self.output == "text":
                    out.print(line, markup=False, highlight=False, soft_wrap=True)  # above the bars (rich redirects stdout)
            if progress is not None and r.phase in tasks:
                progress.update(tasks[r.phase], advance=1, last=f"{r.host} {'ok' if r.ok else 'FAILED'}")

        with progress or nullcontext():
            return run_phases(self.transports, phases, apply=apply, parallel=parallel, diffs=diffs,
                              on_host=on_host, on_phase=on_phase)

    @property
    def members(self) -> MembersRecord:
        """The cluster directory's etcd members record (a session always loads it)."""
        assert self.ctx.etcd_record is not None
        return self.ctx.etcd_record

    def note(self, line: str) -> None:
        self.journal.log(line)
        if self.output == "text":
            err.print(line, markup=False, highlight=False, soft_wrap=True)

    def report(self, result: RunResult) -> None:
        if self.output == "json":
            click.echo(json.dumps(_as_json(result), indent=2))
        else:
            _summary(result, result.applied, self.journal)


@contextmanager
def session(spec: ClusterSpec, cluster_dir: Path | None, nodes: list[Node], command: str, accept_new: bool,
            output: str) -> Iterator[Session]:
    root = cluster_dir or default_cluster_dir(spec)
    with ClusterLock(root, command) as lock:
        if lock.broke_stale:
            err.print(labelled("note:", "yellow", lock.broke_stale), soft_wrap=True)
        journal = Journal(root, command)
        ctx = RenderContext(spec, ensure_pki(spec, root), ensure_secrets(root), etcd_record=MembersRecord.load(root))
        with connect_all(spec, nodes, accept_new) as transports:
            yield Session(ctx, transports, journal, output, root)


def converge(spec: ClusterSpec, cluster_dir: Path | None, hosts: tuple[str, ...], parallel: int,
             accept_new: bool, output: str, apply: bool) -> RunResult:
    """`plan` and `apply`: every rendered file on the selected hosts."""
    nodes = select_nodes(spec, hosts)
    with session(spec, cluster_dir, nodes, "apply" if apply else "plan", accept_new, output) as s:
        result = s.run([configure_files(s.ctx, nodes)], apply=apply, parallel=parallel, diffs=not apply)
    s.report(result)
    return result


def _host_lines(r: HostResult, applied: bool) -> list[str]:
    head = f"{r.host} [{r.phase}]"
    if r.error:
        return [f"{head} FAILED: {r.error}"]
    if not r.changes:
        return [f"{head} no change ({r.round_trips} round trip{'s' if r.round_trips != 1 else ''}, {r.seconds:.1f}s)"]
    verb = "changed" if applied else "would change"
    trips = f"{r.round_trips} round trip{'s' if r.round_trips != 1 else ''}"
    lines = [f"{head} {verb} {len(r.changes)} ({trips}, {r.seconds:.1f}s):"]
    for c in r.changes:
        detail = f"  ({c.detail})" if c.detail else ""
        lines.append(f"  {c.action:<13} {c.target}{detail}{'  [secret: digest only]' if c.secret else ''}")
        if c.target in r.diffs:
            lines += ["    " + line for line in r.diffs[c.target].rstrip("\n").splitlines()]
    return lines


def _summary(result: RunResult, applied: bool, journal: Journal) -> None:
    hosts = {h.host for h in result.hosts}
    if result.failed:
        err.print(labelled(f"{len(result.failed)} host(s) failed", "red", f"(full log: {journal.log_path}):"),
                  soft_wrap=True)
        for h in result.failed:
            err.print(f"  {h.error}", soft_wrap=True)
        if result.stopped_after:
            err.print(f"stopped after phase '{result.stopped_after}': later phases depend on it. Fix and re-run.")
    verb = "made" if applied else "pending"
    err.print(f"{len(hosts)} host(s), {result.changes} change(s) {verb}; log: {journal.log_path}")


def _as_json(result: RunResult) -> dict:
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
    }
