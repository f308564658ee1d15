"""Download the upstream files of one release into the cache, verified, or reuse the cache offline.

For each file of the catalog:
1. already in the cache and its sha256 matches the lock (or, when the lock pins nothing, the digest recorded in the
   cache manifest when it was verified) → reused, no network;
2. otherwise the project's published checksum file is fetched (missing → refused: nothing unverified is kept), its
   value is compared with the lock, the file is streamed to a temporary name beside its final place while being
   hashed, and renamed into place only when the digest equals both the published checksum and the lock.
Any mismatch names the file, the expected and the actual digest, and leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from kbootstrap.artifacts.catalog import Download, Kind, ReleaseArtifacts
from kbootstrap.artifacts.errors import ArtifactError, ChecksumMismatch
from kbootstrap.artifacts.lock import Lock
from kbootstrap.artifacts.manifest import CHUNK, Manifest, ManifestFile, read_manifest, sha256_file, write_manifest

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import TaskID

SOURCE_ENV = "KBOOTSTRAP_ARTIFACTS_SOURCE"
HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
USER_AGENT = "kbootstrap-artifacts/1"


def cache_root() -> Path:
    return Path(os.environ.get("KB_CACHE") or Path.home() / ".cache/kbootstrap")


def default_cache_dir(version: str, arch: str = "amd64") -> Path:
    return cache_root() / "artifacts" / (version if arch == "amd64" else f"{version}-{arch}")


class Reporter(Protocol):
    def start(self, name: str, total: int | None) -> None: ...
    def advance(self, name: str, n: int) -> None: ...
    def finish(self, name: str, status: str) -> None: ...
    def note(self, message: str) -> None: ...


class SilentReporter:
    def start(self, name: str, total: int | None) -> None: ...
    def advance(self, name: str, n: int) -> None: ...
    def finish(self, name: str, status: str) -> None: ...
    def note(self, message: str) -> None: ...


LOG = logging.getLogger("kbootstrap.fetch")


class LogReporter:
    """One log line a file (`kbootstrap.fetch`): where it goes is the command line's choice (cli/session.py)."""

    def __init__(self) -> None:
        self._t: dict[str, float] = {}

    def start(self, name: str, total: int | None) -> None:
        self._t[name] = time.monotonic()
        LOG.info(f"fetch {name}" + (f" ({total / 1e6:.1f} MB)" if total else ""))

    def advance(self, name: str, n: int) -> None:
        pass

    def finish(self, name: str, status: str) -> None:
        took = time.monotonic() - self._t.pop(name, time.monotonic())
        LOG.info(f"  {name}: {status}" + (f" in {took:.1f}s" if status == "verified" else ""))

    def note(self, message: str) -> None:
        LOG.warning(message)


class RichReporter(LogReporter):
    """A rich progress bar a file on a terminal; the lines are LogReporter's (printed above the bars by the
    command line's rich log handler on the same console)."""

    def __init__(self, console: Console) -> None:
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

        super().__init__()
        self.progress = Progress(TextColumn("{task.description}", markup=False), BarColumn(), DownloadColumn(),
                                 TransferSpeedColumn(), TimeRemainingColumn(), console=console, transient=False)
        self.tasks: dict[str, TaskID] = {}

    def __enter__(self) -> RichReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def start(self, name: str, total: int | None) -> None:
        self.tasks[name] = self.progress.add_task(name, total=total)

    def advance(self, name: str, n: int) -> None:
        self.progress.advance(self.tasks[name], n)

    def finish(self, name: str, status: str) -> None:
        if name in self.tasks:
            self.progress.update(self.tasks[name], description=f"{name} {status}")
        else:
            super().finish(name, status)


