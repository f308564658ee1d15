"""Objects kbootstrap creates in the cluster itself (applied from the first control plane)."""

from __future__ import annotations

from ..artifact import Artifact
from .templates import base_document, dump_yaml

ADDONS = "/etc/kubernetes/addons"
BOOTSTRAP_RBAC = f"{ADDONS}/kbootstrap-rbac.yaml"
BOOTSTRAP_GROUP = "system:bootstrappers:kubeadm:default-node-token"


def cluster_addon_files() -> list[Artifact]:
    return [Artifact(BOOTSTRAP_RBAC, dump_yaml(base_document("cluster/bootstrap-rbac.yaml")), 0o600,
                     component="cluster")]
