"""`kbootstrap etcd`: snapshots of the cluster's etcd (and restoring one)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import click

from kbootstrap.cli.common import (
    ARTIFACTS_OPTION,
    HOST_OPTIONS,
    PhasedCommand,
    _load,
    default_cluster_dir,
    err,
    labelled,
    out,
)


@click.group()
def etcd() -> None:
    """The cluster's etcd: take a snapshot (backup) of it, restore one."""


@etcd.command("snapshot")
@HOST_OPTIONS[0]
@HOST_OPTIONS[1]
@click.option("--member", help="Take it on this etcd member (default: the first healthy one, in inventory order).")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              help="Keep it here (default: CLUSTER_DIR/snapshots).")
@click.option("--keep", type=click.IntRange(min=0), default=0, show_default=True,
              help="Then remove all but the KEEP newest snapshots kbootstrap took into that directory (0: keep all).")
@click.option("--accept-new-host-keys", is_flag=True, help="Record SSH host keys seen for the first time.")
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
def etcd_snapshot(inventory, cluster_dir, member, directory, keep, accept_new_host_keys, output) -> None:
    """Take a consistent snapshot of etcd on a healthy member and keep it on this machine.

    \b
    On the member, in one SSH command: `etcdctl endpoint health` (it is in quorum), `etcdctl snapshot
    save` to a private temporary file, `etcdutl snapshot status` and its sha256; the file comes back over
    the same connection and is removed from the member. Kept only once its sha256 matches, as
    snapshots/etcd-CLUSTER-TIME.db (0600: it holds the cluster's objects) with a .json of its status
    (revision, keys, size, member, sha256). A member that fails is reported and the next one is tried.
    Nothing on the hosts changes. Exit 0 kept, 1 no member gave one, 2 bad input.
    """
    from kbootstrap.cli.session import session
    from kbootstrap.workflows.etcd_snapshot import prune, snapshot

    spec = _load(inventory)
    members = spec.etcd_members
    if member:
        chosen = [m for m in members if m.name == member]
        if not chosen:
            raise click.BadParameter(f"{member}: not an etcd member of the inventory "
                                     f"({', '.join(m.name for m in members)})", param_hint="--member")
        members = chosen
    root = cluster_dir or default_cluster_dir(spec)
    with session(spec, root, members, "etcd snapshot", accept_new_host_keys, output) as s:
        kept = snapshot(s, members, directory)
    gone = prune(Path(kept.path).parent, keep)
    if output == "json":
        click.echo(json.dumps({"snapshot": kept.__dict__, "removed": [str(p) for p in gone]}, indent=2))
        return
    out.print(labelled("kept", "green", kept.line()), soft_wrap=True)
    for p in gone:
        err.print(f"removed {p} (--keep {keep})")


@etcd.command("restore", cls=PhasedCommand, workflows=("etcd restore",))
@click.argument("snapshot_path", metavar="SNAPSHOT", type=click.Path(path_type=Path))
@HOST_OPTIONS[0]
@HOST_OPTIONS[1]
@ARTIFACTS_OPTION
@click.option("--yes", is_flag=True, help="Really replace the cluster's etcd data (everything after the snapshot is lost).")
@click.option("--again", is_flag=True, help="Restore even members already restored from this snapshot (a finished "
                                            "restore otherwise makes a second run change nothing).")
@click.option("--dry-run", is_flag=True, help="Show what the restore would stop and change, and change nothing.")
@HOST_OPTIONS[3]
@HOST_OPTIONS[4]
@HOST_OPTIONS[5]
def etcd_restore(snapshot_path, inventory, cluster_dir, artifacts, yes, again, dry_run, parallel,
                 accept_new_host_keys, output) -> None:
    """Replace the cluster's etcd data with a snapshot's (from `kbootstrap etcd snapshot`), on every member.

    \b
    The API is down while it runs: the control plane is stopped, then etcd, every member is restored
    from the same file (a new cluster token; revisions bumped and compacted, as etcd's guide advises for
    Kubernetes, so every watcher lists again), then started, healthy, and the API answers through the
    load balancer. Objects created after the snapshot are gone; each member's previous data is kept in
    /var/lib/etcd.before-restore. Works for both topologies and both control-plane forms. Phases:
    {phases}

    Refused (exit 2, nothing touched) without --yes, or when SNAPSHOT is not an etcd snapshot, changed
    since it was taken, or another cluster's. Re-running resumes; a finished restore changes nothing.
    """
    from kbootstrap.cli.common import exit_for
    from kbootstrap.cli.session import report, session
    from kbootstrap.phases.bundle_payload import load_bundle
    from kbootstrap.workflows import Inputs
    from kbootstrap.workflows.etcd_restore import RESTORE, RestorePlan, load_snapshot, restore_nodes, restored_members

    spec = _load(inventory)
    if not yes and not dry_run:
        raise click.BadParameter("restoring replaces the cluster's whole state with the snapshot's; add --yes "
                                 "(or --dry-run to see the plan)", param_hint="--yes")
    again_as = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f") if again else None
    snap = load_snapshot(snapshot_path, spec, again_as)
    bundle, manifest = load_bundle(spec, artifacts)
    nodes = restore_nodes(spec)
    with session(spec, cluster_dir, nodes, "etcd restore", accept_new_host_keys, output) as s:
        plan = RestorePlan(snap, restored_members(s, spec.etcd_members, snap))
        if plan.done and not plan.pending(spec):
            s.note(f"every member is already restored from {snap.path.name} (--again restores it once more)")
        elif plan.done:
            s.note(f"resuming: already restored: {', '.join(sorted(plan.done))}")
        phases = RESTORE.build(Inputs(s.ctx, nodes, bundle, manifest, restore=plan))
        result = s.run(phases, apply=not dry_run, parallel=parallel, diffs=False)
    report(s, result, output)
    if not result.failed and not dry_run and output == "text" and plan.pending(spec):
        err.print(labelled("restored", "green", f"etcd from {snap.path} (sha256 {snap.sha256[:16]}…); each member's "
                           "previous data: /var/lib/etcd.before-restore"))
    exit_for(result, dry_run)
