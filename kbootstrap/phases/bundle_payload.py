"""Bundle files as Artifacts for hosts: which files a node needs, compared by the digests of the verified
bundle and read only when a host needs one written.

`load_bundle` verifies every file against the manifest before any host is contacted (a tampered or truncated
bundle stops the run with nothing installed anywhere); a file's content is checked against the manifest again
when it is read to be sent, so a file changed after that check is never installed.
"""

from __future__ import annotations

import hashlib
import tarfile
from functools import cache
from pathlib import Path

from kbootstrap.artifacts.catalog import Kind
from kbootstrap.artifacts.errors import ArtifactError
from kbootstrap.artifacts.manifest import Manifest, ManifestFile
from kbootstrap.errors import ExitCode
from kbootstrap.model.artifact import Artifact, Source
from kbootstrap.model.spec import ClusterSpec, ControlPlaneForm, Node, Role

IMAGES_DIR = "/var/lib/kbootstrap/images"
CONTROL_PLANE_BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")


@cache
def _verified(path: Path, sha256: str) -> bytes:
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ArtifactError(f"{path}: sha256 does not match the bundle manifest (tampered or corrupted); "
                            "nothing was installed. Re-create the bundle or run `kbootstrap artifacts verify`.")
    return data


@cache
def _member(path: Path, sha256: str, member: str) -> bytes:
    _verified(path, sha256)
    with tarfile.open(path) as tar:
        f = tar.extractfile(member)
        if f is None:
            raise ArtifactError(f"{path}: no file {member}")
        return f.read()


def read(bundle: Path, f: ManifestFile, member: str | None = None) -> bytes:
    return _verified(bundle / f.path, f.sha256) if member is None else _member(bundle / f.path, f.sha256, member)


@cache
def _digests():
    from kbootstrap.artifacts.digests import default_cache

    return default_cache()


def source(bundle: Path, f: ManifestFile, member: str | None = None) -> Source:
    """A bundle file (or a file inside one of its archives) as content read when needed, digest known now."""
    if member is None:
        return Source(f.sha256, f.size, lambda: read(bundle, f))

    def measure() -> tuple[str, int]:
        data = read(bundle, f, member)
        return hashlib.sha256(data).hexdigest(), len(data)

    cache = _digests()
    digest, size = cache.member(f.sha256, member, measure)
    cache.save()
    return Source(digest, size, lambda: read(bundle, f, member))


def artifact(bundle: Path, f: ManifestFile, dest: str, mode: int = 0o644, member: str | None = None,
             component: str = "") -> Artifact:
    return Artifact(dest, b"", mode, component=component or f.component, source=source(bundle, f, member))


def needs(spec: ClusterSpec, node: Node, f: ManifestFile) -> bool:
    """Whether `node` needs bundle file `f`, from its roles and the control-plane form."""
    static = spec.cluster.control_plane_form is ControlPlaneForm.STATIC_POD
    runs_kubelet = node in spec.kubelet_nodes
    if f.kind == Kind.OCI_IMAGE:
        if "node" in f.roles:
            return runs_kubelet
        if "etcd" in f.roles:  # etcd as a static pod on stacked control planes of the static-pod form
            return static and node.has(Role.CONTROL_PLANE) and spec.is_etcd_member(node)
        return static and node.has(Role.CONTROL_PLANE) and "control-plane" in f.roles
    if f.component in CONTROL_PLANE_BINARIES:
        return not static and node.has(Role.CONTROL_PLANE)
    if "node" in f.roles and runs_kubelet:
        return True
    if "etcd" in f.roles and spec.is_etcd_member(node):
        return True  # etcdctl checks health in both forms
    return "control-plane" in f.roles and node.has(Role.CONTROL_PLANE)


def binaries(spec: ClusterSpec, node: Node, bundle: Path, manifest: Manifest,
             components: tuple[str, ...] | None = None) -> list[Artifact]:
    return [artifact(bundle, f, i.dest, i.mode, i.member)
            for f in manifest.files
            if f.kind in (Kind.BINARY, Kind.TARBALL) and needs(spec, node, f)
            and (components is None or f.component in components)
            for i in f.install]


def images(spec: ClusterSpec, node: Node, bundle: Path, manifest: Manifest,
           roles: tuple[str, ...]) -> list[tuple[ManifestFile, Artifact]]:
    return [(f, artifact(bundle, f, f"{IMAGES_DIR}/{Path(f.path).name}", component="images"))
            for f in manifest.files
            if f.kind == Kind.OCI_IMAGE and needs(spec, node, f) and set(f.roles) & set(roles)]


def load_bundle(spec: ClusterSpec, override: Path | None) -> tuple[Path, Manifest]:
    """The bundle init/join install from: --artifacts, else the inventory's `artifacts`, else the cache."""
    from kbootstrap.artifacts.bundle import open_bundle
    from kbootstrap.artifacts.fetch import default_cache_dir
    from kbootstrap.artifacts.manifest import MANIFEST

    path = override or spec.artifacts or default_cache_dir(spec.cluster.kubernetes_version)
    if not (path / MANIFEST).is_file():
        raise BundleRefused(
            f"no artifact bundle at {path} ({MANIFEST} missing): pass --artifacts DIR, set `artifacts:` in the "
            f"inventory, or run `kbootstrap artifacts fetch --version {spec.cluster.kubernetes_version}`")
    try:
        manifest = open_bundle(path, _digests())  # the run's one digest cache (source() reads members' too)
    except ArtifactError as e:  # a tampered or broken bundle: refused before any host is contacted
        raise BundleRefused(str(e)) from None
    if manifest.kubernetes != spec.cluster.kubernetes_version:
        raise BundleRefused(f"{path} holds Kubernetes {manifest.kubernetes} but cluster.kubernetes_version is "
                            f"{spec.cluster.kubernetes_version}: use a bundle of that version")
    return path, manifest


class BundleRefused(ArtifactError):
    """The bundle init or join would install from is missing, of another version, or does not verify: refused
    before any host is contacted (exit 2)."""

    exit_code = ExitCode.REFUSED
