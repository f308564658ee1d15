"""Supported Kubernetes releases and what differs between them.

Each row pins the versions kubeadm itself pairs with that release (cmd/kubeadm/app/constants), so that
a cluster rendered by kbootstrap matches what an operator would get from kubeadm of the same version.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Release:
    kubernetes: str  # "1.34.2"
    etcd: str  # etcd server version kubeadm pairs with this release
    pause: str  # sandbox image tag
    coredns: str
    # API versions of the component configuration files; they have been stable for several releases,
    # but are kept per release so a future bump is a one-row change.
    kubelet_config_api: str = "kubelet.config.k8s.io/v1beta1"
    kube_proxy_config_api: str = "kubeproxy.config.k8s.io/v1alpha1"
    scheduler_config_api: str = "kubescheduler.config.k8s.io/v1"
    encryption_config_api: str = "apiserver.config.k8s.io/v1"
    audit_policy_api: str = "audit.k8s.io/v1"

    @property
    def minor(self) -> str:
        return ".".join(self.kubernetes.split(".")[:2])

    @property
    def tag(self) -> str:
        return f"v{self.kubernetes}"


_RELEASES = [
    Release(kubernetes="1.33.6", etcd="3.5.21", pause="3.10", coredns="1.12.0"),
    Release(kubernetes="1.34.2", etcd="3.6.4", pause="3.10.1", coredns="1.12.1"),
]

SUPPORTED: dict[str, Release] = {r.kubernetes: r for r in _RELEASES}
DEFAULT_VERSION = "1.34.2"


def release(version: str) -> Release:
    """The release row for an exact version ("1.34.2" or "v1.34.2")."""
    return SUPPORTED[version.removeprefix("v")]
