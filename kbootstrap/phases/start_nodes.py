"""Phase `node`: on joining workers, the kubelet (TLS bootstrap with the join token), kube-proxy and the
routes to the other nodes' pod subnets."""

from __future__ import annotations

from ..render import RenderContext
from ..runner import Phase
from ..spec import Node
from ..steps import ServicesStep
from .services import NODE_SERVICES, inputs_for


def start_nodes(ctx: RenderContext, nodes: list[Node], binaries_by_node: dict[str, list]) -> Phase:
    return Phase("node", {
        n.name: [ServicesStep(NODE_SERVICES, inputs_for(ctx, n, binaries_by_node))]
        for n in nodes
    })
