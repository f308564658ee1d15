"""Phase `cluster`, on the first control plane: the cluster-wide RBAC for node bootstrap and admins,
cluster-info for token discovery (and, with `join: local` workers, their node profile and RBAC), then the
given nodes Ready. With `join: local` workers, every control plane also starts kbootstrap-csr-approver.

`kubectl diff` is the probe, so a cluster that already has these objects is left alone (no change).
"""

from __future__ import annotations

from kbootstrap.engine.runner import Phase
from kbootstrap.engine.steps import CommandStep, ServicesStep, WaitStep
from kbootstrap.model.host import SUPER_ADMIN_CONF, kubectl
from kbootstrap.model.spec import Node
from kbootstrap.phases.services import inputs_for, nodes_ready
from kbootstrap.render import RenderContext
from kbootstrap.render.cluster_addons import addon_paths
from kbootstrap.render.csr_approver import SERVICE, runs_approver
from kbootstrap.transport.base import quote

NAME = "cluster"  # the phase's name in workflow tables, --help, --skip-phases and the journal

ROLE = "node-role.kubernetes.io/control-plane"
# Passes when each given node carries the control-plane label and its NoSchedule taint (others may too: a
# run over some control planes leaves the rest alone). Listed by selector, so the answer is always a list.
_MARKED = ('k="$1"; shift; marked=$($k get nodes -l ' + ROLE + ' -o jsonpath="{range .items[*]}{.metadata.name}'
           '{\\" \\"}{range .spec.taints[*]}{.key}:{.effect} {end}{\\"\\\\n\\"}{end}") || exit 1; '
           'for n; do printf "%s\\n" "$marked" | grep -q "^$n .*' + ROLE.replace(".", "\\.")
           + ':NoSchedule" || exit 1; done')


def _mark_control_planes(names: list[str]) -> CommandStep:
    """kubeadm's role label and taint: workloads go to workers (the labels are not the kubelet's to set)."""
    k = quote(kubectl())
    label = f"{k} label --overwrite node {' '.join(names)} {ROLE}="
    taint = f"{k} taint --overwrite node {' '.join(names)} {ROLE}:NoSchedule"
    return CommandStep("mark control planes", probe=["sh", "-c", _MARKED, "sh", k, *sorted(names)],
                       command=["sh", "-ec", f"{label} && {taint}"], detail=f"label and taint {ROLE}")


def _apply(paths: list[str]) -> CommandStep:
    """Server-side apply owns only the fields kbootstrap writes: bootstrapsigner's signatures in cluster-info
    stay, and the diff probe sees no change on a cluster that has these objects. One kubectl for all the
    files (a no-op run's probe is one process); applying them all again when one differs changes nothing else."""
    files = [a for p in paths for a in ("-f", p)]
    return CommandStep("apply cluster objects",
                       probe=kubectl("diff", "--server-side", *files, kubeconfig=SUPER_ADMIN_CONF),
                       command=kubectl("apply", "--server-side", *files, kubeconfig=SUPER_ADMIN_CONF),
                       detail=", ".join(p.rsplit("/", 1)[-1] for p in paths))


def bootstrap_cluster(ctx: RenderContext, nodes: list[Node], ready: list[str], binaries_by_node: dict[str, list],
                      timeout: float = 300) -> Phase:
    first = ctx.spec.control_planes[0]
    steps: dict[str, list] = {n.name: [ServicesStep([SERVICE], inputs_for(ctx, n, binaries_by_node))]
                              for n in nodes if runs_approver(ctx, n)}
    steps[first.name] = [
        _apply(addon_paths(ctx)),
        WaitStep("nodes Ready", nodes_ready(ready), timeout=timeout, interval=3, what="nodes " + ", ".join(ready)),
        _mark_control_planes(ready),
        *steps.get(first.name, []),
    ]
    return Phase(NAME, steps)
