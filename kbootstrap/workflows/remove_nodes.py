"""`kbootstrap remove --host NODE…`: nodes taken out of a running cluster, with the API answering throughout.

The table: `drain` (cordon, drain with PodDisruptionBudgets respected, delete the Node), `loadbalancers`
(haproxy without the removed control planes, a reload), `etcd-member` (its member removed by ID through one
that stays), `reset-*` (reset's four phases, on the removed hosts that can be reached), `control-planes` (the
others' files as rendered without the removed nodes, one control plane at a time, each ready before the next)
and `nodes` (the other nodes' pod routes and /etc/hosts). Everything after the drain is rendered from the
inventory without the removed nodes, every pod subnet pinned where it is, so nothing else moves.

Refused before any host changes (removal_problem, quorum_problem): a removal that leaves no control plane,
removes a load balancer, more than one etcd member at once (etcd changes membership one member at a time), or
the last member; or one whose staying members would not hold a quorum (counted from their health, read live).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from kbootstrap.engine.runner import Phase
from kbootstrap.engine.session import Session
from kbootstrap.errors import KbootstrapError, Refused, SpecError
from kbootstrap.model.etcd_members import client_url
from kbootstrap.model.host import etcdctl
from kbootstrap.model.spec import ClusterSpec, Node, Role, build_spec
from kbootstrap.phases import configure_files, drain_nodes, remove_etcd_member, roll_control_planes, start_nodes
from kbootstrap.phases import reset as r
from kbootstrap.phases.start_loadbalancers import start_loadbalancers
from kbootstrap.render import RenderContext
from kbootstrap.workflows.table import Inputs, PhaseSpec, Workflow


class RemovalRefused(Refused):
    pass


def removal_problem(spec: ClusterSpec, removed: list[Node]) -> str | None:
    """Why removing `removed` is refused whatever the hosts' state, or None."""
    if not removed:
        return "no node named"
    lbs = [n.name for n in removed if n.has(Role.LOADBALANCER)]
    if lbs:
        return (f"{', '.join(lbs)}: removing a load balancer is not supported yet (the API's address is theirs); "
                "change the inventory and run `kbootstrap init`")
    if all(cp in removed for cp in spec.control_planes):
        return "it would leave no control plane: the cluster would be gone (that is `kbootstrap reset`)"
    members = [m for m in spec.etcd_members if m in removed]
    if len(members) > 1:
        return (f"{', '.join(m.name for m in members)}: more than one etcd member; etcd changes its membership one "
                "member at a time, so remove them one per run")
    if members and len(spec.etcd_members) == 1:
        return f"{members[0].name} is the only etcd member: removing it would lose every object of the cluster"
    return None


def staying(spec: ClusterSpec, removed: list[Node]) -> ClusterSpec:
    """The inventory without the removed nodes, each staying node's pod subnet pinned (subnets are allocated in
    inventory order, so removing a node would move the ones after it)."""
    subnets = spec.pod_subnets
    data = spec.model_dump(mode="json", exclude={"source", "warnings"}, exclude_none=True)
    data["nodes"] = [{**d, **({"pod_subnet": str(subnets[d["name"]])} if d["name"] in subnets else {})}
                     for d in data["nodes"] if d["name"] not in {n.name for n in removed}]
    try:
        return build_spec(data, source=spec.source)
    except SpecError as e:
        raise RemovalRefused(f"without {', '.join(n.name for n in removed)} the inventory would not hold: "
                             + "; ".join(str(p) for p in e.problems)) from None


def moved_subnets(spec: ClusterSpec, removed: list[Node]) -> dict[str, str]:
    """node -> its pod subnet, for the staying nodes whose subnet would move once the removed nodes are deleted
    from the inventory file (the lines to add with them)."""
    data = spec.model_dump(mode="json", exclude={"source", "warnings"}, exclude_none=True)
    data["nodes"] = [d for d in data["nodes"] if d["name"] not in {n.name for n in removed}]
    try:
        after = build_spec(data, source=spec.source).pod_subnets
    except SpecError:
        return {}
    return {name: str(s) for name, s in spec.pod_subnets.items() if name in after and after[name] != s}


