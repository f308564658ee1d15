"""`kbootstrap join`: workers into a running cluster, by kubelet TLS bootstrap with a short-lived token.

The token is made at join time on the first control plane (15 minutes, the kubeadm bootstrap group),
written only into the joining nodes' bootstrap kubeconfig, and deleted when the join ends, whatever
happened (kube-controller-manager's tokencleaner removes it at expiry if kbootstrap is killed first).
A node that already holds a kubelet client certificate is joined: it gets no token and no change.
`kbootstrap token create` makes the same kind of token, signing too, for `join --local`, which runs
the JOIN_LOCAL workflow on the node itself (join_local.py). The phases are in workflows/join.py.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import string
from concurrent.futures import ThreadPoolExecutor

from kbootstrap.engine.poll import Pending, poll
from kbootstrap.engine.session import Session
from kbootstrap.errors import KbootstrapError
from kbootstrap.model.host import kubectl
from kbootstrap.model.spec import Node, Role
from kbootstrap.render.cluster_addons import BOOTSTRAP_GROUP
from kbootstrap.render.node import KUBELET_CLIENT
from kbootstrap.render.templates import dump_yaml
from kbootstrap.transport import remote
from kbootstrap.transport.base import CommandResult, Transport

TOKEN_TTL = dt.timedelta(minutes=15)
_ALPHABET = string.ascii_lowercase + string.digits


class JoinError(KbootstrapError):
    pass


def join_targets(selected: list[Node]) -> list[Node]:
    return [n for n in selected if n.has(Role.WORKER) and not n.has(Role.CONTROL_PLANE)]


def unjoined(s: Session, nodes: list[Node]) -> list[Node]:
    """Nodes without a kubelet client certificate yet (one facts round trip each, side by side)."""
    def has_cert(n: Node) -> bool:
        return remote.gather(s.transports[n.name], [KUBELET_CLIENT]).files.get(KUBELET_CLIENT) is not None

    with ThreadPoolExecutor(max_workers=min(len(nodes), 16) or 1) as pool:
        return [n for n, joined in zip(nodes, pool.map(has_cert, nodes), strict=True) if not joined]


def delete_token(t: Transport, token_id: str) -> CommandResult:
    """Delete bootstrap token `token_id` through a control plane; stdout names the Secret when it existed."""
    return t.run(kubectl("delete", "secret", "-n", "kube-system", f"bootstrap-token-{token_id}", "--ignore-not-found",
                         "-o", "name"), sudo=True)


class BootstrapToken:
    """A bootstrap token Secret on the cluster. As a `with` block: made for one `kbootstrap join` and deleted
    when it ends. `create()` alone: for `kbootstrap token create` (join --local on a node), which also lets
    kube-controller-manager sign cluster-info with it (discovery) and leaves it to expire."""

    def __init__(self, s: Session, purpose: str, ttl: dt.timedelta = TOKEN_TTL, signing: bool = False):
        self.s = s
        self.first = s.ctx.spec.control_planes[0].name
        self.id = "".join(secrets.choice(_ALPHABET) for _ in range(6))
        self.value = f"{self.id}.{''.join(secrets.choice(_ALPHABET) for _ in range(16))}"
        self.purpose, self.ttl, self.signing = purpose, ttl, signing
        self.expires = ""

    def create(self) -> BootstrapToken:
        self.expires = (dt.datetime.now(dt.UTC) + self.ttl).strftime("%Y-%m-%dT%H:%M:%SZ")
        data = {
            "description": self.purpose,
            "token-id": self.id, "token-secret": self.value.split(".")[1], "expiration": self.expires,
            "usage-bootstrap-authentication": "true", "auth-extra-groups": BOOTSTRAP_GROUP,
        }
        if self.signing:
            data["usage-bootstrap-signing"] = "true"
        doc = {"apiVersion": "v1", "kind": "Secret", "type": "bootstrap.kubernetes.io/token",
               "metadata": {"name": f"bootstrap-token-{self.id}", "namespace": "kube-system"}, "stringData": data}
        # The token travels on stdin, never in argv (visible in ps) or in an error message.
        r = self.s.transports[self.first].run(kubectl("create", "-f", "-"), sudo=True, stdin=dump_yaml(doc))
        if not r.ok:
            raise JoinError(f"{self.first}: could not create a bootstrap token (exit {r.rc}): {r.stderr_tail()}")
        self.s.note(f"{self.first}: bootstrap token {self.id} made ({self.purpose}), expires {self.expires}")
        return self

    def __enter__(self) -> BootstrapToken:
        return self.create()

    def __exit__(self, *exc) -> None:
        r = delete_token(self.s.transports[self.first], self.id)
        self.s.note(f"{self.first}: bootstrap token {self.id} " + ("deleted" if r.ok else
                    f"NOT deleted (exit {r.rc}); it expires by itself within {self.ttl}"))


def wait_signed(s: Session, token_id: str, timeout: float = 60) -> None:
    """Until kube-controller-manager's bootstrapsigner has signed cluster-info for the token (within seconds):
    discovery on a node refuses a token whose signature is not there yet."""
    first = s.ctx.spec.control_planes[0].name

    def signed() -> bool | Pending:
        r = s.transports[first].run(kubectl("get", "configmap", "-n", "kube-public", "cluster-info", "-o", "json"),
                                    sudo=True)
        return True if r.ok and f"jws-kubeconfig-{token_id}" in json.loads(r.stdout).get("data", {}) else Pending()

    if isinstance(poll(signed, timeout=timeout, interval=1), Pending):
        raise JoinError(f"{first}: cluster-info has no signature for token {token_id} after {timeout:.0f}s "
                        "(is kube-controller-manager running with the bootstrapsigner controller, and was "
                        "cluster-info published by `kbootstrap init`?)")


