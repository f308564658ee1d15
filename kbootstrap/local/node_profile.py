"""What a `join: local` worker needs to render its own files without the inventory: the node profile.

`init` publishes it as ConfigMap kube-system/kbootstrap-node-config (readable by the bootstrap-token group
and by nodes), and `join --local` reads it over TLS pinned by discovery. It is the inventory minus what
only the operator's machine needs (SSH, the lab, the bundle path, certificate settings), with every
kubelet node's pod subnet pinned, so the node renders with the same code as the controller and the same
subnets whatever the order of the nodes. It holds no secret.
"""

from __future__ import annotations

from typing import Any

import yaml

from kbootstrap.errors import Refused
from kbootstrap.model.spec import ClusterSpec, build_spec

NAMESPACE = "kube-system"
CONFIGMAP = "kbootstrap-node-config"
KEY = "node-profile.yaml"
FORMAT = 1
_NODE_FIELDS = {"name", "address", "roles", "labels", "join"}
_NODE_COMPONENTS = ("kubelet", "kube-proxy")


class ProfileError(Refused):
    pass


def profile(spec: ClusterSpec) -> dict[str, Any]:
    def dump(model) -> dict[str, Any]:
        return model.model_dump(mode="json", exclude_defaults=True)

    nodes = []
    for n in spec.nodes:
        node = n.model_dump(mode="json", include=_NODE_FIELDS, exclude_defaults=True) | {"name": n.name}
        if n.name in spec.pod_subnets:
            node["pod_subnet"] = str(spec.pod_subnets[n.name])
        nodes.append(node)
    return {
        "format": FORMAT,
        "cluster": spec.cluster.model_dump(mode="json"),  # whole: a default may differ in another kbootstrap
        "load_balancer": dump(spec.load_balancer),
        "network": dump(spec.network),
        "container_runtime": dump(spec.container_runtime),
        "extra_args": {c: dict(a) for c, a in spec.extra_args.items() if c in _NODE_COMPONENTS},
        "component_config": {c: v for c, v in spec.component_config.items() if c in _NODE_COMPONENTS},
        "nodes": nodes,
    }


def profile_yaml(spec: ClusterSpec) -> str:
    return yaml.safe_dump(profile(spec), sort_keys=False)


def spec_from_profile(text: str) -> ClusterSpec:
    """The profile back as a ClusterSpec, through the inventory's own validation."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ProfileError(f"{NAMESPACE}/{CONFIGMAP}: not valid YAML ({e})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        got = data.get("format") if isinstance(data, dict) else None
        raise ProfileError(f"{NAMESPACE}/{CONFIGMAP}: format {got!r}, this kbootstrap reads format {FORMAT} "
                           "(use the kbootstrap version that made the cluster)")
    data.pop("format")
    return build_spec(data)
