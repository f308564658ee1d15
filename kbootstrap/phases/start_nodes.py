"""Phase `node`: on joining workers, the kubelet (TLS bootstrap with the join token), kube-proxy and the
routes to the other nodes' pod subnets."""

from __future__ import annotations

from kbootstrap.engine.runner import Phase
from kbootstrap.engine.steps import ServicesStep, WaitStep
from kbootstrap.model.host import NODE_SERVICES
from kbootstrap.model.spec import Node
from kbootstrap.phases.configure_files import configure_files
from kbootstrap.phases.services import inputs_for
from kbootstrap.render import RenderContext
from kbootstrap.render.node import KUBELET_CLIENT
from kbootstrap.render.node_sync import TIMER as SYNC_TIMER

NAME = "node"  # the phase's name in workflow tables, --help, --skip-phases and the journal


def start_nodes(ctx: RenderContext, nodes: list[Node], binaries_by_node: dict[str, list]) -> Phase:
    return Phase(NAME, {
        n.name: [ServicesStep(list(NODE_SERVICES), inputs_for(ctx, n, binaries_by_node))]
        for n in nodes
    })


def refresh_nodes(ctx: RenderContext, nodes: list[Node], binaries_by_node: dict[str, list]) -> Phase | None:
    """Phase `nodes` (remove, certs renew): joined hosts that are not control planes take their files, and their
    kubelet and kube-proxy restart where an input changed (the pods keep running)."""
    if not nodes:
        return None
    files = configure_files(ctx, nodes)
    kubelets = start_nodes(ctx, [n for n in nodes if n in ctx.spec.kubelet_nodes], binaries_by_node)
    return Phase("nodes", {n.name: [*files.steps[n.name], *kubelets.steps.get(n.name, [])] for n in nodes})


def start_local_node(ctx: RenderContext, node: Node, binaries_by_node: dict[str, list], timeout: float) -> Phase:
    """A `join: local` worker: kube-proxy runs on the kubelet's client certificate, so it starts only once TLS
    bootstrap has written it (started earlier, it would fail and wait for systemd's restart); then the timer
    that keeps the node on the cluster's node profile."""
    inputs = inputs_for(ctx, node, binaries_by_node)
    return Phase(NAME, {node.name: [
        ServicesStep([s for s in NODE_SERVICES if s != "kube-proxy"], inputs),
        WaitStep("kubelet client certificate", ["test", "-s", KUBELET_CLIENT], timeout=timeout, interval=1,
                 what=f"{KUBELET_CLIENT} (TLS bootstrap: the token's CSR, approved by kube-controller-manager)"),
        ServicesStep(["kube-proxy", SYNC_TIMER], inputs),  # the timer's first run is one interval after the join
    ]})
