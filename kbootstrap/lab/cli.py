"""`kbootstrap lab …`: the local lab's commands (parse, call, print; the work is in lifecycle.py)."""

from __future__ import annotations

import functools

import click

from .errors import LabError
from .layout import default_inventory, load_layout
from .lifecycle import ENGINES, down, reset, status, up

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
        except LabError as e:
            raise click.ClickException(str(e)) from None

    return wrapper


def _log(msg: str) -> None:
    click.echo(msg, err=True)


@click.group()
def lab() -> None:
    """The local lab: one LXC system container per node of a lab inventory, on a private bridge."""


@lab.command("up")
@inventory_option
@click.option("--engine", type=click.Choice(ENGINES), default="lxc", show_default=True,
              help="lxc: plain LXC from Python (fast); vagrant: vagrant up --provider=lxc with vagrant/Vagrantfile")
@click.option("--fresh", is_flag=True, help="also reset nodes that already exist")
@_clean_errors
def up_cmd(inventories, engine, fresh) -> None:
    """Bring the layout(s) up; prints the up time per layout."""
    for layout in _layouts(inventories):
        result = up(layout, engine, fresh=fresh, log=_log)
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
