"""Phase `runtime`: containerd, runc, crictl and the CNI plugins from the artifact bundle, the rendered
containerd configuration, containerd running, and the bundle's node images imported (the sandbox image).

Binaries are ordinary files to the engine: compared by sha256 on the host, written atomically, and a
changed binary restarts containerd like a changed config does.
"""

from __future__ import annotations

import tarfile
from functools import cache
from pathlib import Path

from ..artifact import Artifact
from ..artifacts.catalog import Kind
from ..artifacts.manifest import Manifest, ManifestFile
from ..render import RenderContext
from ..render.node import runtime_files
from ..runner import Phase
from ..spec import Node
from ..steps import CommandStep, FilesStep, ServicesStep

RUNTIME_COMPONENTS = ("containerd", "runc", "crictl", "cni-plugins")
IMAGES_DIR = "/var/lib/kbootstrap/images"
CRICTL = ["/usr/local/bin/crictl", "--runtime-endpoint", "unix:///run/containerd/containerd.sock"]


@cache
def _read(path: Path, member: str | None) -> bytes:
    """A bundle file's bytes (or one member of a release tarball), read once for all hosts."""
    if member is None:
        return path.read_bytes()
    with tarfile.open(path) as tar:
        f = tar.extractfile(member)
        if f is None:
            raise ValueError(f"{path}: no file {member}")
        return f.read()


def _binaries(bundle: Path, files: list[ManifestFile]) -> list[Artifact]:
    return [Artifact(i.dest, _read(bundle / f.path, i.member), i.mode, component=f.component)
            for f in files if f.kind in (Kind.BINARY, Kind.TARBALL) and f.component in RUNTIME_COMPONENTS
            for i in f.install]


def install_runtime(ctx: RenderContext, bundle: Path, manifest: Manifest, nodes: list[Node]) -> Phase:
    images = [f for f in manifest.files if f.kind == Kind.OCI_IMAGE and "node" in f.roles]
    # The same for every node: built once.
    binaries = _binaries(bundle, manifest.files)
    image_files = [Artifact(f"{IMAGES_DIR}/{Path(f.path).name}", _read(bundle / f.path, None), 0o644,
                            component="images") for f in images]
    steps = {}
    for node in nodes:
        if node not in ctx.spec.kubelet_nodes:
            continue
        rendered = runtime_files(ctx, node)
        inputs = {a.path for a in rendered + binaries}
        node_steps = [FilesStep(rendered + binaries + image_files), ServicesStep(["containerd"], {"containerd": inputs})]
        for f, a in zip(images, image_files):
            node_steps.append(CommandStep(
                f"import image {f.image}",
                probe=[*CRICTL, "inspecti", "-q", f.image],
                command=["/usr/local/bin/ctr", "-n", "k8s.io", "images", "import", a.path],
                detail=f"from {a.path}",
            ))
        steps[node.name] = node_steps
    return Phase("runtime", steps)
