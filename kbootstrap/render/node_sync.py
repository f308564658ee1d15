"""kbootstrap-node-sync on a `join: local` worker: a timer that re-runs `join --local` (no token: a joined
node reads the profile with its kubelet client certificate), so the node follows the cluster's node profile.
Without it, a worker added to the inventory after this one joined would get no route or hosts entry here.

The unit is rendered like every other file (the controller's `render` shows it; reset removes it); what only
the node knows (its Python, where kbootstrap and the bundle are, the server and pin it joined with) is in
ENV_FILE, which `join --local` writes after a successful join."""

from __future__ import annotations

from kbootstrap.model.artifact import Artifact
from kbootstrap.model.spec import Node
from kbootstrap.render.context import RenderContext
from kbootstrap.render.flags import K8S
from kbootstrap.render.templates import render_text

SERVICE = "kbootstrap-node-sync"
TIMER = f"{SERVICE}.timer"
ENV_FILE = f"{K8S}/kbootstrap/node-sync.env"
INTERVAL = "10min"  # a re-run that finds nothing to do takes about 2.5 s


def node_sync_files(ctx: RenderContext, node: Node) -> list[Artifact]:
    if not node.joins_locally:
        return []
    return [
        Artifact(f"/etc/systemd/system/{SERVICE}.service",
                 render_text("node-sync/kbootstrap-node-sync.service.j2", env_file=ENV_FILE, node=node.name),
                 component=SERVICE),
        Artifact(f"/etc/systemd/system/{TIMER}", render_text("node-sync/kbootstrap-node-sync.timer.j2", interval=INTERVAL),
                 restarts=(TIMER,), component=SERVICE),
    ]
