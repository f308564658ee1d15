"""The baseline CNI: the reference bridge + host-local plugins, one pod subnet a node, routes between nodes.

Needs no images, so it works air-gapped. Nodes must share a layer-2 network (routes point at node addresses).
"""

from __future__ import annotations

import json

from kbootstrap.model.artifact import Artifact
from kbootstrap.model.spec import CNI, Node
from kbootstrap.render.context import RenderContext
from kbootstrap.render.templates import render_text

CONFLIST = "/etc/cni/net.d/10-kbootstrap.conflist"


def cni_files(ctx: RenderContext, node: Node) -> list[Artifact]:
    spec = ctx.spec
    assert spec.network.cni is CNI.BRIDGE
    subnet = spec.pod_subnets[node.name]
    conf = {
        "cniVersion": "1.0.0",
        "name": "kbootstrap",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "mtu": spec.network.mtu,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": str(subnet), "gateway": str(subnet.network_address + 1)}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
            {"type": "loopback"},
        ],
    }
    routes = [{"subnet": str(spec.pod_subnets[n.name]), "via": str(n.address)}
              for n in spec.kubelet_nodes if n.name != node.name]
    return [
        Artifact(CONFLIST, (json.dumps(conf, indent=2) + "\n").encode(), component="cni"),
        Artifact("/etc/systemd/system/kbootstrap-pod-routes.service",
                 render_text("cni/bridge/pod-routes.service.j2", routes=routes),
                 restarts=("kbootstrap-pod-routes",), component="cni"),
    ]
