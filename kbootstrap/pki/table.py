"""The certificate table: every CA, certificate and key pair of a cluster, one row each.

Like kubeadm's certlist.go, every other piece (issuing, rendering, `certs list`, tests) reads this table.
Unlike kubeadm, each row also says which hosts receive the certificate and which receive the private key,
so "who holds the etcd CA key" is answered here: nobody but the operator's cluster directory.

Names, file names, CN/O and usages follow kubeadm (cmd/kubeadm/app/phases/certs/certlist.go and
cmd/kubeadm/app/constants) for the supported releases; rows marked `kubeadm=False` are kbootstrap's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from ipaddress import IPv4Address, IPv6Address, ip_address

from kbootstrap.model.spec import ClusterSpec, Node, Role


class Usage(StrEnum):
    SERVER = "serverAuth"
    CLIENT = "clientAuth"


class Hosts(StrEnum):
    """Which hosts receive a file. Per-node rows go only to the node they were issued for."""

    NONE = "none"  # kept only in the operator's cluster directory
    CONTROL_PLANES = "control-planes"
    ETCD_MEMBERS = "etcd-members"
    ETCD_AND_CONTROL_PLANES = "etcd-members+control-planes"
    KUBELET_NODES = "kubelet-nodes"  # control planes and workers
    KUBELET_NODES_AND_LOADBALANCERS = "kubelet-nodes+loadbalancers"  # HAProxy verifies apiservers with the CA
    FIRST_CONTROL_PLANE = "first-control-plane"
    APPROVERS = "control-planes-with-local-joins"  # control planes, when some worker joins itself (`join: local`)


class PerNode(StrEnum):
    """A row issued once per node of a group (its SANs or CN name that node)."""

    SHARED = "shared"
    CONTROL_PLANE = "each-control-plane"
    ETCD_MEMBER = "each-etcd-member"
    KUBELET_NODE = "each-kubelet-node"


class SANs(StrEnum):
    NONE = "none"
    APISERVER = "apiserver"  # kubeadm GetAPIServerAltNames
    ETCD = "etcd"  # kubeadm GetEtcdAltNames / GetEtcdPeerAltNames
    KUBELET = "kubelet"  # the node's name and address (kbootstrap-issued kubelet serving cert)


@dataclass(frozen=True)
class CertRow:
    name: str  # kubeadm's name, e.g. "etcd-server"
    base: str  # path under /etc/kubernetes/pki without extension, e.g. "etcd/server"
    ca: str | None  # row name of the signing CA; None for a CA
    cn: str  # "{node}" is replaced by the node name
    orgs: tuple[str, ...] = ()
    usages: tuple[Usage, ...] = ()
    sans: SANs = SANs.NONE
    per_node: PerNode = PerNode.SHARED
    cert_to: Hosts = Hosts.NONE
    key_to: Hosts = Hosts.NONE
    kubeadm: bool = True
    purpose: str = ""
    read_by: tuple[str, ...] = ()  # the components that read the files: a changed file restarts them

    @property
    def is_ca(self) -> bool:
        return self.ca is None


@dataclass(frozen=True)
class KeyPairRow:
    """A bare key pair (the service-account signing key): no certificate."""

    name: str
    base: str
    private_to: Hosts
    public_to: Hosts
    purpose: str = ""
    read_by: tuple[str, ...] = ()


@dataclass(frozen=True)
class KubeconfigRow:
    """A kubeconfig with an embedded client certificate signed by the cluster CA."""

    file: str  # under /etc/kubernetes
    cn: str
    orgs: tuple[str, ...]
    to: Hosts
    per_node: PerNode = PerNode.SHARED
    server: str = "endpoint"  # "endpoint" (the load balancer) or "local" (this node's own apiserver)
    kubeadm: bool = True
    purpose: str = ""
    read_by: tuple[str, ...] = ()

    @property
    def cert_name(self) -> str:
        return "kubeconfig-" + self.file.removesuffix(".conf")


# Who reads what (the flags in render/flags.py, the kubelet's and kube-proxy's configuration): a renewed
# certificate restarts exactly these, as services or as static pods (render/pki_files.py).
APISERVER, CONTROLLER_MANAGER, SCHEDULER = "kube-apiserver", "kube-controller-manager", "kube-scheduler"
ETCD, KUBELET, KUBE_PROXY, HAPROXY = "etcd", "kubelet", "kube-proxy", "haproxy"
CSR_APPROVER = "kbootstrap-csr-approver"

CERTS: tuple[CertRow, ...] = (
    CertRow("ca", "ca", None, "kubernetes", cert_to=Hosts.KUBELET_NODES_AND_LOADBALANCERS,
            key_to=Hosts.CONTROL_PLANES,
            purpose="cluster CA; its key signs kubelet CSRs in kube-controller-manager",
            read_by=(APISERVER, CONTROLLER_MANAGER, KUBELET, KUBE_PROXY, HAPROXY)),
    CertRow("apiserver", "apiserver", "ca", "kube-apiserver", usages=(Usage.SERVER,), sans=SANs.APISERVER,
            per_node=PerNode.CONTROL_PLANE, cert_to=Hosts.CONTROL_PLANES, key_to=Hosts.CONTROL_PLANES,
            purpose="serving cert of kube-apiserver", read_by=(APISERVER,)),
    CertRow("apiserver-kubelet-client", "apiserver-kubelet-client", "ca", "kube-apiserver-kubelet-client",
            orgs=("kubeadm:cluster-admins",), usages=(Usage.CLIENT,),
            cert_to=Hosts.CONTROL_PLANES, key_to=Hosts.CONTROL_PLANES,
            purpose="kube-apiserver's client cert towards kubelets", read_by=(APISERVER,)),
    CertRow("front-proxy-ca", "front-proxy-ca", None, "front-proxy-ca",
            cert_to=Hosts.CONTROL_PLANES, key_to=Hosts.NONE,
            purpose="CA of the aggregation layer; no component needs its key",
            read_by=(APISERVER, CONTROLLER_MANAGER)),
    CertRow("front-proxy-client", "front-proxy-client", "front-proxy-ca", "front-proxy-client",
            usages=(Usage.CLIENT,), cert_to=Hosts.CONTROL_PLANES, key_to=Hosts.CONTROL_PLANES,
            purpose="client cert kube-apiserver uses to reach extension apiservers", read_by=(APISERVER,)),
    CertRow("etcd-ca", "etcd/ca", None, "etcd-ca",
            cert_to=Hosts.ETCD_AND_CONTROL_PLANES, key_to=Hosts.NONE,
            purpose="etcd CA; no component needs its key", read_by=(ETCD, APISERVER)),
    CertRow("etcd-server", "etcd/server", "etcd-ca", "{node}", usages=(Usage.SERVER, Usage.CLIENT), sans=SANs.ETCD,
            per_node=PerNode.ETCD_MEMBER, cert_to=Hosts.ETCD_MEMBERS, key_to=Hosts.ETCD_MEMBERS,
            purpose="etcd serving cert", read_by=(ETCD,)),
    CertRow("etcd-peer", "etcd/peer", "etcd-ca", "{node}", usages=(Usage.SERVER, Usage.CLIENT), sans=SANs.ETCD,
            per_node=PerNode.ETCD_MEMBER, cert_to=Hosts.ETCD_MEMBERS, key_to=Hosts.ETCD_MEMBERS,
            purpose="etcd peer cert between members", read_by=(ETCD,)),
    CertRow("etcd-healthcheck-client", "etcd/healthcheck-client", "etcd-ca", "kube-etcd-healthcheck-client",
            usages=(Usage.CLIENT,), cert_to=Hosts.ETCD_MEMBERS, key_to=Hosts.ETCD_MEMBERS,
            purpose="client cert for etcdctl health checks on etcd hosts"),
    CertRow("apiserver-etcd-client", "apiserver-etcd-client", "etcd-ca", "kube-apiserver-etcd-client",
            usages=(Usage.CLIENT,), cert_to=Hosts.CONTROL_PLANES, key_to=Hosts.CONTROL_PLANES,
            purpose="kube-apiserver's client cert towards etcd", read_by=(APISERVER,)),
    CertRow("kubelet-serving", "kubelet-serving", "ca", "system:node:{node}", orgs=("system:nodes",),
            usages=(Usage.SERVER,), sans=SANs.KUBELET, per_node=PerNode.KUBELET_NODE,
            cert_to=Hosts.KUBELET_NODES, key_to=Hosts.KUBELET_NODES, kubeadm=False,
            purpose="kubelet serving cert signed by the cluster CA, so kube-apiserver verifies kubelets",
            read_by=(KUBELET,)),
)

KEYPAIRS: tuple[KeyPairRow, ...] = (
    KeyPairRow("sa", "sa", private_to=Hosts.CONTROL_PLANES, public_to=Hosts.CONTROL_PLANES,
               purpose="signs and verifies service-account tokens", read_by=(APISERVER, CONTROLLER_MANAGER)),
)

KUBECONFIGS: tuple[KubeconfigRow, ...] = (
    KubeconfigRow("admin.conf", "kubernetes-admin", ("kubeadm:cluster-admins",), Hosts.CONTROL_PLANES,
                  purpose="cluster admin, bound by RBAC (revocable)"),
    KubeconfigRow("super-admin.conf", "kubernetes-super-admin", ("system:masters",), Hosts.FIRST_CONTROL_PLANE,
                  purpose="break-glass admin that bypasses RBAC; only on the first control plane"),
    KubeconfigRow("controller-manager.conf", "system:kube-controller-manager", (), Hosts.CONTROL_PLANES,
                  server="local", read_by=(CONTROLLER_MANAGER,)),
    KubeconfigRow("scheduler.conf", "system:kube-scheduler", (), Hosts.CONTROL_PLANES, server="local",
                  read_by=(SCHEDULER,)),
    KubeconfigRow("kubelet.conf", "system:node:{node}", ("system:nodes",), Hosts.CONTROL_PLANES,
                  per_node=PerNode.CONTROL_PLANE,
                  purpose="control-plane kubelets; workers get theirs by TLS bootstrap at join", read_by=(KUBELET,)),
    KubeconfigRow("kube-proxy.conf", "system:kube-proxy", (), Hosts.KUBELET_NODES, kubeadm=False,
                  purpose="kube-proxy on every node but `join: local` workers (kubeadm uses a service account)",
                  read_by=(KUBE_PROXY,)),
    KubeconfigRow("csr-approver.conf", "kbootstrap:csr-approver", (), Hosts.APPROVERS, kubeadm=False,
                  purpose="approves the kubelet serving certificates of `join: local` workers, checking their "
                          "names and addresses against the inventory", read_by=(CSR_APPROVER,)),
)

CERT_BY_NAME: dict[str, CertRow] = {r.name: r for r in CERTS}


def nodes_for(spec: ClusterSpec, hosts: Hosts | PerNode) -> list[Node]:
    match hosts:
        case Hosts.NONE:
            return []
        case Hosts.CONTROL_PLANES | PerNode.CONTROL_PLANE:
            return spec.control_planes
        case Hosts.FIRST_CONTROL_PLANE:
            return spec.control_planes[:1]
        case Hosts.ETCD_MEMBERS | PerNode.ETCD_MEMBER:
            return spec.etcd_members
        case Hosts.ETCD_AND_CONTROL_PLANES:
            return [n for n in spec.nodes if spec.is_etcd_member(n) or n.has(Role.CONTROL_PLANE)]
        case Hosts.APPROVERS:
            return spec.control_planes if spec.local_nodes else []
        case Hosts.KUBELET_NODES | PerNode.KUBELET_NODE:
            # A `join: local` worker holds no kbootstrap-issued key: its kubelet gets both certificates by CSR.
            return [n for n in spec.kubelet_nodes if not n.joins_locally]
        case Hosts.KUBELET_NODES_AND_LOADBALANCERS:
            return [n for n in spec.nodes if n in spec.kubelet_nodes or n.has(Role.LOADBALANCER)]  # local ones too
    raise ValueError(hosts)


def receives(spec: ClusterSpec, hosts: Hosts, node: Node) -> bool:
    return any(n.name == node.name for n in nodes_for(spec, hosts))


def subjects(spec: ClusterSpec, per_node: PerNode) -> list[Node | None]:
    """The nodes a row is issued for: [None] for a shared row."""
    if per_node is PerNode.SHARED:
        return [None]
    return list(nodes_for(spec, per_node))


def alt_names(spec: ClusterSpec, rule: SANs, node: Node | None) -> tuple[list[str], list[IPv4Address | IPv6Address]]:
    """Subject alternative names, as kubeadm computes them (pkiutil.GetAPIServerAltNames / GetEtcdAltNames)."""
    dns: list[str] = []
    ips: list[IPv4Address | IPv6Address] = []
    if rule is SANs.APISERVER:
        assert node is not None
        domain = spec.cluster.domain
        dns = [node.name, "kubernetes", "kubernetes.default", "kubernetes.default.svc",
               f"kubernetes.default.svc.{domain}"]
        ips = [spec.first_service_ip, node.address]
        lb = spec.load_balancer
        for host in (spec.api_host, *(str(n.address) for n in spec.loadbalancers),
                     *([lb.external_address] if lb.external_address else [])):
            try:
                ips.append(ip_address(host))
            except ValueError:
                dns.append(host)
        dns += list(lb.dns_names)
    elif rule is SANs.ETCD:
        assert node is not None
        dns = [node.name, "localhost"]
        ips = [node.address, ip_address("127.0.0.1"), ip_address("::1")]
    elif rule is SANs.KUBELET:
        assert node is not None
        dns = [node.name]
        ips = [node.address]
    return _unique(dns), _unique(ips)


def _unique(items: list) -> list:
    seen: set = set()
    out = []
    for i in items:
        if i not in seen:
            seen.add(i)
            out.append(i)
    return out
