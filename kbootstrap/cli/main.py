"""The `kbootstrap` command: parse, call, print. No logic lives here."""

from __future__ import annotations

import datetime as dt
import functools
from pathlib import Path
from typing import TYPE_CHECKING

import click

from kbootstrap import __version__
from kbootstrap.artifacts.cli import artifacts
from kbootstrap.cli.certs import certs
from kbootstrap.cli.common import (
    ARTIFACTS_OPTION,
    EXIT_CODES_HELP,
    HOST_OPTIONS,
    INVENTORY_HELP,
    ErrorGroup,
    PhasedCommand,
    _load,
    default_cluster_dir,
    err,
    exit_for,
    host_options,
    labelled,
    out,
    phase_options,
    select_nodes,
)
from kbootstrap.cli.etcd import etcd
from kbootstrap.cli.remove import remove
from kbootstrap.cli.reset import reset
from kbootstrap.errors import KbootstrapError
from kbootstrap.lab.cli import lab
from kbootstrap.verify.cli import verify

if TYPE_CHECKING:
    from kbootstrap.engine.runner import RunResult
    from kbootstrap.model.spec import Node


@click.group(cls=ErrorGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
             epilog=EXIT_CODES_HELP)
@click.version_option(__version__, prog_name="kbootstrap")
def main() -> None:
    """Provision highly available Kubernetes clusters over SSH.

    \b
    Typical use:
      kbootstrap validate -i cluster.yaml      check the inventory, touch nothing
      kbootstrap render   -i cluster.yaml -o out/   every file of every host, for review
      kbootstrap certs list -i cluster.yaml    which certificate goes to which host
    """


@main.command()
@click.option("-i", "--inventory", type=click.Path(path_type=Path), required=True, help=INVENTORY_HELP)
def validate(inventory: Path) -> None:
    """Check an inventory and print the cluster it describes. Exit 2 listing every problem."""
    spec = _load(inventory)
    out.print(labelled("ok", "green", f"{inventory}: cluster {spec.cluster.name}, "
                                      f"Kubernetes {spec.cluster.kubernetes_version}, "
              f"{spec.cluster.topology.value} etcd, {spec.cluster.control_plane_form.value} control plane"))
    out.print(f"  API endpoint {spec.api_server_url}; etcd members: {', '.join(n.name for n in spec.etcd_members)}")
    for n in spec.nodes:
        local = "  (joins itself: kbootstrap join --local on it)" if n.joins_locally else ""
        out.print(f"  {n.name:<16} {str(n.address):<16} {', '.join(r.value for r in n.roles)}{local}", markup=False)


@main.command()
@click.option("-i", "--inventory", type=click.Path(path_type=Path), required=True, help=INVENTORY_HELP)
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="Directory to write into, as OUTPUT/<host>/<absolute path on the host>.")
@click.option("--cluster-dir", type=click.Path(path_type=Path),
              help="Where the cluster's PKI and secrets are kept (default ~/.local/share/kbootstrap/clusters/NAME). "
                   "Reused across runs: only missing or stale certificates are issued; a CA is never replaced.")
@click.option("--host", "hosts", multiple=True, help="Render only these hosts (repeatable).")
def render(inventory: Path, output: Path, cluster_dir: Path | None, hosts: tuple[str, ...]) -> None:
    """Render every certificate, key, kubeconfig, unit and config file each host will hold.

    Nothing is sent to any host. Private keys and kubeconfigs are written 0600.
    """
    from kbootstrap.model.etcd_members import MembersRecord
    from kbootstrap.pki.issue import ensure_pki
    from kbootstrap.pki.secrets import ensure_secrets
    from kbootstrap.render import RenderContext, render_host, write_tree

    spec = _load(inventory)
    nodes = select_nodes(spec, hosts, connected=False)
    root = cluster_dir or default_cluster_dir(spec)
    pki = ensure_pki(spec, root)
    _print_pki_report(pki.report, root)
    ctx = RenderContext(spec=spec, pki=pki, secrets=ensure_secrets(root), etcd_record=MembersRecord.load(root))
    rendered = {n.name: render_host(ctx, n) for n in nodes}
    count = write_tree(rendered, output)
    out.print(f"wrote {count} files for {len(rendered)} hosts under {output}/")


