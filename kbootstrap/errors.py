"""One hierarchy for every error kbootstrap reports to an operator."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class ExitCode(IntEnum):
    """Every command's exit status (cli.common.fail and exit_for map errors and results to it)."""

    DONE = 0  # done, or nothing to do
    FAILED = 1  # a host failed (unreachable, a step failed, a check failed)
    REFUSED = 2  # bad input, or refused before anything changed
    PENDING = 3  # a dry run (plan, --dry-run) with changes to make


class KbootstrapError(Exception):
    """Base class: the CLI prints these as clean messages, never as tracebacks. exit_code says which kind."""

    exit_code = ExitCode.FAILED


class Refused(KbootstrapError):
    """Bad input, or a run refused before it changed anything (exit 2)."""

    exit_code = ExitCode.REFUSED


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an inventory: where (a field path) and what was expected."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class SpecError(Refused):
    """The inventory is not usable. Carries every problem found, not just the first."""

    def __init__(self, source: str, problems: list[Problem]):
        self.source = source
        self.problems = problems
        count = len(problems)
        lines = [f"{source}: {count} problem{'s' if count != 1 else ''}:"]
        lines += [f"  - {p}" for p in problems]
        super().__init__("\n".join(lines))


class PKIError(Refused):
    """The cluster directory holds something kbootstrap will not silently replace."""


class TransportError(KbootstrapError):
    """A host cannot be reached or used (host key, auth, network, sudo). One line, naming the host."""

    def __init__(self, host: str, message: str):
        self.host = host
        super().__init__(f"{host}: {message}")


class StepError(KbootstrapError):
    """A step failed on a host: which step, which command, its exit code and the tail of its stderr."""

    def __init__(self, host: str, step: str, command: str, rc: int, stderr_tail: str):
        self.host, self.step, self.command, self.rc, self.stderr_tail = host, step, command, rc, stderr_tail
        tail = f"\n    {stderr_tail.replace(chr(10), chr(10) + '    ')}" if stderr_tail else ""
        super().__init__(f"{host}: {step}: `{command}` exited {rc}{tail}")
