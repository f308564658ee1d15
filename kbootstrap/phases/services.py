"""What the service phases share: which files restart which service, and the probes they wait on."""

from __future__ import annotations

from kbootstrap.model import ports
from kbootstrap.model.artifact import Artifact
from kbootstrap.model.etcd_members import client_url
from kbootstrap.model.spec import ClusterSpec, Node
from kbootstrap.render import RenderContext, flags, render_host

KUBECTL = "/usr/local/bin/kubectl"
NODE_SERVICES = ["kubelet", "kube-proxy", "kbootstrap-pod-routes"]
ADMIN_CONF = f"{flags.K8S}/admin.conf"
SUPER_ADMIN_CONF = f"{flags.K8S}/super-admin.conf"


def service_inputs(artifacts: list[Artifact]) -> dict[str, set[str]]:
    """service -> the files whose change restarts it: those that name it, and its own binary."""
    inputs: dict[str, set[str]] = {}
    for a in artifacts:
        for service in {*a.restarts, *([a.component] if a.path.startswith("/usr/local/") else [])}:
            inputs.setdefault(service, set()).add(a.path)
    return inputs


def inputs_for(ctx: RenderContext, node: Node, binaries_by_node: dict[str, list[Artifact]]) -> dict[str, set[str]]:
    """service -> input files, for everything on this node: its rendered files and its bundle binaries."""
    return service_inputs(render_host(ctx, node) + binaries_by_node.get(node.name, []))


def etcdctl(endpoints: list[str], *args: str) -> list[str]:
    """etcdctl over mTLS with the healthcheck client certificate (every etcd member and stacked CP has it)."""
    pki = f"{flags.PKI}/etcd"
    return ["/usr/local/bin/etcdctl", "--endpoints", ",".join(endpoints), "--cacert", f"{pki}/ca.crt",
            "--cert", f"{pki}/healthcheck-client.crt", "--key", f"{pki}/healthcheck-client.key",
            "--command-timeout", "3s", *args]


def etcd_health(node: Node) -> list[str]:
    """Health of this member through its own client URL, over mTLS (needs quorum: a read goes through raft)."""
    return etcdctl([client_url(node)], "endpoint", "health")


def kubectl(*args: str, kubeconfig: str = ADMIN_CONF, server: str | None = None) -> list[str]:
    return [KUBECTL, "--kubeconfig", kubeconfig, *(["--server", server] if server else []),
            "--request-timeout", "5s", *args]


def api_ready(spec: ClusterSpec, node: Node | None = None) -> list[str]:
    """/readyz of one apiserver (node given) or through the load balancer / VIP (the kubeconfig's server)."""
    return kubectl("get", "--raw", "/readyz", server=f"https://{node.address}:{ports.APISERVER}" if node else None)


def nodes_ready(names: list[str]) -> list[str]:
    return kubectl("wait", "--for=condition=Ready", "--timeout=2s", *(f"node/{n}" for n in names))
