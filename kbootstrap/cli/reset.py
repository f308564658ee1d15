"""`kbootstrap reset`: the command line of the reset workflow (workflows/reset.py, phases/reset.py). Registered in
cli/main.py with `main.add_command(reset)`; its options come from cli/common.py."""

from __future__ import annotations

import functools
from pathlib import Path

import click

from kbootstrap.cli.common import (
    ARTIFACTS_OPTION,
    PhasedCommand,
    _load,
    exit_for,
    fail,
    host_options,
    phase_options,
    select_nodes,
)
from kbootstrap.errors import Refused


@click.command(cls=PhasedCommand, workflows=("reset",))
@functools.partial(host_options, inventory_required=False)
@click.option("--local", is_flag=True, help="Reset THIS machine, as root on it: a worker that joined with "
                                            "`kbootstrap join --local` (no inventory needed).")
@click.option("--yes", is_flag=True, help="Confirm: reset deletes the cluster on the selected hosts. Required "
                                           "unless --dry-run.")
@click.option("--dry-run", is_flag=True, help="Show what reset would stop, remove and delete; change nothing "
                                              "(exit 3 if anything would change).")
@click.option("--purge", is_flag=True, help="Also remove the binaries init installed (listed by the artifact "
                                            "bundle) and the payload it copied to /var/lib/kbootstrap.")
@ARTIFACTS_OPTION
@phase_options
def reset(inventory: Path | None, cluster_dir: Path | None, hosts: tuple[str, ...], parallel: int,
          accept_new_host_keys: bool, output: str, local: bool, yes: bool, dry_run: bool, purge: bool,
          artifacts: Path | None, skip_phases: tuple[str, ...], only_phases: tuple[str, ...]) -> None:
    """Undo init and join on the selected hosts (default: all): the cluster is gone from them.

    \b
    Phases, in order (each on every host it concerns, hosts in parallel):
    {phases}
    Binaries (without --purge), OS packages, images and the cluster directory on this machine stay:
    `kbootstrap init` afterwards makes the same cluster again. A second reset changes nothing.

    With --local, on a worker that joined itself: the same phases on this machine, from what `join --local`
    kept in /var/lib/kbootstrap/local (so it works with the cluster gone); the Node object stays in the
    cluster (`kubectl delete node NAME`), as after `kubeadm reset`.
    """
    from kbootstrap.cli.session import report, session
    from kbootstrap.phases.reset import detach_host, partial_reset_problem, purge_paths
    from kbootstrap.workflows import RESET, Inputs

    if local:
        if inventory is not None or hosts or purge:
            raise click.BadParameter("--local resets this machine from what its join kept: no -i, --host or --purge",
                                     param_hint="--local")
        _confirm(yes, dry_run, "what kbootstrap set up on this machine: its kubelet, kube-proxy, pods, "
                               "certificates and iptables rules")
        from kbootstrap.cli.session import print_local
        from kbootstrap.local.join import run_local_reset

        exit_for(print_local(output, lambda: run_local_reset(dry_run)), dry_run)
    if inventory is None:
        raise click.BadParameter("required (or --local, on a node that joined itself)", param_hint="-i/--inventory")
    spec = _load(inventory)
    nodes = select_nodes(spec, hosts)
    problem = partial_reset_problem(spec, nodes)
    if problem:
        raise click.BadParameter(problem, param_hint="--host")
    _confirm(yes, dry_run, f"the cluster {spec.cluster.name} on {', '.join(n.name for n in nodes)}: its services, "
                           "containers, etcd data, certificates and iptables rules")
    purge_by_host = None
    if purge:
        from kbootstrap.phases.bundle_payload import load_bundle

        _, manifest = load_bundle(spec, artifacts)
        purge_by_host = {n.name: purge_paths(spec, n, manifest) for n in nodes}
    through = detach_host(spec, nodes)
    connect = nodes + ([through] if through is not None else [])
    with session(spec, cluster_dir, connect, "reset", accept_new_host_keys, output) as s:
        result = s.run(RESET.build(Inputs(s.ctx, nodes, purge=purge_by_host), skip=skip_phases, only=only_phases),
                       apply=not dry_run, parallel=parallel)
        if not dry_run and not result.failed and all(m in nodes for m in spec.etcd_members):
            s.members.delete()  # the etcd data it described is gone: the next init starts a new cluster
    report(s, result, output)
    exit_for(result, dry_run)


def _confirm(yes: bool, dry_run: bool, what: str) -> None:
    if not yes and not dry_run:
        fail(Refused(f"refusing: reset stops and deletes {what}. This cannot be undone.\nRun again with --yes to "
                     "do it, or with --dry-run to see what it would change."))
