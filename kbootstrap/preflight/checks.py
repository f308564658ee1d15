"""Preflight rules: the ClusterSpec plus every host's facts in, every finding out, all at once.

Pure functions (no host is touched), so each rule is tested on crafted facts. A finding is a `Problem`
whose path is the host's inventory name and whose message says what was found and what was expected,
with a severity: ERROR stops `init`, WARNING is printed and `init` goes on. The tables of what a role
needs (ports it binds, peers it must reach, commands it runs) live here, next to the rules that read them,
and the controller asks the probe for exactly those (see run.py). Decisions: a kubelet node's hostname
that differs from its inventory name is a warning, because kubelet and kube-proxy register with
--hostname-override (render/flags.py), and nothing else kbootstrap runs reads the hostname; swap is an
error only where the kubelet's effective failSwapOn is true; a refused connect counts as reachable.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from kbootstrap.errors import Problem
from kbootstrap.model import ports as p
from kbootstrap.model.spec import ClusterSpec, Node, Role
from kbootstrap.preflight.facts import PreflightFacts
from kbootstrap.render import flags
from kbootstrap.render.templates import base_document, deep_merge


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Finding(Problem):
    severity: Severity = Severity.ERROR


@dataclass(frozen=True)
class Target:
    """A TCP connect one host must be able to make: to `node` (its name) at address:port, and why."""

    node: str
    address: str
    port: int
    purpose: str


SUPPORTED_OS = {"debian": ("11", "12", "13"), "ubuntu": ("22.04", "24.04")}
GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}  # platform.machine() -> the bundle's arch
MAX_SKEW = 5.0  # seconds
MIN_VAR_FREE = 2 * 2**30
MIN_CP_CPUS, MIN_CP_MEMORY = 2, 1700 * 2**20  # kubeadm's minimums for a control plane
MODULE_USE = {"overlay": "containerd's overlayfs snapshotter needs it",
              "br_netfilter": "bridged pod traffic must pass iptables (net.bridge.bridge-nf-call-iptables)"}
COMMAND_USE = {"systemctl": "every component runs as a systemd unit", "mount": "the kubelet mounts volumes",
               "iptables": "kube-proxy and the bridge CNI program iptables",
               "nsenter": "the kubelet uses it for port-forward"}


def runs_kubelet(node: Node) -> bool:
    return node.has(Role.CONTROL_PLANE) or node.has(Role.WORKER)


def required_ports(spec: ClusterSpec, node: Node) -> dict[int, str]:
    """Every TCP port kbootstrap's services bind on this node -> the service. On a re-run of an initialised
    host, these are exactly the ports to pass as its `expected_listeners`."""
    ports: dict[int, str] = {}
    if node.has(Role.CONTROL_PLANE):
        ports |= {p.APISERVER: "kube-apiserver", p.CONTROLLER_MANAGER: "kube-controller-manager",
                  p.SCHEDULER: "kube-scheduler"}
    if spec.is_etcd_member(node):
        ports |= {p.ETCD_CLIENT: "etcd clients", p.ETCD_PEER: "etcd peers", p.ETCD_METRICS: "etcd metrics"}
    if runs_kubelet(node):
        ports |= {p.KUBELET: "kubelet", p.KUBELET_HEALTHZ: "kubelet healthz", p.KUBE_PROXY_HEALTHZ: "kube-proxy healthz",
                  p.KUBE_PROXY_METRICS: "kube-proxy metrics"}
    if node.has(Role.LOADBALANCER):
        ports[spec.load_balancer.port] = "haproxy, the API load balancer"
    return ports


def _held_by(listener, service: str) -> bool:
    """Whether the listening process is the service's program ("etcd peers" -> etcd; the kernel's comm is cut at
    15 characters). Unknown (the probe could not tell) counts as the service's on a host kbootstrap set up."""
    if listener.process is None:
        return True
    program = service.split()[0].rstrip(",")
    return listener.process.split(" (pid ")[0] == program[:15]


def required_commands(node: Node) -> list[str]:
    return ["systemctl", *(["iptables", "mount", "nsenter"] if runs_kubelet(node) else [])]


