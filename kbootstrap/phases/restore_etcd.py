"""Phase `restore` (etcd restore): on every member, stopped, the same snapshot made into its data directory.

As etcd's recovery guide says: every member from the one snapshot file (never each its own: they would hold
different revisions), a new cluster token (a member left out, still holding the old data, cannot rejoin it),
each member its own name and peer URL from the inventory (so the members may have moved), and for Kubernetes
`--bump-revision` and `--mark-compacted`: revisions go on upwards from the snapshot's, so every watcher of the
API is told its revision was compacted and lists again, instead of waiting for revisions the restored keyspace
reuses. The old data directory is kept beside it (`/var/lib/etcd.before-restore`, the last one only).

A member is done when `/var/lib/kbootstrap/etcd-restored` holds this restore's id (the snapshot's sha256), so a
run that stopped half-way redoes only the members it had not reached.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from kbootstrap.engine.runner import Phase
from kbootstrap.engine.steps import FilesStep, ShellStep, Step
from kbootstrap.model.artifact import Artifact, Source
from kbootstrap.model.etcd_members import peer_url
from kbootstrap.model.host import BIN
from kbootstrap.model.spec import Node
from kbootstrap.render import RenderContext
from kbootstrap.render.flags import ETCD_DATA_DIR

NAME = "restore"
MARKER = "/var/lib/kbootstrap/etcd-restored"
UPLOAD_DIR = "/var/lib/kbootstrap/restore"
BEFORE = f"{ETCD_DATA_DIR}.before-restore"
BUMP_REVISION = 1_000_000_000  # the Kubernetes etcd guide's figure: far beyond any revision reused


@dataclass(frozen=True)
class SnapshotFile:
    path: Path
    sha256: str
    size: int
    restore_id: str  # what the marker holds once a member is done: the sha256, or sha256-RUN with --again

    @property
    def token(self) -> str:
        return "kbootstrap-restore-" + hashlib.sha256(self.restore_id.encode()).hexdigest()[:16]


def _restore(ctx: RenderContext, node: Node, snap: SnapshotFile, on_host: str) -> Step:
    members = ",".join(f"{m.name}={peer_url(m)}" for m in ctx.spec.etcd_members)
    new = f"{ETCD_DATA_DIR}.restoring"
    done = f'test "$(cat {MARKER} 2>/dev/null)" = {snap.restore_id}'
    script = f"""set -eu
test "$(sha256sum {on_host} | cut -d' ' -f1)" = {snap.sha256}
rm -rf {new}
{BIN}/etcdutl snapshot restore {on_host} --name {node.name} --initial-cluster {members} \\
  --initial-cluster-token {snap.token} --initial-advertise-peer-urls {peer_url(node)} --data-dir {new} \\
  --bump-revision {BUMP_REVISION} --mark-compacted
if test -d {ETCD_DATA_DIR}; then rm -rf {BEFORE}; mv {ETCD_DATA_DIR} {BEFORE}; fi
chmod 0700 {new}
mv {new} {ETCD_DATA_DIR}
echo {snap.restore_id} > {MARKER}.new && mv {MARKER}.new {MARKER}
rm -f {on_host}
"""
    return ShellStep("restore etcd data", done, script, f"{ETCD_DATA_DIR} from {snap.path.name}",
                     detail=f"revision +{BUMP_REVISION}, compacted; the old one kept in {BEFORE}")


def restore_etcd(ctx: RenderContext, nodes: list[Node], snap: SnapshotFile, done: set[str]) -> Phase | None:
    """`done`: members whose marker already holds this restore's id (read before the run)."""
    on_host = f"{UPLOAD_DIR}/{snap.sha256}.db"
    upload = Artifact(on_host, b"", 0o600, secret=True, component="etcd",
                      source=Source(snap.sha256, snap.size, snap.path.read_bytes))
    steps: dict[str, list[Step]] = {n.name: [FilesStep([upload]), _restore(ctx, n, snap, on_host)]
                                    for n in nodes if ctx.spec.is_etcd_member(n) and n.name not in done}
    return Phase(NAME, steps) if steps else None
