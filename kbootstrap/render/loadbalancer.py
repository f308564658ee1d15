"""HAProxy in front of the apiservers, and keepalived moving the VIP between load balancers."""

from __future__ import annotations

from kbootstrap.model import ports
from kbootstrap.model.artifact import Artifact
from kbootstrap.model.spec import Node
from kbootstrap.render.context import RenderContext
from kbootstrap.render.flags import PKI
from kbootstrap.render.templates import render_text


def loadbalancer_files(ctx: RenderContext, node: Node) -> list[Artifact]:
    spec = ctx.spec
    lb = spec.load_balancer
    servers = [{"name": cp.name, "address": str(cp.address)} for cp in spec.control_planes]
    # With a VIP, bind every address so the frontend answers on the VIP wherever it lands.
    out = [
        Artifact("/etc/haproxy/haproxy.cfg",
                 render_text("haproxy/haproxy.cfg.j2", bind="0.0.0.0" if lb.vip else str(node.address),
                             port=lb.port, servers=servers, ca_file=f"{PKI}/ca.crt", apiserver_port=ports.APISERVER),
                 restarts=("haproxy",), component="haproxy"),
    ]
    if lb.vip is not None:
        lbs = spec.loadbalancers
        index = [n.name for n in lbs].index(node.name)
        out.append(Artifact(
            "/etc/keepalived/keepalived.conf",
            render_text("keepalived/keepalived.conf.j2", router_id=node.name, vip=str(lb.vip),
                        interface=lb.interface, virtual_router_id=lb.virtual_router_id,
                        priority=150 - index,  # the first load balancer is preferred
                        self_address=str(node.address),
                        peers=[str(n.address) for n in lbs if n.name != node.name]),
            restarts=("keepalived",), component="keepalived"))
    return out
