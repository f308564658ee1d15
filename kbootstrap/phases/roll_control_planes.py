"""Phase `control-planes` (remove, certs renew): the control planes take their new files one at a time — for
`remove`, a stacked one's kube-apiserver `--etcd-servers` loses the removed member; for `certs renew`, the
certificates, which change the digest in the static pods' manifests or restart the services that read them —
and each is back before the next:
its static pods running the manifests now on disk (the kubelet starts a new instance when a manifest changes)
or its services restarted, etcd healthy, its apiserver's /readyz. The load balancers send requests to the
others meanwhile, so the API keeps answering. One phase a control plane, in inventory order."""

from __future__ import annotations

from kbootstrap.engine.runner import Phase
from kbootstrap.engine.steps import FilesStep, ServicesStep, Step, WaitAfterChange
from kbootstrap.model.host import CONTROL_PLANE_SERVICES, CRICTL, MANIFESTS, NODE_SERVICES
from kbootstrap.model.spec import ControlPlaneForm, Node, Role
from kbootstrap.phases.services import api_ready, etcd_health, inputs_for
from kbootstrap.pki.table import CSR_APPROVER
from kbootstrap.render import RenderContext, render_host
from kbootstrap.render.etcd import etcd_as_static_pod
from kbootstrap.transport.base import quote

NAME = "control-planes"


def static_pod_current(manifest: str, component: str) -> list[str]:
    """Passes once the running container of a static pod was created no earlier than its manifest was written:
    the kubelet has picked the manifest up (a changed manifest is a new pod; until then the old one answers)."""
    listed = quote([*CRICTL, "ps", "--name", f"^{component}$", "--state", "running", "-o", "json"])
    created = "grep -o '\"createdAt\": *\"[0-9]*\"' | grep -o '[0-9][0-9]*' | sort -n | tail -n 1"  # ns
    return ["sh", "-c", f'm=$(stat -c %Y {manifest}) && c=$({listed} | {created}) && test -n "$c" && '
            'test $((c / 1000000000)) -ge "$m"']


def roll_control_planes(ctx: RenderContext, nodes: list[Node], binaries_by_node: dict[str, list]) -> list[Phase]:
    spec = ctx.spec
    phases = []
    for cp in (n for n in nodes if n.has(Role.CONTROL_PLANE)):
        artifacts = render_host(ctx, cp)
        on_host = {a.path for a in artifacts}
        steps: list[Step] = [FilesStep(artifacts)]  # the services step below reloads systemd
        for a in artifacts:
            if a.path.startswith(f"{MANIFESTS}/"):
                steps.append(WaitAfterChange(f"{a.component} restarted", static_pod_current(a.path, a.component),
                                             watch={a.path}, timeout=120, interval=1,
                                             what=f"{a.component} on {cp.name} running {a.path}"))
        inputs = inputs_for(ctx, cp, binaries_by_node)
        services = list(NODE_SERVICES)
        if spec.cluster.control_plane_form is ControlPlaneForm.SYSTEMD:
            services = [*CONTROL_PLANE_SERVICES, *services]
        if spec.is_etcd_member(cp) and not etcd_as_static_pod(ctx, cp):
            services = ["etcd", *services]  # first: the apiserver restarts onto a member that answers
        services += [s for s in (CSR_APPROVER,) if s in inputs]  # only with `join: local` workers
        steps.append(ServicesStep(services, inputs))
        if spec.is_etcd_member(cp):
            what = f"etcd member {cp.name}" + (" (static pod)" if etcd_as_static_pod(ctx, cp) else "")
            steps.append(WaitAfterChange("etcd healthy", etcd_health(cp), watch=on_host, timeout=240, what=what))
        steps.append(WaitAfterChange("apiserver ready", api_ready(spec, cp), watch=on_host, timeout=240,
                                     what=f"kube-apiserver on {cp.name}"))
        phases.append(Phase(NAME, {cp.name: steps}))
    return phases
