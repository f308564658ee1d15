"""What a command shows of a run: the engine's session (engine/session.py) with the run's log lines on the
terminal, progress bars while phases run, and the report as JSON for `--output json`.

Host lines go to stdout and notes to stderr, as the `kbootstrap.hosts` and `kbootstrap` loggers write them
(rich's handler on a terminal, plain lines otherwise; never read as markup). With `--output json`, stdout holds
the JSON report alone and nothing else is printed; the run log has every line either way.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import click
from rich.highlighter import NullHighlighter
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from kbootstrap.cli.common import default_cluster_dir, err, out, select_nodes
from kbootstrap.engine import session as engine
from kbootstrap.engine.runner import HostResult, Phase, RunResult
from kbootstrap.engine.session import RunFailed, Session, Watch, as_json
from kbootstrap.model.spec import ClusterSpec, Node
from kbootstrap.phases.configure_files import configure_files
from kbootstrap.pki.issue import Renewal

__all__ = ["Session", "converge", "print_local", "report", "session", "terminal_log"]


class _NotHosts(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.name.startswith(engine.HOSTS.name)


def _shown(record: logging.LogRecord) -> bool:
    return not getattr(record, "log_only", False)  # for the run log alone (the terminal shows it otherwise)


def _handler(stdout: bool) -> logging.Handler:
    console, stream = (out, sys.stdout) if stdout else (err, sys.stderr)
    if stream.isatty():
        h: logging.Handler = RichHandler(console=console, show_time=False, show_level=False, show_path=False,
                                         markup=False, highlighter=NullHighlighter())
    else:
        h = logging.StreamHandler(stream)  # bound now: a test's captured stream, CI's log
    h.setFormatter(logging.Formatter("%(message)s"))
    h.addFilter(_shown)
    return h


@contextmanager
def terminal_log(output: str) -> Iterator[None]:
    """The run's lines on the terminal while a command runs: host lines on stdout, the rest on stderr."""
    if output != "text":
        yield
        return
    hosts, notes = _handler(stdout=True), _handler(stdout=False)
    notes.addFilter(_NotHosts())
    if engine.LOG.level == logging.NOTSET:
        engine.LOG.setLevel(logging.INFO)
    engine.HOSTS.addHandler(hosts)
    engine.LOG.addHandler(notes)
    try:
        yield
    finally:
        engine.HOSTS.removeHandler(hosts)
        engine.LOG.removeHandler(notes)


@contextmanager
def _progress(s: Session) -> Iterator[None]:
    """On a terminal, a bar per phase (hosts done / hosts in the phase) on stderr; host lines print above it."""
    bars = Progress(TextColumn("{task.description:<14}"), BarColumn(), MofNCompleteColumn(), TextColumn("hosts"),
                    TimeElapsedColumn(), TextColumn("{task.fields[last]}"), console=err, transient=False)
    tasks: dict[str, TaskID] = {}

    def phase(p: Phase, hosts: list[str]) -> None:
        if hosts:
            tasks[p.name] = bars.add_task(p.name, total=len(hosts), last="")

    def host(r: HostResult) -> None:
        if r.phase in tasks:
            bars.update(tasks[r.phase], advance=1, last=f"{r.host} {'ok' if r.ok else 'FAILED'}")

    s.watch = Watch(phase, host)
    with bars:
        yield


@contextmanager
def session(spec: ClusterSpec, cluster_dir: Path | None, nodes: list[Node], command: str, accept_new: bool,
            output: str, renewal: Renewal | None = None) -> Iterator[Session]:
    with ExitStack() as stack:
        stack.enter_context(terminal_log(output))
        s = stack.enter_context(engine.session(spec, cluster_dir or default_cluster_dir(spec), nodes, command,
                                               accept_new, renewal))
        if output == "text" and err.is_terminal:
            stack.enter_context(_progress(s))
        yield s


def _print_json(result: RunResult, commands_per_host: dict[str, int] | None = None) -> None:
    click.echo(json.dumps(as_json(result, commands_per_host), indent=2))


def report(s: Session, result: RunResult, output: str) -> None:
    """`--output json`: the run as one JSON document on stdout (text: its lines were printed as it ran)."""
    if output == "json":
        _print_json(result, s.commands_per_host())


def print_local(output: str, run: Callable[[], RunResult]) -> RunResult:
    """A run on this machine (`join --local`, `reset --local`): its lines on the terminal, or its JSON report
    (also when the node then failed to come up: the error after it)."""
    with terminal_log(output):
        try:
            result = run()
        except RunFailed as e:
            if output == "json":
                _print_json(e.result)
            raise
    if output == "json":
        _print_json(result)
    return result


def converge(spec: ClusterSpec, cluster_dir: Path | None, hosts: tuple[str, ...], parallel: int,
             accept_new: bool, output: str, apply: bool) -> RunResult:
    """`plan` and `apply`: every rendered file on the selected hosts."""
    nodes = select_nodes(spec, hosts)
    with session(spec, cluster_dir, nodes, "apply" if apply else "plan", accept_new, output) as s:
        result = s.run([configure_files(s.ctx, nodes)], apply=apply, parallel=parallel, diffs=not apply)
    report(s, result, output)
    return result
