"""What render produces: one file as it will lie on one host."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property


@dataclass(frozen=True)
class Source:
    """Content read only when a host needs it written (a bundle file: hundreds of MB), its digest and size
    known ahead from the verified bundle, so comparing it with a host costs nothing."""

    sha256: str
    size: int
    read: Callable[[], bytes]


@dataclass(frozen=True)
class Artifact:
    path: str  # absolute path on the host
    content: bytes  # b"" when `source` is given: use data()
    mode: int = 0o644
    owner: str = "root"
    group: str = "root"
    secret: bool = False  # never print the content (plan shows a digest instead)
    restarts: tuple[str, ...] = ()  # systemd services to restart when this file changes
    component: str = ""
    source: Source | None = None

    @cached_property
    def sha256(self) -> str:
        return self.source.sha256 if self.source else hashlib.sha256(self.content).hexdigest()

    @property
    def size(self) -> int:
        return self.source.size if self.source else len(self.content)

    def data(self) -> bytes:
        return self.source.read() if self.source else self.content
