"""sha256 of bundle files kept between runs, so a no-op `init` does not hash ~750 MB before contacting a host.

An entry is trusted while the file is the same file, unchanged: device, inode, size, modification and change
time (any write changes the change time, which no user can set; git's index works the same way). A file
changed in the last seconds is not recorded: a second write within the clock's tick could keep all of those.
A file's content is still checked against the manifest when it is read to be sent to a host
(phases/bundle_payload.py), so the cache decides only what is compared, never what is installed.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from kbootstrap.artifacts.manifest import atomic_write, sha256_file

SETTLED = 2.0


def _identity(st: os.stat_result) -> list[int]:
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


class DigestCache:
    def __init__(self, path: Path):
        self.path, self.dirty = path, False
        try:
            data = json.loads(path.read_text())
            self.files: dict[str, list] = data["files"]
            self.members: dict[str, list] = data["members"]
        except (OSError, ValueError, KeyError, TypeError):
            self.files, self.members = {}, {}

    def file(self, path: Path) -> str:
        key, st = str(path.resolve()), path.stat()
        entry = self.files.get(key)
        if entry and entry[:5] == _identity(st):
            return entry[5]
        digest = sha256_file(path)
        if time.time() - max(st.st_mtime, st.st_ctime) >= SETTLED:
            self.files[key], self.dirty = [*_identity(st), digest], True
        return digest

    def member(self, archive_sha256: str, member: str, compute: Callable[[], tuple[str, int]]) -> tuple[str, int]:
        """A file inside a verified archive: keyed by the archive's digest, so it never goes stale."""
        key = f"{archive_sha256}:{member}"
        if key not in self.members:
            self.members[key], self.dirty = list(compute()), True
        digest, size = self.members[key]
        return digest, size

    def save(self) -> None:
        """Best effort (a read-only home still runs, hashing again next time)."""
        if not self.dirty:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self.path, json.dumps({"files": self.files, "members": self.members}).encode())
            self.dirty = False
        except OSError:
            pass


def default_cache() -> DigestCache:
    from kbootstrap.artifacts.fetch import cache_root

    return DigestCache(cache_root() / "digests.json")
