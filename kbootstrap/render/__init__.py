"""Render every file of every host, on the operator's machine, touching no host.

`render_cluster` returns, per host, the list of Artifacts that host will hold, exactly as they will lie
there; `write_tree` lays them out as DIR/<host>/<absolute path> for review.
"""

from __future__ import annotations

from pathlib import Path

from kbootstrap.engine.localfs import write_atomic
from kbootstrap.model.artifact import Artifact
from kbootstrap.model.spec import Node, Role
from kbootstrap.render.cluster_addons import cluster_addon_files
from kbootstrap.render.cni import cni_files
from kbootstrap.render.context import RenderContext
from kbootstrap.render.control_plane import control_plane_files
from kbootstrap.render.csr_approver import approver_files
from kbootstrap.render.etcd import etcd_files
from kbootstrap.render.loadbalancer import loadbalancer_files
from kbootstrap.render.node import kernel_files, kube_proxy_files, kubelet_files, runtime_files
from kbootstrap.render.node_sync import node_sync_files
from kbootstrap.render.pki_files import pki_files

__all__ = ["RenderContext", "render_cluster", "render_host", "write_tree"]


def render_host(ctx: RenderContext, node: Node) -> list[Artifact]:
    """Every file of `node`. Rendered once a context and members record: a run's phases ask more than once
    (the files phase writes them, the services phases restart for them)."""
    members = sorted((k, v.model_dump_json()) for k, v in ctx.etcd_record.members.items()) if ctx.etcd_record else []
    key = (node.name, ctx.bootstrap_token, repr(members))
    if key not in ctx.rendered:
        ctx.rendered[key] = _render_host(ctx, node)
    return list(ctx.rendered[key])


def _render_host(ctx: RenderContext, node: Node) -> list[Artifact]:
    spec = ctx.spec
    out: list[Artifact] = []
    out += kernel_files(ctx, node)
    out += pki_files(ctx, node)
    if node.has(Role.LOADBALANCER):
        out += loadbalancer_files(ctx, node)
    if spec.is_etcd_member(node):
        out += etcd_files(ctx, node)
    if node.has(Role.CONTROL_PLANE):
        out += control_plane_files(ctx, node) + approver_files(ctx, node)
    if node == spec.control_planes[0]:
        out += cluster_addon_files(ctx)
    if node in spec.kubelet_nodes:
        out += runtime_files(ctx, node) + kubelet_files(ctx, node) + kube_proxy_files(ctx, node)
        out += cni_files(ctx, node) + node_sync_files(ctx, node)
    paths = [a.path for a in out]
    dupes = {p for p in paths if paths.count(p) > 1}
    assert not dupes, f"two renderers wrote {sorted(dupes)} for {node.name}"
    return sorted(out, key=lambda a: a.path)


def render_cluster(ctx: RenderContext) -> dict[str, list[Artifact]]:
    return {node.name: render_host(ctx, node) for node in ctx.spec.nodes}


def write_tree(rendered: dict[str, list[Artifact]], out: Path) -> int:
    """Write DIR/<host>/<path> with each file's mode. Returns the number of files written."""
    count = 0
    for host, artifacts in rendered.items():
        for a in artifacts:
            write_atomic(out / host / a.path.lstrip("/"), a.content, a.mode)
            count += 1
    return count
