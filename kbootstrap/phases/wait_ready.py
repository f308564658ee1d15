"""Phase `ready`: the joined nodes Ready, asked of the first control plane (join); on a node joining itself, its
kubelet's serving certificate, approved by kbootstrap-csr-approver (join --local)."""

from __future__ import annotations

from kbootstrap.engine.runner import Phase
from kbootstrap.engine.steps import WaitStep
from kbootstrap.model.spec import Node
from kbootstrap.phases.services import nodes_ready
from kbootstrap.render import RenderContext
from kbootstrap.render.node import KUBELET_SERVER

NAME = "ready"  # the phase's name in workflow tables, --help, --skip-phases and the journal


def nodes_ready_phase(ctx: RenderContext, nodes: list[Node], timeout: float) -> Phase:
    names = [n.name for n in nodes]
    return Phase(NAME, {ctx.spec.control_planes[0].name: [
        WaitStep("nodes Ready", nodes_ready(names), timeout=timeout, interval=3, what="nodes " + ", ".join(names))]})


def serving_cert_phase(node: Node, timeout: float) -> Phase:
    return Phase(NAME, {node.name: [
        WaitStep("kubelet serving certificate", ["test", "-s", KUBELET_SERVER], timeout=timeout, interval=2,
                 what=f"{KUBELET_SERVER} (approved by kbootstrap-csr-approver on the control planes; "
                      "`kubectl get csr` shows a Pending one and the approver's journal says why)")]})