def _print_pki_report(report, root: Path) -> None:
    if report.created:
        err.print(f"pki: created {len(report.created)} in {root}")
    for label, why in report.reissued:
        err.print(f"pki: reissued {label}: {why}")
    if report.reused and not report.changed:
        err.print(f"pki: reused all {len(report.reused)} from {root}")


@main.command()
@host_options
def plan(inventory, cluster_dir, hosts, parallel, accept_new_host_keys, output) -> None:
    """Show what `apply` would change on each host, with unified diffs, and change nothing.

    Secrets (keys, kubeconfigs, the encryption config) are shown as digests, never their content.
    Exit 0 when nothing would change, 3 when something would, 1 when a host could not be checked.
    """
    from kbootstrap.cli.session import converge

    result = converge(_load(inventory), cluster_dir, hosts, parallel, accept_new_host_keys, output, apply=False)
    exit_for(result, dry_run=True)


@main.command()
@host_options
def apply(inventory, cluster_dir, hosts, parallel, accept_new_host_keys, output) -> None:
    """Bring every host's files to exactly what `render` produces; reload systemd when a unit changed.

    Re-running changes nothing once hosts match. A run cut short (host down, SSH lost) is resumed by
    running it again: each file is written atomically, so a host holds the old or the new file, never half.
    """
    from kbootstrap.cli.session import converge

    result = converge(_load(inventory), cluster_dir, hosts, parallel, accept_new_host_keys, output, apply=True)
    exit_for(result, dry_run=False)


@main.command(cls=PhasedCommand, workflows=("init",))
@host_options
@click.option("--topology", type=click.Choice(["stacked", "external"]),
              help="Expected etcd topology; refused if the inventory says otherwise (a guard, not an override).")
@ARTIFACTS_OPTION
@click.option("--dry-run", is_flag=True, help="Show every change init would make, and make none (exit 3 if any).")
@phase_options
def init(inventory, cluster_dir, hosts, parallel, accept_new_host_keys, output, topology, artifacts, dry_run,
         skip_phases, only_phases) -> None:
    """Install the control plane: OS settings, containerd, binaries, load balancers, etcd, control planes.

    \b
    Preflight first (every host it concerns, every problem at once; nothing changes when it finds an error),
    then the phases, in order (each on every host it concerns, hosts in parallel):
    {phases}

    Re-running resumes after a failure and changes nothing on a finished cluster.
    Then add workers with `kbootstrap join`.
    """
    from kbootstrap.cli.session import report, session
    from kbootstrap.model.etcd_members import MembersRecord
    from kbootstrap.phases.bundle_payload import load_bundle
    from kbootstrap.workflows import INIT, Inputs
    from kbootstrap.workflows.init_cluster import Preflight, init_nodes, write_admin_kubeconfig

    spec = _load(inventory)
    if topology and topology != spec.cluster.topology.value:
        raise click.BadParameter(f"the inventory {inventory} says cluster.topology: {spec.cluster.topology.value}",
                                 param_hint="--topology")
    nodes = init_nodes(spec, select_nodes(spec, hosts))
    INIT.check(skip_phases, "--skip-phases")
    INIT.check(only_phases, "--only-phases")
    bundle, manifest = load_bundle(spec, artifacts)
    record = MembersRecord.load(cluster_dir or default_cluster_dir(spec))
    later = record.unrecorded(spec)
    if later:
        raise click.BadParameter(
            f"{', '.join(n.name for n in later)}: etcd member{'s' if len(later) > 1 else ''} of the inventory that the "
            f"running cluster lacks (its members are recorded in {record.path}). Add a control plane with "
            f"`kbootstrap join --control-plane -i {inventory}`; if that cluster is gone, `kbootstrap reset` it "
            "or delete the record", param_hint="--inventory")
    with session(spec, cluster_dir, nodes, "init", accept_new_host_keys, output) as s:
        # Built before the members are recorded: with none recorded, each member starts with every member of
        # the inventory, `new`, which is just what is recorded below.
        phases = INIT.build(Inputs(s.ctx, nodes, bundle, manifest), skip=skip_phases, only=only_phases)

        def record_members() -> None:  # once preflight passed, before anything is applied
            if not dry_run and not s.members.members:
                s.members.record(spec, spec.etcd_members)  # the members that start the cluster

        result = s.run(phases, apply=not dry_run, parallel=parallel, diffs=dry_run,
                       gate=Preflight(s, nodes, manifest, then=record_members))
    report(s, result, output)
    if not result.failed and not dry_run:
        conf = write_admin_kubeconfig(s.ctx, s.root)
        if output == "text":
            err.print(f"admin kubeconfig: {conf}\n  kubectl --kubeconfig {conf} get nodes\n"
                      f"next: kbootstrap join -i {inventory}   (the workers)")
    exit_for(result, dry_run)


