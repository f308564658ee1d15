"""`kbootstrap reset`: undo what init and join did on the selected hosts, in the order that leaves nothing
running over something already removed.

    stop        kubelet, kube-proxy, the pod routes, the control-plane services (systemd form), etcd,
                haproxy, keepalived: stopped and disabled, in that order (keepalived gives the VIP up)
    containers  every pod and container removed (`crictl rmp -fa`), containerd stopped
    files       the kubelet's volume mounts unmounted and leftover pod network namespaces deleted; then
                every file kbootstrap rendered for the host, and the state the components made:
                /etc/kubernetes, /var/lib/kubelet, /var/lib/etcd, /var/lib/kube-proxy, /var/lib/cni, ...;
                kbootstrap's block in /etc/hosts
    network     the VIP if still held, the cni0 bridge, the routes to the other nodes' pod subnets, and
                the iptables rules of kube-proxy, the kubelet and the CNI plugins (KUBE-*, CNI-* chains)
    purge       (--purge) the binaries init installed and the payload it copied (/var/lib/kbootstrap)
    detach      (some nodes only) their Node objects deleted through a control plane that stays

Facts are gathered once per phase and host, before its steps apply: a step that depends on another's
effect (the VIP after keepalived stopped, mounts after the pods went) is in a later phase, so that what
is reported as changed is what was needed.

Binaries, OS packages, container images, sysctls and loaded kernel modules are left in place, as
`kubeadm reset` leaves them; the cluster directory (PKI) on this machine is kept, so `init` after a
reset makes the same cluster again.

iptables: kubeadm's documentation tells to flush whole tables (`iptables -F` and `-X` on each), and
kubespray's reset role flushes filter, nat, mangle and raw; both also drop rules that other software
(Docker, a host firewall) made. kbootstrap does as k3s's killall script does instead: it removes only the
lines naming a KUBE- or CNI- chain from `iptables-save` and loads the rest back (`iptables-restore`),
for IPv4 and IPv6, so every other rule stays.
"""

from __future__ import annotations

from ipaddress import IPv4Network

from kbootstrap.engine.reset_steps import RemovePathsStep, StopServicesStep
from kbootstrap.engine.runner import Phase
from kbootstrap.engine.steps import ShellStep, Step, wanted_by_link
from kbootstrap.model import ports
from kbootstrap.model.host import (
    CONTROL_PLANE_SERVICES,
    CRICTL,
    ETCD_SERVICE,
    NODE_SERVICES,
    RUNTIME_SERVICES,
    kubectl,
    loadbalancer_services,
)
from kbootstrap.model.spec import ClusterSpec, ControlPlaneForm, Node, Role
from kbootstrap.render import RenderContext, flags, render_host
from kbootstrap.render.csr_approver import SERVICE as APPROVER
from kbootstrap.render.csr_approver import runs_approver
from kbootstrap.render.etc_hosts import remove_hosts_step
from kbootstrap.render.etcd import etcd_as_static_pod
from kbootstrap.render.node_sync import SERVICE as SYNC_SERVICE
from kbootstrap.render.node_sync import TIMER as SYNC_TIMER
from kbootstrap.transport.base import quote

IPTABLES_MARKS = ("KUBE-", "CNI-")
IPTABLES_FILTER = "grep -v " + " ".join(f"-e {m}" for m in IPTABLES_MARKS)
KUBELET_DIR = "/var/lib/kubelet"


def without_kube_rules(save: str) -> str:
    """iptables-save output without the lines that name a KUBE- or CNI- chain: what `IPTABLES_FILTER`
    leaves (chain declarations, jumps into them and their rules all name the chain, so the rest loads)."""
    return "".join(line for line in save.splitlines(keepends=True) if not any(m in line for m in IPTABLES_MARKS))


def services_to_stop(ctx: RenderContext, node: Node) -> list[str]:
    """The node's services, in the order they stop: the kubelet first, so it restarts no static pod."""
    spec = ctx.spec
    out = []
    if node.joins_locally:  # first, so that no re-run of the join starts while the node is taken apart
        out += [SYNC_TIMER, SYNC_SERVICE]
    if node in spec.kubelet_nodes:
        out += NODE_SERVICES
    if node.has(Role.CONTROL_PLANE) and spec.cluster.control_plane_form is ControlPlaneForm.SYSTEMD:
        out += CONTROL_PLANE_SERVICES
    if spec.is_etcd_member(node) and not etcd_as_static_pod(ctx, node):
        out.append(ETCD_SERVICE)
    if node.has(Role.LOADBALANCER):
        out += loadbalancer_services(spec)
    if runs_approver(ctx, node):
        out.append(APPROVER)
    return out


