"""The cluster model: one inventory file in, one typed, frozen ClusterSpec out.

Loading happens in two passes so that an operator sees *every* problem at once:
1. structure (pydantic): types, ranges, unknown fields — each error with its field path;
2. rules across fields (`_check_rules`): topology and role rules, etcd quorum, CIDR overlaps, the load balancer.
Nothing here touches a host.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from enum import StrEnum
from functools import cached_property
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from kbootstrap.errors import Problem, SpecError
from kbootstrap.model import component_config, ports, versions

# RFC 1123 label: what Kubernetes accepts as a node name and what a hostname may be.
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
DNS_NAME = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$"
# Extra-arg names are flag names without the leading dashes; values are passed as one argv element.
FLAG_NAME = r"^[a-z0-9][a-z0-9-]*$"
ONE_LINE = r"^[^\n\r\x00]*$"
# Kubernetes label syntax (an optional DNS prefix, then a name; values may be empty).
LABEL_KEY = r"^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$"


MAX_INVENTORY_BYTES = 1 << 20  # a 50 MB file took 25-70 s and ~1 GB to refuse; no real inventory is near 1 MiB


def _written_as_text(v: Any) -> Any:
    """An address is written as text: YAML's `address: 10` is the integer 10, which ipaddress reads as 0.0.0.10."""
    if not isinstance(v, str):
        raise ValueError(f"write the address as dotted text such as '10.0.0.11', not a {type(v).__name__}")
    return v


def _usable_by_a_host(a: IPv4Address) -> IPv4Address:
    for bad, what in ((a.is_unspecified, "the unspecified address"), (a.is_loopback, "a loopback address"),
                      (a.is_multicast, "a multicast address"),
                      (a == IPv4Address("255.255.255.255"), "the broadcast address"),
                      (a.is_link_local, "a link-local address"), (a.is_reserved, "a reserved address")):
        if bad:
            raise ValueError(f"{a} is {what}; expected an address other hosts reach this one at")
    return a


# A node's address or the VIP: dotted text, and one other hosts can reach.
HostAddress = Annotated[IPv4Address, BeforeValidator(_written_as_text), AfterValidator(_usable_by_a_host)]


class Role(StrEnum):
    LOADBALANCER = "loadbalancer"
    ETCD = "etcd"
    CONTROL_PLANE = "control-plane"
    WORKER = "worker"


class Topology(StrEnum):
    STACKED = "stacked"
    EXTERNAL = "external"


class ControlPlaneForm(StrEnum):
    STATIC_POD = "static-pod"  # kubeadm layout: manifests in /etc/kubernetes/manifests, run by the kubelet
    SYSTEMD = "systemd"  # hard-way layout: each component a systemd service


class KeyAlgorithm(StrEnum):
    RSA_2048 = "rsa-2048"  # kubeadm's default
    ECDSA_P256 = "ecdsa-p256"


class CNI(StrEnum):
    # The baseline needs no images: the reference bridge + host-local plugins and routes between nodes.
    # Others (e.g. a manifest-based CNI) are added as a new member plus a templates/cni/<name>/ folder.
    BRIDGE = "bridge"


COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy")
Component = Literal["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


Port = Annotated[int, Field(ge=1, le=65535)]
Name = Annotated[str, Field(pattern=DNS_LABEL, description="lower-case RFC 1123 label, e.g. cp1")]


class Bastion(_Model):
    host: str = Field(min_length=1)
    port: Port = 22
    user: str | None = None
    key: Path | None = None


class SSHSettings(_Model):
    """How to reach a host. Set once at the top level; a node may override any field."""

    user: str = Field("root", min_length=1, pattern=r"^[a-z_][a-z0-9_.-]*$")
    port: Port = 22
    key: Path | None = Field(None, description="private key file; relative paths are from the inventory file")
    password_env: str | None = Field(
        None, description="name of an environment variable holding the sudo/login password (never the password)"
    )
    bastion: Bastion | None = None
    sudo: bool = Field(True, description="run privileged commands through sudo (false when user is root)")
    known_hosts: Path | None = Field(None, description="known_hosts file used to verify host keys")
    connect_timeout: float = Field(10.0, gt=0, le=300)


class NodeSSH(_Model):
    user: str | None = None
    port: Port | None = None
    key: Path | None = None
    password_env: str | None = None
    bastion: Bastion | None = None
    sudo: bool | None = None


class JoinMethod(StrEnum):
    SSH = "ssh"  # kbootstrap connects and joins the node (init/join)
    LOCAL = "local"  # the node joins itself: `kbootstrap join --local` run on it with a token; never connected to


class NodeSize(_Model):
    """Only the lab reads this (VM/container sizes); kbootstrap ignores it on real hosts."""

    cpus: int = Field(2, ge=1, le=64)
    memory_mb: int = Field(2048, ge=256)


class Node(_Model):
    name: Name
    address: HostAddress
    roles: list[Role] = Field(min_length=1)
    ssh: NodeSSH | None = None
    host_key: str | None = Field(None, description="expected SSH host key ('ssh-ed25519 AAAA...') or SHA256: fingerprint")
    pod_subnet: IPv4Network | None = Field(None, description="override the pod subnet allocated to this node")
    labels: dict[Annotated[str, Field(pattern=LABEL_KEY)], Annotated[str, Field(pattern=LABEL_VALUE)]] = Field(
        default_factory=dict, description="Kubernetes node labels"
    )
    size: NodeSize = Field(default_factory=NodeSize)
    join: JoinMethod = Field(
        JoinMethod.SSH, description="ssh: kbootstrap connects and joins it; local: a worker that joins itself with "
                                    "`kbootstrap join --local` (listed so it gets a pod subnet, routes and a hosts entry)")

    @field_validator("roles")
    @classmethod
    def _unique_roles(cls, roles: list[Role]) -> list[Role]:
        if len(set(roles)) != len(roles):
            raise ValueError("each role may be listed once")
        return roles

    def has(self, role: Role) -> bool:
        return role in self.roles

    @property
    def joins_locally(self) -> bool:
        return self.join is JoinMethod.LOCAL


class ClusterSettings(_Model):
    name: Name
    domain: str = Field("cluster.local", pattern=DNS_NAME, max_length=253)
    kubernetes_version: str = versions.DEFAULT_VERSION
    topology: Topology = Topology.STACKED
    control_plane_form: ControlPlaneForm = ControlPlaneForm.STATIC_POD

    @field_validator("kubernetes_version")
    @classmethod
    def _supported(cls, v: str) -> str:
        v = v.removeprefix("v")
        if v not in versions.SUPPORTED:
            raise ValueError(f"unsupported version {v!r}; supported: {', '.join(versions.SUPPORTED)}")
        return v


class LoadBalancer(_Model):
    vip: HostAddress | None = Field(None, description="virtual IP held by keepalived; required with 2+ LB nodes")
    port: Port = ports.APISERVER
    interface: str = Field("eth0", pattern=r"^[A-Za-z0-9_.-]{1,15}$", description="interface keepalived uses")
    virtual_router_id: int = Field(51, ge=1, le=255)
    external_address: str | None = Field(
        None, description="address (IP or DNS name) of a load balancer you run yourself; no LB nodes then"
    )
    dns_names: list[Annotated[str, Field(pattern=DNS_NAME, max_length=253)]] = Field(
        default_factory=list, description="extra names put into the apiserver certificate"
    )


class NetworkSettings(_Model):
    service_cidr: IPv4Network = IPv4Network("10.96.0.0/12")
    pod_cidr: IPv4Network = IPv4Network("10.244.0.0/16")
    node_pod_prefix: int = Field(24, ge=8, le=28, description="prefix length of each node's pod subnet")
    cluster_dns: IPv4Address | None = Field(None, description="defaults to the 10th address of service_cidr")
    cni: CNI = CNI.BRIDGE
    mtu: int = Field(1500, ge=576, le=9000)
    hosts_file: bool = Field(
        True, description="write every node's name and address into each host's /etc/hosts (a marked block; "
                          "the rest of the file is kept); false when DNS resolves the node names")


class ContainerRuntime(_Model):
    sandbox_image: str | None = Field(None, description="defaults to registry.k8s.io/pause:<version's tag>")
    systemd_cgroup: bool = True
    restrict_oom_score_adj: bool = Field(
        False, description="containerd never sets an OOM score below its own: for hosts without CAP_SYS_RESOURCE "
                           "(containers such as the lab's nodes), where the kubelet's -998 for pod sandboxes fails")
    registry_mirrors: dict[str, list[str]] = Field(default_factory=dict)


class Certificates(_Model):
    key_algorithm: KeyAlgorithm = KeyAlgorithm.RSA_2048
    validity_days: int = Field(365, ge=1, le=3650)
    ca_validity_days: int = Field(3650, ge=1, le=36500)


class LabSettings(_Model):
    """Only the local lab reads this: the bridge the lab nodes sit on."""

    bridge: str = Field("kblab0", pattern=r"^[A-Za-z0-9_-]{1,15}$")
    gateway: IPv4Interface = IPv4Interface("10.77.0.1/24")


class Inventory(_Model):
    """The file as written. `ClusterSpec` adds the resolved, derived view."""

    cluster: ClusterSettings
    ssh: SSHSettings = Field(default_factory=SSHSettings)
    load_balancer: LoadBalancer = Field(default_factory=LoadBalancer)
    network: NetworkSettings = Field(default_factory=NetworkSettings)
    container_runtime: ContainerRuntime = Field(default_factory=ContainerRuntime)
    certificates: Certificates = Field(default_factory=Certificates)
    extra_args: dict[Component, dict[Annotated[str, Field(pattern=FLAG_NAME)],
                                     Annotated[str, Field(pattern=ONE_LINE)]]] = Field(
        default_factory=dict, description="per-component flags, e.g. {kube-apiserver: {v: '2'}}; override defaults"
    )
    component_config: dict[Literal["kubelet", "kube-proxy"], dict[str, Any]] = Field(
        default_factory=dict,
        description="fields merged into KubeletConfiguration / KubeProxyConfiguration (deep merge, yours win)",
    )
    artifacts: Path | None = Field(
        None, description="artifact bundle directory for init/join (relative paths are from this file); "
                          "default: the cache `kbootstrap artifacts fetch` fills for this version")
    lab: LabSettings | None = None
    nodes: list[Node] = Field(min_length=1)


class ClusterSpec(Inventory):
    """A validated inventory plus the values derived from it. Frozen: phases read it, never change it."""

    source: Path | None = None
    warnings: tuple[str, ...] = ()

    # --- roles -----------------------------------------------------------------------------------------
    @property
    def release(self) -> versions.Release:
        return versions.release(self.cluster.kubernetes_version)

    def with_role(self, role: Role) -> list[Node]:
        return [n for n in self.nodes if n.has(role)]

    @property
    def control_planes(self) -> list[Node]:
        return self.with_role(Role.CONTROL_PLANE)

    @property
    def etcd_members(self) -> list[Node]:
        if self.cluster.topology is Topology.STACKED:
            return self.control_planes  # stacked: etcd on each control plane, listed or not
        return self.with_role(Role.ETCD)

    @property
    def loadbalancers(self) -> list[Node]:
        return self.with_role(Role.LOADBALANCER)

    @property
    def workers(self) -> list[Node]:
        return self.with_role(Role.WORKER)

    @property
    def kubelet_nodes(self) -> list[Node]:
        """Nodes that register with the API: every control plane (both forms) and every worker."""
        return [n for n in self.nodes if n.has(Role.CONTROL_PLANE) or n.has(Role.WORKER)]

    @property
    def connected_nodes(self) -> list[Node]:
        """The nodes kbootstrap reaches over SSH: all but the `join: local` workers."""
        return [n for n in self.nodes if not n.joins_locally]

    @property
    def local_nodes(self) -> list[Node]:
        return [n for n in self.nodes if n.joins_locally]

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def is_etcd_member(self, node: Node) -> bool:
        return any(m.name == node.name for m in self.etcd_members)

    # --- derived network values --------------------------------------------------------------------------
    @property
    def api_host(self) -> str:
        """Where clients reach the API: the VIP, the single LB's address, or the external LB."""
        lb = self.load_balancer
        if lb.vip is not None:
            return str(lb.vip)
        if self.loadbalancers:
            return str(self.loadbalancers[0].address)
        if lb.external_address:
            return lb.external_address
        return str(self.control_planes[0].address)

    @property
    def api_server_url(self) -> str:
        return f"https://{self.api_host}:{self.load_balancer.port}"

    @property
    def first_service_ip(self) -> IPv4Address:
        return self.network.service_cidr.network_address + 1

    @property
    def cluster_dns(self) -> IPv4Address:
        return self.network.cluster_dns or self.network.service_cidr.network_address + 10

    @property
    def sandbox_image(self) -> str:
        return self.container_runtime.sandbox_image or f"registry.k8s.io/pause:{self.release.pause}"

    @cached_property
    def pod_subnets(self) -> dict[str, IPv4Network]:
        """Each kubelet node's pod subnet: explicit, else the next free one in inventory order.

        Appending nodes keeps every existing node's subnet; reordering or removing nodes does not, so set
        `pod_subnet` on a node when the order must change on a running cluster.
        """
        taken = {n.pod_subnet for n in self.kubelet_nodes if n.pod_subnet is not None}
        free = (s for s in self.network.pod_cidr.subnets(new_prefix=self.network.node_pod_prefix) if s not in taken)
        out: dict[str, IPv4Network] = {}
        for n in self.kubelet_nodes:
            out[n.name] = n.pod_subnet if n.pod_subnet is not None else next(free)
        return out

    def ssh_for(self, node: Node) -> SSHSettings:
        """The node's effective SSH settings: its overrides over the inventory's defaults."""
        if node.ssh is None:
            return self.ssh
        override = node.ssh.model_dump(exclude_none=True)
        merged = self.ssh.model_copy(update=override)
        return merged.model_copy(update={"key": _resolve(merged.key, self.source)})


# ----------------------------------------------------------------------------------------------------------
# loading


def load_inventory(path: str | Path) -> ClusterSpec:
    """Read, validate and resolve an inventory. Raises SpecError listing every problem."""
    path = Path(path)
    label = str(path)
    try:
        size = path.stat().st_size
        if size > MAX_INVENTORY_BYTES:
            raise SpecError(label, [Problem("", f"the file is {size / 2**20:.1f} MiB; an inventory is at most "
                                                f"{MAX_INVENTORY_BYTES // 2**20} MiB (is this the right file?)")])
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(label, [Problem("", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(label, [Problem("", f"cannot read the file: {e}")]) from None
    return parse_inventory(text, source=path)


def parse_inventory(text: str, source: Path | None = None) -> ClusterSpec:
    label = str(source) if source else "<inventory>"
    if len(text) > MAX_INVENTORY_BYTES:
        raise SpecError(label, [Problem("", f"{len(text)} characters; an inventory is at most "
                                            f"{MAX_INVENTORY_BYTES // 2**20} MiB")])
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader that refuses duplicate keys
    except yaml.YAMLError as e:
        where = ""
        mark = getattr(e, "problem_mark", None)
        if mark is not None:
            where = f"line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SpecError(label, [Problem(where, f"not valid YAML: {problem}")]) from None
    except RecursionError:
        raise SpecError(label, [Problem("", "not valid YAML: nesting too deep")]) from None
    return build_spec(data, source=source)


class _StrictLoader(yaml.SafeLoader):
    """yaml.safe_load, except that a mapping with the same key twice is an error (YAML says keys are unique;
    PyYAML silently keeps the last, so a repeated `address:` would win unnoticed)."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.setdefault(key, key_node)
            except TypeError:  # an unhashable key: the base class reports it
                continue
            if first is not key_node:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first at line {first.start_mark.line + 1})",
                    key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def build_spec(data: Any, source: Path | None = None) -> ClusterSpec:
    label = str(source) if source else "<inventory>"
    if not isinstance(data, dict):
        kind = "empty" if data is None else f"a {type(data).__name__}"
        raise SpecError(label, [Problem("", f"expected a mapping with 'cluster' and 'nodes' at the top, got {kind}")])
    try:
        inv = Inventory.model_validate(data)
    except ValidationError as e:
        raise SpecError(label, [_problem_from_pydantic(err, data) for err in e.errors()]) from None
    except RecursionError:
        raise SpecError(label, [Problem("", "nesting too deep")]) from None

    problems, warnings = _check_rules(inv)
    if problems:
        raise SpecError(label, problems)
    ssh = inv.ssh.model_copy(
        update={"key": _resolve(inv.ssh.key, source), "known_hosts": _resolve(inv.ssh.known_hosts, source)}
    )
    if inv.ssh.bastion and inv.ssh.bastion.key:
        bastion = inv.ssh.bastion.model_copy(update={"key": _resolve(inv.ssh.bastion.key, source)})
        ssh = ssh.model_copy(update={"bastion": bastion})
    fields = {name: getattr(inv, name) for name in Inventory.model_fields}
    fields["ssh"] = ssh
    fields["artifacts"] = _resolve(inv.artifacts, source)
    return ClusterSpec.model_construct(**fields, source=source, warnings=tuple(warnings))


def _resolve(p: Path | None, source: Path | None) -> Path | None:
    if p is None:
        return None
    p = p.expanduser()
    if not p.is_absolute() and source is not None:
        p = source.parent.resolve() / p
    return p


def _format_loc(loc: tuple[Any, ...], data: Any) -> str:
    out = ""
    cursor = data
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            name = None
            if isinstance(cursor, list) and 0 <= part < len(cursor):
                cursor = cursor[part]
                if isinstance(cursor, dict) and isinstance(cursor.get("name"), str):
                    name = cursor["name"]
            else:
                cursor = None
            if name:
                out += f" ({name})"
        else:
            # pydantic adds '[key]' pseudo-locations for dict keys; keep them readable.
            part = str(part)
            out += ("." if out else "") + part
            cursor = cursor.get(part) if isinstance(cursor, dict) else None
    return out


_SECRETISH = re.compile(r"pass|secret|token|key", re.I)


def _problem_from_pydantic(err: Mapping[str, Any], data: Any) -> Problem:
    loc = tuple(err.get("loc", ()))
    path = _format_loc(loc, data)
    msg = err.get("msg", "invalid")
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        msg = "unknown field (check the spelling; `kbootstrap schema` lists every field)"
    elif kind == "missing":
        msg = "required field is missing"
    elif "input" in err and not any(_SECRETISH.search(str(p)) for p in loc) and kind != "dict_type":
        shown = repr(err["input"])
        if len(shown) > 60:
            shown = shown[:57] + "..."
        msg = f"{msg} (got {shown})"
    if kind == "string_pattern_mismatch" and loc and loc[-1] == "name":
        msg += "; expected a lower-case RFC 1123 label such as 'cp1'"
    return Problem(path, msg)


def _check_rules(inv: Inventory) -> tuple[list[Problem], list[str]]:
    """Rules that span fields. Returns (problems, warnings); every problem is collected."""
    problems: list[Problem] = []
    warnings: list[str] = []

    def node_path(i: int, node: Node, field: str = "") -> str:
        return f"nodes[{i}] ({node.name})" + (f".{field}" if field else "")

    # component_config against the release's upstream types (what the kubelet and kube-proxy would refuse)
    minor = versions.release(inv.cluster.kubernetes_version).minor
    for component, settings in inv.component_config.items():
        problems += component_config.check(minor, component, settings, f"component_config.{component}")

    # names and addresses are unique
    seen_names: dict[str, int] = {}
    seen_addrs: dict[IPv4Address, int] = {}
    for i, n in enumerate(inv.nodes):
        if n.name in seen_names:
            problems.append(Problem(node_path(i, n, "name"), f"duplicate node name; nodes[{seen_names[n.name]}] has it too"))
        seen_names.setdefault(n.name, i)
        if n.address in seen_addrs:
            j = seen_addrs[n.address]
            problems.append(
                Problem(node_path(i, n, "address"),
                        f"duplicate address {n.address}; nodes[{j}] ({inv.nodes[j].name}) has it too")
            )
        seen_addrs.setdefault(n.address, i)

    # topology and roles
    topo = inv.cluster.topology
    cps = [n for n in inv.nodes if n.has(Role.CONTROL_PLANE)]
    if not cps:
        problems.append(Problem("nodes", "no node has the 'control-plane' role; at least one is required"))
    for i, n in enumerate(inv.nodes):
        if topo is Topology.STACKED and n.has(Role.ETCD) and not n.has(Role.CONTROL_PLANE):
            problems.append(
                Problem(
                    node_path(i, n, "roles"),
                    "'etcd' without 'control-plane' in a stacked topology; stacked etcd runs on the control planes "
                    "(use cluster.topology: external for separate etcd hosts)",
                )
            )
        if topo is Topology.EXTERNAL and n.has(Role.ETCD) and n.has(Role.CONTROL_PLANE):
            problems.append(
                Problem(
                    node_path(i, n, "roles"),
                    "'etcd' together with 'control-plane' in an external topology; external etcd needs its own hosts "
                    "(use cluster.topology: stacked to put etcd on the control planes)",
                )
            )
        if n.has(Role.LOADBALANCER) and n.has(Role.CONTROL_PLANE) and inv.load_balancer.port == ports.APISERVER:
            problems.append(
                Problem(
                    node_path(i, n, "roles"),
                    f"a node cannot be both 'loadbalancer' and 'control-plane' while both listen on {ports.APISERVER} "
                    "(set load_balancer.port to another port, or use separate hosts)",
                )
            )
    members = cps if topo is Topology.STACKED else [n for n in inv.nodes if n.has(Role.ETCD)]
    if topo is Topology.EXTERNAL and not members:
        problems.append(Problem("nodes", "external topology needs nodes with the 'etcd' role; none has it"))
    elif members and len(members) % 2 == 0:
        # A warning, not an error: etcd runs with any count, and a cluster passes through an even one while a
        # member is removed and replaced (`kbootstrap remove`, then `join --control-plane`).
        warnings.append(f"{len(members)} etcd members: an even count adds no fault tolerance over one fewer and "
                        "needs more members for a quorum; use an odd number (1, 3 or 5)")
    if 0 < len(members) < 3:
        warnings.append(f"{len(members)} etcd member(s): the cluster cannot survive the loss of an etcd member (use 3)")

    for i, n in enumerate(inv.nodes):
        if not n.joins_locally:
            continue
        if n.roles != [Role.WORKER]:
            problems.append(Problem(node_path(i, n, "join"), "local: only a worker joins itself (roles: [worker]); "
                                                             "control planes, etcd and load balancers are joined over SSH"))
        if n.ssh is not None or n.host_key is not None:
            problems.append(Problem(node_path(i, n, "join"), "local: kbootstrap never connects to this node, so "
                                                             "'ssh' and 'host_key' do not apply; remove them"))

    # load balancer
    lb = inv.load_balancer
    lbs = [n for n in inv.nodes if n.has(Role.LOADBALANCER)]
    if len(lbs) >= 2 and lb.vip is None:
        problems.append(
            Problem("load_balancer.vip",
                    f"{len(lbs)} loadbalancer nodes need a virtual IP for keepalived to share; none set")
        )
    if lb.vip is not None and not lbs:
        problems.append(
            Problem("load_balancer.vip", f"{lb.vip} is set but no node has the 'loadbalancer' role to provide it")
        )
    if lb.vip is not None and lb.vip in seen_addrs:
        j = seen_addrs[lb.vip]
        problems.append(Problem("load_balancer.vip", f"{lb.vip} is also the address of nodes[{j}] ({inv.nodes[j].name})"))
    if lb.external_address and lbs:
        problems.append(
            Problem("load_balancer.external_address", "set together with loadbalancer nodes; use one or the other")
        )
    if not lbs and not lb.external_address and len(cps) > 1:
        problems.append(
            Problem(
                "load_balancer",
                f"{len(cps)} control planes but no load balancer: add nodes with the 'loadbalancer' role "
                "or set load_balancer.external_address",
            )
        )
    if lb.external_address:
        try:
            ipaddress.ip_address(lb.external_address)
        except ValueError:
            if not re.match(DNS_NAME, lb.external_address):
                problems.append(Problem("load_balancer.external_address", "expected an IP address or a DNS name"))

    # networks
    net = inv.network
    if net.service_cidr.overlaps(net.pod_cidr):
        problems.append(Problem("network.pod_cidr", f"{net.pod_cidr} overlaps network.service_cidr {net.service_cidr}"))
    for field, cidr in (("service_cidr", net.service_cidr), ("pod_cidr", net.pod_cidr)):
        for i, n in enumerate(inv.nodes):
            if n.address in cidr:
                problems.append(Problem(f"network.{field}",
                                        f"{cidr} contains the address of {node_path(i, n)} ({n.address})"))
        if lb.vip is not None and lb.vip in cidr:
            problems.append(Problem(f"network.{field}", f"{cidr} contains load_balancer.vip {lb.vip}"))
    if net.service_cidr.num_addresses < 16:
        problems.append(Problem("network.service_cidr", "too small; expected at least a /28"))
    if net.cluster_dns is not None:
        if net.cluster_dns not in net.service_cidr:
            problems.append(Problem("network.cluster_dns",
                                    f"{net.cluster_dns} is outside network.service_cidr {net.service_cidr}"))
        elif net.cluster_dns == net.service_cidr.network_address + 1:
            problems.append(Problem("network.cluster_dns", "is the first service IP, which the 'kubernetes' service takes"))
    kubelet_count = sum(1 for n in inv.nodes if n.has(Role.CONTROL_PLANE) or n.has(Role.WORKER))
    if net.node_pod_prefix <= net.pod_cidr.prefixlen:
        problems.append(
            Problem("network.node_pod_prefix",
                    f"/{net.node_pod_prefix} must be longer than pod_cidr's /{net.pod_cidr.prefixlen}")
        )
    elif 2 ** (net.node_pod_prefix - net.pod_cidr.prefixlen) < kubelet_count:
        problems.append(
            Problem(
                "network.node_pod_prefix",
                f"{net.pod_cidr} holds only {2 ** (net.node_pod_prefix - net.pod_cidr.prefixlen)} subnets of "
                f"/{net.node_pod_prefix}, but {kubelet_count} nodes need one",
            )
        )
    explicit: dict[IPv4Network, str] = {}
    for i, n in enumerate(inv.nodes):
        if n.pod_subnet is None:
            continue
        if not n.pod_subnet.subnet_of(net.pod_cidr) or n.pod_subnet.prefixlen != net.node_pod_prefix:
            problems.append(
                Problem(node_path(i, n, "pod_subnet"),
                        f"expected a /{net.node_pod_prefix} inside network.pod_cidr {net.pod_cidr}")
            )
        for other, name in explicit.items():
            if other.overlaps(n.pod_subnet):
                problems.append(Problem(node_path(i, n, "pod_subnet"), f"overlaps the pod subnet of {name}"))
        explicit[n.pod_subnet] = n.name

    # the lab
    if inv.lab is not None:
        for i, n in enumerate(inv.nodes):
            if n.address not in inv.lab.gateway.network:
                problems.append(
                    Problem(node_path(i, n, "address"), f"outside the lab network {inv.lab.gateway.network} (lab.gateway)")
                )
            if n.address == inv.lab.gateway.ip:
                problems.append(Problem(node_path(i, n, "address"), "is the lab bridge's own address (lab.gateway)"))
    return problems, warnings


def json_schema() -> str:
    """JSON Schema of the inventory file, for editors (yaml-language-server)."""
    schema = Inventory.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "kbootstrap inventory"
    return json.dumps(schema, indent=2, sort_keys=True)