@main.command(cls=PhasedCommand, workflows=("join", "join --control-plane"))
@functools.partial(host_options, inventory_required=False)
@ARTIFACTS_OPTION
@click.option("--control-plane", is_flag=True,
              help="Join control planes added to the inventory after init (default: workers).")
@click.option("--dry-run", is_flag=True, help="Show every change join would make, and make none (exit 3 if any).")
@click.option("--timeout", default=300, show_default=True, help="Seconds to wait for the nodes to be Ready.")
@click.option("--local", is_flag=True,
              help="Join THIS machine, as root on it: a `join: local` worker of the inventory, with a token from "
                   "`kbootstrap token create --print-join-command` (no inventory, no SSH, no CA key here).")
@click.option("--server", metavar="URL", help="--local: the API server to discover from, e.g. https://10.0.0.10:6443.")
@click.option("--token", "token", metavar="TOKEN", help="--local: the bootstrap token (shows in `ps`; prefer "
                                                       "--token-file or KBOOTSTRAP_TOKEN).")
@click.option("--token-file", type=click.Path(dir_okay=False, path_type=Path), help="--local: a file holding the token.")
@click.option("--ca-cert-hash", metavar="sha256:HEX", help="--local: the cluster CA's public-key pin (as kubeadm's "
                                                          "--discovery-token-ca-cert-hash).")