def _api_frontends(spec: ClusterSpec) -> list[tuple[str, str]]:
    # Each LB node's own address, not the VIP: before init no one holds the VIP.
    if spec.loadbalancers:
        return [(n.name, str(n.address)) for n in spec.loadbalancers]
    if spec.load_balancer.external_address:
        return [("the external load balancer", spec.load_balancer.external_address)]
    return [(spec.control_planes[0].name, str(spec.control_planes[0].address))]


def reach_targets(spec: ClusterSpec, node: Node) -> list[Target]:
    """Where this node must be able to connect: what its role talks to, and, between nodes with a kubelet, the
    pod traffic the CNI routes through the nodes' addresses. A refusal counts as reachable (nothing listens
    before init). The pod traffic is tried on the kubelet's port, which the kubelet accepts in-process once it
    runs: tried on sshd's, it cost every pair of hosts an sshd process (462 of them at 22 hosts, seconds of a
    no-op init)."""
    out: list[Target] = []
    for m in spec.etcd_members:
        if spec.is_etcd_member(node):
            out.append(Target(m.name, str(m.address), p.ETCD_PEER, "etcd peer traffic"))
        if node.has(Role.CONTROL_PLANE):
            out.append(Target(m.name, str(m.address), p.ETCD_CLIENT, "kube-apiserver to etcd"))
    if runs_kubelet(node):
        out += [Target(name, addr, spec.load_balancer.port, "the API through its load balancer")
                for name, addr in _api_frontends(spec)]
    if node.has(Role.LOADBALANCER):
        out += [Target(c.name, str(c.address), p.APISERVER, "haproxy to kube-apiserver") for c in spec.control_planes]
    if node.has(Role.CONTROL_PLANE):
        out += [Target(k.name, str(k.address), p.KUBELET, "kube-apiserver to kubelet (logs, exec)")
                for k in spec.kubelet_nodes if not k.joins_locally]
    if runs_kubelet(node):  # a `join: local` worker may not be up yet
        out += [Target(k.name, str(k.address), p.KUBELET, "pod traffic between nodes (tried on the kubelet's port)")
                for k in spec.kubelet_nodes if not k.joins_locally]
    unique: dict[tuple[str, int], Target] = {}  # the first reason stays: the role's own
    for t in out:
        if t.address != str(node.address):
            unique.setdefault((t.address, t.port), t)
    return list(unique.values())


def _fail_swap_on(spec: ClusterSpec) -> bool:
    doc = deep_merge(base_document("kubelet/config.yaml"), spec.component_config.get("kubelet", {}))
    return bool(doc.get("failSwapOn", True))  # the kubelet's own default is true


def _registers_as(spec: ClusterSpec, node: Node) -> str | None:
    args = dict(a.removeprefix("--").split("=", 1) for a in flags.kubelet(spec, node))
    return args.get("hostname-override") or None


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def _vip_subnet(spec: ClusterSpec, node: Node, f: PreflightFacts) -> Iterator[tuple[Severity, str]]:
    """A load balancer holds the VIP on load_balancer.interface (keepalived): the VIP must be an address of that
    interface's subnet, or no host on it reaches the API through it. The VIP itself, held now (a /32 that
    keepalived adds), does not count as the subnet."""
    vip, iface = spec.load_balancer.vip, spec.load_balancer.interface
    if vip is None or not node.has(Role.LOADBALANCER) or not f.addresses:
        return  # no VIP, not a load balancer, or a probe that could not list addresses (no `ip`)
    nets = [ipaddress.ip_interface(a).network for a in f.addresses.get(iface, ())]
    nets = [n for n in nets if n.num_addresses > 1]
    if not nets:
        yield Severity.ERROR, (f"interface {iface} (load_balancer.interface) has no IPv4 subnet here (interfaces: "
                               f"{', '.join(sorted(f.addresses)) or 'none'}); expected the interface keepalived "
                               "holds the VIP on")
    elif not any(ipaddress.ip_address(str(vip)) in n for n in nets):
        yield Severity.ERROR, (f"the VIP {vip} (load_balancer.vip) is outside {iface}'s subnet "
                               f"{', '.join(map(str, nets))}; expected an unused address of that subnet (no host "
                               "on it would reach the API through the VIP)")


