"""Phase `packages`: the OS packages each role needs (haproxy and keepalived on load balancers, iptables and
conntrack where kube-proxy runs), from the bundle's .debs, so air-gapped hosts need no apt mirror.

Before `files`, on purpose: a package's default config is then replaced by kbootstrap's, and the service
restarts for it (restarts follow changed files across phases), instead of dpkg asking about a conffile.
"""

from __future__ import annotations

from pathlib import Path

from kbootstrap.artifacts.debs import debs_for
from kbootstrap.artifacts.manifest import Manifest
from kbootstrap.engine.runner import Phase
from kbootstrap.engine.steps import PackagesStep, Step
from kbootstrap.model.spec import Node, Role
from kbootstrap.phases import bundle_payload
from kbootstrap.render import RenderContext

NAME = "packages"  # the phase's name in workflow tables, --help, --skip-phases and the journal

DEBS_DIR = "/var/lib/kbootstrap/debs"


def bundle_roles(ctx: RenderContext, node: Node) -> set[str]:
    roles = set()
    if node.has(Role.LOADBALANCER):
        roles.add("loadbalancer")
    if node in ctx.spec.kubelet_nodes:
        roles.add("node")
    return roles


def install_packages(ctx: RenderContext, bundle: Path, manifest: Manifest, nodes: list[Node]) -> Phase:
    steps: dict[str, list[Step]] = {}
    for node in nodes:
        debs = debs_for(manifest, bundle_roles(ctx, node))
        if debs:
            steps[node.name] = [PackagesStep([
                (f, bundle_payload.artifact(bundle, f, f"{DEBS_DIR}/{Path(f.path).name}", component="packages"))
                for f in debs])]
    return Phase(NAME, steps)
