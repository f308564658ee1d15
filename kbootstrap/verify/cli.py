"""`kbootstrap verify`: check a running cluster against its inventory, read-only. Registered in
kbootstrap/cli/main.py with `main.add_command(verify)`; runnable alone as `python -m kbootstrap.verify`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from kbootstrap.cli.common import INVENTORY_HELP, _load, default_cluster_dir, fail, out, select_nodes
from kbootstrap.errors import KbootstrapError


@click.command()
@click.option("-i", "--inventory", type=click.Path(path_type=Path), required=True, help=INVENTORY_HELP)
@click.option("--cluster-dir", type=click.Path(path_type=Path),
              help="Cluster directory whose PKI the hosts must hold (default: the cluster's under KBOOTSTRAP_HOME).")
@click.option("--host", "hosts", multiple=True, help="Only these hosts (repeatable). Default: all.")
@click.option("--parallel", default=10, show_default=True, help="Hosts checked at once.")
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--watch", "watch", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="Instead of the checks: the availability probe for SECONDS (Ctrl-C ends it early): requests to "
                   "the API (GET /version) through the VIP, and to each --url, at --rate a second; prints requests, "
                   "failures and the longest gap without an answer. Exit 1 when a request failed.")
@click.option("--rate", type=float, default=10.0, show_default=True, help="--watch: requests a second per target.")
@click.option("--timeout", "request_timeout", type=click.FloatRange(min=0.1), default=2.0, show_default=True,
              help="--watch: seconds a request may take before it counts as failed.")
@click.option("--url", "urls", multiple=True, metavar="URL",
              help="--watch: also probe this URL (a workload Service, e.g. http://NODE:NODEPORT/); an answer is "
                   "HTTP 200. Repeatable.")
def verify(inventory: Path, cluster_dir: Path | None, hosts: tuple[str, ...], parallel: int, output: str,
           watch: float | None, rate: float, request_timeout: float, urls: tuple[str, ...]) -> None:
    """Check that the cluster runs as the inventory says. Changes nothing, anywhere.

    \b
    Per host (over SSH, in parallel):
      every host      each rendered file present, with its mode and owner, and its sha256
      kubelet nodes   containerd, kubelet, kube-proxy, pod routes active and enabled; port 10250;
                      the kubelet serving certificate valid now, CA-signed, matching its key
      control planes  port 6443; kube-apiserver, -controller-manager, -scheduler running
                      (containers in the static-pod form, services in the systemd form)
      etcd members    etcd running, ports 2379/2380, `etcdctl endpoint health`, member list = inventory
      load balancers  haproxy active and listening; keepalived active
      (control planes also run kbootstrap-csr-approver when the inventory has `join: local` workers)
    From this machine: /readyz through the load balancer, every node Ready, exactly one load balancer
    holding the VIP, no certificate of the cluster directory due for reissue.
    A `join: local` worker is never connected to: it is checked through the API only (node Ready, and
    kube-apiserver reaching its kubelet over the CA-signed serving certificate).

    Exit 0 when every check passes, 1 when one fails (an unreachable host is a failed check), 2 for bad input.

    \b
    With --watch SECONDS: the availability probe alone, run beside an operation in another terminal, e.g.
      kbootstrap verify -i INV --watch 300 --url http://10.0.0.31:30080/
    """
    from kbootstrap.verify.output import checks_json, exit_code, print_checks
    from kbootstrap.verify.run import run_verify

    spec = _load(inventory)
    if watch is not None:
        from kbootstrap.verify.watch import watch_availability

        sys.exit(watch_availability(spec, cluster_dir or default_cluster_dir(spec), watch, rate, request_timeout,
                                    urls, output))
    if urls:
        raise click.BadParameter("goes with --watch", param_hint="--url")
    nodes = select_nodes(spec, hosts, connected=False)  # local workers: API checks only
    checks = run_verify(spec, cluster_dir or default_cluster_dir(spec), nodes, parallel)
    if output == "json":
        click.echo(checks_json(checks))
    else:
        print_checks(checks, out, title=f"kbootstrap verify: {spec.cluster.name}")
    sys.exit(exit_code(checks))


def _main() -> None:
    try:
        verify(standalone_mode=True)
    except KbootstrapError as e:  # what kbootstrap's group does for its commands
        fail(e)


if __name__ == "__main__":
    _main()
