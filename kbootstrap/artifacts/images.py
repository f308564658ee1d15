"""Minimal OCI images, built locally: an OCI image layout in one tar (`oci-layout`, `index.json`, `blobs/sha256/…`),
the form `ctr -n k8s.io images import FILE` reads.

An image here is one gzip layer holding a few static files, a config (entrypoint, user, env, rootfs diff_id) and a
manifest; `index.json` names it with `io.containerd.image.name` (the full reference containerd uses) and
`org.opencontainers.image.ref.name` (the tag, per the OCI spec). Every byte is deterministic (mtime 0, uid 0,
sorted entries, gzip without a timestamp): the same inputs give the same digests.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from kbootstrap.artifacts.errors import ArtifactError

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
CREATED = "1970-01-01T00:00:00Z"
PAUSE_SOURCE = Path(__file__).resolve().parent / "pause" / "pause.c"


@dataclass(frozen=True)
class LayerFile:
    path: str  # absolute path inside the image, e.g. /usr/local/bin/etcd
    data: bytes = b""
    mode: int = 0o755
    directory: bool = False


@dataclass(frozen=True)
class ImageSpec:
    ref: str  # registry.k8s.io/pause:3.10.1
    files: tuple[LayerFile, ...]
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    user: str = ""
    env: tuple[str, ...] = ("PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",)
    arch: str = "amd64"
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def tag(self) -> str:
        return self.ref.rsplit(":", 1)[1]


def _canonical(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def layer_tar(files: tuple[LayerFile, ...]) -> bytes:
    """An uncompressed, deterministic layer tar; parent directories are added (0755) as needed."""
    entries: dict[str, LayerFile] = {}
    for f in files:
        p = PurePosixPath(f.path)
        if not p.is_absolute() or ".." in p.parts:
            raise ArtifactError(f"image layer path must be absolute and plain: {f.path!r}")
        for parent in reversed(p.parents[:-1]):
            entries.setdefault(str(parent).lstrip("/"), LayerFile(str(parent), mode=0o755, directory=True))
        entries[str(p).lstrip("/")] = f
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(entries):
            f = entries[name]
            ti = tarfile.TarInfo(name + ("/" if f.directory else ""))
            ti.mode, ti.mtime, ti.uid, ti.gid, ti.uname, ti.gname = f.mode, 0, 0, 0, "", ""
            if f.directory:
                ti.type = tarfile.DIRTYPE
                tar.addfile(ti)
            else:
                ti.size = len(f.data)
                tar.addfile(ti, io.BytesIO(f.data))
    return buf.getvalue()


def build_image_archive(spec: ImageSpec, out: Path) -> str:
    """Write `spec` as an OCI layout tar at `out` (atomically); returns the manifest digest."""
    raw = layer_tar(spec.files)
    gz = io.BytesIO()
    with gzip.GzipFile(fileobj=gz, mode="wb", mtime=0, compresslevel=9) as g:
        g.write(raw)
    layer = gz.getvalue()
    diff_id = "sha256:" + hashlib.sha256(raw).hexdigest()
    layer_digest = "sha256:" + hashlib.sha256(layer).hexdigest()
    cfg: dict = {"Env": list(spec.env)}
    if spec.entrypoint:
        cfg["Entrypoint"] = list(spec.entrypoint)
    if spec.cmd:
        cfg["Cmd"] = list(spec.cmd)
    if spec.user:
        cfg["User"] = spec.user
    if spec.labels:
        cfg["Labels"] = dict(spec.labels)
    config = _canonical({
        "architecture": spec.arch, "os": "linux", "created": CREATED, "config": cfg,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": CREATED, "created_by": "kbootstrap artifacts (minimal OCI image)"}],
    })
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    manifest = _canonical({
        "schemaVersion": 2, "mediaType": MEDIA_MANIFEST,
        "config": {"mediaType": MEDIA_CONFIG, "digest": config_digest, "size": len(config)},
        "layers": [{"mediaType": MEDIA_LAYER, "digest": layer_digest, "size": len(layer)}],
    })
    manifest_digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    index = _canonical({
        "schemaVersion": 2, "mediaType": MEDIA_INDEX,
        "manifests": [{
            "mediaType": MEDIA_MANIFEST, "digest": manifest_digest, "size": len(manifest),
            "platform": {"architecture": spec.arch, "os": "linux"},
            "annotations": {"io.containerd.image.name": spec.ref, "org.opencontainers.image.ref.name": spec.tag},
        }],
    })
    members = [
        ("oci-layout", _canonical({"imageLayoutVersion": "1.0.0"})),
        ("index.json", index),
        (f"blobs/sha256/{manifest_digest[7:]}", manifest),
        (f"blobs/sha256/{config_digest[7:]}", config),
        (f"blobs/sha256/{layer_digest[7:]}", layer),
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
    try:
        with os.fdopen(fd, "wb") as f, tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for d in ("blobs", "blobs/sha256"):
                ti = tarfile.TarInfo(d + "/")
                ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, 0
                tar.addfile(ti)
            for name, data in members:
                ti = tarfile.TarInfo(name)
                ti.size, ti.mode, ti.mtime = len(data), 0o644, 0
                tar.addfile(ti, io.BytesIO(data))
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return manifest_digest


def build_pause_binary(out: Path, version: str) -> Path:
    """Compile pause.c statically with gcc (the upstream way: a static C binary)."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise ArtifactError("building the pause image needs gcc (apt-get install gcc libc6-dev)")
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [cc, "-Os", "-Wall", "-static", f'-DPAUSE_VERSION="{version}"', "-o", str(out), str(PAUSE_SOURCE)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise ArtifactError(f"compiling pause failed: {' '.join(cmd)}\n{r.stderr}")
    subprocess.run(["strip", str(out)], capture_output=True)
    return out


def pause_image(ref: str, pause_binary: bytes) -> ImageSpec:
    """registry.k8s.io/pause as upstream builds it: /pause, run as 65535:65535."""
    return ImageSpec(ref, (LayerFile("/pause", pause_binary),), entrypoint=("/pause",), user="65535:65535", env=())


def binary_image(ref: str, binaries: dict[str, bytes]) -> ImageSpec:
    """A static-pod image: static binaries in /usr/local/bin (on PATH), a /tmp, no shell."""
    files = [LayerFile(f"/usr/local/bin/{name}", data) for name, data in sorted(binaries.items())]
    files.append(LayerFile("/tmp", mode=0o1777, directory=True))
    first = sorted(binaries)[0] if len(binaries) == 1 else ""
    return ImageSpec(ref, tuple(files), entrypoint=(f"/usr/local/bin/{first}",) if first else ())
