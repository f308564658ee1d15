"""Phase `etcd-member` (remove): the removed node's etcd member removed by its ID, through a member that stays
(matched by peer URL, as `etcd-members` adds it). etcd allows one membership change at a time and refuses one
that would leave the cluster without quorum (strict reconfiguration check); `remove` refuses earlier, saying why."""

from __future__ import annotations

from kbootstrap.engine.runner import Phase
from kbootstrap.engine.steps import ShellStep
from kbootstrap.model.etcd_members import client_url, peer_url
from kbootstrap.model.host import etcdctl
from kbootstrap.model.spec import Node
from kbootstrap.phases.add_etcd_members import FIELD
from kbootstrap.transport.base import quote

NAME = "etcd-member"


def remove_etcd_member(member: Node | None, through: Node) -> Phase | None:
    if member is None:
        return None
    ctl = quote(etcdctl([client_url(through)]))
    # $2: the member's peer URL. An etcd that does not answer fails the probe: never read as "already removed".
    absent = f'out=$({ctl} member list) && ! printf "%s\\n" "$out" | {FIELD % 1} >/dev/null'
    remove = f'id=$({ctl} member list | {FIELD % 1}) && {ctl} member remove "$id"'
    return Phase(NAME, {through.name: [ShellStep(
        f"remove etcd member {member.name}", absent, remove, label=f"{member.name} ({peer_url(member)})",
        detail=f"through {through.name}", args=(member.name, peer_url(member)))]})