@click.option("--node-name", help="--local: this node's name in the inventory (default: the host name).")
@phase_options
def join(inventory, cluster_dir, hosts, parallel, accept_new_host_keys, output, artifacts, control_plane, dry_run,
         timeout, local, server, token, token_file, ca_cert_hash, node_name, skip_phases, only_phases) -> None:
    """Join workers (all of the inventory's, or those named by --host) to the cluster `init` made;
    with --control-plane, control planes added to the inventory since.

    \b
    Workers: a bootstrap token is made on the first control plane for this join only (15 minutes), used
    by each new node's kubelet to get its client certificate (TLS bootstrap, approved automatically), and
    deleted at the end. Nodes that already joined get no token and no change. Phases:
    {phases}

    \b
    Control planes (--control-plane; add the node to the inventory first, at the end of the list):
    the phases of `init` over every control plane, load balancer and joined worker. A stacked control
    plane's etcd member is added as a learner through a running member (phase etcd-members), started
    with initial-cluster-state existing, and promoted once in sync; one control plane per etcd change,
    in inventory order. The load balancers reload with the new backend; every node gets the route to
    its pod subnet. Running etcd members and apiservers are not restarted. Phases:
    {phases1}

    \b
    On the node itself (--local, as root; like `kubeadm join`): list the worker in the inventory with
    `join: local` first, run `kbootstrap init` and `join` (again, on a running cluster), then on the controller
      kbootstrap token create -i INV --print-join-command
    and run what it prints on the node, with the bundle there (--artifacts DIR). The node trusts the
    cluster only if cluster-info is signed with the token and its CA matches --ca-cert-hash; it reads
    its settings from the cluster (kube-system/kbootstrap-node-config) and runs the phases above on
    itself. Its kubelet gets its client certificate by TLS bootstrap and its serving certificate by a
    CSR that kbootstrap-csr-approver on the control planes approves after checking its name and address.
    Exit 2 (nothing changed on the node) when the token, pin, profile, node name or bundle is refused.
    A re-run on a joined node needs no token and changes nothing; kbootstrap-node-sync.timer makes that
    re-run every 10 minutes (with the Python, kbootstrap copy, server, pin and bundle of the join, kept in
    /etc/kubernetes/kbootstrap/node-sync.env), so the node follows the cluster's node profile: a worker
    added to the inventory later gets its route and /etc/hosts entry here. Keep the bundle where it was.
    """
    if local:
        if skip_phases or only_phases:
            raise click.BadParameter("not with --local (the node runs all of its join)", param_hint="--skip-phases")
        return _join_local(inventory, hosts, control_plane, server, token, token_file, ca_cert_hash, artifacts,
                           node_name, dry_run, timeout, output)
    if inventory is None:
        raise click.BadParameter("required (or --local, on the node itself)", param_hint="-i/--inventory")
    if any((server, token, token_file, ca_cert_hash, node_name)):
        raise click.BadParameter("--server, --token, --token-file, --ca-cert-hash and --node-name go with --local",
                                 param_hint="--local")
    if control_plane:
        return _join_control_planes(inventory, cluster_dir, hosts, parallel, accept_new_host_keys, output,
                                    artifacts, dry_run, skip_phases, only_phases)
    from kbootstrap.cli.session import report, session
    from kbootstrap.phases.bundle_payload import load_bundle
    from kbootstrap.workflows import JOIN, Inputs
    from kbootstrap.workflows.init_cluster import Preflight, preflight
    from kbootstrap.workflows.join_nodes import BootstrapToken, join_targets, unjoined

    spec = _load(inventory)
    targets = join_targets(select_nodes(spec, hosts))
    if not targets:
        raise click.BadParameter("no workers selected: join adds nodes with the 'worker' role "
                                 "(control planes: `kbootstrap join --control-plane`)", param_hint="--host")
    JOIN.check(skip_phases, "--skip-phases")
    JOIN.check(only_phases, "--only-phases")
    bundle, manifest = load_bundle(spec, artifacts)
    first = spec.control_planes[0]
    with session(spec, cluster_dir, [first, *targets], "join", accept_new_host_keys, output) as s:
        new = unjoined(s, targets)
        s.note(f"joining {', '.join(n.name for n in new) or 'no new node'}"
               + (f"; already joined: {', '.join(n.name for n in targets if n not in new)}"
                  if len(new) < len(targets) else ""))
        if new and not dry_run:
            preflight(s, targets, manifest)  # before the token is made
            purpose = f"kbootstrap join of {', '.join(n.name for n in new)}; deleted when the join ends"
            with BootstrapToken(s, purpose) as token:
                phases = JOIN.build(Inputs(s.ctx, targets, bundle, manifest, token=token.value, new=new,
                                           timeout=timeout), skip=skip_phases, only=only_phases)
                result = s.run(phases, apply=True, parallel=parallel)
        else:
            phases = JOIN.build(Inputs(s.ctx, targets, bundle, manifest, timeout=timeout), skip=skip_phases,
                                only=only_phases)
            result = s.run(phases, apply=not dry_run, parallel=parallel, diffs=dry_run,
                           gate=Preflight(s, targets, manifest))
    report(s, result, output)
    exit_for(result, dry_run)


