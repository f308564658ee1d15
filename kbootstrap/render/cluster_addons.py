"""Objects kbootstrap creates in the cluster itself (applied from the first control plane)."""

from __future__ import annotations

import yaml

from ..artifact import Artifact
from .templates import base_document

ADDONS = "/etc/kubernetes/addons"
BOOTSTRAP_RBAC = f"{ADDONS}/kbootstrap-rbac.yaml"
BOOTSTRAP_GROUP = "system:bootstrappers:kubeadm:default-node-token"


def cluster_addon_files() -> list[Artifact]:
    # One YAML document per object (not a v1 List): each is then checked on its own against its API type.
    items = base_document("cluster/bootstrap-rbac.yaml")["items"]
    text = yaml.safe_dump_all(items, sort_keys=False, default_flow_style=False, explicit_start=True)
    return [Artifact(BOOTSTRAP_RBAC, text.encode(), 0o600, component="cluster")]
