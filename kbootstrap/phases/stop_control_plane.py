"""Phase `stop-control-plane` (etcd restore): kube-apiserver, kube-controller-manager and kube-scheduler
stopped on every control plane, so that nothing writes to etcd while it is replaced and nothing keeps a view
of the old data. `init`'s files and control-plane phases start them again."""

from __future__ import annotations

from kbootstrap.engine.runner import Phase
from kbootstrap.model.host import CONTROL_PLANE_SERVICES
from kbootstrap.model.spec import ControlPlaneForm, Node, Role
from kbootstrap.phases.services import stop_steps
from kbootstrap.render import RenderContext

NAME = "stop-control-plane"


def stop_control_plane(ctx: RenderContext, nodes: list[Node]) -> Phase:
    static = ctx.spec.cluster.control_plane_form is ControlPlaneForm.STATIC_POD
    return Phase(NAME, {n.name: stop_steps(static, list(CONTROL_PLANE_SERVICES), "the control plane")
                        for n in nodes if n.has(Role.CONTROL_PLANE)})