def _join_local(inventory, hosts, control_plane, server, token, token_file, ca_cert_hash, artifacts, node_name,
                dry_run, timeout, output) -> None:
    from kbootstrap.local.join import read_token, run_local_join

    if inventory is not None or hosts or control_plane:
        raise click.BadParameter("--local joins this machine from the cluster's own settings: no -i, --host or "
                                 "--control-plane", param_hint="--local")
    missing = [f for f, v in (("--server", server), ("--ca-cert-hash", ca_cert_hash)) if not v]
    if missing:
        raise click.BadParameter(f"{' and '.join(missing)} needed (`kbootstrap token create --print-join-command` "
                                 "on the controller prints them)", param_hint="--local")
    from kbootstrap.cli.session import print_local

    secret = read_token(token, token_file)
    result = print_local(output, lambda: run_local_join(server, secret, ca_cert_hash, artifacts, node_name, dry_run,
                                                        timeout))
    exit_for(result, dry_run)


def _join_control_planes(inventory, cluster_dir, hosts, parallel, accept_new_host_keys, output, artifacts,
                         dry_run, skip_phases, only_phases) -> None:
    from kbootstrap.cli.session import report, session
    from kbootstrap.model.etcd_members import MembersRecord
    from kbootstrap.phases.bundle_payload import load_bundle
    from kbootstrap.workflows import JOIN_CONTROL_PLANE, Inputs
    from kbootstrap.workflows.init_cluster import init_nodes, preflight, write_admin_kubeconfig
    from kbootstrap.workflows.join_control_planes import control_side, members_to_add
    from kbootstrap.workflows.join_nodes import unjoined

    spec = _load(inventory)
    selected = select_nodes(spec, hosts) if hosts else spec.control_planes
    not_cp = [n.name for n in selected if n not in spec.control_planes]
    if not_cp:
        raise click.BadParameter(f"{', '.join(not_cp)}: not a control plane of the inventory (workers join "
                                 "without --control-plane)", param_hint="--host")
    JOIN_CONTROL_PLANE.check(skip_phases, "--skip-phases")
    JOIN_CONTROL_PLANE.check(only_phases, "--only-phases")
    try:
        adding = members_to_add(spec, MembersRecord.load(cluster_dir or default_cluster_dir(spec)), selected)
    except KbootstrapError as e:
        raise click.BadParameter(str(e), param_hint="--control-plane") from e
    bundle, manifest = load_bundle(spec, artifacts)
    workers = [w for w in spec.workers if w not in spec.control_planes and not w.joins_locally]
    with session(spec, cluster_dir, init_nodes(spec, spec.nodes) + workers, "join", accept_new_host_keys, output) as s:
        record = s.members
        joined = [w for w in workers if w not in unjoined(s, workers)]
        result: RunResult | None = None
        rounds: list[Node | None] = [*adding] or [None]
        for node in rounds:  # one etcd member per run; none to add: one run over the control side
            nodes = control_side(spec, record) + ([node] if node is not None else [])
            preflight(s, nodes, manifest)  # before the member is recorded: a refused host leaves no trace
            if node is not None:
                s.note(f"adding {node.name} to etcd (as a learner, then promoted) and the control plane")
                if not dry_run:
                    record.record(spec, [node])
            phases = JOIN_CONTROL_PLANE.build(Inputs(s.ctx, nodes, bundle, manifest, workers=joined),
                                              skip=skip_phases, only=only_phases)
            result = s.run(phases, apply=not dry_run, parallel=parallel, diffs=dry_run)
            if result.failed or dry_run:
                break
    assert result is not None
    report(s, result, output)
    if not result.failed and not dry_run:
        write_admin_kubeconfig(s.ctx, s.root)
    exit_for(result, dry_run)


