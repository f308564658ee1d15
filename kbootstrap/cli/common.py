"""What every kbootstrap command line shares: the consoles, loading and selecting from the inventory, the host
and phase options, and the one error -> exit code mapping. Its own module so that cli/main.py, cli/reset.py,
verify/cli.py and cli/session.py all import it without importing one another (`python -m kbootstrap.verify` used
to fail on that cycle)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import NoReturn

import click
from rich.console import Console
from rich.text import Text

from kbootstrap.errors import ExitCode, KbootstrapError
from kbootstrap.model.spec import ClusterSpec, Node, load_inventory

# markup=False: nothing printed is read as rich markup, so user text ("[/x]" in a path or a value) is shown as
# it is; colour comes only from labelled() and explicit styles.
err = Console(stderr=True, highlight=False, markup=False, width=None if sys.stderr.isatty() else 200)
# Piped output (logs, CI, `| less`) gets wide tables instead of rich's 80-column default.
out = Console(highlight=False, markup=False, width=None if sys.stdout.isatty() else 200)


def labelled(label: str, style: str, text: object = "") -> Text:
    """A coloured label, then text taken literally (never markup)."""
    return Text.assemble((label, style), " ", str(text))

INVENTORY_HELP = "Inventory YAML describing the cluster (see inventories/example.yaml)."


def default_cluster_dir(spec: ClusterSpec) -> Path:
    base = Path(os.environ.get("KBOOTSTRAP_HOME", Path.home() / ".local/share/kbootstrap"))
    return base / "clusters" / spec.cluster.name


def select_nodes(spec: ClusterSpec, hosts: tuple[str, ...], connected: bool = True) -> list[Node]:
    """The nodes named by --host (all when none), refusing names the inventory does not have. connected: only
    nodes kbootstrap reaches over SSH; a `join: local` worker named by --host is refused with the way to join it."""
    unknown = [h for h in hosts if h not in {n.name for n in spec.nodes}]
    if unknown:
        raise click.BadParameter(f"not in the inventory: {', '.join(unknown)}", param_hint="--host")
    local = [n.name for n in spec.local_nodes if n.name in hosts]
    if connected and local:
        raise click.BadParameter(f"{', '.join(local)}: 'join: local' in the inventory, so kbootstrap never connects to "
                                 "it; run `kbootstrap join --local` on the node (`kbootstrap token create "
                                 "--print-join-command` prints the command)", param_hint="--host")
    pool = spec.connected_nodes if connected else spec.nodes
    return [n for n in pool if not hosts or n.name in hosts]


def _load(inventory: Path) -> ClusterSpec:
    spec = load_inventory(inventory)
    for w in spec.warnings:
        err.print(labelled("warning:", "yellow", w), soft_wrap=True)
    return spec


HOST_OPTIONS = [
    click.option("-i", "--inventory", type=click.Path(path_type=Path), required=True, help=INVENTORY_HELP),
    click.option("--cluster-dir", type=click.Path(path_type=Path), help="Cluster directory (PKI, journal, lock)."),
    click.option("--host", "hosts", multiple=True, help="Only these hosts (repeatable). Default: all."),
    click.option("--parallel", default=10, show_default=True, help="Hosts worked on at once."),
    click.option("--accept-new-host-keys", is_flag=True,
                 help="Record the SSH host key of a host seen for the first time (a changed key is still refused)."),
    click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True),
]


def host_options(fn, inventory_required: bool = True):
    options = HOST_OPTIONS if inventory_required else [
        click.option("-i", "--inventory", type=click.Path(path_type=Path), help=INVENTORY_HELP + " Not with --local."),
        *HOST_OPTIONS[1:]]
    for opt in reversed(options):
        fn = opt(fn)
    return fn


EXIT_CODES_HELP = "Exit 0 done or nothing to do, 1 a host failed, 2 bad input or refused, 3 changes pending (dry run)."


class PhasedCommand(click.Command):
    """A command whose phases come from a workflow table: "{phases}" in its help becomes the table's list, read
    when help is shown (so `kbootstrap` starts without importing the engine)."""

    def __init__(self, *args, workflows: tuple[str, ...] = (), **kwargs):
        kwargs.setdefault("epilog", EXIT_CODES_HELP)
        super().__init__(*args, **kwargs)
        self.workflows = workflows

    def format_help_text(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        import inspect

        from kbootstrap.workflows import WORKFLOWS

        text = inspect.cleandoc(self.help or "")
        for i, name in enumerate(self.workflows):
            text = text.replace("{phases%s}" % ("" if i == 0 else i), WORKFLOWS[name].help())
        self.help = text
        super().format_help_text(ctx, formatter)


class ErrorGroup(click.Group):
    """A command group that prints kbootstrap's errors as clean messages, never tracebacks, with their exit code."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except KbootstrapError as e:
            fail(e)


def _phase_names(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[str, ...]:
    return tuple(x.strip() for x in (value or "").split(",") if x.strip())


PHASE_OPTIONS = [
    click.option("--skip-phases", metavar="A,B", callback=_phase_names,
                 help="Leave out these phases (names from the list above)."),
    click.option("--only-phases", metavar="A,B", callback=_phase_names,
                 help="Run only these phases, in their order (one phase alone: --only-phases etcd)."),
]


def phase_options(fn):
    for opt in reversed(PHASE_OPTIONS):
        fn = opt(fn)
    return fn




def fail(e: BaseException) -> NoReturn:
    """The one mapping from an error to what the operator sees, for every command: one line (the text as it is,
    never markup) and the error's exit code (KbootstrapError.exit_code: 2 for bad input or a refusal, else 1)."""
    err.print(labelled("error:", "red", e), soft_wrap=True)
    sys.exit(int(getattr(e, "exit_code", ExitCode.FAILED)))


def exit_for(result, dry_run: bool) -> NoReturn:
    """1 when a host failed; else, for a run that changed nothing on purpose (plan, --dry-run), 3 when
    changes are pending; else 0."""
    if result.failed:
        sys.exit(ExitCode.FAILED)
    sys.exit(ExitCode.PENDING if dry_run and result.changes else ExitCode.DONE)


ARTIFACTS_OPTION = click.option(
    "--artifacts", type=click.Path(file_okay=False, path_type=Path),
    help="Artifact bundle to install from (`kbootstrap artifacts bundle`/`fetch`, or the lab's). "
         "Default: the inventory's `artifacts`, else the artifact cache of the cluster's version.")