def quorum_problem(s: Session, spec: ClusterSpec, removed: list[Node], through: Node) -> str | None:
    """Removing an etcd member must leave a quorum of healthy members among those that stay: read their health
    through `through` (one command)."""
    if not any(m in removed for m in spec.etcd_members):
        return None
    stay = [m for m in spec.etcd_members if m not in removed]
    argv = etcdctl([client_url(m) for m in stay], "endpoint", "health", "-w", "json")
    try:
        res = s.transports[through.name].run(argv, sudo=True, timeout=60)
    except KbootstrapError as e:  # the member asked cannot be reached: its health cannot be counted
        return f"the health of the etcd members that would stay cannot be read through {through.name}: {e}"
    try:
        health = {h["endpoint"]: h.get("health") for h in json.loads(res.stdout or b"[]")}
    except ValueError:
        health = {}
    healthy = [m.name for m in stay if health.get(client_url(m))]
    need = len(stay) // 2 + 1
    if len(healthy) < need:
        sick = [m.name for m in stay if m.name not in healthy]
        return (f"the etcd members that would stay ({', '.join(m.name for m in stay)}) need {need} healthy for a "
                f"quorum; {len(healthy)} are ({', '.join(sick)} not): removing now would stop the cluster")
    return None


@dataclass
class RemovePlan:
    before: ClusterSpec  # the inventory as written (the removed nodes in it)
    removed: list[Node]
    through: Node  # a control plane that stays: the API requests go to its apiserver
    after: RenderContext  # renders the staying hosts as if the removed nodes were not in the inventory
    unreachable: set[str] = field(default_factory=set)
    unjoined: set[str] = field(default_factory=set)  # workers of the inventory without a kubelet certificate: left alone

    @property
    def member(self) -> Node | None:
        return next((n for n in self.removed if n in self.before.etcd_members), None)

    def member_through(self) -> Node:
        return next(m for m in self.before.etcd_members if m not in self.removed)

    def reachable(self) -> list[Node]:
        return [n for n in self.removed if n.name not in self.unreachable and not n.joins_locally]


def _reset(build):
    """One of reset's phases on the removed hosts that can be reached, under a name of this table. Separate
    phases, as in `reset`: each reads its hosts after the one before changed them (stopping the pod routes
    service removes its routes)."""

    def phase(i: Inputs) -> Phase | None:
        nodes = i.remove.reachable()
        built = build(i.ctx, nodes) if nodes else None
        return Phase(f"reset-{built.name}", built.steps) if built is not None and built.steps else None

    return phase


def _loadbalancers(i: Inputs) -> Phase | None:
    after = i.remove.after
    lbs = after.spec.loadbalancers
    if not lbs:
        return None
    files, services = configure_files.configure_files(after, lbs), start_loadbalancers(after, lbs)
    return Phase("loadbalancers", {n.name: [*files.steps[n.name], *services.steps.get(n.name, [])] for n in lbs})


def _nodes(i: Inputs) -> Phase | None:
    after = i.remove.after
    rest = [n for n in after.spec.connected_nodes if not n.has(Role.CONTROL_PLANE) and not n.has(Role.LOADBALANCER)
            and n.name not in i.remove.unjoined]
    return start_nodes.refresh_nodes(after, rest, i.binaries)


REMOVE = Workflow("remove", (
    PhaseSpec(drain_nodes.NAME, "cordon and drain (PodDisruptionBudgets respected, bounded), then delete the Node; "
              "unreachable nodes: deleted only", lambda i: drain_nodes.drain_nodes(
                  i.ctx.spec, i.remove.removed, i.remove.through, i.remove.unreachable)),
    PhaseSpec("loadbalancers", "haproxy without the removed control planes (a reload: connections stay)",
              _loadbalancers),
    PhaseSpec(remove_etcd_member.NAME, "the removed member's etcd member removed by ID, through one that stays",
              lambda i: remove_etcd_member.remove_etcd_member(i.remove.member, i.remove.member_through())),
    *(PhaseSpec(f"reset-{name}", f"the removed hosts that can be reached: reset's `{name}`", _reset(build))
      for name, build in ((r.STOP, r.stop_phase), (r.CONTAINERS, r.containers_phase), (r.FILES, r.files_phase),
                          (r.NETWORK, r.network_phase))),
    PhaseSpec(roll_control_planes.NAME, "one control plane at a time: files without the removed nodes, its "
              "components restarted on them and ready before the next",
              lambda i: roll_control_planes.roll_control_planes(i.remove.after, i.remove.after.spec.control_planes,
                                                                i.binaries)),
    PhaseSpec("nodes", "the other nodes' pod routes and /etc/hosts", _nodes),
))
