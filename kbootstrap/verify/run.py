"""Run the checks: each host in parallel over SSH (testinfra's Host on kbootstrap's transport), the
cluster-level ones from the controller with kubectl. Read-only: nothing is written anywhere.

testinfra runs its commands through `TransportBackend`, i.e. through the same paramiko connection as the
engine (`SSHTransport`): host keys verified against the inventory's known_hosts or pinned key with
RejectPolicy (never accepted here), `sudo -n` or the password from `ssh.password_env`, a bastion, and a
timeout on every command. The rendered files are compared in one agent round trip per host.
"""

from __future__ import annotations

import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kbootstrap.engine.hosts import connect_all
from kbootstrap.errors import KbootstrapError
from kbootstrap.model import host
from kbootstrap.model.etcd_members import client_url
from kbootstrap.model.host import CRICTL
from kbootstrap.model.spec import ClusterSpec, Node
from kbootstrap.phases.services import etcd_health
from kbootstrap.render import RenderContext, render_host
from kbootstrap.transport import remote
from kbootstrap.transport.base import Transport, quote
from kbootstrap.verify.checks import (
    CLUSTER,
    SERVING_CERT,
    SERVING_KEY,
    Check,
    Probe,
    etcd_members_check,
    file_checks,
    host_probes,
    kubelet_proxy_check,
    node_ready_checks,
    port_check,
    service_check,
    serving_cert_check,
    vip_check,
)
from kbootstrap.verify.context import load_context, stale_certificates


class VerifyError(KbootstrapError):
    pass


def testinfra_host(t: Transport) -> Any:
    """A testinfra Host whose commands run as root through `t` (see the module docstring)."""
    try:
        import testinfra.host
        from testinfra.backend.base import BaseBackend
    except ImportError:
        raise VerifyError("`kbootstrap verify` needs pytest-testinfra: pip install pytest-testinfra") from None

    class TransportBackend(BaseBackend):
        NAME = "kbootstrap"

        def run(self, command: str, *args: str, **kwargs: Any):
            cmd = self.get_command(command, *args)
            r = t.run(["sh", "-c", cmd], sudo=True, timeout=60)
            return self.result(r.rc, self.encode(cmd), r.stdout, r.stderr)

    return testinfra.host.Host(TransportBackend(t.host))


class HostChecks:
    """The checks of one node, each probe turned into Check rows; the VIP holding is kept for the cluster row."""

    def __init__(self, ctx: RenderContext, node: Node, t: Transport):
        self.ctx, self.node, self.t = ctx, node, t
        self.host = testinfra_host(t)
        self.holds_vip: bool | None = None

    def run(self) -> list[Check]:
        name = self.node.name
        try:
            who = self.host.run("id -u")
        except KbootstrapError as e:  # unreachable, host key, authentication, sudo password
            return [Check(name, "ssh and sudo", False, _one_line(e))]
        if who.rc != 0 or who.stdout.strip() != "0":
            return [Check(name, "ssh and sudo", False, f"cannot become root: {(who.stderr or who.stdout).strip()[:160]}")]
        ssh = self.ctx.spec.ssh_for(self.node)
        out = [Check(name, "ssh and sudo", True, f"{ssh.user}@{self.node.address}, root")]
        for probe in host_probes(self.ctx, self.node):
            try:
                out += self.check(probe)
            except Exception as e:  # noqa: BLE001 - one failed probe is a failed row, never a traceback
                out.append(Check(name, probe.what, False, f"could not check: {_one_line(e)}"))
        return out

    def check(self, p: Probe) -> list[Check]:
        name, h = self.node.name, self.host
        if p.kind == "files":
            artifacts = render_host(self.ctx, self.node)
            return file_checks(name, artifacts, remote.gather(self.t, [a.path for a in artifacts]).files)
        if p.kind == "service":
            s = h.service(p.target)
            return [service_check(name, p.target, s.is_running, s.is_enabled)]
        if p.kind == "port":
            # TCP sockets only (`ss --tcp`): a short answer; the all-families listing is long and busy.
            # The wildcards first: testinfra counts a listener on :: as listening on every address.
            address = str(self.node.address)
            on = {a for a in ("0.0.0.0", "::") if h.socket(f"tcp://{a}:{p.expect}").is_listening}
            if not on and h.socket(f"tcp://{address}:{p.expect}").is_listening:
                on = {address}
            return [port_check(name, p.expect, address, {p.expect: on})]
        if p.kind == "container":
            r = h.run(quote([*CRICTL, "ps", "--name", f"^{p.target}$", "--state", "Running", "-q"]))
            ids = r.stdout.split()
            detail = f"{len(ids)} running: {ids[0][:13]}" if ids else (r.stderr.strip()[:160] or "none running")
            return [Check(name, p.what, r.rc == 0 and bool(ids), detail)]
        if p.kind == "serving-cert":
            files = remote.read_files(self.t, [SERVING_CERT, SERVING_KEY])
            return [serving_cert_check(name, str(self.node.address), files.get(SERVING_CERT), files.get(SERVING_KEY),
                                       self.ctx.pki.ca("ca").cert)]
        if p.kind == "etcd-health":
            r = h.run(quote(etcd_health(self.node)))
            text = (r.stdout.strip() or r.stderr.strip()).splitlines()
            return [Check(name, p.what, r.rc == 0, text[-1][:200] if text else f"exit {r.rc}")]
        if p.kind == "etcd-members":
            r = h.run(quote(etcdctl(self.node, "member", "list", "-w", "json")))
            if r.rc != 0:
                return [Check(name, p.what, False, f"etcdctl exit {r.rc}: {r.stderr.strip()[:160]}")]
            return [etcd_members_check(name, [m.name for m in self.ctx.spec.etcd_members], r.stdout)]
        if p.kind == "vip":
            iface = self.ctx.spec.load_balancer.interface
            r = h.run(quote(["ip", "-4", "-o", "addr", "show", "dev", iface, "to", f"{p.target}/32"]))
            if r.rc != 0:
                return [Check(name, p.what, False, f"ip addr on {iface}: {r.stderr.strip()[:160]}")]
            self.holds_vip = bool(r.stdout.strip())
            return [Check(name, p.what, True, f"holds it on {iface} (MASTER)" if self.holds_vip else "backup")]
        raise ValueError(f"unknown probe kind {p.kind}")


