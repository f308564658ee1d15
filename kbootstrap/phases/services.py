"""What the service phases share: which files restart which service, and the probes they wait on."""

from __future__ import annotations

from kbootstrap.model import ports
from kbootstrap.model.artifact import Artifact
from kbootstrap.model.etcd_members import client_url
from kbootstrap.model.host import etcdctl, kubectl
from kbootstrap.model.spec import ClusterSpec, Node
from kbootstrap.render import RenderContext, render_host
from kbootstrap.transport.base import quote


def service_inputs(artifacts: list[Artifact]) -> dict[str, set[str]]:
    """service -> the files whose change restarts it: those that name it, and its own binary."""
    inputs: dict[str, set[str]] = {}
    for a in artifacts:
        for service in {*a.restarts, *([a.component] if a.path.startswith("/usr/local/") else [])}:
            inputs.setdefault(service, set()).add(a.path)
    return inputs


def inputs_for(ctx: RenderContext, node: Node, binaries_by_node: dict[str, list[Artifact]]) -> dict[str, set[str]]:
    """service -> input files, for everything on this node: its rendered files and its bundle binaries."""
    return service_inputs(render_host(ctx, node) + binaries_by_node.get(node.name, []))


def etcd_health(node: Node) -> list[str]:
    """Health of this member through its own client URL, over mTLS (needs quorum: a read goes through raft)."""
    return etcdctl([client_url(node)], "endpoint", "health")


def api_ready(spec: ClusterSpec, node: Node | None = None) -> list[str]:
    """/readyz of one apiserver (node given) or through the load balancer / VIP (the kubeconfig's server)."""
    return kubectl("get", "--raw", "/readyz", server=f"https://{node.address}:{ports.APISERVER}" if node else None)


_READY = '{range .items[*]}{.metadata.name} {.status.conditions[?(@.type=="Ready")].status}{"\\n"}{end}'


def nodes_ready(names: list[str]) -> list[str]:
    """Passes when every named node's Ready condition is True. One GET of the node list (`kubectl wait` takes four
    times as long to answer on a cluster that is Ready: it is a no-op run's probe; and a GET of one named node
    answers that node, not a list); a node that does not exist fails it."""
    k = quote(kubectl("get", "nodes", "-o", f"jsonpath={_READY}"))
    return ["sh", "-c", f'out=$({k}) || exit 1; for n; do printf "%s\\n" "$out" | grep -qx "$n True" || exit 1; done',
            "sh", *names]


def stop_steps(static_pod: bool, components: list[str], what: str) -> list:
    """Stop `components` on a host and wait until they are gone: a static pod by moving its manifest out of the
    kubelet's directory (to HELD; `init`'s files phase writes it back), a service by `systemctl stop`. The
    probe passes once none runs, so a re-run stops nothing twice."""
    from kbootstrap.engine.steps import ShellStep
    from kbootstrap.model.host import CRICTL, HELD, MANIFESTS

    names = " ".join(components)
    if static_pod:
        crictl = quote(CRICTL)
        gone = (f'for c in {names}; do test ! -e {MANIFESTS}/$c.yaml || exit 1; '
                f'test -z "$({crictl} ps --name "^$c\\$" -q)" || exit 1; done')
        stop = (f'mkdir -p -m 0700 {HELD} && for c in {names}; do if test -e {MANIFESTS}/$c.yaml; then '
                f'mv -f {MANIFESTS}/$c.yaml {HELD}/$c.yaml; fi; done; '
                f'i=0; until ( {gone} ); do i=$((i+1)); test $i -lt 240 || exit 1; sleep 0.5; done')
        return [ShellStep(f"stop {what}", gone, stop, f"{names}: manifests to {HELD}, containers gone")]
    inactive = f"for c in {names}; do ! systemctl is-active --quiet $c || exit 1; done"
    return [ShellStep(f"stop {what}", inactive, f"systemctl stop {names}", f"systemctl stop {names}")]
