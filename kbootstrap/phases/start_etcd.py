"""Phase `etcd`: the etcd service on every member that runs etcd under systemd, then each member healthy.

Members start together (one phase, hosts in parallel) because `initial-cluster-state: new` waits for a
quorum; a member joining a running cluster is promoted from learner first. Stacked control planes of the
static-pod form run etcd as a static pod: the kubelet starts it in the control-plane phase, which waits
for its health there.
"""

from __future__ import annotations

from kbootstrap.engine.runner import Phase
from kbootstrap.engine.steps import ServicesStep
from kbootstrap.model.spec import Node
from kbootstrap.phases.add_etcd_members import member_ready_steps
from kbootstrap.phases.services import inputs_for
from kbootstrap.render import RenderContext
from kbootstrap.render.etcd import etcd_as_static_pod

NAME = "etcd"  # the phase's name in workflow tables, --help, --skip-phases and the journal


def start_etcd(ctx: RenderContext, nodes: list[Node], binaries_by_node: dict[str, list]) -> Phase:
    steps = {}
    for node in nodes:
        if not ctx.spec.is_etcd_member(node) or etcd_as_static_pod(ctx, node):
            continue
        inputs = inputs_for(ctx, node, binaries_by_node)
        steps[node.name] = [ServicesStep(["etcd"], {"etcd": inputs.get("etcd", set())}),
                            *member_ready_steps(ctx, node, timeout=120, what=f"etcd member {node.name}")]
    return Phase(NAME, steps)