def etcdctl(node: Node, *args: str) -> list[str]:
    """etcdctl through this member's own client URL (the health check's), running another command."""
    return host.etcdctl([client_url(node)], *args)


def _one_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    host = getattr(e, "host", None)  # TransportError names its host; the row does already
    if host and text.startswith(f"{host}: "):
        text = text[len(host) + 2:]
    return " ".join(text.split())[:300]


# ------------------------------------------------------------------------------------------------------
# from the controller


def kubectl_json(kubectl: str, conf: Path, server: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([kubectl, "--kubeconfig", str(conf), "--server", server, "--request-timeout", "10s", *args],
                          capture_output=True, text=True, timeout=30)


def cluster_checks(ctx: RenderContext, root: Path, nodes: list[Node]) -> list[Check]:
    """From this machine: the cluster directory's certificates, /readyz through the load balancer / VIP,
    every selected kubelet node Ready, and each selected `join: local` worker's kubelet reached by the API
    server (kbootstrap never connects to such a node, so the API is how verify sees it)."""
    spec = ctx.spec
    stale = stale_certificates(ctx)
    out = [Check(CLUSTER, "cluster directory certificates current", not stale,
                 "; ".join(stale[:3]) + (f" (+{len(stale) - 3} more)" if len(stale) > 3 else "")
                 if stale else "none due for reissue")]
    readyz = f"API /readyz through {spec.api_server_url}"
    kubectl, conf = shutil.which("kubectl"), root / "admin.conf"
    if kubectl is None or not conf.exists():
        why = "kubectl is not installed on this machine" if kubectl is None else f"no {conf} (made by `kbootstrap init`)"
        return out + [Check(CLUSTER, readyz, False, why)]
    try:
        r = kubectl_json(kubectl, conf, spec.api_server_url, "get", "--raw", "/readyz")
        out.append(Check(CLUSTER, readyz, r.returncode == 0 and r.stdout.strip() == "ok",
                         r.stdout.strip()[:80] if r.returncode == 0 else _one_line(Exception(r.stderr))))
        kubelets = [n.name for n in spec.kubelet_nodes if n in nodes]
        if kubelets:
            r = kubectl_json(kubectl, conf, spec.api_server_url, "get", "nodes", "-o", "json")
            out += (node_ready_checks(kubelets, r.stdout) if r.returncode == 0 else
                    [Check(CLUSTER, "nodes Ready", False, _one_line(Exception(r.stderr)))])
        for node in (n for n in spec.local_nodes if n in nodes):
            r = kubectl_json(kubectl, conf, spec.api_server_url, "get", "--raw", f"/api/v1/nodes/{node.name}/proxy/healthz")
            out.append(kubelet_proxy_check(node.name, r.returncode, r.stdout, r.stderr))
    except subprocess.TimeoutExpired:
        out.append(Check(CLUSTER, readyz, False, "kubectl did not answer within 30 s"))
    return out


# ------------------------------------------------------------------------------------------------------


def run_verify(spec: ClusterSpec, cluster_dir: Path, nodes: list[Node], parallel: int = 10) -> list[Check]:
    """Every check of `nodes` and of the cluster, hosts in parallel; rows in inventory order, cluster last.

    Raises only for what makes checking impossible (the cluster directory); a host that cannot be reached
    is a failed row."""
    ctx = load_context(spec, cluster_dir)
    connected = [n for n in nodes if n in spec.connected_nodes]  # `join: local` workers: from the API only
    with connect_all(spec, connected) as transports, ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        runners = {n.name: HostChecks(ctx, n, transports[n.name]) for n in connected}
        futures = {name: pool.submit(r.run) for name, r in runners.items()}
        controller = pool.submit(cluster_checks, ctx, cluster_dir, nodes)
        checks = [c for f in futures.values() for c in f.result()] + controller.result()
    vip = spec.load_balancer.vip
    if vip is not None and spec.loadbalancers and all(lb in nodes for lb in spec.loadbalancers):
        checks.append(vip_check(str(vip), {lb.name: runners[lb.name].holds_vip for lb in spec.loadbalancers}))
    order = {n.name: i for i, n in enumerate(spec.nodes)}
    return sorted(checks, key=lambda c: order.get(c.host, len(order)))
