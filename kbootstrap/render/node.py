"""Everything a node that runs pods needs: containerd, crictl, kubelet, kube-proxy, kernel settings."""

from __future__ import annotations

from typing import Any

from kbootstrap.model.artifact import Artifact
from kbootstrap.model.spec import Node, Role
from kbootstrap.pki.kubeconfig import kubeconfig, kubeconfig_from_files
from kbootstrap.render import flags
from kbootstrap.render.context import RenderContext
from kbootstrap.render.templates import base_document, deep_merge, dump_yaml, render_text

KUBELET_CONFIG = "/var/lib/kubelet/config.yaml"
KUBE_PROXY_CONFIG = "/var/lib/kube-proxy/config.conf"
KUBELET_CLIENT = "/var/lib/kubelet/pki/kubelet-client-current.pem"  # the kubelet's rotating client cert and key
KUBELET_SERVER = "/var/lib/kubelet/pki/kubelet-server-current.pem"  # its serving cert, by CSR (serverTLSBootstrap)


def runtime_files(ctx: RenderContext, node: Node) -> list[Artifact]:
    spec = ctx.spec
    rt = spec.container_runtime
    out = [
        Artifact("/etc/containerd/config.toml",
                 render_text("containerd/config.toml.j2", sandbox_image=spec.sandbox_image,
                             systemd_cgroup=rt.systemd_cgroup, restrict_oom_score_adj=rt.restrict_oom_score_adj),
                 restarts=("containerd",), component="containerd"),
        Artifact("/etc/systemd/system/containerd.service", render_text("containerd/containerd.service.j2"),
                 restarts=("containerd",), component="containerd"),
        Artifact("/etc/crictl.yaml", dump_yaml({
            "runtime-endpoint": "unix:///run/containerd/containerd.sock",
            "image-endpoint": "unix:///run/containerd/containerd.sock",
            "timeout": 10,
        }), component="containerd"),
    ]
    for registry, mirrors in sorted(rt.registry_mirrors.items()):
        server = "https://registry-1.docker.io" if registry == "docker.io" else f"https://{registry}"
        out.append(Artifact(f"/etc/containerd/certs.d/{registry}/hosts.toml",
                            render_text("containerd/hosts.toml.j2", registry=registry, server=server,
                                        mirrors=mirrors),
                            component="containerd"))
    return out


def kubelet_files(ctx: RenderContext, node: Node) -> list[Artifact]:
    spec = ctx.spec
    doc: dict[str, Any] = {"apiVersion": spec.release.kubelet_config_api, "kind": "KubeletConfiguration"}
    doc |= base_document("kubelet/config.yaml")
    doc |= {"clusterDomain": spec.cluster.domain, "clusterDNS": [str(spec.cluster_dns)]}
    if not spec.container_runtime.systemd_cgroup:
        doc["cgroupDriver"] = "cgroupfs"
    if node.joins_locally:
        # No CA key on the node: the kubelet asks for its serving certificate by CSR, which kube-controller-
        # manager signs with the cluster CA (so --kubelet-certificate-authority still holds) once the
        # control planes' kbootstrap-csr-approver has checked its names. Without the file paths, the
        # kubelet's certificate store cannot fall back to a self-signed pair.
        doc["serverTLSBootstrap"] = True
        del doc["tlsCertFile"], doc["tlsPrivateKeyFile"]
    doc = deep_merge(doc, spec.component_config.get("kubelet", {}))
    out = [
        Artifact(KUBELET_CONFIG, dump_yaml(doc), restarts=("kubelet",), component="kubelet"),
        Artifact("/etc/systemd/system/kubelet.service",
                 render_text("kubelet/kubelet.service.j2", args=flags.kubelet(spec, node)),
                 restarts=("kubelet",), component="kubelet"),
    ]
    if ctx.bootstrap_token and not node.has(Role.CONTROL_PLANE):
        out.append(Artifact(
            "/etc/kubernetes/bootstrap-kubelet.conf",
            kubeconfig(spec.cluster.name, spec.api_server_url, ctx.pki.ca("ca").cert_pem,
                       "tls-bootstrap-token-user", token=ctx.bootstrap_token),
            0o600, secret=True, component="kubelet"))
    return out


def kube_proxy_files(ctx: RenderContext, node: Node) -> list[Artifact]:
    spec = ctx.spec
    doc = {"apiVersion": spec.release.kube_proxy_config_api, "kind": "KubeProxyConfiguration"}
    doc |= base_document("kube-proxy/config.yaml")
    doc |= {"clusterCIDR": str(spec.network.pod_cidr), "hostnameOverride": node.name}
    doc = deep_merge(doc, spec.component_config.get("kube-proxy", {}))
    out = [Artifact(KUBE_PROXY_CONFIG, dump_yaml(doc), restarts=("kube-proxy",), component="kube-proxy")]
    if node.joins_locally:
        # No shared kube-proxy key on a node that joined by token: kube-proxy authenticates as the node
        # (system:node:NAME, group system:nodes, bound to system:node-proxier) and follows its renewals.
        out.append(Artifact("/etc/kubernetes/kube-proxy.conf",
                            kubeconfig_from_files(spec.cluster.name, spec.api_server_url, f"{flags.PKI}/ca.crt",
                                                  f"system:node:{node.name}", KUBELET_CLIENT),
                            0o600, restarts=("kube-proxy",), component="kube-proxy"))
    # A systemd service in both control-plane forms: kube-proxy drives the host's iptables userland, which
    # an image built from the Go modules alone cannot carry (upstream's image adds distroless-iptables).
    out.append(Artifact("/etc/systemd/system/kube-proxy.service",
                        render_text("kube-proxy/kube-proxy.service.j2", args=flags.kube_proxy(spec, node)),
                        restarts=("kube-proxy",), component="kube-proxy"))
    return out


def kernel_settings(ctx: RenderContext, node: Node) -> tuple[dict[str, str], str]:
    """The sysctls a node of these roles needs, and why (for the file's comment)."""
    settings: dict[str, str] = {}
    purpose = []
    if node in ctx.spec.kubelet_nodes:
        purpose.append("for pod networking")
        settings |= {"net.bridge.bridge-nf-call-iptables": "1", "net.bridge.bridge-nf-call-ip6tables": "1",
                     "net.ipv4.ip_forward": "1"}
    if node.has(Role.LOADBALANCER):
        purpose.append("so haproxy and keepalived can bind the VIP")
        settings |= {"net.ipv4.ip_nonlocal_bind": "1"}
    return settings, " and ".join(purpose)


KERNEL_MODULES = ("overlay", "br_netfilter")


def kernel_files(ctx: RenderContext, node: Node) -> list[Artifact]:
    """sysctl.d and modules-load.d files: what a node of each role needs from the kernel."""
    settings, purpose = kernel_settings(ctx, node)
    if not settings:
        return []
    out = [Artifact("/etc/sysctl.d/99-kbootstrap.conf",
                    render_text("os/sysctl.conf.j2", settings=list(settings.items()), purpose=purpose),
                    component="os")]
    if node in ctx.spec.kubelet_nodes:
        out.append(Artifact("/etc/modules-load.d/kbootstrap.conf",
                            render_text("os/modules-load.conf.j2", modules=list(KERNEL_MODULES)),
                            component="os"))
    return out
