"""`kbootstrap verify --watch`: the availability probe on the terminal, a progress line every few seconds and
the figures at the end (or as JSON)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
from rich.table import Table
from rich.text import Text

from kbootstrap.cli.common import err, out
from kbootstrap.errors import Refused
from kbootstrap.model.spec import ClusterSpec
from kbootstrap.verify.availability import Figures, Probe, Target, api_target

EVERY = 5.0  # seconds between progress lines


def targets(spec: ClusterSpec, cluster_dir: Path, urls: tuple[str, ...]) -> list[Target]:
    workloads = [Target(u, u) for u in urls]  # bad URLs first: refused before anything else is looked at
    ca = cluster_dir / "pki" / "ca.crt"
    if not ca.is_file():
        raise Refused(f"--cluster-dir: no cluster CA at {ca} (made by `kbootstrap init`): the API's certificate "
                      "cannot be verified without it")
    return [api_target(spec.api_server_url, ca), *workloads]


def figures_table(figures: list[Figures], title: str) -> Table:
    table = Table(title=title)
    for col in ("target", "requests", "failed", "longest gap", "errors"):
        table.add_column(col, overflow="fold")
    for f in figures:
        errors = "; ".join(f"{n}× {e}" for e, n in sorted(f.errors.items(), key=lambda x: -x[1]))
        table.add_row(Text(f.target), str(f.requests), Text(str(f.failures), style="bold red" if f.failures else ""),
                      f"{f.longest_gap:.1f} s", Text(errors))
    return table


def watch_availability(spec: ClusterSpec, cluster_dir: Path, seconds: float, rate: float, timeout: float,
                       urls: tuple[str, ...], output: str) -> int:
    probe = Probe(targets(spec, cluster_dir, urls), rate, timeout)
    if output == "text":
        err.print(f"probing {', '.join(t.name for t in probe.targets)} at {rate:g}/s each for {seconds:g} s "
                  "(Ctrl-C ends it)")
    with probe:
        try:
            elapsed = 0.0
            while elapsed < seconds:
                time.sleep(min(EVERY, seconds - elapsed))
                elapsed = min(seconds, elapsed + EVERY)
                if output == "text" and elapsed < seconds:
                    err.print(f"{elapsed:5.0f} s  " + "; ".join(f"{f.target}: {f.requests} sent, {f.failures} failed"
                                                                 for f in probe.figures()))
        except KeyboardInterrupt:
            err.print("interrupted: the figures so far")
    figures = probe.figures()
    if output == "json":
        click.echo(json.dumps({"rate": rate, "timeout_s": timeout, "targets": [f.as_json() for f in figures]},
                              indent=2))
    else:
        out.print(figures_table(figures, f"availability of {spec.cluster.name} over {figures[0].duration:.0f} s"))
    return 1 if any(f.failures for f in figures) else 0
