"""`kbootstrap lab …`: the local lab's commands (parse, call, print; the work is in lifecycle.py)."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import click

from kbootstrap.cli.common import fail
from kbootstrap.lab import check as controller_check
from kbootstrap.lab.errors import LabError
from kbootstrap.lab.layout import default_inventory, load_layout
from kbootstrap.lab.lifecycle import ENGINES, down, reset, status, up

inventory_option = click.option(
    "-i",
    "--inventory",
    "inventories",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="lab inventory (repeatable); default $KB_INVENTORY or inventories/lab-stacked.yaml",
)


def _layouts(inventories):
    return [load_layout(p) for p in (inventories or [default_inventory()])]


def _clean_errors(f):
    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        try:
            return f(*args, **kwargs)
        except (LabError, OSError) as e:  # LabRefused: exit 2; OSError: a file of the lab's it could not write
            fail(e)

    return wrapper


def _log(msg: str) -> None:
    click.echo(msg, err=True)


@click.group()
def lab() -> None:
    """The local lab: one LXC system container per node of a lab inventory, on a private bridge."""


engine_option = click.option(
    "--engine", type=click.Choice(ENGINES), default="lxc", show_default=True,
    help="lxc: plain LXC from Python (fast); vagrant: vagrant up --provider=lxc with vagrant/Vagrantfile")


@lab.command("check")
@engine_option
@click.option("--root", type=click.Path(file_okay=False, exists=True, path_type=Path), default=Path("/"),
              show_default=True, help="check the commands and files of this filesystem tree instead "
                                      "(the kernel, cgroups and inotify budget are always this machine's)")
@_clean_errors
def check_cmd(engine, root) -> None:
    """What the lab needs on this machine, in one report, before any container is made.

    \b
    Commands and files, each with the Debian package that ships it; the kernel features the nodes use (they
    share this machine's kernel and cannot load modules); cgroup controllers; root; and how many lab hosts
    fit in root's inotify budget (fs.inotify.max_user_instances, which the lab never changes).
    Exit 0 when everything is there, 1 otherwise. `lab up` runs the same check and refuses (exit 2).
    """
    findings = controller_check.controller(engine, root.resolve())
    click.echo(controller_check.report(findings))
    sys.exit(1 if controller_check.problems(findings) else 0)


@lab.command("up")
@inventory_option
@engine_option
@click.option("--fresh", is_flag=True, help="also reset nodes that already exist")
@click.option("--boot-timeout", type=click.FloatRange(min=1), default=180, show_default=True,
              help="seconds a node may take to boot")
@_clean_errors
def up_cmd(inventories, engine, fresh, boot_timeout) -> None:
    """Bring the layout(s) up; prints the up time per layout.

    \b
    Refused (exit 2) before any container is made when `kbootstrap lab check` finds something missing or the
    layout does not fit in this machine's inotify budget. An up that fails later removes the layout's nodes
    again (exit 1), so nothing is left running.
    """
    for layout in _layouts(inventories):
        result = up(layout, engine, fresh=fresh, boot_timeout=boot_timeout, log=_log)
        degraded = [n for n, s in result.states.items() if s != "running"]
        note = f"; not running: {', '.join(degraded)}" if degraded else ""
        click.echo(f"{layout.cluster}: {len(layout.nodes)} nodes up in {result.seconds:.1f} s (engine {engine}){note}")


@lab.command("status")
@inventory_option
@_clean_errors
def status_cmd(inventories) -> None:
    """Each node's container, state and engine."""
    for layout in _layouts(inventories):
        click.echo(f"{layout.cluster}  ({layout.path})  bridge {layout.bridge} {layout.gateway}")
        for s in status(layout):
            key = "host key recorded" if s.host_key_recorded else ""
            click.echo(f"  {s.node.name:<10} {str(s.node.address):<15} {s.container:<24} {s.state:<8} {s.engine:<8} {key}")


@lab.command("reset")
@inventory_option
@_clean_errors
def reset_cmd(inventories) -> None:
    """Return every node to a fresh state (lxc engine: ~2 s; vagrant engine: destroy + up)."""
    for layout in _layouts(inventories):
        result = reset(layout, log=_log)
        click.echo(f"{layout.cluster}: {len(layout.nodes)} nodes fresh in {result.seconds:.1f} s (engine {result.engine})")


@lab.command("down")
@inventory_option
@_clean_errors
def down_cmd(inventories) -> None:
    """Remove the nodes, and the bridge once no layout uses it."""
    for layout in _layouts(inventories):
        seconds = down(layout, log=_log)
        click.echo(f"{layout.cluster}: down in {seconds:.1f} s")
