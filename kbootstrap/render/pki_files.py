"""Certificates, keys and kubeconfigs each host receives, straight from the certificate table.

A changed file restarts the components the table says read it (`read_by`): a service through the file's
`restarts`, a static pod through `pki_digest` in its manifest's annotation (a changed manifest is a new pod).
"""

from __future__ import annotations

import hashlib

from kbootstrap.model import ports
from kbootstrap.model.artifact import Artifact
from kbootstrap.model.host import CONTROL_PLANE_SERVICES, ETCD_SERVICE
from kbootstrap.model.spec import ControlPlaneForm, Node, Role
from kbootstrap.pki.issue import key_pem, public_pem
from kbootstrap.pki.kubeconfig import kubeconfig
from kbootstrap.pki.table import CERTS, KEYPAIRS, KUBECONFIGS, PerNode, receives, subjects
from kbootstrap.render.context import RenderContext
from kbootstrap.render.flags import K8S, PKI


def _issued_for(ctx: RenderContext, per_node: PerNode, node: Node) -> bool:
    return per_node is PerNode.SHARED or any(s is not None and s.name == node.name for s in subjects(ctx.spec, per_node))


# The annotation a static pod's manifest carries: the digest of the PKI files its component reads.
DIGEST_ANNOTATION = "kbootstrap.io/pki-sha256"


def static_pods(ctx: RenderContext, node: Node) -> set[str]:
    """The components this node runs as static pods (the rest of `read_by` are services)."""
    if node.has(Role.CONTROL_PLANE) and ctx.spec.cluster.control_plane_form is ControlPlaneForm.STATIC_POD:
        return {*CONTROL_PLANE_SERVICES, ETCD_SERVICE}  # etcd: a static pod on such a node when it is a member
    return set()


def pki_files(ctx: RenderContext, node: Node) -> list[Artifact]:
    pods = static_pods(ctx, node)
    return [Artifact(a.path, a.content, a.mode, secret=a.secret, component=a.component,
                     restarts=tuple(c for c in read_by if c not in pods))
            for a, read_by in _pki_entries(ctx, node)]


def pki_digest(ctx: RenderContext, node: Node, component: str) -> str:
    """The digest of every PKI file `component` reads on this node, for its static pod's annotation."""
    h = hashlib.sha256()
    for a, read_by in _pki_entries(ctx, node):
        if component in read_by:
            h.update(f"{a.path} {a.sha256}\n".encode())
    return h.hexdigest()


def _pki_entries(ctx: RenderContext, node: Node) -> list[tuple[Artifact, tuple[str, ...]]]:
    spec, pki = ctx.spec, ctx.pki
    out: list[tuple[Artifact, tuple[str, ...]]] = []
    for row in CERTS:
        cert, key = receives(spec, row.cert_to, node), receives(spec, row.key_to, node)
        if not (cert or key) or not _issued_for(ctx, row.per_node, node):
            continue
        kc = pki.get(row.name, None if row.per_node is PerNode.SHARED else node.name)
        if cert:
            out.append((Artifact(f"{PKI}/{row.base}.crt", kc.cert_pem, 0o644, component="pki"), row.read_by))
        if key:
            out.append((Artifact(f"{PKI}/{row.base}.key", kc.key_pem, 0o600, secret=True, component="pki"),
                        row.read_by))
    for kp in KEYPAIRS:
        if receives(spec, kp.private_to, node):
            out.append((Artifact(f"{PKI}/{kp.base}.key", key_pem(pki.keypairs[kp.name]), 0o600, secret=True,
                                 component="pki"), kp.read_by))
        if receives(spec, kp.public_to, node):
            out.append((Artifact(f"{PKI}/{kp.base}.pub", public_pem(pki.keypairs[kp.name]), 0o644, component="pki"),
                        kp.read_by))
    ca_pem = pki.ca("ca").cert_pem
    for conf in KUBECONFIGS:
        if not receives(spec, conf.to, node) or not _issued_for(ctx, conf.per_node, node):
            continue
        client = pki.get(conf.cert_name, None if conf.per_node is PerNode.SHARED else node.name)
        server = f"https://{node.address}:{ports.APISERVER}" if conf.server == "local" else spec.api_server_url
        user = conf.cn.format(node=node.name)
        out.append((Artifact(f"{K8S}/{conf.file}", kubeconfig(spec.cluster.name, server, ca_pem, user, client),
                             0o600, secret=True, component="kubeconfig"), conf.read_by))
    return out
