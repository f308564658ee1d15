"""What every renderer receives: the spec, the loaded PKI and the cluster's other secrets."""

from __future__ import annotations

from dataclasses import dataclass

from ..pki.issue import ClusterPKI
from ..pki.secrets import ClusterSecrets
from ..spec import ClusterSpec


@dataclass(frozen=True)
class RenderContext:
    spec: ClusterSpec
    pki: ClusterPKI
    secrets: ClusterSecrets
    bootstrap_token: str | None = None  # made at join time; workers get a bootstrap kubeconfig only with one

    def image(self, component: str) -> str:
        release = self.spec.release
        if component == "etcd":
            return f"registry.k8s.io/etcd:{release.etcd}-0"
        return f"registry.k8s.io/{component}:{release.tag}"
