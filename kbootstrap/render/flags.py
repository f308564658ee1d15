"""Command-line flags of each control-plane component, computed once for both forms.

A static pod manifest and a systemd unit of the same component carry exactly these flags, so the two
forms cannot drift. Defaults follow kubeadm's manifests for the release; the inventory's `extra_args`
override by flag name.
"""

from __future__ import annotations

from kbootstrap.model import ports
from kbootstrap.model.etcd_members import FirstStart, client_url, peer_url
from kbootstrap.model.host import K8S, PKI
from kbootstrap.model.spec import ClusterSpec, Node

ETCD_DATA_DIR = "/var/lib/etcd"
AUDIT_LOG_DIR = "/var/log/kubernetes/audit"
ENCRYPTION_CONFIG = f"{K8S}/encryption-config.yaml"
AUDIT_POLICY = f"{K8S}/audit-policy.yaml"


def _merge(spec: ClusterSpec, component: str, flags: dict[str, str]) -> list[str]:
    flags = {**flags, **spec.extra_args.get(component, {})}  # type: ignore[call-overload]  # a Component is a str
    return [f"--{k}={v}" for k, v in sorted(flags.items())]


def etcd(spec: ClusterSpec, node: Node, start: FirstStart) -> list[str]:
    """`start`: the member's first-start settings (etcd_members), not re-derived from the inventory."""
    # Only flags that etcd 3.4, 3.5 and 3.6 all accept (kubeadm's `experimental-*` flags were renamed in 3.6).
    return _merge(spec, "etcd", {
        "name": node.name,
        "data-dir": ETCD_DATA_DIR,
        "advertise-client-urls": client_url(node),
        "listen-client-urls": f"https://127.0.0.1:{ports.ETCD_CLIENT},{client_url(node)}",
        "listen-metrics-urls": f"http://127.0.0.1:{ports.ETCD_METRICS}",
        "initial-advertise-peer-urls": peer_url(node),
        "listen-peer-urls": peer_url(node),
        "initial-cluster": start.flag(),
        "initial-cluster-state": start.state,
        "initial-cluster-token": spec.cluster.name,
        "client-cert-auth": "true",
        "trusted-ca-file": f"{PKI}/etcd/ca.crt",
        "cert-file": f"{PKI}/etcd/server.crt",
        "key-file": f"{PKI}/etcd/server.key",
        "peer-client-cert-auth": "true",
        "peer-trusted-ca-file": f"{PKI}/etcd/ca.crt",
        "peer-cert-file": f"{PKI}/etcd/peer.crt",
        "peer-key-file": f"{PKI}/etcd/peer.key",
        "snapshot-count": "10000",
    })


