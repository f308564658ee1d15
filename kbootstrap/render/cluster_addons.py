"""Objects kbootstrap creates in the cluster itself (applied from the first control plane)."""

from __future__ import annotations

import base64

import yaml

from kbootstrap.local import node_profile
from kbootstrap.model.artifact import Artifact
from kbootstrap.render.context import RenderContext
from kbootstrap.render.templates import base_document

ADDONS = "/etc/kubernetes/addons"
BOOTSTRAP_RBAC = f"{ADDONS}/kbootstrap-rbac.yaml"
CLUSTER_INFO = f"{ADDONS}/kbootstrap-cluster-info.yaml"
LOCAL_JOIN = f"{ADDONS}/kbootstrap-local-join.yaml"
BOOTSTRAP_GROUP = "system:bootstrappers:kubeadm:default-node-token"


def _documents(items: list[dict]) -> bytes:
    # One YAML document per object (not a v1 List): each is then checked on its own against its API type.
    return yaml.safe_dump_all(items, sort_keys=False, default_flow_style=False, explicit_start=True).encode()


def cluster_info_kubeconfig(ctx: RenderContext) -> str:
    """kube-public/cluster-info's kubeconfig as kubeadm writes it: one cluster named "", the API URL and the
    CA, no user. bootstrapsigner signs exactly this text for each signing token."""
    ca = base64.b64encode(ctx.pki.ca("ca").cert_pem).decode()
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "", "cluster": {"certificate-authority-data": ca, "server": ctx.spec.api_server_url}}],
        "contexts": [], "current-context": "", "preferences": {}, "users": [],
    }, sort_keys=False)


def _config_map(namespace: str, name: str, data: dict[str, str]) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace}, "data": data}


def cluster_addon_files(ctx: RenderContext) -> list[Artifact]:
    out = [
        Artifact(BOOTSTRAP_RBAC, _documents(base_document("cluster/bootstrap-rbac.yaml")["items"]), 0o600,
                 component="cluster"),
        Artifact(CLUSTER_INFO, _documents([_config_map("kube-public", "cluster-info",
                                                       {"kubeconfig": cluster_info_kubeconfig(ctx)})]),
                 0o600, component="cluster"),
    ]
    if ctx.spec.local_nodes:
        profile = _config_map(node_profile.NAMESPACE, node_profile.CONFIGMAP,
                              {node_profile.KEY: node_profile.profile_yaml(ctx.spec)})
        out.append(Artifact(LOCAL_JOIN, _documents([profile, *base_document("cluster/local-join-rbac.yaml")["items"]]),
                            0o600, component="cluster"))
    return out


def addon_paths(ctx: RenderContext) -> list[str]:
    """The addon files, in the order they are applied."""
    return [a.path for a in cluster_addon_files(ctx)]
