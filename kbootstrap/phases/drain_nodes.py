"""Phase `drain` (remove): each removed node with a kubelet cordoned and drained — evictions, so
PodDisruptionBudgets are respected, bounded in time — then its Node object deleted, through the apiserver of a
control plane that stays. A node that cannot be reached (`--unreachable`) is not drained: its pods cannot stop
there, and once its Node is gone the pod garbage collector deletes them and their controllers replace them."""

from __future__ import annotations

from kbootstrap.engine.runner import Phase
from kbootstrap.engine.steps import ShellStep, Step
from kbootstrap.model import ports
from kbootstrap.model.host import kubectl
from kbootstrap.model.spec import ClusterSpec, Node
from kbootstrap.transport.base import quote

NAME = "drain"
DRAIN_TIMEOUT = 100  # seconds kubectl drain may wait for evictions (a PodDisruptionBudget can hold them)


def drain_nodes(spec: ClusterSpec, nodes: list[Node], through: Node, unreachable: set[str]) -> Phase | None:
    api = f"https://{through.address}:{ports.APISERVER}"  # its own apiserver: the load balancers change too
    steps: list[Step] = []
    for n in nodes:
        if n not in spec.kubelet_nodes:
            continue
        get = quote(kubectl("get", "node", n.name, "--ignore-not-found", "-o", "name", server=api))
        delete = quote(kubectl("delete", "node", n.name, "--ignore-not-found", server=api))
        if n.name in unreachable:
            command, label = delete, f"node/{n.name} deleted (unreachable: not drained)"
        else:
            drain = quote(kubectl("drain", n.name, "--ignore-daemonsets", "--delete-emptydir-data",
                                  f"--timeout={DRAIN_TIMEOUT}s", server=api))
            # kubectl's own request timeout is 5 s; drain's evictions run under --timeout.
            command, label = f"{drain} && {delete}", f"node/{n.name} cordoned, drained, deleted"
        # An API that does not answer fails the probe: never read as "already gone".
        steps.append(ShellStep(f"take {n.name} out of the cluster", probe=f'out=$({get}) && test -z "$out"',
                               command=command, label=label, detail=f"through {through.name}"))
    return Phase(NAME, {through.name: steps}) if steps else None
