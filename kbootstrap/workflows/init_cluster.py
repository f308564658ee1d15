"""`kbootstrap init`: the control plane of a cluster, from bare hosts to the API answering through the
load balancer with the control-plane nodes Ready. Workers come after, with `kbootstrap join`.

Each phase converges every host it concerns before the next starts; a host that fails stops the run
there (nothing later depends on a half-made step), and running `init` again resumes: every step checks
the host first, so finished work is skipped and a finished cluster gets no change at all.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from kbootstrap.artifacts.manifest import Manifest
from kbootstrap.engine.runner import GateAnswer
from kbootstrap.engine.session import Session
from kbootstrap.errors import Refused
from kbootstrap.model.spec import ClusterSpec, Node, Role
from kbootstrap.render import RenderContext


def init_nodes(spec: ClusterSpec, selected: list[Node]) -> list[Node]:
    """What init works on: load balancers, etcd hosts and control planes (workers are for `join`)."""
    return [n for n in selected
            if n.has(Role.LOADBALANCER) or n.has(Role.CONTROL_PLANE) or spec.is_etcd_member(n)]


# Commands a phase installs itself (the `packages` phase brings iptables), so their absence is no problem.
WILL_INSTALL = {"iptables"}


class PreflightFailed(Refused):
    """Preflight found errors: nothing was changed on any host."""


def preflight(s: Session, nodes: list[Node], manifest: Manifest) -> None:
    """Preflight on its own round trip, before a change made outside the runner (a bootstrap token, an etcd
    member added): every problem of every host at once."""
    from kbootstrap.preflight import run_preflight

    Preflight(s, nodes, manifest).report(run_preflight(
        s.ctx.spec, {n.name: s.transports[n.name] for n in nodes}, bundle_arch=manifest.arch,
        expected_listeners=_configured(s, nodes), will_install=WILL_INSTALL))


def _configured(s: Session, nodes: list[Node]) -> dict[str, set[int]]:
    """Hosts that an earlier run of this command applied may hold kbootstrap's own ports: those listeners
    are expected, not conflicts."""
    from kbootstrap.preflight import required_ports

    done = s.journal.configured_hosts()
    return {n.name: set(required_ports(s.ctx.spec, n)) for n in nodes if n.name in done}


class Preflight:
    """Preflight as the runner's gate: the probe runs in the up-front round trip with the facts of every
    phase, and a finding of severity error stops the run before anything is applied. `then` runs once it
    passes (init records the etcd members that start the cluster)."""

    def __init__(self, s: Session, nodes: list[Node], manifest: Manifest, then: Callable[[], None] | None = None):
        self.s, self.nodes, self.manifest, self.then = s, {n.name: n for n in nodes}, manifest, then

    def program(self, host: str) -> dict[str, Any] | None:
        from kbootstrap.preflight.facts import probe_program
        from kbootstrap.preflight.run import request_for

        node = self.nodes.get(host)
        return probe_program(request_for(self.s.ctx.spec, node)) if node else None

    def check(self, answers: dict[str, GateAnswer]) -> None:
        from kbootstrap.preflight.run import from_answer, judge

        spec = self.s.ctx.spec
        probed = {h: from_answer(self.nodes[h], a.result, a.error, a.sent_at, a.received_at)
                  for h, a in answers.items()}
        self.report(judge(spec, probed, bundle_arch=self.manifest.arch,
                          expected_listeners=_configured(self.s, list(self.nodes.values())),
                          will_install=WILL_INSTALL))

    def report(self, findings: list) -> None:
        from kbootstrap.preflight import errors, format_problems

        if findings:
            self.s.note(format_problems(findings))
        if errors(findings):
            raise PreflightFailed("preflight found errors (above); nothing was changed on any host")
        if self.then is not None:
            self.then()


def write_admin_kubeconfig(ctx: RenderContext, root: Path) -> Path:
    """admin.conf on the controller (0600), pointing at the load balancer: the operator's kubectl access."""
    from kbootstrap.engine.localfs import write_atomic
    from kbootstrap.render.pki_files import pki_files

    first = ctx.spec.control_planes[0]
    conf = next(a for a in pki_files(ctx, first) if a.path == "/etc/kubernetes/admin.conf")
    path = root / "admin.conf"
    write_atomic(path, conf.content, 0o600)
    return path
