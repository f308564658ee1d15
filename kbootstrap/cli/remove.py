"""`kbootstrap remove`: the command line of the remove workflow (workflows/remove_nodes.py)."""

from __future__ import annotations

import click

from kbootstrap.cli.common import ARTIFACTS_OPTION, HOST_OPTIONS, PhasedCommand, _load, err, exit_for, labelled


@click.command(cls=PhasedCommand, workflows=("remove",))
@HOST_OPTIONS[0]
@HOST_OPTIONS[1]
@click.option("--host", "hosts", multiple=True, required=True, help="A node to remove (repeatable).")
@HOST_OPTIONS[3]
@HOST_OPTIONS[4]
@HOST_OPTIONS[5]
@click.option("--unreachable", is_flag=True,
              help="The named nodes are gone for good (destroyed, powered off): never contact them; their Node "
                   "and etcd member are removed from the cluster's side only.")
@click.option("--yes", is_flag=True, help="Confirm: the named nodes leave the cluster (required unless --dry-run).")
@click.option("--dry-run", is_flag=True, help="Show what remove would do; change nothing (exit 3 if anything would).")
@ARTIFACTS_OPTION
def remove(inventory, cluster_dir, hosts, parallel, accept_new_host_keys, output, unreachable, yes, dry_run,
           artifacts) -> None:
    """Take nodes (--host, repeatable) out of the running cluster, keeping the API answering.

    \b
    Phases, in order:
    {phases}

    \b
    Refused (exit 2, nothing changed) when the removal would leave no control plane, would remove a load
    balancer, more than one etcd member at once or the last one, or when the etcd members that stay are
    not a healthy quorum (read from them first). A control plane that died: `remove --host NODE
    --unreachable`, then give it a new host (same name and address, or change them) and run
    `kbootstrap join --control-plane`: its member is added as a learner and promoted.
    Afterwards delete the nodes from the inventory (the command prints what to keep pinned); until then
    `init` and `join` would bring them back. A second run changes nothing.
    """
    from kbootstrap.cli.session import report, session
    from kbootstrap.phases.bundle_payload import load_bundle
    from kbootstrap.render import RenderContext
    from kbootstrap.workflows import Inputs
    from kbootstrap.workflows.join_nodes import unjoined
    from kbootstrap.workflows.remove_nodes import (
        REMOVE,
        RemovePlan,
        moved_subnets,
        quorum_problem,
        removal_problem,
        staying,
    )

    spec = _load(inventory)
    if not hosts:
        raise click.BadParameter("name the nodes to remove", param_hint="--host")
    unknown = [h for h in hosts if h not in {n.name for n in spec.nodes}]
    if unknown:
        raise click.BadParameter(f"not in the inventory: {', '.join(unknown)}", param_hint="--host")
    removed = [n for n in spec.nodes if n.name in hosts]
    problem = removal_problem(spec, removed)
    if problem:
        raise click.BadParameter(problem, param_hint="--host")
    if not yes and not dry_run:
        raise click.BadParameter(f"{', '.join(hosts)} would leave the cluster (drained, deleted, reset); add --yes "
                                 "(or --dry-run to see the plan)", param_hint="--yes")
    after = staying(spec, removed)
    bundle, manifest = load_bundle(spec, artifacts)
    through = next(cp for cp in spec.control_planes if cp not in removed)
    gone = set(hosts) if unreachable else set()
    connect = [n for n in spec.connected_nodes if n.name not in gone]
    with session(spec, cluster_dir, connect, "remove", accept_new_host_keys, output) as s:
        member_through = next((m for m in spec.etcd_members if m not in removed), through)
        why = quorum_problem(s, spec, removed, member_through)
        if why:
            raise click.BadParameter(why, param_hint="--host")
        stay = [n for n in connect if n not in removed]
        workers = [n for n in stay if n in spec.workers and n not in spec.control_planes]
        # A worker of the inventory that is not in the cluster (not joined yet, or removed earlier and still
        # listed): not configured by a removal.
        plan = RemovePlan(spec, removed, through, RenderContext(after, s.ctx.pki, s.ctx.secrets,
                                                                etcd_record=s.members), gone,
                          {n.name for n in unjoined(s, workers)} if workers else set())
        phases = REMOVE.build(Inputs(s.ctx, stay, bundle, manifest, remove=plan))
        result = s.run(phases, apply=not dry_run, parallel=parallel)
        if not result.failed and not dry_run:
            s.members.forget([n.name for n in removed])
    report(s, result, output)
    if not result.failed and not dry_run:  # stderr: with --output json, stdout holds the report alone
        moved = moved_subnets(spec, removed)
        them = "them" if len(hosts) > 1 else "it"
        err.print(labelled("removed", "green", f"{', '.join(hosts)}. Now delete {them} from {inventory}"
                           + (f": until then `init` and `join` would bring {them} back." if not moved
                              else ", and add to keep every pod subnet where it is:")))
        for name, subnet in moved.items():
            err.print(f"  {name}: pod_subnet: {subnet}")
    exit_for(result, dry_run)
