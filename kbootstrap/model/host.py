"""What every layer knows of a host kbootstrap set up: where its configuration is, which services each role
runs, and the command lines of the tools on it. The phases start, restart and wait on these, reset stops
them, verify checks them and preflight expects them: one list each, here (ports.py holds the ports).
"""

from __future__ import annotations

from kbootstrap.model.spec import ClusterSpec

K8S = "/etc/kubernetes"
PKI = f"{K8S}/pki"
ADMIN_CONF = f"{K8S}/admin.conf"
SUPER_ADMIN_CONF = f"{K8S}/super-admin.conf"  # system:masters: for the cluster objects applied before RBAC is
MANIFESTS = f"{K8S}/manifests"  # the kubelet's static pods
HELD = f"{K8S}/kbootstrap-held"  # a static pod's manifest moved here is stopped (etcd restore); init puts it back
BIN = "/usr/local/bin"

# Services a role runs, in the order they start (reset stops them in reverse, the kubelet first).
RUNTIME_SERVICES = ("containerd",)
NODE_SERVICES = ("kubelet", "kube-proxy", "kbootstrap-pod-routes")  # every node with a kubelet
CONTROL_PLANE_SERVICES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")  # the systemd form
ETCD_SERVICE = "etcd"  # an etcd member in the systemd form, or an external etcd host


def loadbalancer_services(spec: ClusterSpec) -> list[str]:
    """haproxy, and keepalived when there is a VIP to hold."""
    return ["haproxy", *(["keepalived"] if spec.load_balancer.vip is not None else [])]


KUBECTL = f"{BIN}/kubectl"
CTR = f"{BIN}/ctr"
CRICTL = [f"{BIN}/crictl", "--runtime-endpoint", "unix:///run/containerd/containerd.sock"]


def kubectl(*args: str, kubeconfig: str = ADMIN_CONF, server: str | None = None) -> list[str]:
    """kubectl on a control plane, bounded: a probe or a step never hangs on an API that does not answer."""
    return [KUBECTL, "--kubeconfig", kubeconfig, *(["--server", server] if server else []),
            "--request-timeout", "5s", *args]


def etcdctl(endpoints: list[str], *args: str) -> list[str]:
    """etcdctl over mTLS with the healthcheck client certificate (every etcd member and stacked CP has it)."""
    etcd_pki = f"{PKI}/etcd"
    return [f"{BIN}/etcdctl", "--endpoints", ",".join(endpoints), "--cacert", f"{etcd_pki}/ca.crt",
            "--cert", f"{etcd_pki}/healthcheck-client.crt", "--key", f"{etcd_pki}/healthcheck-client.key",
            "--command-timeout", "3s", *args]

# Where a host keeps certificates: the PKI, the kubeconfigs (their embedded certificates) and the kubelet's
# rotating client and serving certificates. `certs check` reads every certificate under these.
CERT_ROOTS = (K8S, "/var/lib/kubelet/pki")