def _host(spec: ClusterSpec, node: Node, f: PreflightFacts, *, bundle_arch: str | None, expected: Collection[int],
          will_install: Collection[str], max_skew: float, fail_swap: bool) -> Iterator[tuple[Severity, str]]:
    E, W = Severity.ERROR, Severity.WARNING
    kubelet = runs_kubelet(node)

    if f.os_version not in SUPPORTED_OS.get(f.os_id, ()):
        yield E, (f"unsupported OS {f.os_pretty or f.os_id!r} (ID={f.os_id or '?'}, VERSION_ID={f.os_version or '?'}); "
                  "expected Debian 11, 12 or 13, or Ubuntu 22.04 or 24.04")
    if f.arch not in GO_ARCH:
        yield E, f"unsupported architecture {f.arch}; expected x86_64 or aarch64"
    elif bundle_arch and GO_ARCH[f.arch] != bundle_arch:
        yield E, f"architecture {f.arch} ({GO_ARCH[f.arch]}) does not match the bundle's {bundle_arch}"
    if not f.systemd:
        yield E, "systemd is not PID 1 (no /run/systemd/system); expected systemd: kbootstrap installs systemd units"
    if f.python_version < (3, 6):
        yield E, f"python3 is {f.python}; expected 3.6 or newer"

    missing = [c for c in required_commands(node) if not f.commands.get(c) and c not in will_install]
    for c in missing:
        yield E, f"command {c} not found on PATH; expected it installed ({COMMAND_USE.get(c, 'kbootstrap runs it')})"

    for port, service in sorted(required_ports(spec, node).items()):
        x = next((x for x in f.listening if x.port == port), None)
        if x is None or (port in expected and _held_by(x, service)):
            continue  # free, or held by kbootstrap's own service on a re-run
        if x is not None:
            yield E, (f"port {port} is already in use by {x.process or 'another process'} on {x.address}; "
                      f"expected it free for {service}")

    lo, hi = f.skew_bounds
    if f.received_at and (lo > max_skew or hi < -max_skew):
        way, by = ("ahead of", lo) if lo > max_skew else ("behind", -hi)
        yield E, (f"clock is at least {by:.1f} s {way} the controller's; expected within {max_skew:g} s "
                  "(certificates and etcd need synchronised clocks: enable NTP)")

    yield from _vip_subnet(spec, node, f)

    if node.has(Role.CONTROL_PLANE) and f.cpus < MIN_CP_CPUS:
        yield W, f"{f.cpus} CPU(s); a control plane should have at least {MIN_CP_CPUS}"
    if node.has(Role.CONTROL_PLANE) and f.mem_total < MIN_CP_MEMORY:
        yield W, f"{f.mem_total // 2**20} MiB of memory; a control plane should have at least {MIN_CP_MEMORY // 2**20} MiB"
    if not kubelet:
        return

    # --- what the kubelet and container runtime need -----------------------------------------------------
    if f.swaps and fail_swap:
        # An error although the os phase runs `swapoff -a`: it leaves /etc/fstab, so swap is back after a reboot.
        yield E, (f"swap is on ({', '.join(s.name for s in f.swaps)}); the kubelet refuses to start with swap "
                  "(failSwapOn: true): run swapoff -a and remove it from /etc/fstab, or set "
                  "component_config.kubelet.failSwapOn: false")
    for m in MODULE_USE:
        if f.modules.get(m, "missing") == "missing":
            yield E, (f"kernel module {m} is missing: not loaded, not built into {f.kernel} and no {m}.ko under "
                      f"/lib/modules/{f.kernel}; expected it present ({MODULE_USE[m]})")
    if f.cgroup == "none":
        yield E, "no cgroup filesystem is mounted; expected cgroup v2 on /sys/fs/cgroup"
    elif f.cgroup != "v2":
        yield W, (f"cgroup {f.cgroup}; expected cgroup v2 only (v1 is in maintenance since Kubernetes 1.31 "
                  "and kubelet 1.35 refuses it by default)")
    if f.var_free < MIN_VAR_FREE:
        yield E, f"only {_gib(f.var_free)} free on /var; expected at least {_gib(MIN_VAR_FREE)} for images and containers"
    registers_as = _registers_as(spec, node)
    if f.hostname.split(".")[0].lower() != node.name:
        if registers_as:
            yield W, (f"hostname is {f.hostname!r}, not the inventory name {node.name!r}; fine for Kubernetes "
                      f"(the kubelet registers as {registers_as!r} with --hostname-override), but tools show both")
        else:
            yield E, f"hostname is {f.hostname!r}; expected {node.name!r}: the kubelet registers under its hostname"


