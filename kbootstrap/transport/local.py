"""Run the same steps on this machine (for `join --local` on the node itself, and for tests)."""

from __future__ import annotations

import os
import subprocess

from kbootstrap.transport.base import CommandResult, RoundTrips


class LocalTransport:
    def __init__(self, host: str = "localhost", sudo: bool = True):
        self.host = host
        self.sudo = sudo and os.geteuid() != 0
        self.round_trips = RoundTrips()

    def run(self, argv: list[str], *, sudo: bool = False, stdin: bytes = b"", timeout: float = 120) -> CommandResult:
        full = (["sudo", "-n", "--"] if sudo and self.sudo else []) + argv
        self.round_trips.add(argv[0])
        try:
            p = subprocess.run(full, input=stdin, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            return CommandResult(self.host, " ".join(argv[:2]), 124, e.stdout or b"", b"timed out")
        return CommandResult(self.host, " ".join(argv[:2]), p.returncode, p.stdout, p.stderr)

    def close(self) -> None:
        pass
