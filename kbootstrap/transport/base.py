"""The whole interface between kbootstrap and a host: run a command (optionally with stdin), nothing else.

Files are written and facts gathered by `remote.py`'s helper, which runs through `run`, so that one
command moves a whole batch of files or facts: one round trip per host per phase.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class CommandResult:
    host: str
    command: str
    rc: int
    stdout: bytes
    stderr: bytes

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def stderr_tail(self, lines: int = 5) -> str:
        return "\n".join(self.stderr.decode(errors="replace").strip().splitlines()[-lines:])


@dataclass
class RoundTrips:
    """Counts commands sent to a host (the benchmark's "round trips per host")."""

    count: int = 0
    commands: list[str] = field(default_factory=list)

    def add(self, command: str) -> None:
        self.count += 1
        self.commands.append(command.split(" ", 1)[0])


class Transport(Protocol):
    host: str
    round_trips: RoundTrips

    def run(self, argv: list[str], *, sudo: bool = False, stdin: bytes = b"", timeout: float = 120) -> CommandResult:
        """Run argv on the host (through sudo when asked); never raises for a non-zero exit."""
        ...

    def close(self) -> None: ...


def quote(argv: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)
