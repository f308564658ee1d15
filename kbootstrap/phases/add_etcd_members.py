"""Phase `etcd-members`: a member added to a running etcd cluster (a stacked control plane joined later) is
announced to it before it starts, as a learner, through a member that `init` started.

A learner takes no part in quorum until it has caught up, so adding it never lowers the cluster's fault
tolerance (a voting member added to 3 would make 4, quorum 3, with one of them not started yet). Once it
runs, `promote_step` makes it a voting member (etcd accepts that only when it is in sync); the service
phases do that on the member itself, before waiting for its health.
"""

from __future__ import annotations

from kbootstrap.engine.runner import Phase
from kbootstrap.engine.steps import CommandStep, RetryStep, Step, WaitStep
from kbootstrap.model.etcd_members import client_url, peer_url
from kbootstrap.model.host import etcdctl
from kbootstrap.model.spec import Node
from kbootstrap.phases.services import etcd_health
from kbootstrap.render import RenderContext
from kbootstrap.transport.base import quote

NAME = "etcd-members"  # the phase's name in workflow tables, --help, --skip-phases and the journal

# `etcdctl member list` lines: ID, STATUS, NAME, PEER ADDRS, CLIENT ADDRS, IS LEARNER (an unstarted member
# has no name yet, so members are matched by their peer URL).
FIELD = "awk -F', ' -v u=\"$2\" '$4 == u {print $%s; f=1} END {exit !f}'"


def is_joining(ctx: RenderContext, node: Node) -> bool:
    """An etcd member that joined a running cluster rather than starting it."""
    return ctx.spec.is_etcd_member(node) and ctx.etcd_first_start(node).state == "existing"


def _members_through(ctx: RenderContext, node: Node) -> list[str]:
    """Client URLs of the members `node` joined (itself excluded: a learner serves no member commands)."""
    members = {m.name: m for m in ctx.spec.etcd_members}
    return [client_url(members[name]) for name in ctx.etcd_first_start(node).initial_cluster
            if name != node.name and name in members]


def add_etcd_members(ctx: RenderContext, nodes: list[Node]) -> Phase | None:
    """None when no member among `nodes` joined later (or none that init started is among them to ask)."""
    through = next((m for m in ctx.spec.etcd_members if m in nodes and ctx.etcd_first_start(m).state == "new"), None)
    if through is None:
        return None
    steps: list[Step] = []
    for node in (n for n in nodes if is_joining(ctx, n)):
        ctl = quote(etcdctl(_members_through(ctx, node)))
        listed = f'{ctl} member list | {FIELD % 1} >/dev/null'
        steps.append(CommandStep(
            f"add etcd member {node.name}", probe=["sh", "-c", listed, "sh", node.name, peer_url(node)],
            command=["sh", "-c", f'{ctl} member add "$1" --learner --peer-urls="$2"', "sh", node.name, peer_url(node)],
            detail=f"{node.name} ({peer_url(node)}) as a learner"))
    return Phase(NAME, {through.name: steps}) if steps else None


def promote_step(ctx: RenderContext, node: Node, timeout: float = 240) -> Step:
    """Make the learner `node` a voting member, retried until it has caught up; on the member itself."""
    ctl = quote(etcdctl(_members_through(ctx, node)))
    voter = f'test "$({ctl} member list | {FIELD % 6})" = false'
    promote = f'id=$({ctl} member list | {FIELD % 1}) && {ctl} member promote "$id"'
    return RetryStep("promote etcd member", probe=["sh", "-c", voter, "sh", node.name, peer_url(node)],
                     command=["sh", "-c", promote, "sh", node.name, peer_url(node)], timeout=timeout, interval=3,
                     detail=f"{node.name}: learner to voting member, once in sync")


def member_ready_steps(ctx: RenderContext, node: Node, timeout: float, what: str) -> list[Step]:
    """After its etcd started (service or static pod): a joining member promoted, then the member healthy."""
    return [*([promote_step(ctx, node)] if is_joining(ctx, node) else []),
            WaitStep("etcd healthy", etcd_health(node), timeout=timeout, what=what)]