def _reach(spec: ClusterSpec, node: Node, f: PreflightFacts) -> Iterator[tuple[Severity, str]]:
    results = {(c.address, c.port): c for c in f.connects}
    for t in reach_targets(spec, node):
        c = results.get((t.address, t.port))
        if c is not None and not c.reachable:
            yield Severity.ERROR, f"cannot reach {t.node} ({t.address}:{t.port}): {c.describe()}; needed for {t.purpose}"


def _duplicates(spec: ClusterSpec, facts: Mapping[str, PreflightFacts]) -> Iterator[Finding]:
    seen: dict[tuple[str, str], tuple[str, str]] = {}  # (what, value) -> (first host, its detail)
    for node in spec.nodes:
        f = facts.get(node.name)
        if f is None:
            continue
        items = [("hostname", f.hostname.lower(), "", Severity.WARNING,
                  "the kubelet registers with the inventory name, but logs and tools will mix the two up"),
                 ("machine-id", f.machine_id, "", Severity.ERROR,
                  "cloned hosts need their own (rm /etc/machine-id && systemd-machine-id-setup)")]
        if f.product_uuid and not f.container:  # containers show their physical host's DMI
            items.append(("product_uuid", f.product_uuid, "", Severity.ERROR,
                          "the kubelet reports it as the node's system UUID; cloned VMs need their own"))
        items += [("MAC address", mac, iface, Severity.ERROR, "two interfaces with one MAC break ARP between them")
                  for iface, mac in sorted(f.macs.items())]
        for what, value, detail, severity, why in items:
            if not value:
                continue
            first, first_detail = seen.setdefault((what, value), (node.name, detail))
            if first != node.name:
                mine = f" on {detail}" if detail else ""
                theirs = f" ({first_detail})" if first_detail else ""
                yield Finding(node.name, f"{what} {value}{mine} is the same as on {first}{theirs}; "
                                         f"expected every host's to be unique: {why}", severity)


def check(spec: ClusterSpec, facts: Mapping[str, PreflightFacts], *, bundle_arch: str | None = None,
          expected_listeners: Mapping[str, Collection[int]] | None = None, will_install: Collection[str] = (),
          max_skew: float = MAX_SKEW) -> list[Finding]:
    """Every finding for the hosts in `facts` (keyed by inventory name; hosts missing from it are skipped).

    bundle_arch: the bundle's arch ("amd64"/"arm64") when known. expected_listeners: host -> ports that
    kbootstrap's own services already hold (an initialised host on a re-run: `required_ports`).
    will_install: commands kbootstrap will install, so their absence now is not a problem.
    """
    fail_swap = _fail_swap_on(spec)
    out: list[Finding] = []
    for node in spec.nodes:
        f = facts.get(node.name)
        if f is None:
            continue
        expected = (expected_listeners or {}).get(node.name, ())
        found = _host(spec, node, f, bundle_arch=bundle_arch, expected=expected, will_install=will_install,
                      max_skew=max_skew, fail_swap=fail_swap)
        out += [Finding(node.name, message, severity) for severity, message in [*found, *_reach(spec, node, f)]]
    out += _duplicates(spec, facts)
    return out


def severity(p: Problem) -> Severity:
    return p.severity if isinstance(p, Finding) else Severity.ERROR


def errors(problems: Sequence[Problem]) -> list[Problem]:
    """The findings that stop `init` (plain Problems count as errors)."""
    return [p for p in problems if severity(p) is Severity.ERROR]


def format_problems(problems: Sequence[Problem]) -> str:
    """For the CLI: a count line, then each host's findings, errors before warnings."""
    if not problems:
        return "preflight: every check passed"
    n_err = len(errors(problems))
    n_warn = len(problems) - n_err
    hosts = list(dict.fromkeys(p.path for p in problems))
    lines = [f"preflight: {n_err} error{'s' * (n_err != 1)}, {n_warn} warning{'s' * (n_warn != 1)} "
             f"on {len(hosts)} host{'s' * (len(hosts) != 1)}"]
    for host in hosts:
        lines.append(f"  {host or 'cluster'}:")
        mine = sorted((p for p in problems if p.path == host), key=lambda p: severity(p) is not Severity.ERROR)
        lines += [f"    {severity(p).value:<7}  {p.message}" for p in mine]
    return "\n".join(lines)
