"""kube-apiserver, kube-controller-manager and kube-scheduler, as static pods or systemd services."""

from __future__ import annotations

import base64
from collections.abc import Callable

from kbootstrap.model import ports
from kbootstrap.model.artifact import Artifact
from kbootstrap.model.host import MANIFESTS
from kbootstrap.model.spec import ControlPlaneForm, Node
from kbootstrap.render import flags
from kbootstrap.render.context import RenderContext
from kbootstrap.render.pki_files import DIGEST_ANNOTATION, pki_digest
from kbootstrap.render.static_pod import Mount, Probe, static_pod
from kbootstrap.render.templates import base_document, dump_yaml, render_text

FlagsFn = Callable[[RenderContext, Node], list[str]]

_CA_CERTS = Mount("ca-certs", "/etc/ssl/certs", type="DirectoryOrCreate")
_PKI = Mount("k8s-certs", flags.PKI)


def _apiserver_pod_parts(node: Node) -> tuple[list[Mount], Probe]:
    mounts = [_CA_CERTS, _PKI,
              Mount("encryption-config", flags.ENCRYPTION_CONFIG, type="File"),
              Mount("audit-policy", flags.AUDIT_POLICY, type="File"),
              Mount("audit-log", flags.AUDIT_LOG_DIR, read_only=False)]
    return mounts, Probe("/livez", ports.APISERVER, host=str(node.address))


# component -> (flags, mounts+probe for the static pod, systemd units it must start after)
_COMPONENTS: dict[str, tuple[FlagsFn, Callable[[Node], tuple[list[Mount], Probe]]]] = {
    "kube-apiserver": (lambda ctx, node: flags.kube_apiserver(ctx.spec, node, ctx.etcd_servers(node)),
                       _apiserver_pod_parts),
    "kube-controller-manager": (
        lambda ctx, node: flags.kube_controller_manager(ctx.spec, node),
        lambda node: ([_CA_CERTS, _PKI, Mount("kubeconfig", f"{flags.K8S}/controller-manager.conf", type="FileOrCreate")],
                      Probe("/healthz", ports.CONTROLLER_MANAGER)),
    ),
    "kube-scheduler": (
        lambda ctx, node: flags.kube_scheduler(ctx.spec, node),
        lambda node: ([Mount("kubeconfig", f"{flags.K8S}/scheduler.conf", type="FileOrCreate")],
                      Probe("/healthz", ports.SCHEDULER)),
    ),
}


def control_plane_files(ctx: RenderContext, node: Node) -> list[Artifact]:
    spec = ctx.spec
    out = [encryption_config(ctx), audit_policy()]
    for name, (flags_fn, pod_parts) in _COMPONENTS.items():
        args = flags_fn(ctx, node)
        if spec.cluster.control_plane_form is ControlPlaneForm.STATIC_POD:
            mounts, probe = pod_parts(node)
            pod = static_pod(name, ctx.image(name), [name, *args], mounts, probe,
                             cpu_request="250m" if name == "kube-apiserver" else "100m",
                             annotations={DIGEST_ANNOTATION: pki_digest(ctx, node, name)})
            out.append(Artifact(f"{MANIFESTS}/{name}.yaml", dump_yaml(pod), 0o600, component=name))
        else:
            after = ["etcd.service"] if name == "kube-apiserver" and spec.is_etcd_member(node) else []
            unit = render_text(f"{name}/{name}.service.j2", args=args, after=after)
            out.append(Artifact(f"/etc/systemd/system/{name}.service", unit, restarts=(name,), component=name))
    return out


def encryption_config(ctx: RenderContext) -> Artifact:
    """Secrets encrypted at rest with AES-CBC; `identity` last so data written before stays readable."""
    key = base64.b64encode(ctx.secrets.encryption_key).decode()
    doc = {
        "apiVersion": ctx.spec.release.encryption_config_api,
        "kind": "EncryptionConfiguration",
        "resources": [{
            "resources": ["secrets"],
            "providers": [{"aescbc": {"keys": [{"name": "key1", "secret": key}]}}, {"identity": {}}],
        }],
    }
    return Artifact(flags.ENCRYPTION_CONFIG, dump_yaml(doc), 0o600, secret=True,
                    restarts=("kube-apiserver",), component="kube-apiserver")


def audit_policy() -> Artifact:
    return Artifact(flags.AUDIT_POLICY, dump_yaml(base_document("kube-apiserver/audit-policy.yaml")),
                    restarts=("kube-apiserver",), component="kube-apiserver")
