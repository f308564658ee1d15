"""What render produces: one file as it will lie on one host."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Artifact:
    path: str  # absolute path on the host
    content: bytes
    mode: int = 0o644
    owner: str = "root"
    group: str = "root"
    secret: bool = False  # never print the content (plan shows a digest instead)
    restarts: tuple[str, ...] = ()  # systemd services to restart when this file changes
    component: str = ""

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()
