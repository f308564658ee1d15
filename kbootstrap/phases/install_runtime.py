"""Phase `runtime`: containerd, runc, crictl and the CNI plugins from the artifact bundle, the rendered
containerd configuration, containerd running, and the bundle's node images imported (the sandbox image).

Binaries are ordinary files to the engine: compared by sha256 on the host, written atomically, and a
changed binary restarts containerd like a changed config does.
"""

from __future__ import annotations

from pathlib import Path

from kbootstrap.artifacts.manifest import Manifest, ManifestFile
from kbootstrap.engine.runner import Phase
from kbootstrap.engine.steps import FilesStep, ImagesStep, ServicesStep, Step
from kbootstrap.model.artifact import Artifact
from kbootstrap.model.host import CRICTL, CTR, RUNTIME_SERVICES
from kbootstrap.model.spec import Node
from kbootstrap.phases import bundle_payload
from kbootstrap.render import RenderContext
from kbootstrap.render.node import runtime_files

NAME = "runtime"  # the phase's name in workflow tables, --help, --skip-phases and the journal

RUNTIME_COMPONENTS = ("containerd", "runc", "crictl", "cni-plugins")


def import_steps(images: list[tuple[ManifestFile, Artifact]]) -> list[Step]:
    """Import each image archive into containerd's k8s.io namespace unless the CRI already lists it."""
    if not images:
        return []
    return [ImagesStep(CRICTL, CTR, {str(f.image): a.path for f, a in images})]


def install_runtime(ctx: RenderContext, bundle: Path, manifest: Manifest, nodes: list[Node]) -> Phase:
    spec = ctx.spec
    steps: dict[str, list[Step]] = {}
    for node in nodes:
        if node not in spec.kubelet_nodes:
            continue
        rendered = runtime_files(ctx, node)
        binaries = bundle_payload.binaries(spec, node, bundle, manifest, RUNTIME_COMPONENTS)
        images = bundle_payload.images(spec, node, bundle, manifest, roles=("node",))
        inputs = {a.path for a in rendered + binaries}
        steps[node.name] = [FilesStep(rendered + binaries + [a for _, a in images]),
                            ServicesStep(list(RUNTIME_SERVICES), dict.fromkeys(RUNTIME_SERVICES, inputs)),
                            *import_steps(images)]
    return Phase(NAME, steps)
