"""The lab's known_hosts file: host keys recorded at `up`, read out of band through LXC.

Several layouts share one file (the inventories point at the same path): updates replace only the
lines for the given addresses, under a lock, and land atomically.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterable, Mapping
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _hosts_of(line: str) -> set[str]:
    s = line.strip()
    if not s or s.startswith("#") or s.startswith("@"):
        return set()
    return set(s.split()[0].split(","))


def update(path: Path, keys: Mapping[str, Iterable[str]]) -> None:
    """Replace the entries of each host in `keys` ({address: ["ssh-ed25519 AAAA", ...]})."""
    _rewrite(path, set(keys), [f"{h} {k}" for h, ks in keys.items() for k in ks])


def forget(path: Path, hosts: Iterable[str]) -> None:
    if path.exists():
        _rewrite(path, set(hosts), [])


def _rewrite(path: Path, hosts: set[str], new: list[str]) -> None:
    with _locked(path):
        old = path.read_text().splitlines() if path.exists() else []
        kept = [line for line in old if not (_hosts_of(line) & hosts)]
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text("".join(line + "\n" for line in kept + new))
        os.chmod(tmp, 0o644)
        tmp.replace(path)


def entries(path: Path, host: str) -> list[str]:
    if not path.exists():
        return []
    return [" ".join(line.split()[1:3]) for line in path.read_text().splitlines() if host in _hosts_of(line)]
