"""`kbootstrap init`: the control plane of a cluster, from bare hosts to the API answering through the
load balancer with the control-plane nodes Ready. Workers come after, with `kbootstrap join`.

Each phase converges every host it concerns before the next starts; a host that fails stops the run
there (nothing later depends on a half-made step), and running `init` again resumes: every step checks
the host first, so finished work is skipped and a finished cluster gets no change at all.
"""

from __future__ import annotations

from pathlib import Path

from kbootstrap.artifacts.manifest import Manifest
from kbootstrap.cli.session import Session
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
    """Every problem of every host at once, before any change. Hosts that an earlier run already configured
    may hold kbootstrap's own ports: those listeners are expected, not conflicts."""
    from kbootstrap.preflight import errors, format_problems, required_ports, run_preflight

    spec = s.ctx.spec
    done = s.journal.configured_hosts()
    configured = {n.name: set(required_ports(spec, n)) for n in nodes if n.name in done}
    findings = run_preflight(spec, {n.name: s.transports[n.name] for n in nodes}, bundle_arch=manifest.arch,
                             expected_listeners=configured, will_install=WILL_INSTALL)
    if findings:
        s.note(format_problems(findings))
    if errors(findings):
        raise PreflightFailed("preflight found errors (above); nothing was changed on any host")


def write_admin_kubeconfig(ctx: RenderContext, root: Path) -> Path:
    """admin.conf on the controller (0600), pointing at the load balancer: the operator's kubectl access."""
    from kbootstrap.engine.localfs import write_atomic
    from kbootstrap.render.pki_files import pki_files

    first = ctx.spec.control_planes[0]
    conf = next(a for a in pki_files(ctx, first) if a.path == "/etc/kubernetes/admin.conf")
    path = root / "admin.conf"
    write_atomic(path, conf.content, 0o600)
    return path
