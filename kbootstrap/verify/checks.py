"""What `verify` checks, derived from the ClusterSpec, and the pure judgements over what hosts answered.

Nothing here touches a host: `host_probes` says which checks a node's roles call for, and each judge
function turns facts (file facts, a certificate, etcdctl's or kubectl's JSON) into Check rows. The
remote side (`run.py`) only fetches those facts.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from ipaddress import ip_address
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from kbootstrap.model import host, ports
from kbootstrap.model.artifact import Artifact
from kbootstrap.model.host import CONTROL_PLANE_SERVICES, RUNTIME_SERVICES
from kbootstrap.model.spec import ControlPlaneForm, Node, Role
from kbootstrap.render.context import RenderContext
from kbootstrap.render.csr_approver import SERVICE as APPROVER
from kbootstrap.render.csr_approver import runs_approver
from kbootstrap.render.etcd import etcd_as_static_pod
from kbootstrap.transport.remote import FileFact

CLUSTER = "cluster"  # the host column of checks made from the controller, about the whole cluster
SERVING_CERT = "/etc/kubernetes/pki/kubelet-serving.crt"
SERVING_KEY = "/etc/kubernetes/pki/kubelet-serving.key"
NODE_SERVICES = (*RUNTIME_SERVICES, *host.NODE_SERVICES)
CONTROL_PLANE = CONTROL_PLANE_SERVICES
KUBELET_VIA_API = "kubelet through the API server"
KUBELET_PORT, API_PORT, ETCD_CLIENT_PORT, ETCD_PEER_PORT = ports.KUBELET, ports.APISERVER, ports.ETCD_CLIENT, ports.ETCD_PEER


@dataclass(frozen=True)
class Check:
    """One row of the report: on which host, what was checked, whether it passed, and the evidence."""

    host: str
    what: str
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class Probe:
    """One check a node's roles call for, before it is run.

    kind: files | service | port | container | serving-cert | etcd-health | etcd-members | vip
    """

    kind: str
    target: str = ""
    expect: int = 0  # etcd-members: how many; port: the port

    @property
    def what(self) -> str:
        return {
            "files": "files (exist, mode, sha256)",
            "service": f"service {self.target}",
            "port": f"port {self.expect} listening",
            "container": f"container {self.target} running",
            "serving-cert": "kubelet serving certificate",
            "etcd-health": "etcd endpoint health",
            "etcd-members": f"etcd members = {self.expect}",
            "vip": f"keepalived VIP {self.target}",
        }[self.kind]


def host_probes(ctx: RenderContext, node: Node) -> list[Probe]:
    """Every check `node` gets, from its roles, the topology and the control-plane form, in report order."""
    spec = ctx.spec
    out = [Probe("files")]
    if node in spec.kubelet_nodes:
        out += [Probe("service", s) for s in NODE_SERVICES]
        out += [Probe("port", expect=KUBELET_PORT), Probe("serving-cert")]
    if node.has(Role.CONTROL_PLANE):
        out.append(Probe("port", expect=API_PORT))
        if runs_approver(ctx, node):  # it approves the serving certificates of `join: local` workers
            out.append(Probe("service", APPROVER))
        if spec.cluster.control_plane_form is ControlPlaneForm.STATIC_POD:
            out += [Probe("container", c) for c in CONTROL_PLANE]
        else:
            out += [Probe("service", s) for s in CONTROL_PLANE]
    if spec.is_etcd_member(node):
        out.append(Probe("container", "etcd") if etcd_as_static_pod(ctx, node) else Probe("service", "etcd"))
        out += [Probe("port", expect=ETCD_CLIENT_PORT), Probe("port", expect=ETCD_PEER_PORT),
                Probe("etcd-health"), Probe("etcd-members", expect=len(spec.etcd_members))]
    if node.has(Role.LOADBALANCER):
        out += [Probe("service", "haproxy"), Probe("port", expect=spec.load_balancer.port)]
        if spec.load_balancer.vip is not None:
            out += [Probe("service", "keepalived"), Probe("vip", str(spec.load_balancer.vip))]
    return out


# ------------------------------------------------------------------------------------------------------
# judgements over facts


def _some(items: list[str], most: int = 4) -> str:
    return ", ".join(items[:most]) + (f" (+{len(items) - most} more)" if len(items) > most else "")


def file_checks(host: str, artifacts: list[Artifact], facts: dict[str, FileFact | None]) -> list[Check]:
    """Three rows for the rendered files of a host: present, mode/owner, content (sha256).

    A file that is missing is reported once (as missing), not again as a wrong mode or digest."""
    missing = [a.path for a in artifacts if facts.get(a.path) is None]
    present = [(a, f) for a in artifacts if (f := facts.get(a.path)) is not None]
    modes = [f"{a.path} {f.mode:04o} {f.owner}:{f.group} (want {a.mode:04o} {a.owner}:{a.group})"
             for a, f in present if (f.mode, f.owner, f.group) != (a.mode, a.owner, a.group)]
    digests = [a.path for a, f in present if f.sha256 != a.sha256]
    private = sum(1 for a in artifacts if a.mode == 0o600)
    n = len(artifacts)
    return [
        Check(host, "files present", not missing, f"missing: {_some(missing)}" if missing else f"{n} files"),
        Check(host, "file modes", not modes, _some(modes, 3) if modes else
              "as rendered" + (f" ({private} private files 0600)" if private else "")),
        Check(host, "file contents (sha256)", not digests,
              f"differ from the cluster directory: {_some(digests)}" if digests else "all match"),
    ]


def service_check(host: str, name: str, running: bool, enabled: bool) -> Check:
    state = f"{'active' if running else 'NOT active'}, {'enabled' if enabled else 'NOT enabled'}"
    return Check(host, f"service {name}", running and enabled, state)


def port_check(host: str, port: int, address: str, listening: dict[int, set[str]]) -> Check:
    """Listening on every address (0.0.0.0 or ::) or on the node's own address; `listening`: port -> the
    addresses found listening."""
    have = listening.get(port, set())
    ok = bool(have & {"0.0.0.0", "::", address})
    detail = f"on {', '.join(sorted(have))}" if have else "nothing listens"
    if have and not ok:
        detail += f" (not on {address} nor all addresses)"
    return Check(host, f"port {port} listening", ok, detail)


def serving_cert_check(host: str, address: str, cert_pem: bytes | None, key_pem: bytes | None,
                       ca: x509.Certificate, now: dt.datetime | None = None) -> Check:
    """The kubelet's serving certificate: valid now, signed by the cluster CA, for the node's address, and
    matching its private key. The key's bytes never reach the detail text."""
    what = "kubelet serving certificate"
    if cert_pem is None or key_pem is None:
        gone = [p for p, b in ((SERVING_CERT, cert_pem), (SERVING_KEY, key_pem)) if b is None]
        return Check(host, what, False, f"missing: {', '.join(gone)}")
    now = now or dt.datetime.now(dt.UTC)
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as e:
        return Check(host, what, False, f"certificate unreadable: {e}")
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as e:
        return Check(host, what, False, f"private key unreadable ({type(e).__name__})")
    problems = []
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        problems.append(f"not valid now (valid {cert.not_valid_before_utc:%Y-%m-%d} to {cert.not_valid_after_utc:%Y-%m-%d})")
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if (key.public_key().public_bytes(serialization.Encoding.DER, spki)
            != cert.public_key().public_bytes(serialization.Encoding.DER, spki)):
        problems.append("does not match its private key")
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature) as e:
        problems.append(f"not signed by the cluster CA ({type(e).__name__})")
    try:
        ips = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.IPAddress)
    except x509.ExtensionNotFound:
        ips = []
    if ip_address(address) not in ips:
        problems.append(f"no SAN for {address}")
    if problems:
        return Check(host, what, False, "; ".join(problems))
    days = (cert.not_valid_after_utc - now).days
    return Check(host, what, True, f"valid until {cert.not_valid_after_utc:%Y-%m-%d} ({days} days), CA-signed, key matches")