def container_steps() -> list[Step]:
    crictl = quote(CRICTL)
    return [
        # containerd must run for the CRI to remove pods; with it stopped (a second reset) nothing runs.
        # A crictl that fails is no answer: the probe fails, and so does the removal, with its error.
        ShellStep("remove pods", probe=f"! systemctl is-active -q containerd || [ ! -x {CRICTL[0]} ] || "
                                       f'{{ out=$({crictl} pods -q) && test -z "$out"; }}',
                  command=f"{crictl} rmp -a -f", label="crictl rmp -fa", detail="every pod and its containers"),
        StopServicesStep(list(RUNTIME_SERVICES), name="stop containerd"),
    ]


def leftover_steps() -> list[Step]:
    """What pods leave behind once they are gone (facts gathered after the `containers` phase)."""
    return [
        # The kubelet unmounts pod volumes (tmpfs, secrets) only while it runs; it does not any more.
        ShellStep("unmount kubelet volumes", probe=f"! grep -q ' {KUBELET_DIR}/' /proc/self/mounts",
                  command=f"grep ' {KUBELET_DIR}/' /proc/self/mounts | cut -d' ' -f2 | sort -r | "
                          'while read -r m; do m=$(printf "%b" "$m"); umount "$m" || umount -l "$m"; done',
                  label=f"umount {KUBELET_DIR}/*"),
        # The CRI deletes a sandbox's namespace with the sandbox; one that was cut off leaves it.
        ShellStep("remove pod network namespaces", probe='test -z "$(ls -d /run/netns/cni-* 2>/dev/null)"',
                  command='rc=0; for n in /run/netns/cni-*; do [ -e "$n" ] || continue; '
                          'ip netns delete "${n##*/}" || rc=1; done; exit $rc',
                  label="ip netns delete cni-*"),
    ]


def reset_paths(ctx: RenderContext, node: Node) -> list[str]:
    """Every path reset removes from `node`: what kbootstrap rendered for it, the directories where its
    components keep state, and the enablement links of its services."""
    spec = ctx.spec
    paths = [a.path for a in render_host(ctx, node)] + [flags.K8S]
    if node in spec.kubelet_nodes:
        paths += [KUBELET_DIR, "/var/lib/kube-proxy", "/var/lib/cni", "/var/log/pods", "/var/log/containers"]
    if node.has(Role.CONTROL_PLANE):
        paths.append("/run/kubernetes")  # kube-apiserver's --cert-dir default, were it ever used
    if spec.is_etcd_member(node):
        paths.append(flags.ETCD_DATA_DIR)
    services = services_to_stop(ctx, node) + (list(RUNTIME_SERVICES) if node in spec.kubelet_nodes else [])
    paths += [wanted_by_link(s) for s in services]
    return paths


def network_steps(spec: ClusterSpec, node: Node) -> list[Step]:
    steps: list[Step] = []
    lb = spec.load_balancer
    if node.has(Role.LOADBALANCER) and lb.vip is not None:
        vip = f"{lb.vip}/32"
        steps.append(ShellStep("release VIP",
                               probe=f'test -z "$(ip -4 -o addr show dev {lb.interface} to {vip} 2>/dev/null)"',
                               command=f"ip addr del {vip} dev {lb.interface}", label=f"{vip} on {lb.interface}",
                               detail="keepalived did not remove it"))
    if node not in spec.kubelet_nodes:
        return steps
    steps.append(ShellStep("delete cni0", probe="! ip link show cni0 >/dev/null 2>&1", command="ip link del cni0",
                           label="cni0 bridge"))
    for other in spec.kubelet_nodes:
        if other.name != node.name:
            steps.append(pod_route_step(spec.pod_subnets[other.name], str(other.address)))
    steps += [iptables_step("iptables"), iptables_step("ip6tables")]
    return steps


def pod_route_step(subnet: IPv4Network, via: str) -> Step:
    return ShellStep(f"delete pod route {subnet}", probe=f'test -z "$(ip -4 route show exact {subnet})"',
                     command=f"ip -4 route del {subnet}", label=f"{subnet} via {via}")


