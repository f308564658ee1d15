"""One hierarchy for every error kbootstrap reports to an operator."""

from __future__ import annotations

from dataclasses import dataclass


class KbootstrapError(Exception):
    """Base class: the CLI prints these as clean messages, never as tracebacks."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an inventory: where (a field path) and what was expected."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class SpecError(KbootstrapError):
    """The inventory is not usable. Carries every problem found, not just the first."""

    def __init__(self, source: str, problems: list[Problem]):
        self.source = source
        self.problems = problems
        count = len(problems)
        lines = [f"{source}: {count} problem{'s' if count != 1 else ''}:"]
        lines += [f"  - {p}" for p in problems]
        super().__init__("\n".join(lines))


class PKIError(KbootstrapError):
    """The cluster directory holds something kbootstrap will not silently replace."""
