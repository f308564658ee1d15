"""The report: a rich table (host | check | result | detail) or JSON, and the exit code."""

from __future__ import annotations

import json

from rich.console import Console
from rich.table import Table
from rich.text import Text

from kbootstrap.verify.checks import Check, failed


def checks_table(checks: list[Check], title: str = "kbootstrap verify") -> Table:
    table = Table(title=title)
    table.add_column("host", no_wrap=True)
    table.add_column("check", no_wrap=True)
    table.add_column("result", no_wrap=True)
    table.add_column("detail", overflow="fold")
    previous = None
    for c in checks:
        # Plain Text, not markup: details carry host output, which may hold brackets.
        table.add_row(Text(c.host if c.host != previous else ""), Text(c.what),
                      Text("ok", style="green") if c.ok else Text("FAIL", style="bold red"), Text(c.detail))
        previous = c.host
    return table


def summary(checks: list[Check]) -> str:
    bad = failed(checks)
    hosts = sorted({c.host for c in bad})
    return (f"{len(checks)} checks, {len(bad)} failed" + (f" (on {', '.join(hosts)})" if bad else ""))


def print_checks(checks: list[Check], console: Console | None = None, title: str = "kbootstrap verify") -> None:
    console = console or Console()
    console.print(checks_table(checks, title))
    console.print(summary(checks), style="red" if failed(checks) else "green", highlight=False)


def checks_json(checks: list[Check]) -> str:
    return json.dumps({
        "ok": not failed(checks),
        "summary": summary(checks),
        "checks": [{"host": c.host, "check": c.what, "ok": c.ok, "detail": c.detail} for c in checks],
    }, indent=2)


def exit_code(checks: list[Check]) -> int:
    """0 when every check passed, 1 otherwise (2 is kept for bad input, as in the other commands)."""
    return 1 if failed(checks) else 0
