"""`kbootstrap artifacts …`: fetch, bundle, verify and list the binaries kbootstrap installs. Parse, call, print."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from kbootstrap.artifacts.bundle import make_bundle, verify
from kbootstrap.artifacts.catalog import Kind, release_artifacts
from kbootstrap.artifacts.errors import ArtifactError
from kbootstrap.artifacts.fetch import SOURCE_ENV, Fetcher, LogReporter, RichReporter, default_cache_dir
from kbootstrap.artifacts.lock import Lock, load_lock, lock_path
from kbootstrap.cli.common import ErrorGroup
from kbootstrap.cli.session import terminal_log
from kbootstrap.model import versions

err = Console(stderr=True, highlight=False, markup=False)  # user text is never markup
out = Console(highlight=False, markup=False, width=None if sys.stdout.isatty() else 200)

VERSION_OPT = click.option("--version", "version", default=versions.DEFAULT_VERSION, show_default=True,
                           help="Kubernetes release (one kbootstrap supports).")
ARCH_OPT = click.option("--arch", default="amd64", show_default=True, type=click.Choice(["amd64", "arm64"]))
CACHE_OPT = click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path),
                         help="Artifact cache [default: ~/.cache/kbootstrap/artifacts/VERSION, or $KB_CACHE/…].")


def _release(version: str, arch: str):
    if version.removeprefix("v") not in versions.SUPPORTED:
        raise ArtifactError(f"unsupported version {version!r}; supported: {', '.join(versions.SUPPORTED)}")
    return release_artifacts(version.removeprefix("v"), arch)


def _lock(version: str, lock_file: Path | None, no_lock: bool) -> Lock | None:
    if no_lock:
        return None
    path = lock_file or lock_path(version)
    if lock_file is None and not path.exists():
        return None
    return load_lock(path)


@click.group("artifacts", cls=ErrorGroup)
def artifacts() -> None:
    """Upstream binaries: download once (verified), bundle for air-gapped sites, re-check.

    \b
      kbootstrap artifacts list                       what a release installs, and what the lock pins
      kbootstrap artifacts fetch [--source URL]       download into the cache, verified
      kbootstrap artifacts bundle -o DIR [--tar F]    a self-contained copy with manifest.json
      kbootstrap artifacts verify PATH                re-check a bundle, tarball or cache
      kbootstrap artifacts debs --bundle DIR [--against STATUS]   add the hosts' OS packages (.deb) to a bundle
    """


@artifacts.command("list")
@VERSION_OPT
@ARCH_OPT
def list_cmd(version: str, arch: str) -> None:
    """Every file of a release: version, official URL, and its sha256 in the lock file."""
    rel = _release(version, arch)
    lock = _lock(rel.kubernetes, None, False)
    t = Table("component", "version", "url", "lock sha256", box=None, pad_edge=False)
    for d in rel.downloads:
        e = lock.get(d.component) if lock else None
        t.add_row(d.component, d.version, d.url, (e.sha256 if e and e.sha256 else Text("not pinned", "yellow")))
    out.print(t)
    for img in rel.images:
        out.print(f"image {img.ref}: built for the lab (`lab/build-bundle.sh`), or pulled from its registry")


@artifacts.command()
@VERSION_OPT
@ARCH_OPT
@CACHE_OPT
@click.option("--source", envvar=SOURCE_ENV, metavar="URL",
              help=f"Mirror base URL: https://HOST/PATH is fetched from URL/HOST/PATH (kubespray files_repo layout). "
                   f"Env: {SOURCE_ENV}.")
@click.option("--lock", "lock_file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Lock file of sha256 [default: kbootstrap/artifacts/lock/VERSION.json].")
@click.option("--no-lock", is_flag=True, help="Verify against the published checksums only.")
@click.option("--offline", is_flag=True, help="Use only the cache; fail if a file is missing.")
@click.option("--only", "components", multiple=True, metavar="COMPONENT", help="Fetch only this component (repeat).")
def fetch(version: str, arch: str, cache_dir: Path | None, source: str | None, lock_file: Path | None,
          no_lock: bool, offline: bool, components: tuple[str, ...]) -> None:
    """Download every file of a release into the cache, verified against the published checksum and the lock."""
    rel = _release(version, arch)
    unknown = set(components) - set(rel.components)
    if unknown:
        raise ArtifactError(f"unknown component(s) {', '.join(sorted(unknown))}; known: {', '.join(rel.components)}")
    lock = _lock(rel.kubernetes, lock_file, no_lock)
    if lock is not None:
        problems = lock.check_against(rel)
        if problems and not components:
            raise ArtifactError(f"{lock.path}: does not match the catalog:\n" + "\n".join(f"  - {p}" for p in problems))
    cache = cache_dir or default_cache_dir(rel.kubernetes, arch)
    unpinned = [d.component for d in rel.downloads
                if (not components or d.component in components)
                and not (lock and (e := lock.get(d.component)) and e.sha256)]
    if unpinned:
        err.print(f"note: not pinned in a lock file, verified against the published checksum only: {', '.join(unpinned)}")
    with terminal_log("text"):
        if sys.stderr.isatty() and not os.environ.get("CI"):
            with RichReporter(err) as rep:
                manifest = Fetcher(rel, cache, source, lock, offline, rep).run(list(components) or None)
        else:
            manifest = Fetcher(rel, cache, source, lock, offline, LogReporter()).run(list(components) or None)
    total = sum(f.size for f in manifest.files)
    out.print(f"{len(manifest.files)} file(s) verified in {cache} ({total / 1e6:.1f} MB)")


@artifacts.command()
@VERSION_OPT
@ARCH_OPT
@CACHE_OPT
@click.option("--from", "src", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Bundle this directory (a cache or a built bundle) instead of the version's cache.")
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write the bundle directory here.")
@click.option("--tar", "tarball", type=click.Path(dir_okay=False, path_type=Path),
              help="Also (or only) write a tarball (.tar, .tar.gz).")
def bundle(version: str, arch: str, cache_dir: Path | None, src: Path | None, out_dir: Path | None,
           tarball: Path | None) -> None:
    """A self-contained directory and/or tarball with manifest.json, for air-gapped installs (`--artifacts DIR`)."""
    source = src or cache_dir or default_cache_dir(version.removeprefix("v"), arch)
    lock = lock_path(version.removeprefix("v"))
    manifest = make_bundle(source, out_dir, tarball, lock if (src is None and lock.exists()) else None)
    total = sum(f.size for f in manifest.files)
    for where in (out_dir, tarball):
        if where is not None:
            out.print(f"bundle {where}: {len(manifest.files)} files, {total / 1e6:.1f} MB, Kubernetes {manifest.kubernetes}")


@artifacts.command("verify")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
def verify_cmd(path: Path) -> None:
    """Re-hash every file of a bundle directory, bundle tarball or cache against its manifest.json."""
    manifest, problems = verify(path)
    if problems:
        raise ArtifactError(f"{path}: {len(problems)} problem(s):\n" + "\n".join(f"  - {p}" for p in problems))
    total = sum(f.size for f in manifest.files)
    out.print(f"{path}: {len(manifest.files)} file(s) verified ({total / 1e6:.1f} MB), "
              f"Kubernetes {manifest.kubernetes}/{manifest.arch}, origin {manifest.origin}")


@artifacts.command("debs")
@click.option("--bundle", "bundle_dir", required=True, type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="The bundle directory to add them to (manifest.json is rewritten atomically).")
@click.option("--against", type=click.Path(exists=True, path_type=Path), metavar="STATUS_FILE",
              help="The target hosts' dpkg status file (or their root directory), e.g. the lab image's "
                   "rootfs/var/lib/dpkg/status [default: a system of only the Essential/required packages].")
@click.option("--packages", multiple=True, metavar="NAME[,NAME…]",
              help="Only these packages of the table (repeat or comma-separate) [default: every one].")
def debs_cmd(bundle_dir: Path, against: Path | None, packages: tuple[str, ...]) -> None:
    """Add the OS packages the roles need (haproxy, keepalived, iptables, conntrack; catalog.OS_PACKAGES) to a
    bundle as .debs, with their dependency closure against what the hosts already have. Re-running adds nothing."""
    from kbootstrap.artifacts.debs import add_debs

    names = [n.strip() for p in packages for n in p.split(",") if n.strip()]
    r = add_debs(bundle_dir, against, names or None, log=lambda m: err.print(m, markup=False, highlight=False))
    debs = [f for f in r.manifest.files if f.kind is Kind.DEB]
    total = sum(f.size for f in debs)
    out.print(f"{bundle_dir}: {len(r.added)} .deb(s) added ({r.added_bytes / 1e6:.1f} MB), {len(r.kept)} already there"
              + (f", {len(r.removed)} older version(s) removed" if r.removed else "")
              + f"; {len(debs)} .debs in the bundle ({total / 1e6:.1f} MB)"
              + ("" if r.changed else "; manifest unchanged"))


@artifacts.command()
@click.argument("version", default=versions.DEFAULT_VERSION)
@click.option("--output", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Bundle directory [default: ~/.cache/kbootstrap/bundles/VERSION].")
@click.option("--force", is_flag=True, help="Rebuild even if a bundle of the same recipe exists.")
def build(version: str, out_dir: Path | None, force: bool) -> None:
    """Build the lab bundle from source (Go modules) — see lab/build-bundle.sh. Slow when cold."""
    from kbootstrap.artifacts.build import build_bundle

    path = build_bundle(version.removeprefix("v"), out_dir, force=force, log=lambda m: err.print(m, markup=False))
    out.print(str(path))
