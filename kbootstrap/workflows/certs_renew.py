"""`kbootstrap certs renew [NAME…]`: leaf certificates reissued in the cluster directory, pushed, and the
components that read them restarted, one etcd member and one control plane at a time, with the API answering.

The reissue happens when the session loads the PKI (pki/issue.py's Renewal): every named leaf (none named:
every leaf) not issued within the freshness window, so a re-run or a resume pushes what the first run renewed.
Which component reads which file is the certificate table's `read_by`; a changed file restarts a service (its
`restarts`) or a static pod (the digest in its manifest's annotation). The table:

- `etcd-members` (external etcd only): one member at a time, etcd restarted on its new certificates, healthy
  before the next, so the quorum holds.
- `control-planes` (phases/roll_control_planes.py): one control plane at a time, its components restarted on
  the new files, etcd healthy and its apiserver's /readyz before the next. A stopping apiserver fails /readyz
  first and serves on for --shutdown-delay-duration, so HAProxy's health check has taken it out of rotation
  before it stops answering.
- `nodes`: the other hosts' files (workers: kubelet serving certificate, kube-proxy's kubeconfig), kubelet and
  kube-proxy restarted where theirs changed; the pods keep running.

The CAs are never touched (`certs rotate-ca`); the kubelets' client certificates rotate by themselves.
"""

from __future__ import annotations

import datetime as dt

from kbootstrap.engine.runner import Phase
from kbootstrap.engine.steps import FilesStep, ServicesStep, WaitAfterChange
from kbootstrap.errors import Refused
from kbootstrap.model.spec import ClusterSpec, Node, Role
from kbootstrap.phases import roll_control_planes, start_nodes
from kbootstrap.phases.services import etcd_health, inputs_for
from kbootstrap.pki.issue import Renewal, wanted_certs
from kbootstrap.pki.table import CERTS, KUBECONFIGS
from kbootstrap.render import render_host
from kbootstrap.workflows.table import Inputs, PhaseSpec, Workflow

ETCD_MEMBERS = "etcd-members"


def renewable(spec: ClusterSpec) -> list[str]:
    """The names `certs renew` takes: each leaf row of the table that this inventory issues."""
    return sorted({w.name for w in wanted_certs(spec)})


def renewal(spec: ClusterSpec, names: tuple[str, ...], fresh_minutes: int, save: bool,
            now: dt.datetime | None = None) -> Renewal:
    """What to renew, checked against the table: a CA or an unknown name is refused (exit 2) before any host is
    contacted. A kubeconfig may be named by its file (admin.conf) or its row (kubeconfig-admin)."""
    known = renewable(spec)
    by_file = {kc.file: kc.cert_name for kc in KUBECONFIGS if kc.cert_name in known}
    cas = {r.name for r in CERTS if r.is_ca}
    picked = set()
    for name in names:
        if name in cas:
            raise Refused(f"NAME: {name} is a CA: renew renews leaf certificates (a CA's replacement is "
                          "`certs rotate-ca`, not done yet)")
        name = by_file.get(name, name)
        if name not in known:
            raise Refused(f"NAME: {name!r} is not a certificate of this cluster; one of: {', '.join(known)}")
        picked.add(name)
    now = now or dt.datetime.now(dt.UTC)
    return Renewal(fresh_since=now - dt.timedelta(minutes=fresh_minutes), names=frozenset(picked), save=save)


def _external_members(i: Inputs) -> list[Node]:
    return [n for n in i.nodes if i.ctx.spec.is_etcd_member(n) and not n.has(Role.CONTROL_PLANE)]


def _etcd_members(i: Inputs) -> list[Phase] | None:
    """One external member at a time: its files, etcd restarted when its certificates changed, healthy."""
    phases = []
    for m in _external_members(i):
        artifacts = render_host(i.ctx, m)
        inputs = inputs_for(i.ctx, m, i.binaries)
        phases.append(Phase(ETCD_MEMBERS, {m.name: [
            FilesStep(artifacts),
            ServicesStep(["etcd"], {"etcd": inputs.get("etcd", set())}),
            WaitAfterChange("etcd healthy", etcd_health(m), watch={a.path for a in artifacts}, timeout=240,
                            what=f"etcd member {m.name}"),
        ]}))
    return phases or None


def _nodes(i: Inputs) -> Phase | None:
    rest = [n for n in i.nodes if not n.has(Role.CONTROL_PLANE) and n not in _external_members(i)]
    return start_nodes.refresh_nodes(i.ctx, rest, i.binaries)


RENEW = Workflow("certs renew", (
    PhaseSpec(ETCD_MEMBERS, "external etcd members one at a time: new certificates, etcd restarted, healthy before "
              "the next", _etcd_members),
    PhaseSpec(roll_control_planes.NAME, "one control plane at a time: new certificates, the components that read "
              "them restarted, etcd healthy and /readyz before the next",
              lambda i: roll_control_planes.roll_control_planes(
                  i.ctx, [n for n in i.nodes if n.has(Role.CONTROL_PLANE)], i.binaries)),
    PhaseSpec("nodes", "workers and load balancers: new files; kubelet and kube-proxy restarted where theirs changed",
              _nodes),
))
