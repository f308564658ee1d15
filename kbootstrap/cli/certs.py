"""`kbootstrap certs`: the certificate table (`list`) and every certificate on the hosts with its expiry (`check`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.table import Table
from rich.text import Text

from kbootstrap.cli.common import (
    ARTIFACTS_OPTION,
    HOST_OPTIONS,
    INVENTORY_HELP,
    PhasedCommand,
    _load,
    err,
    exit_for,
    labelled,
    out,
    select_nodes,
)


@click.group()
def certs() -> None:
    """The cluster's certificates: which goes where (list), when each one on the hosts expires (check), and their
    renewal with the API answering (renew)."""


@certs.command("list")
@click.option("-i", "--inventory", type=click.Path(path_type=Path), help=INVENTORY_HELP + " Without it, the table's rules.")
@click.option("--cluster-dir", type=click.Path(path_type=Path), help="Cluster directory (shows expiry of issued certs).")
def certs_list(inventory: Path | None, cluster_dir: Path | None) -> None:
    """Show the certificate table: CA, subject, usages, and which hosts get the certificate and the key."""
    from kbootstrap.pki.table import CERTS, KEYPAIRS, KUBECONFIGS, nodes_for

    spec = _load(inventory) if inventory else None

    def hosts(rule) -> str:
        if spec is None:
            return rule.value
        names = [n.name for n in nodes_for(spec, rule)]
        return ", ".join(names) if names else "(operator only)"

    table = Table(title="certificates" + (f" of {spec.cluster.name}" if spec else ""), show_lines=False)
    for col in ("name", "file", "signed by", "CN", "O", "usages", "issued", "cert to", "key to"):
        table.add_column(col, overflow="fold")
    for r in CERTS:
        table.add_row(r.name, f"pki/{r.base}.crt", r.ca or "(self)", r.cn, ",".join(r.orgs),
                      ",".join(u.value for u in r.usages) or "CA", r.per_node.value, hosts(r.cert_to), hosts(r.key_to))
    for k in KEYPAIRS:
        table.add_row(k.name, f"pki/{k.base}.key/.pub", "-", "-", "", "signing key", "shared",
                      hosts(k.public_to), hosts(k.private_to))
    for kc in KUBECONFIGS:
        table.add_row(kc.file, kc.file, "ca", kc.cn, ",".join(kc.orgs), "clientAuth", kc.per_node.value,
                      hosts(kc.to), hosts(kc.to))
    out.print(table)

    if spec is not None and cluster_dir is not None:
        from kbootstrap.pki.status import issued_status

        status = Table(title=f"issued in {cluster_dir}")
        for col in ("certificate", "node", "subject", "expires", "days left"):
            status.add_column(col)
        for row in issued_status(spec, cluster_dir):
            status.add_row(*row)
        out.print(status)


@certs.command("check")
@click.option("-i", "--inventory", type=click.Path(path_type=Path), required=True, help=INVENTORY_HELP)
@click.option("--host", "hosts", multiple=True, help="Only these hosts (repeatable). Default: every host kbootstrap "
                                                     "connects to.")
@click.option("--warn-days", type=click.IntRange(min=0), default=30, show_default=True,
              help="Exit 1 when a certificate expires within this many days.")
@click.option("--parallel", default=10, show_default=True, help="Hosts read at once.")
@click.option("--accept-new-host-keys", is_flag=True, help="Record SSH host keys seen for the first time.")
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
def certs_check(inventory: Path, hosts: tuple[str, ...], warn_days: int, parallel: int, accept_new_host_keys: bool,
                output: str) -> None:
    """Every certificate on every host, soonest expiry first: the PKI files, the kubeconfigs' embedded
    certificates, etcd's, the kubelets' rotating client and serving certificates, and the CAs.

    \b
    Read over SSH in one command a host (files under /etc/kubernetes and /var/lib/kubelet/pki); only
    certificates are read back, never a key. Changes nothing.
    Exit 0 when every certificate has more than --warn-days left, 1 when one has not or a host could not
    be read, 2 for bad input.
    """
    from kbootstrap.workflows.certs_check import check_certs

    spec = _load(inventory)
    report = check_certs(spec, select_nodes(spec, hosts), parallel, accept_new_host_keys)
    due = report.due(warn_days)
    if output == "json":
        click.echo(json.dumps({"warn_days": warn_days, "due": len(due), "failed_hosts": report.failed,
                               "certificates": [r.as_json(report.now) for r in report.rows]}, indent=2))
    else:
        table = Table(title=f"certificates on the hosts of {spec.cluster.name} ({report.now:%Y-%m-%d %H:%M} UTC)")
        for col in ("host", "file", "subject", "issuer", "expires", "days left"):
            table.add_column(col, overflow="fold")
        for r in report.rows:
            left = r.days_left(report.now)
            table.add_row(Text(r.host), Text(r.file), Text(r.subject + (" [CA]" if r.is_ca else "")), Text(r.issuer),
                          Text(f"{r.not_after:%Y-%m-%d %H:%M}"),
                          Text(str(left), style="bold red" if left < warn_days else ""))
        out.print(table)
        for host, why in report.failed.items():
            err.print(labelled("FAILED", "bold red", f"{host}: {why}"))
        summary = (f"{len(report.rows)} certificates on {len({r.host for r in report.rows})} hosts; "
                   f"{len(due)} expire within {warn_days} days")
        err.print(labelled("due:" if due else "ok:", "bold red" if due else "green", summary))
        if due:
            err.print(f"  soonest: {due[0].host} {due[0].file}, {due[0].not_after:%Y-%m-%d}")
    sys.exit(1 if due or report.failed else 0)


@certs.command("renew", cls=PhasedCommand, workflows=("certs renew",))
@click.argument("names", nargs=-1, metavar="[NAME]...")
@HOST_OPTIONS[0]
@HOST_OPTIONS[1]
@HOST_OPTIONS[3]
@HOST_OPTIONS[4]
@HOST_OPTIONS[5]
@click.option("--fresh", "fresh_minutes", type=click.IntRange(min=0), default=60, show_default=True,
              help="Minutes: a certificate issued within them is kept, not reissued, so a re-run (or a resume after "
                   "a failure) pushes what the first run renewed.")
@click.option("--dry-run", is_flag=True, help="Show which files and components would change; reissue nothing "
                                              "(exit 3 if anything would change).")
@ARTIFACTS_OPTION
def certs_renew(names, inventory, cluster_dir, parallel, accept_new_host_keys, output, fresh_minutes, dry_run,
                artifacts) -> None:
    """Reissue leaf certificates (NAME: rows of `certs list`, e.g. apiserver, etcd-server, admin.conf; none
    named: every leaf), push them, and restart what reads them, keeping the API answering.

    \b
    Phases, in order:
    {phases}

    \b
    Which component reads which file comes from the certificate table; a static pod restarts because the
    digest of its certificates is in its manifest, a service because its input changed. The CAs and the
    service-account key are kept (their replacement is `certs rotate-ca`, not done yet); the kubelets'
    client certificates rotate by themselves. A second run within --fresh changes nothing.
    Check first with `kbootstrap certs check`.
    """
    from kbootstrap.cli.session import report, session
    from kbootstrap.model.spec import Role
    from kbootstrap.phases.bundle_payload import load_bundle
    from kbootstrap.pki.issue import RENEWED
    from kbootstrap.workflows import RENEW, Inputs
    from kbootstrap.workflows.certs_renew import renewal
    from kbootstrap.workflows.init_cluster import write_admin_kubeconfig
    from kbootstrap.workflows.join_nodes import unjoined

    spec = _load(inventory)
    wanted = renewal(spec, names, fresh_minutes, save=not dry_run)
    bundle, manifest = load_bundle(spec, artifacts)
    with session(spec, cluster_dir, spec.connected_nodes, "certs renew", accept_new_host_keys, output,
                 renewal=wanted) as s:
        renewed = [label for label, why in s.ctx.pki.report.reissued if why == RENEWED]
        verb = "would renew" if dry_run else "renewed"
        s.note(f"{verb} {len(renewed)} certificate(s)" + (f": {', '.join(renewed)}" if renewed else
                                                           f" (none issued more than {fresh_minutes} min ago)"))
        # A worker of the inventory that has not joined (no kubelet certificate) is left for `join`.
        workers = [n for n in spec.connected_nodes if n in spec.workers and not n.has(Role.CONTROL_PLANE)]
        skip = {n.name for n in unjoined(s, workers)} if workers else set()
        nodes = [n for n in spec.connected_nodes if n.name not in skip]
        result = s.run(RENEW.build(Inputs(s.ctx, nodes, bundle, manifest)), apply=not dry_run, parallel=parallel)
    report(s, result, output)
    if not result.failed and not dry_run:
        write_admin_kubeconfig(s.ctx, s.root)
    elif result.failed and not dry_run and renewed:
        err.print(f"the renewed certificates are in the cluster directory: re-run within {fresh_minutes} minutes to "
                  "push them without renewing them again")
    exit_for(result, dry_run)