def _duration(value: str) -> dt.timedelta:
    import re

    m = re.fullmatch(r"(\d+)([smhd])", value.strip())
    if not m or int(m.group(1)) == 0:
        raise click.BadParameter(f"{value!r}: expected a number and a unit, e.g. 30m, 1h, 2d", param_hint="--ttl")
    return dt.timedelta(**{{"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[m.group(2)]: int(m.group(1))})


@main.group()
def token() -> None:
    """Bootstrap tokens for `kbootstrap join --local` (a worker joining from the node itself)."""


def first_control_plane_options(fn):
    """The token commands work through the inventory's first control plane: its inventory, cluster directory
    and host key options."""
    for opt in reversed([
        *HOST_OPTIONS[:2],  # -i, --cluster-dir
        click.option("--accept-new-host-keys", is_flag=True,
                     help="Record the SSH host key of the first control plane if seen for the first time."),
    ]):
        fn = opt(fn)
    return fn


@token.command("create")
@first_control_plane_options
@click.option("--ttl", default="1h", show_default=True,
              help="How long the token may be used (30m, 1h, 2d); kube-controller-manager deletes it then.")
@click.option("--print-join-command", is_flag=True,
              help="Print the whole `kbootstrap join --local` command for the node, not only the token.")
def token_create(inventory, cluster_dir, accept_new_host_keys, ttl, print_join_command) -> None:
    """Make a bootstrap token on the cluster and print it (stdout; everything else goes to stderr).

    \b
    The token authenticates a kubelet's first CSR (group system:bootstrappers:kubeadm:default-node-token)
    and signs cluster-info for discovery; it is not deleted when used, so keep the TTL short. The join
    command carries the API URL and the pin of the cluster CA's public key (sha256 of its
    SubjectPublicKeyInfo, as kubeadm's --discovery-token-ca-cert-hash).
    """
    from kbootstrap.cli.session import session
    from kbootstrap.local.discovery import ca_pin
    from kbootstrap.workflows.join_nodes import BootstrapToken, wait_signed

    spec = _load(inventory)
    if not spec.local_nodes:
        err.print(labelled("note:", "yellow", "no node of the inventory has `join: local`; `join --local` refuses a node "
                  "the inventory does not list that way"))
    first = spec.control_planes[0]
    with session(spec, cluster_dir, [first], "token create", accept_new_host_keys, "text") as s:
        made = BootstrapToken(s, "kbootstrap token create: join --local", _duration(ttl), signing=True).create()
        wait_signed(s, made.id)
        pin = ca_pin(s.ctx.pki.ca("ca").cert_pem)
    if not print_join_command:
        click.echo(made.value)
        return
    click.echo(f"kbootstrap join --local --server {spec.api_server_url} --token {made.value} --ca-cert-hash {pin}")
    err.print(f"on the node, as root, with the {spec.cluster.kubernetes_version} bundle there: add --artifacts DIR "
              f"unless it is in the node's default cache; the token expires {made.expires}")


@token.command("delete")
@click.argument("token_id")
@first_control_plane_options
def token_delete(token_id, inventory, cluster_dir, accept_new_host_keys) -> None:
    """Delete a bootstrap token before it expires: TOKEN_ID is its first six characters (or the whole token).

    A node that already joined keeps working (it holds its own certificate); one that has not can no longer
    use the token. Deleting a token that is gone is not an error.
    """
    from kbootstrap.cli.session import session
    from kbootstrap.local.discovery import TOKEN_ID
    from kbootstrap.workflows.join_nodes import delete_token

    token_id = token_id.split(".")[0]
    if not TOKEN_ID.match(token_id):
        raise click.BadParameter("expected the 6-character token id (a-z, 0-9), e.g. abcdef", param_hint="TOKEN_ID")
    spec = _load(inventory)
    first = spec.control_planes[0]
    with session(spec, cluster_dir, [first], "token delete", accept_new_host_keys, "text") as s:
        r = delete_token(s.transports[first.name], token_id)
    if not r.ok:
        raise click.ClickException(f"{first.name}: deleting token {token_id} failed (exit {r.rc}): {r.stderr_tail()}")
    err.print(f"token {token_id}: {'deleted' if r.stdout.strip() else 'not found (expired or deleted already)'}")


@main.command()
def schema() -> None:
    """Print the inventory's JSON Schema (for editors: yaml-language-server, VS Code)."""
    from kbootstrap.model.spec import json_schema

    click.echo(json_schema())


main.add_command(lab)
main.add_command(artifacts)
main.add_command(verify)
main.add_command(reset)
main.add_command(remove)
main.add_command(certs)
main.add_command(etcd)

if __name__ == "__main__":
    main()