def kube_apiserver(spec: ClusterSpec, node: Node, etcd_servers: list[str]) -> list[str]:
    return _merge(spec, "kube-apiserver", {
        "advertise-address": str(node.address),
        "secure-port": str(ports.APISERVER),
        "allow-privileged": "true",
        "authorization-mode": "Node,RBAC",
        "enable-admission-plugins": "NodeRestriction",
        "enable-bootstrap-token-auth": "true",
        "client-ca-file": f"{PKI}/ca.crt",
        "tls-cert-file": f"{PKI}/apiserver.crt",
        "tls-private-key-file": f"{PKI}/apiserver.key",
        "etcd-servers": ",".join(etcd_servers),
        "etcd-cafile": f"{PKI}/etcd/ca.crt",
        "etcd-certfile": f"{PKI}/apiserver-etcd-client.crt",
        "etcd-keyfile": f"{PKI}/apiserver-etcd-client.key",
        "kubelet-client-certificate": f"{PKI}/apiserver-kubelet-client.crt",
        "kubelet-client-key": f"{PKI}/apiserver-kubelet-client.key",
        # kbootstrap issues kubelet serving certs from the cluster CA, so kubelets are verified (kubeadm does not).
        "kubelet-certificate-authority": f"{PKI}/ca.crt",
        "kubelet-preferred-address-types": "InternalIP,ExternalIP,Hostname",
        "proxy-client-cert-file": f"{PKI}/front-proxy-client.crt",
        "proxy-client-key-file": f"{PKI}/front-proxy-client.key",
        "requestheader-allowed-names": "front-proxy-client",
        "requestheader-client-ca-file": f"{PKI}/front-proxy-ca.crt",
        "requestheader-extra-headers-prefix": "X-Remote-Extra-",
        "requestheader-group-headers": "X-Remote-Group",
        "requestheader-username-headers": "X-Remote-User",
        "service-account-issuer": f"https://kubernetes.default.svc.{spec.cluster.domain}",
        "service-account-key-file": f"{PKI}/sa.pub",
        "service-account-signing-key-file": f"{PKI}/sa.key",
        "service-cluster-ip-range": str(spec.network.service_cidr),
        "encryption-provider-config": ENCRYPTION_CONFIG,
        "audit-policy-file": AUDIT_POLICY,
        "audit-log-path": f"{AUDIT_LOG_DIR}/audit.log",
        "audit-log-maxage": "30",
        "audit-log-maxbackup": "10",
        "audit-log-maxsize": "100",
        # On SIGTERM, /readyz fails at once while requests are still served this long: the load balancers' health
        # checks (haproxy: every 1 s, down after 2 failures) take it out of rotation before it stops listening,
        # so a control plane restarted or shut down cleanly drops no request.
        "shutdown-delay-duration": "5s",
    })


def kube_controller_manager(spec: ClusterSpec, node: Node) -> list[str]:
    conf = f"{K8S}/controller-manager.conf"
    return _merge(spec, "kube-controller-manager", {
        "authentication-kubeconfig": conf,
        "authorization-kubeconfig": conf,
        "kubeconfig": conf,
        "bind-address": "127.0.0.1",
        "client-ca-file": f"{PKI}/ca.crt",
        "cluster-name": spec.cluster.name,
        "cluster-signing-cert-file": f"{PKI}/ca.crt",
        "cluster-signing-key-file": f"{PKI}/ca.key",
        "controllers": "*,bootstrapsigner,tokencleaner",
        "leader-elect": "true",
        "requestheader-client-ca-file": f"{PKI}/front-proxy-ca.crt",
        "root-ca-file": f"{PKI}/ca.crt",
        "service-account-private-key-file": f"{PKI}/sa.key",
        "service-cluster-ip-range": str(spec.network.service_cidr),
        "use-service-account-credentials": "true",
        # Pod subnets are assigned per node by kbootstrap (CNI host-local), not by the controller.
        "allocate-node-cidrs": "false",
    })


def kube_scheduler(spec: ClusterSpec, node: Node) -> list[str]:
    conf = f"{K8S}/scheduler.conf"
    return _merge(spec, "kube-scheduler", {
        "authentication-kubeconfig": conf,
        "authorization-kubeconfig": conf,
        "kubeconfig": conf,
        "bind-address": "127.0.0.1",
        "leader-elect": "true",
    })


def kubelet(spec: ClusterSpec, node: Node) -> list[str]:
    flags = {
        "config": "/var/lib/kubelet/config.yaml",
        "kubeconfig": f"{K8S}/kubelet.conf",
        "bootstrap-kubeconfig": f"{K8S}/bootstrap-kubelet.conf",
        "node-ip": str(node.address),
        "hostname-override": node.name,
    }
    if node.labels:
        flags["node-labels"] = ",".join(f"{k}={v}" for k, v in sorted(node.labels.items()))
    return _merge(spec, "kubelet", flags)


def kube_proxy(spec: ClusterSpec, node: Node) -> list[str]:
    return _merge(spec, "kube-proxy", {
        "config": "/var/lib/kube-proxy/config.conf",
        "hostname-override": node.name,
    })
