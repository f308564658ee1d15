"""`kbootstrap etcd restore SNAPSHOT`: the cluster's etcd replaced by a snapshot's keyspace, on every member.

The table: the bundle's binaries (etcdutl on the members), the control plane stopped, etcd stopped, every
member restored from the one snapshot (phases/restore_etcd.py), then `init`'s own files, etcd and control-plane
phases, which put the held manifests back or start the services and wait for etcd's health, each apiserver's
/readyz and the API through the load balancer. Which members are already restored is read from them first
(one command a member): a run that stopped half-way resumes, and a second run of a finished restore stops
nothing and changes nothing (`--again` restores the same snapshot once more).
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

from kbootstrap.engine.session import Session
from kbootstrap.errors import Refused, StepError
from kbootstrap.model.spec import ClusterSpec, Node
from kbootstrap.phases import restore_etcd, start_control_plane, start_etcd, stop_control_plane, stop_etcd
from kbootstrap.phases.restore_etcd import MARKER, SnapshotFile
from kbootstrap.workflows.init import BINARIES, FILES
from kbootstrap.workflows.table import PhaseSpec, Workflow

BOLT_MAGIC = 0xED0CDAED  # an etcd snapshot is a bbolt database: its first meta page's magic, at byte 16


@dataclass
class RestorePlan:
    snapshot: SnapshotFile
    done: set[str] = field(default_factory=set)  # members already restored from it

    def pending(self, spec: ClusterSpec) -> list[Node]:
        return [m for m in spec.etcd_members if m.name not in self.done]


def _if_pending(build):
    return lambda i: build(i) if i.restore.pending(i.ctx.spec) else None


RESTORE = Workflow("etcd restore", (
    BINARIES,
    PhaseSpec(stop_control_plane.NAME, "kube-apiserver, -controller-manager, -scheduler stopped on every control plane",
              _if_pending(lambda i: stop_control_plane.stop_control_plane(i.ctx, i.nodes))),
    PhaseSpec(stop_etcd.NAME, "etcd stopped on every member",
              _if_pending(lambda i: stop_etcd.stop_etcd(i.ctx, i.nodes))),
    PhaseSpec(restore_etcd.NAME, "each member's data directory from the snapshot (new cluster token, revision bumped, "
              "compacted); the old one kept", lambda i: restore_etcd.restore_etcd(i.ctx, i.nodes, i.restore.snapshot,
                                                                                   i.restore.done)),
    FILES,
    PhaseSpec(start_etcd.NAME, "etcd services started, each member healthy (systemd form / external etcd)",
              lambda i: start_etcd.start_etcd(i.ctx, i.nodes, i.binaries)),
    PhaseSpec(start_control_plane.NAME, "static pods back or services started; etcd healthy, each apiserver "
              "/readyz, the API through the load balancer",
              lambda i: start_control_plane.start_control_plane(i.ctx, i.nodes, i.binaries)),
))


def restore_nodes(spec: ClusterSpec) -> list[Node]:
    """The control planes and the etcd members (load balancers and workers are left alone)."""
    return [n for n in spec.nodes if n in spec.control_planes or spec.is_etcd_member(n)]


def load_snapshot(path: Path, spec: ClusterSpec, again_as: str | None = None) -> SnapshotFile:
    """The snapshot file, checked against its .json when kbootstrap took it: refused (exit 2) before any host
    is contacted when it is missing, altered, or another cluster's."""
    if not path.is_file():
        raise Refused(f"SNAPSHOT: {path}: no such file")
    data = path.read_bytes()
    sha256 = hashlib.sha256(data).hexdigest()
    meta_path = path.with_suffix(".json")
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
        except ValueError as e:
            raise Refused(f"SNAPSHOT: {meta_path}: unreadable ({e})") from None
        if meta.get("sha256") != sha256:
            raise Refused(f"SNAPSHOT: {path}: its sha256 is {sha256}, not the {meta.get('sha256')} recorded in "
                          f"{meta_path.name} when it was taken: the file changed since")
        if meta.get("cluster") != spec.cluster.name:
            raise Refused(f"SNAPSHOT: {path} was taken from cluster {meta.get('cluster')!r}, not "
                          f"{spec.cluster.name!r} (the inventory's cluster.name)")
    if len(data) < 4096 or struct.unpack_from("<I", data, 16)[0] != BOLT_MAGIC:
        raise Refused(f"SNAPSHOT: {path}: not an etcd snapshot (no bbolt database header)")
    return SnapshotFile(path, sha256, len(data), f"{sha256}-{again_as}" if again_as else sha256)


def restored_members(s: Session, members: list[Node], snap: SnapshotFile) -> set[str]:
    """The members whose marker holds this restore's id: one command each."""
    done = set()
    for m in members:
        r = s.transports[m.name].run(["cat", MARKER], sudo=True, timeout=30)
        if r.rc not in (0, 1):
            raise StepError(m.name, "read restore marker", f"cat {MARKER}", r.rc, r.stderr_tail())
        if r.ok and r.stdout.decode().strip() == snap.restore_id:
            done.add(m.name)
    return done
