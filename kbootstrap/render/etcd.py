"""etcd: a static pod on stacked control planes of the static-pod form, else a systemd service."""

from __future__ import annotations

from kbootstrap.model import ports
from kbootstrap.model.artifact import Artifact
from kbootstrap.model.host import MANIFESTS
from kbootstrap.model.spec import ControlPlaneForm, Node, Role
from kbootstrap.render import flags
from kbootstrap.render.context import RenderContext
from kbootstrap.render.pki_files import DIGEST_ANNOTATION, pki_digest
from kbootstrap.render.static_pod import Mount, Probe, static_pod
from kbootstrap.render.templates import dump_yaml, render_text


def etcd_as_static_pod(ctx: RenderContext, node: Node) -> bool:
    # External etcd hosts run no kubelet, so their etcd is always a systemd service.
    return ctx.spec.cluster.control_plane_form is ControlPlaneForm.STATIC_POD and node.has(Role.CONTROL_PLANE)


def etcd_files(ctx: RenderContext, node: Node) -> list[Artifact]:
    args = flags.etcd(ctx.spec, node, ctx.etcd_first_start(node))
    if etcd_as_static_pod(ctx, node):
        pod = static_pod(
            "etcd", ctx.image("etcd"), ["etcd", *args],
            mounts=[Mount("etcd-data", flags.ETCD_DATA_DIR, read_only=False),
                    Mount("etcd-certs", f"{flags.PKI}/etcd")],
            probe=Probe("/health?serializable=true", ports.ETCD_METRICS, scheme="HTTP"),
            tier="control-plane",
            annotations={DIGEST_ANNOTATION: pki_digest(ctx, node, "etcd")},
        )
        return [Artifact(f"{MANIFESTS}/etcd.yaml", dump_yaml(pod), 0o600, component="etcd")]
    return [Artifact("/etc/systemd/system/etcd.service", render_text("etcd/etcd.service.j2", args=args),
                     restarts=("etcd",), component="etcd")]
