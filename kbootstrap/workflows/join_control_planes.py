"""`kbootstrap join --control-plane`: control planes added to the inventory after `init`.

`init` made every certificate the inventory names, so a control plane added to the inventory later gets
its certificates the same way; what is new is the rest of the cluster making room for it:

- stacked: its etcd member is recorded (etcd_members), announced to the running cluster as a learner, started
  with `initial-cluster-state: existing`, then promoted. One member at a time: etcd allows one learner.
- the load balancers get it as a backend (haproxy reloads; keepalived and the VIP stay);
- every node gets the route to its pod subnet (the pod-routes unit, on the workers that already joined too).

Nothing else changes on the running members: their etcd and apiserver flags come from the record, not
from the inventory, so they are not restarted. Then it is one more `init` run over the whole control side.
"""

from __future__ import annotations

from kbootstrap.errors import Refused
from kbootstrap.model.etcd_members import MembersRecord
from kbootstrap.model.spec import ClusterSpec, Node, Role
from kbootstrap.workflows.init_cluster import init_nodes


class JoinControlPlaneError(Refused):
    pass


def members_to_add(spec: ClusterSpec, record: MembersRecord, selected: list[Node]) -> list[Node]:
    """The stacked control planes among `selected` whose etcd member the running cluster lacks, checked
    before any host is touched."""
    if not record.members:
        raise JoinControlPlaneError(f"no etcd member is recorded in {record.path}: this cluster has not been made "
                                    "with `kbootstrap init` yet (or it was reset)")
    new = record.unrecorded(spec)
    not_cp = [n.name for n in new if not n.has(Role.CONTROL_PLANE)]
    if not_cp:
        raise JoinControlPlaneError(f"{', '.join(not_cp)}: adding a host to a running external etcd cluster is not "
                                    "supported yet (only control planes, whose etcd is stacked)")
    first = spec.control_planes[0]
    if first in new:
        raise JoinControlPlaneError(f"{first.name} is the first control plane of the inventory but not yet in the "
                                    "cluster: list a control plane that `init` made first (tokens and cluster-wide "
                                    "objects go through it)")
    return [n for n in new if n in selected]


def control_side(spec: ClusterSpec, record: MembersRecord) -> list[Node]:
    """What one `init` run works on, leaving out etcd members not recorded yet (added one per run)."""
    later = record.unrecorded(spec)
    return [n for n in init_nodes(spec, spec.nodes) if n not in later]