def parse_checksum(text: str, filename: str, where: str) -> str:
    """The sha256 for `filename` in a published checksum file: a bare digest, or `sha256sum` lines."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    for ln in lines:
        parts = ln.split()
        if len(parts) >= 2 and HEX64.match(parts[0]):
            name = parts[-1].lstrip("*")
            if name.rsplit("/", 1)[-1] == filename:
                return parts[0].lower()
    if len(lines) == 1 and HEX64.match(lines[0].split()[0]) and len(lines[0].split()) == 1:
        return lines[0].split()[0].lower()
    raise ArtifactError(f"{where}: published checksum file has no sha256 for {filename}")


@dataclass
class Fetcher:
    release: ReleaseArtifacts
    cache_dir: Path
    source: str | None = None
    lock: Lock | None = None
    offline: bool = False
    reporter: Reporter = SilentReporter()
    timeout: float = 60.0
    retries: int = 2

    def run(self, components: list[str] | None = None) -> Manifest:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self._sweep_partials()
        manifest = self._load_manifest()
        for d in self.release.downloads:
            if components and d.component not in components:
                continue
            try:
                entry = self.fetch_one(d, manifest.get(d.path))
            except BaseException:
                if manifest.get(d.path) and not (self.cache_dir / d.path).exists():  # forget what is gone
                    manifest = manifest.without(d.path)
                    write_manifest(self.cache_dir, manifest)
                raise
            manifest = manifest.with_file(entry)
            write_manifest(self.cache_dir, manifest)  # after each file: an interrupted run keeps what it verified
        return manifest

    # --- one file --------------------------------------------------------------------------------------------
    def fetch_one(self, d: Download, recorded: ManifestFile | None) -> ManifestFile:
        target = self.cache_dir / d.path
        pinned = self._pinned(d)
        if target.is_file():
            actual = sha256_file(target)
            known = pinned or (recorded.sha256 if recorded else None)
            if known is not None and actual == known:
                self.reporter.finish(d.path, "cached")
                return self._entry(d, actual, target.stat().st_size)
            target.unlink()  # corrupt, changed, or unknown provenance: never reuse it
            self.reporter.note(f"{d.path}: cached copy does not match the recorded sha256; fetching it again")
        if self.offline:
            raise ArtifactError(f"{d.path}: not in the cache {self.cache_dir} and --offline is set")

        sums_url = d.checksum_url_from(self.source)
        try:
            sums = self._get_text(sums_url)
        except ArtifactError as e:
            raise ArtifactError(
                f"{d.filename}: cannot get its published checksum ({e}); refusing to keep an unverified file"
            ) from None
        published = parse_checksum(sums, d.filename, sums_url)
        if pinned is not None and published != pinned:
            raise ChecksumMismatch(f"{d.filename} (published checksum {sums_url})", pinned, published,
                                   f"the lock file {self.lock.path if self.lock else ''}".strip())
        actual, size = self._download(d, target, expected=published, pinned=pinned)
        self.reporter.finish(d.path, "verified")
        return self._entry(d, actual, size)

    def _pinned(self, d: Download) -> str | None:
        if self.lock is None:
            return None
        e = self.lock.get(d.component)
        if e is None or e.sha256 is None:
            return None
        if (e.version, e.url) != (d.version, d.url):
            raise ArtifactError(
                f"{d.component}: the lock pins {e.version} ({e.url}) but the catalog wants {d.version} ({d.url}); "
                "update the lock file"
            )
        return e.sha256

    def _entry(self, d: Download, sha: str, size: int) -> ManifestFile:
        return ManifestFile(d.path, sha, size, d.component, d.version, d.kind, d.install, d.url, None, d.roles)

    def _download(self, d: Download, target: Path, expected: str, pinned: str | None) -> tuple[str, int]:
        url = d.url_from(self.source)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.part-")
        tmp = Path(tmp_name)
        try:
            h, size = hashlib.sha256(), 0
            with os.fdopen(fd, "wb") as out, self._open(url) as resp:
                total = resp.headers.get("Content-Length")
                self.reporter.start(d.path, int(total) if total and total.isdigit() else None)
                while chunk := resp.read(CHUNK):
                    out.write(chunk)
                    h.update(chunk)
                    size += len(chunk)
                    self.reporter.advance(d.path, len(chunk))
            actual = h.hexdigest()
            if actual != expected:
                raise ChecksumMismatch(f"{d.filename} (downloaded from {url})", expected, actual,
                                       f"the published checksum {d.checksum_url_from(self.source)}")
            if pinned is not None and actual != pinned:
                raise ChecksumMismatch(f"{d.filename} (downloaded from {url})", pinned, actual, "the lock file")
            os.chmod(tmp, 0o755 if d.kind is Kind.BINARY else 0o644)
            os.replace(tmp, target)
            return actual, size
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    # --- network -----------------------------------------------------------------------------------------------
    def _open(self, url: str):
        req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            try:
                return urllib.request.urlopen(req, timeout=self.timeout)
            except urllib.error.HTTPError as e:
                if e.code < 500 or attempt == self.retries:
                    raise ArtifactError(f"{url}: HTTP {e.code} {e.reason}") from None
                last = e
            except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
                last = e
                if attempt == self.retries:
                    break
            time.sleep(0.5 * (attempt + 1))
        reason = getattr(last, "reason", last)
        raise ArtifactError(f"{url}: cannot connect ({reason})")

    def _get_text(self, url: str) -> str:
        with self._open(url) as resp:
            data = resp.read(1 << 20)
        try:
            return data.decode()
        except UnicodeDecodeError:
            raise ArtifactError(f"{url}: checksum file is not text") from None

    # --- cache bookkeeping -------------------------------------------------------------------------------------
    def _load_manifest(self) -> Manifest:
        try:
            m = read_manifest(self.cache_dir)
        except ArtifactError:
            return Manifest(self.release.kubernetes, self.release.arch, "upstream", ())
        if (m.kubernetes, m.arch) != (self.release.kubernetes, self.release.arch):
            raise ArtifactError(
                f"{self.cache_dir}: holds {m.kubernetes}/{m.arch}, not {self.release.kubernetes}/{self.release.arch}"
            )
        if m.origin != "upstream":
            raise ArtifactError(f"{self.cache_dir}: is a {m.origin!r} bundle, not a cache of upstream downloads")
        return m

    def _sweep_partials(self) -> None:
        """Remove temporary files an interrupted run left (never a verified file)."""
        for p in self.cache_dir.rglob(".*.part-*"):
            p.unlink(missing_ok=True)
