"""kbootstrap-csr-approver on every control plane, when some worker joins itself (`join: local`): it
approves those kubelets' serving-certificate CSRs whose names and addresses match nodes.json."""

from __future__ import annotations

import functools
import json
from importlib import resources

from kbootstrap.model.artifact import Artifact
from kbootstrap.model.spec import Node
from kbootstrap.pki.table import Hosts, receives
from kbootstrap.render.context import RenderContext
from kbootstrap.render.flags import K8S
from kbootstrap.render.templates import render_text

SERVICE = "kbootstrap-csr-approver"
PROGRAM = "/usr/local/lib/kbootstrap/csr_approver.py"
NODES_FILE = f"{K8S}/kbootstrap/nodes.json"


@functools.cache
def _program() -> bytes:
    """The approver's source, read once: a host is rendered several times a run."""
    return resources.files("kbootstrap").joinpath("hostside", "csr_approver.py").read_bytes()


def runs_approver(ctx: RenderContext, node: Node) -> bool:
    return receives(ctx.spec, Hosts.APPROVERS, node)


def approver_files(ctx: RenderContext, node: Node) -> list[Artifact]:
    if not runs_approver(ctx, node):
        return []
    # Only the `join: local` workers: the others hold serving certificates kbootstrap issued, and must not
    # get another one by CSR.
    nodes = {n.name: str(n.address) for n in ctx.spec.local_nodes}
    return [
        Artifact(PROGRAM, _program(), 0o755, restarts=(SERVICE,), component=SERVICE),
        Artifact(f"/etc/systemd/system/{SERVICE}.service", render_text("csr-approver/kbootstrap-csr-approver.service.j2"),
                 restarts=(SERVICE,), component=SERVICE),
        # Re-read on every pass: a worker added to the inventory needs no restart.
        Artifact(NODES_FILE, (json.dumps(nodes, indent=2, sort_keys=True) + "\n").encode(), component=SERVICE),
    ]
