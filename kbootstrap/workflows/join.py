"""`kbootstrap join`: workers by TLS bootstrap; `--control-plane`: control planes added later; `--local`: a worker
joining itself."""

from __future__ import annotations

from dataclasses import replace

from kbootstrap.engine.runner import Phase
from kbootstrap.phases import cleanup_bootstrap, configure_files, start_nodes, wait_ready
from kbootstrap.workflows.init import BINARIES, INIT, OS, PACKAGES, RUNTIME
from kbootstrap.workflows.table import Inputs, PhaseSpec, Workflow


def _files(i: Inputs):
    """Nodes that joined get their files as rendered; new ones also the bootstrap kubeconfig with the token."""
    phase = configure_files.configure_files(i.ctx, [n for n in i.nodes if n not in i.new])
    if i.new and i.token:
        phase.steps |= configure_files.configure_files(replace(i.ctx, bootstrap_token=i.token), i.new).steps
    return phase


FILES = PhaseSpec(configure_files.NAME, "certificates, kubeconfigs, configs and units; new nodes' bootstrap "
                  "kubeconfig with the join's token", _files)
CLEANUP = PhaseSpec(cleanup_bootstrap.NAME, "the bootstrap kubeconfig (it held the token) removed",
                    lambda i: cleanup_bootstrap.cleanup_bootstrap(i.nodes))

JOIN = Workflow("join", (
    OS, PACKAGES, RUNTIME, BINARIES, FILES,
    PhaseSpec(start_nodes.NAME, "kubelet, kube-proxy, pod routes",
              lambda i: start_nodes.start_nodes(i.ctx, i.nodes, i.binaries)),
    PhaseSpec(wait_ready.NAME, "the nodes Ready (--timeout)",
              lambda i: wait_ready.nodes_ready_phase(i.ctx, i.nodes, i.timeout)),
    CLEANUP,
))

def _joined_workers(i: Inputs) -> Phase | None:
    """The joined workers' files (the new control plane's pod route and /etc/hosts entry), then their node
    services, restarted only for what changed."""
    if not i.workers:
        return None
    files = configure_files.configure_files(i.ctx, i.workers)
    services = start_nodes.start_nodes(i.ctx, i.workers, i.binaries)
    return Phase(start_nodes.NAME, {n.name: [*files.steps[n.name], *services.steps[n.name]] for n in i.workers})


# init over the control side, then the joined workers.
JOIN_CONTROL_PLANE = INIT.then("join --control-plane", PhaseSpec(
    start_nodes.NAME, "joined workers: files (the new pod route, /etc/hosts), then kubelet, kube-proxy, pod routes "
    "restarted only for what changed", _joined_workers))

# On the node: kube-proxy starts once the kubelet holds the client certificate it runs on; then the serving
# certificate is awaited (the Node Ready wait follows, read as the node through the API).
JOIN_LOCAL = Workflow("join --local", (
    OS, PACKAGES, RUNTIME, BINARIES, FILES,
    PhaseSpec(start_nodes.NAME, "kubelet; kube-proxy once the kubelet has its client certificate; the node-sync "
              "timer", lambda i: start_nodes.start_local_node(i.ctx, i.nodes[0], i.binaries, i.timeout)),
    PhaseSpec(wait_ready.NAME, "the kubelet's serving certificate, approved by kbootstrap-csr-approver",
              lambda i: wait_ready.serving_cert_phase(i.nodes[0], i.timeout)),
    CLEANUP,
))
