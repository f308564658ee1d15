"""What `plan` and `apply` do between parsing and printing: render, connect, run the phases, report."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .hosts import connect_all
from .journal import ClusterLock, Journal
from .pki.issue import ensure_pki
from .pki.secrets import ensure_secrets
from .phases.configure_files import configure_files
from .render import RenderContext
from .runner import HostResult, RunResult, run_phases
from .spec import ClusterSpec



def converge(spec: ClusterSpec, cluster_dir: Path | None, hosts: tuple[str, ...], parallel: int,
             accept_new: bool, output: str, apply: bool) -> RunResult:
    from .cli import default_cluster_dir, err, out, select_nodes

    nodes = select_nodes(spec, hosts)
    root = cluster_dir or default_cluster_dir(spec)
    command = "apply" if apply else "plan"
    with ClusterLock(root, command) as lock:
        if lock.broke_stale:
            err.print(f"[yellow]note:[/] {lock.broke_stale}")
        journal = Journal(root, command)
        ctx = RenderContext(spec, ensure_pki(spec, root), ensure_secrets(root))
        phases = [configure_files(ctx, nodes)]

        def on_host(r: HostResult) -> None:
            journal.record(r.host, r.phase, r.ok, len(r.changes), r.error)
            for line in _host_lines(r, apply):
                journal.log(line)
                if output == "text":
                    out.print(line, markup=False, highlight=False, soft_wrap=True)

        with connect_all(spec, nodes, accept_new) as transports:
            result = run_phases(transports, phases, apply=apply, parallel=parallel, diffs=not apply, on_host=on_host)
    if output == "json":
        click.echo(json.dumps(_as_json(result), indent=2))
    else:
        _summary(result, apply, journal)
    return result


def _host_lines(r: HostResult, applied: bool) -> list[str]:
    head = f"{r.host} [{r.phase}]"
    if r.error:
        return [f"{head} FAILED: {r.error}"]
    if not r.changes:
        return [f"{head} no change ({r.round_trips} round trip{'s' if r.round_trips != 1 else ''}, {r.seconds:.1f}s)"]
    verb = "changed" if applied else "would change"
    lines = [f"{head} {verb} {len(r.changes)} ({r.round_trips} round trips, {r.seconds:.1f}s):"]
    for c in r.changes:
        detail = f"  ({c.detail})" if c.detail else ""
        lines.append(f"  {c.action:<13} {c.target}{detail}{'  [secret: digest only]' if c.secret else ''}")
        if c.target in r.diffs:
            lines += ["    " + l for l in r.diffs[c.target].rstrip("\n").splitlines()]
    return lines


def _summary(result: RunResult, applied: bool, journal: Journal) -> None:
    from .cli import err

    hosts = {h.host for h in result.hosts}
    if result.failed:
        err.print(f"[red]{len(result.failed)} host(s) failed[/] (full log: {journal.log_path}):")
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
