"""`kbootstrap reset`: what init and join made, stopped and removed; with only some kubelet nodes reset, they are
their Node objects are deleted through a control plane that stays."""

from __future__ import annotations

from kbootstrap.phases import reset as r
from kbootstrap.workflows.table import Inputs, PhaseSpec, Workflow


def _detach(i: Inputs):
    """When only some kubelet nodes are reset: on `detach_host(...)`, which the caller connects too (never with
    detach=False: `reset --local` on the node reaches no control plane)."""
    through = r.detach_host(i.ctx.spec, i.nodes) if i.detach else None
    return r.detach_phase(i.ctx.spec, i.nodes, through) if through is not None else None


RESET = Workflow("reset", (
    PhaseSpec(r.STOP, "kubelet, kube-proxy, pod routes, control-plane services, etcd, haproxy, keepalived",
              lambda i: r.stop_phase(i.ctx, i.nodes)),
    PhaseSpec(r.CONTAINERS, "every pod removed (crictl rmp -fa), containerd stopped, kubelet mounts unmounted",
              lambda i: r.containers_phase(i.ctx, i.nodes)),
    PhaseSpec(r.FILES, "every file kbootstrap wrote, /etc/kubernetes, /var/lib/{kubelet,etcd,kube-proxy,cni}, "
              "kbootstrap's block in /etc/hosts", lambda i: r.files_phase(i.ctx, i.nodes)),
    PhaseSpec(r.NETWORK, "the VIP, the cni0 bridge, the pod routes, the KUBE-/CNI- iptables rules (others kept)",
              lambda i: r.network_phase(i.ctx, i.nodes)),
    PhaseSpec(r.PURGE, "with --purge: the installed binaries and /var/lib/kbootstrap", lambda i: r.purge_phase(i.purge)),
    PhaseSpec(r.DETACH, "when only some nodes are reset: their Node objects, through a control plane that stays",
              _detach),
))
