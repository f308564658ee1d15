"""Phase `control-plane`: on every control plane, the kubelet (which runs the static pods) or the systemd
services of kube-apiserver, kube-controller-manager and kube-scheduler; kube-proxy and the pod routes; then
etcd (stacked) and the local apiserver healthy, then the API answering through the load balancer.

All control planes start together: kbootstrap made every certificate up front, so none waits for a join.
"""

from __future__ import annotations

from kbootstrap.engine.runner import Phase
from kbootstrap.engine.steps import ServicesStep, Step, WaitStep
from kbootstrap.model.host import CONTROL_PLANE_SERVICES, NODE_SERVICES
from kbootstrap.model.spec import ControlPlaneForm, Node, Role
from kbootstrap.phases.add_etcd_members import member_ready_steps
from kbootstrap.phases.services import api_ready, inputs_for
from kbootstrap.render import RenderContext
from kbootstrap.render.etcd import etcd_as_static_pod

NAME = "control-plane"  # the phase's name in workflow tables, --help, --skip-phases and the journal



def start_control_plane(ctx: RenderContext, nodes: list[Node], binaries_by_node: dict[str, list]) -> Phase:
    spec = ctx.spec
    steps: dict[str, list[Step]] = {}
    for node in nodes:
        if not node.has(Role.CONTROL_PLANE):
            continue
        inputs = inputs_for(ctx, node, binaries_by_node)
        services = list(NODE_SERVICES)
        if spec.cluster.control_plane_form is ControlPlaneForm.SYSTEMD:
            services = [*CONTROL_PLANE_SERVICES, *services]
        node_steps: list[Step] = [ServicesStep(services, inputs)]
        if etcd_as_static_pod(ctx, node):
            node_steps += member_ready_steps(ctx, node, timeout=240, what=f"etcd member {node.name} (static pod)")
        node_steps += [
            WaitStep("apiserver ready", api_ready(spec, node), timeout=240, what=f"kube-apiserver on {node.name}"),
            WaitStep("API through the load balancer", api_ready(spec), timeout=120, what=spec.api_server_url),
        ]
        steps[node.name] = node_steps
    return Phase(NAME, steps)
