"""The bundle format: a directory (or a tarball of it) with `manifest.json` listing every file.

The artifact cache (`~/.cache/kbootstrap/artifacts/<version>/`), a bundle made by `kbootstrap artifacts bundle`
and a bundle built for the lab by `lab/build-bundle.sh` all have this one layout, so `init`/`join --artifacts DIR`
read any of them the same way:

    manifest.json                 format, Kubernetes version, arch, origin, and every file below
    <component>/<file>            e.g. kubelet/kubelet, etcd/etcd-v3.6.4-linux-amd64.tar.gz
    images/<name>-<tag>.tar       OCI image layout archives (`ctr -n k8s.io images import`)
    debs/<package>_<version>_<arch>.deb   Debian packages for the hosts (`dpkg -i`; see debs.py)

Each file entry: path (relative), sha256, size, component, version, kind (binary | tar.gz | oci-image | deb), the
files it installs on a host (`install`: dest, member inside a tarball, mode), its upstream URL (fetched files and
.debs) or image reference (images), and for a .deb the Debian `package` name (`component` is then the top-level
package of kbootstrap's table that pulled it in, `version` the Debian version).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any

from kbootstrap.artifacts.catalog import Install, Kind
from kbootstrap.artifacts.errors import ArtifactError

FORMAT = "kbootstrap-bundle/v1"
MANIFEST = "manifest.json"
CHUNK = 1 << 20

if TYPE_CHECKING:  # digests.py builds on this module
    from kbootstrap.artifacts.digests import DigestCache


@dataclass(frozen=True)
class ManifestFile:
    path: str
    sha256: str
    size: int
    component: str
    version: str
    kind: Kind
    install: tuple[Install, ...] = ()
    url: str | None = None
    image: str | None = None
    roles: tuple[str, ...] = ()
    package: str | None = None  # the Debian package name (Kind.DEB only)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "path": self.path, "sha256": self.sha256, "size": self.size, "component": self.component,
            "version": self.version, "kind": str(self.kind),
            "install": [{"dest": i.dest, "member": i.member, "mode": f"{i.mode:04o}"} for i in self.install],
        }
        if self.roles:
            d["roles"] = list(self.roles)
        if self.url:
            d["url"] = self.url
        if self.image:
            d["image"] = self.image
        if self.package:
            d["package"] = self.package
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ManifestFile:
        installs = tuple(Install(i["dest"], i.get("member"), int(i.get("mode", "0755"), 8)) for i in d.get("install", []))
        return cls(d["path"], d["sha256"], int(d["size"]), d["component"], d["version"], Kind(d["kind"]), installs,
                   d.get("url"), d.get("image"), tuple(d.get("roles", ())), d.get("package"))


@dataclass(frozen=True)
class Manifest:
    kubernetes: str
    arch: str
    origin: str  # "upstream" (fetched, verified against published checksums) or "built" (lab build from source)
    files: tuple[ManifestFile, ...]
    info: dict[str, Any] = field(default_factory=dict)  # build recipe, substitutions, timings...

    def get(self, path: str) -> ManifestFile | None:
        for f in self.files:
            if f.path == path:
                return f
        return None

    def component(self, name: str) -> list[ManifestFile]:
        return [f for f in self.files if f.component == name]

    def with_file(self, entry: ManifestFile) -> Manifest:
        files = tuple(f for f in self.files if f.path != entry.path) + (entry,)
        return Manifest(self.kubernetes, self.arch, self.origin, tuple(sorted(files, key=lambda f: f.path)), self.info)

    def without(self, path: str) -> Manifest:
        return Manifest(self.kubernetes, self.arch, self.origin, tuple(f for f in self.files if f.path != path),
                        self.info)

    def to_json(self) -> str:
        data = {
            "format": FORMAT, "kubernetes": self.kubernetes, "arch": self.arch, "origin": self.origin,
            "files": [f.to_json() for f in sorted(self.files, key=lambda f: f.path)], "info": self.info,
        }
        return json.dumps(data, indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str) -> Manifest:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ArtifactError(f"{where}: manifest is not valid JSON: {e}") from None
        if data.get("format") != FORMAT:
            raise ArtifactError(f"{where}: unknown bundle format {data.get('format')!r} (expected {FORMAT!r})")
        try:
            files = tuple(ManifestFile.from_json(f) for f in data["files"])
        except (KeyError, ValueError, TypeError) as e:
            raise ArtifactError(f"{where}: malformed file entry in manifest: {e!r}") from None
        seen = set()
        for f in files:
            p = PurePosixPath(f.path)
            if p.is_absolute() or ".." in p.parts or f.path == MANIFEST or not f.path:
                raise ArtifactError(f"{where}: manifest names an unsafe path {f.path!r}")
            if f.path in seen:
                raise ArtifactError(f"{where}: manifest lists {f.path} twice")
            seen.add(f.path)
        return cls(data["kubernetes"], data["arch"], data["origin"], files, data.get("info", {}))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def sha256_stream(f: IO[bytes]) -> tuple[str, int]:
    h, n = hashlib.sha256(), 0
    while chunk := f.read(CHUNK):
        h.update(chunk)
        n += len(chunk)
    return h.hexdigest(), n


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_manifest(root: Path) -> Manifest:
    path = root / MANIFEST
    if not path.is_file():
        raise ArtifactError(f"{root}: no {MANIFEST} (not a kbootstrap bundle or artifact cache)")
    return Manifest.from_json(path.read_text(), str(path))


def write_manifest(root: Path, manifest: Manifest) -> None:
    atomic_write(root / MANIFEST, manifest.to_json().encode())


@dataclass(frozen=True)
class Problem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def _check(entry: ManifestFile, digest: str | None, size: int | None) -> Problem | None:
    if digest is None:
        return Problem(entry.path, "missing")
    if size != entry.size:
        return Problem(entry.path, f"size {size}, manifest says {entry.size}")
    if digest != entry.sha256:
        return Problem(entry.path, f"sha256 {digest}, manifest says {entry.sha256}")
    return None


def verify_dir(root: Path, digests: DigestCache | None = None) -> tuple[Manifest, list[Problem]]:
    """Re-hash every file a directory's manifest lists (or take an unchanged file's digest from `digests`);
    report missing, resized, changed and unlisted files."""
    manifest = read_manifest(root)
    problems: list[Problem] = []
    for entry in manifest.files:
        p = root / entry.path
        digest: str | None = None
        size: int | None = None
        if p.is_file():
            digest, size = (digests.file(p) if digests else sha256_file(p)), p.stat().st_size
        if (problem := _check(entry, digest, size)) is not None:
            problems.append(problem)
    listed = {f.path for f in manifest.files} | {MANIFEST, "lock.json"}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and rel not in listed and not p.name.startswith("."):
            problems.append(Problem(rel, "not listed in the manifest"))
    return manifest, problems


def verify_tarball(path: Path) -> tuple[Manifest, list[Problem]]:
    """The same check on a bundle tarball, streamed: nothing is extracted."""
    try:
        tar = tarfile.open(path, "r:*")
    except (OSError, tarfile.TarError) as e:
        raise ArtifactError(f"{path}: cannot read as a tarball: {e}") from None
    with tar:
        members = {_strip(m.name): m for m in tar.getmembers() if m.isfile()}
        if MANIFEST not in members:
            raise ArtifactError(f"{path}: no {MANIFEST} inside (not a kbootstrap bundle)")
        fobj = tar.extractfile(members[MANIFEST])
        assert fobj is not None
        manifest = Manifest.from_json(fobj.read().decode(), f"{path}!{MANIFEST}")
        problems = []
        for entry in manifest.files:
            m = members.get(entry.path)
            digest: str | None = None
            size: int | None = None
            if m is not None:
                f = tar.extractfile(m)
                assert f is not None
                digest, size = sha256_stream(f)
            if (problem := _check(entry, digest, size)) is not None:
                problems.append(problem)
        listed = {f.path for f in manifest.files} | {MANIFEST, "lock.json"}
        problems += [Problem(n, "not listed in the manifest") for n in sorted(members) if n not in listed]
    return manifest, problems


def _strip(name: str) -> str:
    """Tar member names of a bundle are relative; accept a leading './' or one top-level folder-less form."""
    return name[2:] if name.startswith("./") else name


def write_tarball(root: Path, manifest: Manifest, out: Path, extra: Iterable[str] = ()) -> None:
    """A tarball of a bundle directory: manifest.json first, then every listed file (gzip if out ends in .gz)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
    os.close(fd)
    gz = out.name.endswith((".gz", ".tgz"))
    try:
        opened = (tarfile.open(tmp, "w:gz", format=tarfile.PAX_FORMAT, compresslevel=6) if gz
                  else tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT))
        with opened as tar:
            data = manifest.to_json().encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
            for rel in [*extra, *(f.path for f in manifest.files)]:
                p = root / rel
                if p.is_file():
                    ti = tar.gettarinfo(str(p), arcname=rel)
                    ti.uid = ti.gid = 0
                    ti.uname = ti.gname = "root"
                    with open(p, "rb") as f:
                        tar.addfile(ti, f)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
