"""`kbootstrap etcd snapshot`: a consistent snapshot of the cluster's etcd, taken on a healthy member and kept in
the cluster directory (`snapshots/`), with its sha256 and `etcdutl snapshot status`.

One command on the member: `endpoint health` (a read through raft: the member is in quorum, so what it holds is
the cluster's committed state), `etcdctl snapshot save` to a private temporary file, `etcdutl snapshot status`,
its sha256, then the file itself on stdout; the temporary file is removed whatever happened. The controller
checks the sha256 of what it received against the member's before it keeps the file (atomically, 0600): a
snapshot is never half-written or silently corrupt. A member that fails is reported and the next one is tried.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from kbootstrap.engine.localfs import private_dirs, write_atomic
from kbootstrap.engine.session import Session
from kbootstrap.errors import KbootstrapError, StepError
from kbootstrap.model.etcd_members import client_url
from kbootstrap.model.host import BIN, etcdctl
from kbootstrap.model.spec import Node
from kbootstrap.transport.base import quote

SNAPSHOTS = "snapshots"  # in the cluster directory
ON_HOST = "/var/lib/kbootstrap/snapshots"
ETCDUTL = f"{BIN}/etcdutl"


class SnapshotFailed(KbootstrapError):
    pass


@dataclass(frozen=True)
class Snapshot:
    """A kept snapshot: the .db file and what was known of it when taken (its .json beside it)."""

    path: str
    member: str
    taken_at: str
    sha256: str
    size: int
    revision: int
    total_keys: int
    hash: int  # etcd's own hash of the keyspace (`etcdutl snapshot status`)
    cluster: str
    kubernetes_version: str

    @classmethod
    def load(cls, db: Path) -> Snapshot:
        return cls(**json.loads(db.with_suffix(".json").read_text()))

    def line(self) -> str:
        return (f"{self.path}: from {self.member} at {self.taken_at}, revision {self.revision}, {self.total_keys} keys, "
                f"{self.size / 1e6:.1f} MB, sha256 {self.sha256}")


def _script(member: Node) -> list[str]:
    ctl = quote(etcdctl([client_url(member)]))
    return ["sh", "-c", f"""set -eu
umask 077
mkdir -p {ON_HOST}
f=$(mktemp {ON_HOST}/.taking-XXXXXX.db)
trap 'rm -f "$f" "$f.part"' EXIT
{ctl} endpoint health >&2
rm -f "$f"
{ctl} snapshot save "$f" >&2
status=$({ETCDUTL} snapshot status -w json "$f" | tr -d '\\n')
sum=$(sha256sum "$f" | cut -d' ' -f1)
printf '%s\\n%s\\n' "$status" "$sum"
cat "$f"
"""]


def take_from(s: Session, member: Node) -> tuple[dict, str, bytes]:
    """status, sha256 and content of a snapshot taken on `member`; StepError when it could not be."""
    t = s.transports[member.name]
    r = t.run(_script(member), sudo=True, timeout=600)
    if not r.ok:
        raise StepError(member.name, "etcd snapshot", "etcdctl snapshot save", r.rc, r.stderr_tail())
    status_line, sum_line, data = r.stdout.split(b"\n", 2)
    status, want = json.loads(status_line), sum_line.decode().strip()
    got = hashlib.sha256(data).hexdigest()
    if got != want:
        raise StepError(member.name, "etcd snapshot", "read the snapshot back", 0,
                        f"{len(data)} bytes received with sha256 {got}; the member's file has {want}")
    return status, want, data


def snapshot(s: Session, members: list[Node], into: Path | None = None, now: dt.datetime | None = None) -> Snapshot:
    """The first member that gives a good snapshot; each failure is logged and journaled."""
    spec = s.ctx.spec
    into = into or s.root / SNAPSHOTS
    errors = []
    for member in members:
        try:
            status, sha256, data = take_from(s, member)
        except (StepError, ValueError) as e:
            s.journal.record(member.name, "snapshot", False, 0, str(e), applied=True)
            s.note(f"{member.name}: no snapshot: {' '.join(str(e).split())}")
            errors.append(member.name)
            continue
        taken = now or dt.datetime.now(dt.UTC)
        db = into / f"etcd-{spec.cluster.name}-{taken:%Y%m%dT%H%M%SZ}.db"
        n = 1
        while db.exists():  # two in one second
            n += 1
            db = into / f"etcd-{spec.cluster.name}-{taken:%Y%m%dT%H%M%SZ}-{n}.db"
        private_dirs(into)
        kept = Snapshot(str(db), member.name, taken.isoformat(timespec="seconds"), sha256, len(data),
                        int(status["revision"]), int(status["totalKey"]), int(status["hash"]), spec.cluster.name,
                        spec.cluster.kubernetes_version)
        write_atomic(db, data, 0o600)
        write_atomic(db.with_suffix(".json"), json.dumps(asdict(kept), indent=2).encode() + b"\n", 0o600)
        s.journal.record(member.name, "snapshot", True, 1, applied=True)
        return kept
    raise SnapshotFailed(f"no member gave a snapshot (tried {', '.join(errors)}): see the lines above")


def prune(directory: Path, keep: int) -> list[Path]:
    """Remove all but the `keep` newest snapshots kbootstrap took into `directory` (by the time in their name)."""
    dbs = sorted(p for p in directory.glob("etcd-*.db") if p.with_suffix(".json").exists())
    gone = dbs[:-keep] if keep > 0 else []
    for p in gone:
        p.unlink()
        p.with_suffix(".json").unlink()
    return gone
