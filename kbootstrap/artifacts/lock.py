"""The lock file: the sha256 of every upstream file, per Kubernetes release, reviewable in the repository.

`kbootstrap/artifacts/lock/<version>.json` (or `--lock FILE`). A fetch refuses a file whose published checksum
or actual digest differs from the lock. An entry whose `sha256` is null is not pinned: the file is still verified
against the checksum its project publishes, and `fetch` says so. Every pinned value names where it came from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from kbootstrap.artifacts.catalog import ReleaseArtifacts
from kbootstrap.artifacts.errors import ArtifactError

LOCK_DIR = Path(__file__).resolve().parent / "lock"


@dataclass(frozen=True)
class LockEntry:
    component: str
    version: str
    url: str
    sha256: str | None
    source: str  # where the value came from (or why there is none)


@dataclass(frozen=True)
class Lock:
    kubernetes: str
    arch: str
    entries: dict[str, LockEntry]
    path: Path | None = None

    def get(self, component: str) -> LockEntry | None:
        return self.entries.get(component)

    def check_against(self, release: ReleaseArtifacts) -> list[str]:
        """Problems where the lock and the catalog disagree (a pin bumped without its lock entry)."""
        problems = []
        for d in release.downloads:
            e = self.entries.get(d.component)
            if e is None:
                problems.append(f"{d.component}: no lock entry")
            elif (e.version, e.url) != (d.version, d.url):
                problems.append(f"{d.component}: lock has {e.version} {e.url}, catalog pins {d.version} {d.url}")
        for name in self.entries.keys() - set(release.components):
            problems.append(f"{name}: in the lock but not in the catalog")
        return problems


def lock_path(version: str) -> Path:
    return LOCK_DIR / f"{version}.json"


def load_lock(path: Path) -> Lock:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ArtifactError(f"lock file {path} does not exist") from None
    except json.JSONDecodeError as e:
        raise ArtifactError(f"lock file {path} is not valid JSON: {e}") from None
    entries = {}
    for name, row in data.get("files", {}).items():
        sha = row.get("sha256")
        if sha is not None and (len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha)):
            raise ArtifactError(f"lock file {path}: {name}.sha256 is not a lower-case hex sha256: {sha!r}")
        entries[name] = LockEntry(name, row["version"], row["url"], sha, row.get("source", ""))
    return Lock(data["kubernetes"], data.get("arch", "amd64"), entries, path)


def dump_lock(lock: Lock) -> str:
    files = {
        name: {"version": e.version, "url": e.url, "sha256": e.sha256, "source": e.source}
        for name, e in sorted(lock.entries.items())
    }
    return json.dumps({"kubernetes": lock.kubernetes, "arch": lock.arch, "files": files}, indent=2) + "\n"
