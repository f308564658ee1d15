"""Static pod manifests (core/v1 Pod), shaped like kubeadm's control-plane manifests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Mount:
    name: str
    path: str
    type: str = "DirectoryOrCreate"  # hostPath type
    read_only: bool = True


@dataclass(frozen=True)
class Probe:
    path: str
    port: int
    scheme: str = "HTTPS"
    host: str = "127.0.0.1"


def static_pod(
    name: str,
    image: str,
    command: list[str],
    mounts: list[Mount],
    probe: Probe | None = None,
    tier: str = "control-plane",
    privileged: bool = False,
    cpu_request: str = "100m",
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": command,
        "resources": {"requests": {"cpu": cpu_request}},
        "volumeMounts": [{"name": m.name, "mountPath": m.path, "readOnly": m.read_only} for m in mounts],
    }
    if privileged:
        container["securityContext"] = {"privileged": True}
    if probe is not None:
        get = {"host": probe.host, "path": probe.path, "port": probe.port, "scheme": probe.scheme}
        container["livenessProbe"] = {
            "httpGet": get, "initialDelaySeconds": 10, "periodSeconds": 10, "timeoutSeconds": 15,
            "failureThreshold": 8,
        }
        container["startupProbe"] = {
            "httpGet": get, "initialDelaySeconds": 10, "periodSeconds": 10, "timeoutSeconds": 15,
            "failureThreshold": 24,
        }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "kube-system",
            "labels": {"component": name, "tier": tier},
            **({"annotations": annotations} if annotations else {}),
        },
        "spec": {
            "hostNetwork": True,
            "priority": 2000001000,
            "priorityClassName": "system-node-critical",
            "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [container],
            "volumes": [{"name": m.name, "hostPath": {"path": m.path, "type": m.type}} for m in mounts],
        },
    }
