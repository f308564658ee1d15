"""What every renderer receives: the spec, the loaded PKI and the cluster's other secrets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kbootstrap.model.etcd_members import FirstStart, MembersRecord, client_url
from kbootstrap.model.spec import ClusterSpec, Node, Topology
from kbootstrap.pki.issue import ClusterPKI
from kbootstrap.pki.secrets import ClusterSecrets


@dataclass(frozen=True)
class RenderContext:
    spec: ClusterSpec
    pki: ClusterPKI
    secrets: ClusterSecrets
    bootstrap_token: str | None = None  # made at join time; workers get a bootstrap kubeconfig only with one
    etcd_record: MembersRecord | None = None  # the cluster directory's; None: a cluster not started yet
    rendered: dict[Any, list] = field(default_factory=dict, init=False, compare=False, repr=False)  # render_host memo

    def etcd_first_start(self, node: Node) -> FirstStart:
        return (self.etcd_record or MembersRecord()).first_start(self.spec, node)

    def etcd_servers(self, node: Node) -> list[str]:
        """kube-apiserver's --etcd-servers. Stacked: the local member first, so a healthy node does not depend
        on the others' etcd, then the members it started with (a member added later changes no running
        apiserver's flags). External: every etcd host."""
        if self.spec.cluster.topology is not Topology.STACKED:
            return [client_url(m) for m in self.spec.etcd_members]
        members = {m.name: m for m in self.spec.etcd_members}
        others = [members[n] for n in self.etcd_first_start(node).initial_cluster if n in members and n != node.name]
        return [client_url(node)] + [client_url(m) for m in others]

    def image(self, component: str) -> str:
        release = self.spec.release
        if component == "etcd":
            return f"registry.k8s.io/etcd:{release.etcd}-0"
        return f"registry.k8s.io/{component}:{release.tag}"
