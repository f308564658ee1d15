"""A lab layout: what the lab needs from an inventory (nodes, bridge, gateway, SSH files).

The inventory is the single source of truth; this only narrows it to the lab's view and checks the
few things the lab relies on (addresses on the gateway's network, a user the lab image has).
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from kbootstrap.lab.errors import LabError

REPO = Path(__file__).resolve().parents[2]
DEFAULT_INVENTORY = REPO / "inventories" / "lab-stacked.yaml"
LAB_USER = "vagrant"  # the only login user the lab image has (as in Vagrant boxes)


@dataclass(frozen=True)
class LabNode:
    name: str
    address: ipaddress.IPv4Address
    roles: tuple[str, ...]
    cpus: int
    memory_mb: int


@dataclass(frozen=True)
class Layout:
    path: Path
    cluster: str
    nodes: tuple[LabNode, ...]
    bridge: str
    gateway: ipaddress.IPv4Interface
    ssh_user: str
    ssh_key: Path
    known_hosts: Path

    @property
    def inventory(self) -> Path:
        """The inventory file (same as path): what `kbootstrap … -i` takes."""
        return self.path

    @property
    def cache_dir(self) -> Path:
        """The lab keeps its key, images and known_hosts together, where the inventory's key is."""
        return self.ssh_key.parent

    def container(self, node: LabNode) -> str:
        """LXC container name: prefixed by the cluster so layouts can coexist."""
        return f"{self.cluster}-{node.name}"

    def node(self, name: str) -> LabNode:
        for n in self.nodes:
            if n.name == name:
                return n
        raise LabError(f"{self.path}: no node named {name!r}")


def default_inventory() -> Path:
    return Path(os.environ.get("KB_INVENTORY") or DEFAULT_INVENTORY)


def load_layout(path: str | Path) -> Layout:
    path = Path(path).expanduser().resolve()
    try:
        from kbootstrap.model.spec import load_inventory
    except ImportError:  # the lab works from the YAML alone
        layout = _from_yaml(path)
    else:
        layout = _from_spec(load_inventory(path), path)
    _check(layout)
    return layout


def _from_spec(spec, path: Path) -> Layout:
    if spec.lab is None:
        raise LabError(f"{path}: no `lab:` section (bridge, gateway): not a lab inventory")
    if spec.ssh.key is None or spec.ssh.known_hosts is None:
        raise LabError(f"{path}: a lab inventory needs ssh.key and ssh.known_hosts")
    return Layout(
        path=path,
        cluster=spec.cluster.name,
        nodes=tuple(
            LabNode(n.name, n.address, tuple(str(r) for r in n.roles), n.size.cpus, n.size.memory_mb)
            for n in spec.nodes
        ),
        bridge=spec.lab.bridge,
        gateway=spec.lab.gateway,
        ssh_user=spec.ssh.user,
        ssh_key=_resolve(spec.ssh.key, path),
        known_hosts=_resolve(spec.ssh.known_hosts, path),
    )


def _from_yaml(path: Path) -> Layout:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        lab, ssh = data["lab"], data["ssh"]
        return Layout(
            path=path,
            cluster=str(data["cluster"]["name"]),
            nodes=tuple(
                LabNode(
                    str(n["name"]),
                    ipaddress.IPv4Address(n["address"]),
                    tuple(n.get("roles") or ()),
                    int((n.get("size") or {}).get("cpus", 2)),
                    int((n.get("size") or {}).get("memory_mb", 2048)),
                )
                for n in data["nodes"]
            ),
            bridge=str(lab.get("bridge", "kblab0")),
            gateway=ipaddress.IPv4Interface(lab.get("gateway", "10.77.0.1/24")),
            ssh_user=str(ssh.get("user", "root")),
            ssh_key=_resolve(Path(ssh["key"]), path),
            known_hosts=_resolve(Path(ssh["known_hosts"]), path),
        )
    except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError) as e:
        raise LabError(f"{path}: not a usable lab inventory: {e!r}") from None


def _resolve(p: Path, inventory: Path) -> Path:
    p = Path(p).expanduser()
    return p if p.is_absolute() else (inventory.parent / p).resolve()


def _check(layout: Layout) -> None:
    problems = []
    if layout.ssh_user != LAB_USER:
        problems.append(f"ssh.user is {layout.ssh_user!r}; the lab's nodes only have {LAB_USER!r}")
    net = layout.gateway.network
    if net.prefixlen > 29 or net.prefixlen < 16:
        problems.append(f"lab.gateway {layout.gateway}: use a /16 to /29 private network")
    if not net.is_private:
        problems.append(f"lab.gateway {layout.gateway}: must be a private network")
    seen: set = set()
    for n in layout.nodes:
        if n.address not in net or n.address in (net.network_address, net.broadcast_address):
            problems.append(f"node {n.name}: {n.address} is not a host address of {net}")
        if n.address == layout.gateway.ip:
            problems.append(f"node {n.name}: {n.address} is the bridge (gateway) address")
        if n.address in seen:
            problems.append(f"node {n.name}: address {n.address} used twice")
        seen.add(n.address)
        if len(layout.container(n)) > 63:
            problems.append(f"node {n.name}: container name {layout.container(n)} longer than 63")
    if problems:
        raise LabError(f"{layout.path}: not usable for the lab:\n  - " + "\n  - ".join(problems))