def etcd_members_check(host: str, expected: list[str], member_list_json: str) -> Check:
    """`etcdctl member list -w json` against the spec's members: the count and the names (an unstarted
    member has no name yet)."""
    what = f"etcd members = {len(expected)}"
    try:
        members = json.loads(member_list_json).get("members") or []
    except (ValueError, AttributeError):
        return Check(host, what, False, f"unreadable answer: {member_list_json.strip()[:120]}")
    names = sorted(m.get("name") or "(unstarted)" for m in members)
    ok = len(members) == len(expected) and set(names) == set(expected)
    detail = ", ".join(names)
    if not ok:
        detail = f"{len(members)} member(s): {detail or 'none'}; the inventory has {', '.join(sorted(expected))}"
    return Check(host, what, ok, detail)


def vip_check(vip: str, holders: dict[str, bool | None]) -> Check:
    """Exactly one load balancer holds the VIP. `None`: that load balancer could not be asked."""
    held = sorted(h for h, v in holders.items() if v)
    unknown = sorted(h for h, v in holders.items() if v is None)
    ok = len(held) == 1 and not unknown
    if ok:
        detail = f"held by {held[0]}"
    elif unknown:
        detail = f"cannot tell: {', '.join(unknown)} not reachable" + (f"; held by {', '.join(held)}" if held else "")
    else:
        detail = f"held by {', '.join(held)}: split brain" if held else "held by no load balancer"
    return Check(CLUSTER, f"VIP {vip} on exactly one load balancer", ok, detail)


def node_ready_checks(names: list[str], nodes_json: str) -> list[Check]:
    """Each kubelet node Ready per `kubectl get nodes -o json`; one row per node, under its host."""
    try:
        items = {i["metadata"]["name"]: i for i in json.loads(nodes_json)["items"]}
    except (ValueError, KeyError, TypeError):
        return [Check(CLUSTER, "nodes Ready", False, f"unreadable answer: {nodes_json.strip()[:120]}")]
    out = []
    for name in names:
        item = items.get(name)
        if item is None:
            out.append(Check(name, "node Ready (API)", False, "not registered with the API server"))
            continue
        ready: dict[str, Any] = next(
            (c for c in item.get("status", {}).get("conditions", []) if c.get("type") == "Ready"), {})
        ok = ready.get("status") == "True"
        version = item.get("status", {}).get("nodeInfo", {}).get("kubeletVersion", "")
        why = f"Ready={ready.get('status', '?')}: {ready.get('reason', '')} {ready.get('message', '')}".strip()
        detail = f"Ready, kubelet {version}" if ok else why
        out.append(Check(name, "node Ready (API)", ok, detail))
    return out


def kubelet_proxy_check(name: str, rc: int, stdout: str, stderr: str) -> Check:
    """`kubectl get --raw /api/v1/nodes/NAME/proxy/healthz`: kube-apiserver reached the node's kubelet over its
    serving certificate, which it verifies against the cluster CA (--kubelet-certificate-authority)."""
    ok = rc == 0 and stdout.strip() == "ok"
    detail = "ok: serving certificate verified by kube-apiserver" if ok else " ".join(
        (stderr.strip() or stdout.strip() or f"exit {rc}").split())[:200]
    return Check(name, KUBELET_VIA_API, ok, detail)


def failed(checks: list[Check]) -> list[Check]:
    return [c for c in checks if not c.ok]
