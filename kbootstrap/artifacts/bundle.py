"""Make a self-contained bundle from an artifact cache (or a built bundle), and check one."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from kbootstrap.artifacts.errors import ArtifactError
from kbootstrap.artifacts.manifest import (
    MANIFEST,
    Manifest,
    Problem,
    verify_dir,
    verify_tarball,
    write_manifest,
    write_tarball,
)

if TYPE_CHECKING:
    from kbootstrap.artifacts.digests import DigestCache


def verify(path: Path) -> tuple[Manifest, list[Problem]]:
    """Re-check a bundle directory, an artifact cache or a bundle tarball against its manifest."""
    if path.is_dir():
        return verify_dir(path)
    if path.is_file():
        return verify_tarball(path)
    raise ArtifactError(f"{path}: no such bundle (a directory with {MANIFEST}, or a tarball of one)")


def make_bundle(src: Path, out_dir: Path | None = None, tarball: Path | None = None,
                lock_file: Path | None = None) -> Manifest:
    """Copy every file `src`'s manifest lists (after re-verifying it) into `out_dir` and/or a tarball."""
    if out_dir is None and tarball is None:
        raise ArtifactError("bundle: give an output directory, a tarball, or both")
    manifest, problems = verify_dir(src)
    bad = [p for p in problems if p.message != "not listed in the manifest"]
    if bad:
        raise ArtifactError(f"{src}: does not match its manifest, refusing to bundle it:\n"
                            + "\n".join(f"  - {p}" for p in bad))
    if not manifest.files:
        raise ArtifactError(f"{src}: its manifest lists no files")
    if out_dir is not None:
        if out_dir.resolve() == src.resolve():
            raise ArtifactError("bundle: the output directory is the source directory")
        out_dir.mkdir(parents=True, exist_ok=True)
        for f in manifest.files:
            dest = out_dir / f.path
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".{dest.name}.part-{os.getpid()}")
            shutil.copy2(src / f.path, tmp)
            os.replace(tmp, dest)
        if lock_file is not None:
            shutil.copyfile(lock_file, out_dir / "lock.json")
        write_manifest(out_dir, manifest)
        _, problems = verify_dir(out_dir)
        if problems:
            raise ArtifactError(f"{out_dir}: the copy does not verify: " + "; ".join(map(str, problems)))
    if tarball is not None:
        root = out_dir or src
        extra = ["lock.json"] if (root / "lock.json").is_file() else []  # the lock used, for review
        write_tarball(root, manifest, tarball, extra)
    return manifest


def open_bundle(path: Path, digests: DigestCache | None = None) -> Manifest:
    """What `init`/`join --artifacts DIR` call: the verified manifest of a bundle directory (or refuse it).
    A file unchanged since a run hashed it is not hashed again (`digests`, default the user's cache:
    digests.py); `artifacts verify` always is."""
    from kbootstrap.artifacts.digests import default_cache

    digests = digests or default_cache()
    manifest, problems = verify_dir(path, digests)
    digests.save()
    bad = [p for p in problems if p.message != "not listed in the manifest"]
    if bad:
        raise ArtifactError(f"{path}: bundle does not verify:\n" + "\n".join(f"  - {p}" for p in bad))
    return manifest


def files_for(manifest: Manifest, roles: set[str]) -> list:
    """The manifest entries a host with these roles needs ("control-plane", "etcd", "node", "admin")."""
    return [f for f in manifest.files if not f.roles or set(f.roles) & roles]