def iptables_step(tool: str) -> Step:
    """Rules naming KUBE-/CNI- chains out of every table of `tool` (iptables or ip6tables); the rest kept.
    Hosts without the tool have no such rules."""
    present = f"command -v {tool}-save >/dev/null 2>&1"
    marks = " ".join(f"-e {m}" for m in IPTABLES_MARKS)
    return ShellStep(f"{tool} rules", probe=f"! {present} || ! {tool}-save | grep -q " + marks,
                     command=f"{tool}-save | {IPTABLES_FILTER} | {tool}-restore",
                     label=f"{tool}: KUBE-*, CNI-* chains and the rules jumping to them")


def partial_reset_problem(spec: ClusterSpec, nodes: list[Node]) -> str | None:
    """Why resetting only `nodes` would damage what stays, or None. Some but not all etcd members: the
    others would keep them as members and lose quorum margin (kubeadm removes the member first; kbootstrap
    does not change membership)."""
    members = spec.etcd_members
    chosen = [m.name for m in members if m in nodes]
    if chosen and len(chosen) < len(members):
        return (f"resetting {', '.join(chosen)} but not the other etcd members would leave "
                f"{'it' if len(chosen) == 1 else 'them'} in etcd's member list, and the cluster one failure from "
                "losing quorum. Reset every etcd member (the whole cluster), or take one out of the cluster with "
                "`kbootstrap remove --host NAME` (its member removed, the others' quorum checked first)")
    return None


def detach_host(spec: ClusterSpec, nodes: list[Node]) -> Node | None:
    """A control plane that stays, to delete the reset nodes' Node objects through; None when no kubelet
    node is reset or no control plane stays."""
    if not any(n in spec.kubelet_nodes for n in nodes):
        return None
    return next((cp for cp in spec.control_planes if cp not in nodes), None)


def detach_phase(spec: ClusterSpec, nodes: list[Node], through: Node) -> Phase:
    steps: list[Step] = []
    api = f"https://{through.address}:{ports.APISERVER}"  # its own apiserver: the load balancers may be reset too
    for n in nodes:
        if n in spec.kubelet_nodes:
            get = quote(kubectl("get", "node", n.name, "--ignore-not-found", "-o", "name", server=api))
            # An API that does not answer fails the probe (and the delete): never read as "already gone".
            steps.append(ShellStep(f"delete Node object {n.name}", probe=f'out=$({get}) && test -z "$out"',
                                   command=quote(kubectl("delete", "node", n.name, "--ignore-not-found", server=api)),
                                   label=f"node/{n.name}", detail=f"through {through.name}"))
    return Phase(DETACH, {through.name: steps})


# reset's phases (the table is workflows/reset.py)
STOP, CONTAINERS, FILES, NETWORK, PURGE, DETACH = "stop", "containers", "files", "network", "purge", "detach"


def stop_phase(ctx: RenderContext, nodes: list[Node]) -> Phase:
    return Phase(STOP, {n.name: [StopServicesStep(services_to_stop(ctx, n))] for n in nodes if services_to_stop(ctx, n)})


def containers_phase(ctx: RenderContext, nodes: list[Node]) -> Phase:
    return Phase(CONTAINERS, {n.name: container_steps() for n in nodes if n in ctx.spec.kubelet_nodes})


def files_phase(ctx: RenderContext, nodes: list[Node]) -> Phase:
    return Phase(FILES, {n.name: [*(leftover_steps() if n in ctx.spec.kubelet_nodes else []),
                                  RemovePathsStep(reset_paths(ctx, n)), remove_hosts_step()] for n in nodes})


def network_phase(ctx: RenderContext, nodes: list[Node]) -> Phase:
    return Phase(NETWORK, {n.name: network_steps(ctx.spec, n) for n in nodes if network_steps(ctx.spec, n)})


def purge_phase(purge: dict[str, list[str]] | None) -> Phase | None:
    """`purge`: host -> installed binaries to remove too (`purge_paths`); None without --purge."""
    if not purge:
        return None
    return Phase(PURGE, {h: [RemovePathsStep(p, name="remove binaries")] for h, p in purge.items() if p})


PAYLOAD_DIR = "/var/lib/kbootstrap"  # bundle images and .debs copied by init/join


def purge_paths(spec: ClusterSpec, node: Node, manifest) -> list[str]:  # noqa: ANN001 - artifacts.manifest.Manifest
    """The binaries init/join installed on `node` from the bundle (as `bundle_payload.needs` picks them),
    and the payload directory."""
    from kbootstrap.artifacts.catalog import Kind
    from kbootstrap.phases.bundle_payload import needs

    return [i.dest for f in manifest.files if f.kind in (Kind.BINARY, Kind.TARBALL) and needs(spec, node, f)
            for i in f.install] + [PAYLOAD_DIR]
