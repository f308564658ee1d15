"""Phase `cluster`, on the first control plane: the cluster-wide RBAC for node bootstrap and admins, then
the given nodes Ready.

`kubectl diff` is the probe, so a cluster that already has these objects is left alone (no change).
"""

from __future__ import annotations

from ..render import RenderContext
from ..render.cluster_addons import BOOTSTRAP_RBAC
from ..runner import Phase
from ..steps import CommandStep, WaitStep
from ..transport.base import quote
from .services import SUPER_ADMIN_CONF, kubectl, nodes_ready

ROLE = "node-role.kubernetes.io/control-plane"
# Passes when each given node carries the control-plane label and its NoSchedule taint (others may too: a
# run over some control planes leaves the rest alone). Listed by selector, so the answer is always a list.
_MARKED = ('k="$1"; shift; marked=$($k get nodes -l ' + ROLE + ' -o jsonpath="{range .items[*]}{.metadata.name}'
           '{\\" \\"}{range .spec.taints[*]}{.key}:{.effect} {end}{\\"\\\\n\\"}{end}") || exit 1; '
           'for n; do printf "%s\\n" "$marked" | grep -q "^$n .*' + ROLE.replace(".", "\\.") + ':NoSchedule" || exit 1; done')


def _mark_control_planes(names: list[str]) -> CommandStep:
    """kubeadm's role label and taint: workloads go to workers (the labels are not the kubelet's to set)."""
    k = quote(kubectl())
    label = f"{k} label --overwrite node {' '.join(names)} {ROLE}="
    taint = f"{k} taint --overwrite node {' '.join(names)} {ROLE}:NoSchedule"
    return CommandStep("mark control planes", probe=["sh", "-c", _MARKED, "sh", k, *sorted(names)],
                       command=["sh", "-ec", f"{label} && {taint}"], detail=f"label and taint {ROLE}")


def bootstrap_cluster(ctx: RenderContext, ready: list[str], timeout: float = 300) -> Phase:
    first = ctx.spec.control_planes[0]
    return Phase("cluster", {first.name: [
        CommandStep("bootstrap RBAC", probe=kubectl("diff", "--server-side", "-f", BOOTSTRAP_RBAC, kubeconfig=SUPER_ADMIN_CONF),
                    command=kubectl("apply", "--server-side", "-f", BOOTSTRAP_RBAC, kubeconfig=SUPER_ADMIN_CONF),
                    detail=BOOTSTRAP_RBAC),
        WaitStep("nodes Ready", nodes_ready(ready), timeout=timeout, interval=3, what="nodes " + ", ".join(ready)),
        _mark_control_planes(ready),
    ]})
