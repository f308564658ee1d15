"""Phase `cleanup`: once the kubelet has its own certificate, the bootstrap kubeconfig (it held the join's token)
is removed."""

from __future__ import annotations

from kbootstrap.engine.runner import Phase
from kbootstrap.engine.steps import CommandStep
from kbootstrap.model.spec import Node

NAME = "cleanup"  # the phase's name in workflow tables, --help, --skip-phases and the journal
BOOTSTRAP_KUBECONFIG = "/etc/kubernetes/bootstrap-kubelet.conf"


def cleanup_bootstrap(nodes: list[Node]) -> Phase:
    return Phase(NAME, {n.name: [CommandStep("remove bootstrap kubeconfig", probe=["test", "!", "-e", BOOTSTRAP_KUBECONFIG],
                                             command=["rm", "-f", BOOTSTRAP_KUBECONFIG])] for n in nodes})
