"""Phase `stop-etcd` (etcd restore): etcd stopped on every member (all of them: a member left running would
keep the old cluster's data and could be elected over the restored ones)."""

from __future__ import annotations

from kbootstrap.engine.runner import Phase
from kbootstrap.model.host import ETCD_SERVICE
from kbootstrap.model.spec import Node
from kbootstrap.phases.services import stop_steps
from kbootstrap.render import RenderContext
from kbootstrap.render.etcd import etcd_as_static_pod

NAME = "stop-etcd"


def stop_etcd(ctx: RenderContext, nodes: list[Node]) -> Phase:
    return Phase(NAME, {n.name: stop_steps(etcd_as_static_pod(ctx, n), [ETCD_SERVICE], "etcd")
                        for n in nodes if ctx.spec.is_etcd_member(n)})
