"""Phase `loadbalancers`: HAProxy in front of the apiservers, keepalived moving the VIP between two."""

from __future__ import annotations

from kbootstrap.engine.runner import Phase
from kbootstrap.engine.steps import ServicesStep, Step
from kbootstrap.model.host import loadbalancer_services
from kbootstrap.model.spec import Node, Role
from kbootstrap.phases.services import service_inputs
from kbootstrap.render import RenderContext
from kbootstrap.render.loadbalancer import loadbalancer_files

NAME = "loadbalancers"  # the phase's name in workflow tables, --help, --skip-phases and the journal


def start_loadbalancers(ctx: RenderContext, nodes: list[Node]) -> Phase:
    steps: dict[str, list[Step]] = {}
    for node in nodes:
        if not node.has(Role.LOADBALANCER):
            continue
        services = loadbalancer_services(ctx.spec)
        steps[node.name] = [ServicesStep(services, service_inputs(loadbalancer_files(ctx, node)),
                                         reloadable=("haproxy", "keepalived"))]
    return Phase(NAME, steps)
