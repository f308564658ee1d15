"""Phase `binaries`: the Kubernetes and etcd binaries each node's roles need, and for the static-pod form
the control-plane (and stacked etcd) images imported into containerd.

Nothing is started here: the service phases start what they own once every file is in place.
"""

from __future__ import annotations

from pathlib import Path

from kbootstrap.artifacts.manifest import Manifest
from kbootstrap.engine.runner import Phase
from kbootstrap.engine.steps import FilesStep
from kbootstrap.model.spec import Node
from kbootstrap.phases import bundle_payload
from kbootstrap.phases.install_runtime import RUNTIME_COMPONENTS, import_steps
from kbootstrap.render import RenderContext

NAME = "binaries"  # the phase's name in workflow tables, --help, --skip-phases and the journal


def install_kubernetes(ctx: RenderContext, bundle: Path, manifest: Manifest, nodes: list[Node]) -> Phase:
    spec = ctx.spec
    components = tuple(sorted({f.component for f in manifest.files} - set(RUNTIME_COMPONENTS)))
    steps = {}
    for node in nodes:
        binaries = bundle_payload.binaries(spec, node, bundle, manifest, components)
        images = bundle_payload.images(spec, node, bundle, manifest, roles=("control-plane", "etcd"))
        if binaries or images:
            steps[node.name] = [FilesStep(binaries + [a for _, a in images]), *import_steps(images)]
    return Phase(NAME, steps)
