"""`kbootstrap join`: workers into a running cluster, by kubelet TLS bootstrap with a short-lived token.

The token is made at join time on the first control plane (15 minutes, the kubeadm bootstrap group),
written only into the joining nodes' bootstrap kubeconfig, and deleted when the join ends, whatever
happened (kube-controller-manager's tokencleaner removes it at expiry if kbootstrap is killed first).
A node that already holds a kubelet client certificate is joined: it gets no token and no change.
"""

from __future__ import annotations

import datetime as dt
import secrets
import string
from dataclasses import replace
from pathlib import Path

from .artifacts.manifest import Manifest
from .engine_cli import Session
from .errors import KbootstrapError
from .phases import bundle_payload
from .phases.configure_files import configure_files
from .phases.install_kubernetes import install_kubernetes
from .phases.install_packages import install_packages
from .phases.install_runtime import install_runtime
from .phases.prepare_os import prepare_os
from .phases.services import kubectl, nodes_ready
from .phases.start_nodes import start_nodes
from .render import RenderContext
from .render.cluster_addons import BOOTSTRAP_GROUP
from .runner import Phase
from .spec import Node, Role
from .steps import CommandStep, WaitStep
from .transport import remote
from .render.templates import dump_yaml

KUBELET_CLIENT = "/var/lib/kubelet/pki/kubelet-client-current.pem"
BOOTSTRAP_KUBECONFIG = "/etc/kubernetes/bootstrap-kubelet.conf"
TOKEN_TTL = dt.timedelta(minutes=15)
_ALPHABET = string.ascii_lowercase + string.digits


class JoinError(KbootstrapError):
    pass


def join_targets(selected: list[Node]) -> list[Node]:
    return [n for n in selected if n.has(Role.WORKER) and not n.has(Role.CONTROL_PLANE)]


def unjoined(s: Session, nodes: list[Node]) -> list[Node]:
    """Nodes without a kubelet client certificate yet (one facts round trip each)."""
    return [n for n in nodes if remote.gather(s.transports[n.name], [KUBELET_CLIENT]).files.get(KUBELET_CLIENT) is None]


class BootstrapToken:
    """A bootstrap token Secret on the cluster for the duration of a `with` block."""

    def __init__(self, s: Session, for_nodes: list[Node]):
        self.s = s
        self.first = s.ctx.spec.control_planes[0].name
        self.id = "".join(secrets.choice(_ALPHABET) for _ in range(6))
        self.value = f"{self.id}.{''.join(secrets.choice(_ALPHABET) for _ in range(16))}"
        self.for_nodes = ", ".join(n.name for n in for_nodes)

    def __enter__(self) -> "BootstrapToken":
        expires = dt.datetime.now(dt.timezone.utc) + TOKEN_TTL
        doc = {
            "apiVersion": "v1", "kind": "Secret", "type": "bootstrap.kubernetes.io/token",
            "metadata": {"name": f"bootstrap-token-{self.id}", "namespace": "kube-system"},
            "stringData": {
                "description": f"kbootstrap join of {self.for_nodes}; deleted when the join ends",
                "token-id": self.id, "token-secret": self.value.split(".")[1],
                "expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "usage-bootstrap-authentication": "true", "auth-extra-groups": BOOTSTRAP_GROUP,
            },
        }
        # The token travels on stdin, never in argv (visible in ps) or in an error message.
        r = self.s.transports[self.first].run(kubectl("create", "-f", "-"), sudo=True, stdin=dump_yaml(doc))
        if not r.ok:
            raise JoinError(f"{self.first}: could not create a bootstrap token (exit {r.rc}): {r.stderr_tail()}")
        self.s.note(f"{self.first}: bootstrap token {self.id} made for {self.for_nodes}, expires {doc['stringData']['expiration']}")
        return self

    def __exit__(self, *exc) -> None:
        r = self.s.transports[self.first].run(
            kubectl("delete", "secret", "-n", "kube-system", f"bootstrap-token-{self.id}", "--ignore-not-found"),
            sudo=True)
        self.s.note(f"{self.first}: bootstrap token {self.id} " + ("deleted" if r.ok else
                    f"NOT deleted (exit {r.rc}); it expires by itself within {TOKEN_TTL}"))


def join_phases(ctx: RenderContext, token: str | None, bundle: Path, manifest: Manifest, nodes: list[Node],
                new: list[Node], timeout: float = 300) -> list[Phase]:
    spec = ctx.spec
    binaries = {n.name: bundle_payload.binaries(spec, n, bundle, manifest) for n in nodes}
    files = configure_files(ctx, [n for n in nodes if n not in new])
    if new and token:
        files.steps |= configure_files(replace(ctx, bootstrap_token=token), new).steps
    first = spec.control_planes[0].name
    names = [n.name for n in nodes]
    return [
        prepare_os(ctx, nodes),
        install_packages(ctx, bundle, manifest, nodes),
        install_runtime(ctx, bundle, manifest, nodes),
        install_kubernetes(ctx, bundle, manifest, nodes),
        files,
        start_nodes(ctx, nodes, binaries),
        Phase("ready", {first: [WaitStep("nodes Ready", nodes_ready(names), timeout=timeout, interval=3,
                                         what="nodes " + ", ".join(names))]}),
        # The bootstrap kubeconfig held the token: once the kubelet has its own certificate, remove it.
        Phase("cleanup", {n.name: [CommandStep("remove bootstrap kubeconfig",
                                               probe=["test", "!", "-e", BOOTSTRAP_KUBECONFIG],
                                               command=["rm", "-f", BOOTSTRAP_KUBECONFIG])] for n in nodes}),
    ]
