"""Certificates, keys and kubeconfigs each host receives, straight from the certificate table."""

from __future__ import annotations

from kbootstrap.model import ports
from kbootstrap.model.artifact import Artifact
from kbootstrap.model.spec import Node
from kbootstrap.pki.issue import key_pem, public_pem
from kbootstrap.pki.kubeconfig import kubeconfig
from kbootstrap.pki.table import CERTS, KEYPAIRS, KUBECONFIGS, PerNode, receives, subjects
from kbootstrap.render.context import RenderContext
from kbootstrap.render.flags import K8S, PKI


def _issued_for(ctx: RenderContext, per_node: PerNode, node: Node) -> bool:
    return per_node is PerNode.SHARED or any(s is not None and s.name == node.name for s in subjects(ctx.spec, per_node))


def pki_files(ctx: RenderContext, node: Node) -> list[Artifact]:
    spec, pki = ctx.spec, ctx.pki
    out: list[Artifact] = []
    for row in CERTS:
        cert, key = receives(spec, row.cert_to, node), receives(spec, row.key_to, node)
        if not (cert or key) or not _issued_for(ctx, row.per_node, node):
            continue
        kc = pki.get(row.name, None if row.per_node is PerNode.SHARED else node.name)
        if cert:
            out.append(Artifact(f"{PKI}/{row.base}.crt", kc.cert_pem, 0o644, component="pki"))
        if key:
            out.append(Artifact(f"{PKI}/{row.base}.key", kc.key_pem, 0o600, secret=True, component="pki"))
    for kp in KEYPAIRS:
        if receives(spec, kp.private_to, node):
            out.append(Artifact(f"{PKI}/{kp.base}.key", key_pem(pki.keypairs[kp.name]), 0o600, secret=True,
                                component="pki"))
        if receives(spec, kp.public_to, node):
            out.append(Artifact(f"{PKI}/{kp.base}.pub", public_pem(pki.keypairs[kp.name]), 0o644, component="pki"))
    ca_pem = pki.ca("ca").cert_pem
    for conf in KUBECONFIGS:
        if not receives(spec, conf.to, node) or not _issued_for(ctx, conf.per_node, node):
            continue
        client = pki.get(conf.cert_name, None if conf.per_node is PerNode.SHARED else node.name)
        server = f"https://{node.address}:{ports.APISERVER}" if conf.server == "local" else spec.api_server_url
        user = conf.cn.format(node=node.name)
        out.append(Artifact(f"{K8S}/{conf.file}", kubeconfig(spec.cluster.name, server, ca_pem, user, client),
                            0o600, secret=True, component="kubeconfig"))
    return out
