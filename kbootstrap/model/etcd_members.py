"""How each etcd member first started, recorded in the cluster directory (`etcd-members.yaml`).

etcd reads `--initial-cluster` and `--initial-cluster-state` only on a member's first start. Rendered from
the inventory, they would change on every running member the day a control plane is added, and each
change restarts etcd and the apiservers, all at once. So kbootstrap renders them from this record: the
members `init` started get `new` and the members of that day; a member added later by `join
--control-plane` gets `existing` and the members it joined. Nothing running changes when one is added.

`reset` of the whole cluster deletes the record with the data it describes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict

from kbootstrap.engine.localfs import write_atomic
from kbootstrap.errors import Refused
from kbootstrap.model import ports
from kbootstrap.model.spec import ClusterSpec, Node

FILE = "etcd-members.yaml"
_HEADER = (b"# Written by kbootstrap: how each etcd member first started (etcd reads --initial-cluster only then).\n"
           b"# Delete it only with the cluster's etcd data: `kbootstrap reset` does.\n")


class FirstStart(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    state: Literal["new", "existing"]
    initial_cluster: dict[str, str]  # member name -> peer URL, as --initial-cluster had them

    def flag(self) -> str:
        return ",".join(f"{name}={url}" for name, url in self.initial_cluster.items())


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")
    members: dict[str, FirstStart] = {}


class MembersRecordError(Refused):
    pass


def peer_url(node: Node) -> str:
    return f"https://{node.address}:{ports.ETCD_PEER}"


def client_url(node: Node) -> str:
    return f"https://{node.address}:{ports.ETCD_CLIENT}"


class MembersRecord:
    def __init__(self, root: Path | None = None, members: dict[str, FirstStart] | None = None):
        self.path = root / FILE if root else None  # None: an empty record, for rendering without a cluster
        self.members = dict(members or {})

    @classmethod
    def load(cls, root: Path) -> MembersRecord:
        path = root / FILE
        if not path.exists():
            return cls(root)
        try:
            data = _File.model_validate(yaml.safe_load(path.read_text()) or {})
        except (yaml.YAMLError, ValueError) as e:
            raise MembersRecordError(f"{path}: not a kbootstrap etcd members record ({e})") from e
        return cls(root, data.members)

    def first_start(self, spec: ClusterSpec, node: Node) -> FirstStart:
        """What `node` starts (or started) with: the recorded settings; for a cluster not started yet, every
        member of the inventory, `new`; for a member added to a running cluster, the recorded members and
        itself, `existing` (what `join --control-plane` records before adding it)."""
        if node.name in self.members:
            return self.members[node.name]
        if not self.members:
            return FirstStart(state="new", initial_cluster={m.name: peer_url(m) for m in spec.etcd_members})
        recorded = [m for m in spec.etcd_members if m.name in self.members]
        return FirstStart(state="existing", initial_cluster={m.name: peer_url(m) for m in [*recorded, node]})

    def unrecorded(self, spec: ClusterSpec) -> list[Node]:
        """Members of the inventory a running cluster does not know yet (none before the first init)."""
        return [m for m in spec.etcd_members if self.members and m.name not in self.members]

    def record(self, spec: ClusterSpec, nodes: list[Node]) -> None:
        self.members.update({n.name: self.first_start(spec, n) for n in nodes})  # all judged before any is added
        assert self.path is not None
        self._save()

    def forget(self, names: list[str]) -> None:
        """Members removed from the cluster (`kbootstrap remove`): a node of that name joins anew, as a learner."""
        if not any(n in self.members for n in names) or self.path is None:
            return
        self.members = {k: v for k, v in self.members.items() if k not in names}
        self._save()

    def _save(self) -> None:
        assert self.path is not None
        doc = _File(members=self.members).model_dump(mode="json")
        write_atomic(self.path, _HEADER + yaml.safe_dump(doc, sort_keys=False).encode(), 0o600)

    def delete(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)
