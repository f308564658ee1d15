"""LXC containers as lab nodes: the parts both engines share (both make plain LXC containers).

A node container is "<cluster>-<node>" in LXC's default path (so `lxc-ls` shows every lab node).
The `lxc` engine writes the container config itself: an overlay root (the cached image below, a
per-node upper directory above; reset = empty the upper), a per-node real-disk directory on
/var/lib/containerd (containerd's overlayfs snapshotter cannot sit on an overlay root), a static
eth0 address on the lab bridge. vagrant-lxc containers get the same settings from the Vagrantfile.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from kbootstrap.engine.poll import Pending, poll
from kbootstrap.lab import host
from kbootstrap.lab.errors import LabError
from kbootstrap.lab.layout import LabNode, Layout

LXC_PATH = Path("/var/lib/lxc")
ENGINE_MARK = "# kbootstrap lab: engine=lxc"
VAGRANT_MARK = "vagrant-lxc"


def container_dir(name: str) -> Path:
    return LXC_PATH / name


def mac_for(node: LabNode) -> str:
    """Stable MAC from the address (same formula as the Vagrantfile): neighbour caches stay right."""
    return "02:6b:" + ":".join(f"{b:02x}" for b in node.address.packed)


def cgroup_v2_only() -> bool:
    return Path("/sys/fs/cgroup/cgroup.controllers").exists()


@dataclass(frozen=True)
class ContainerInfo:
    name: str
    exists: bool
    state: str  # RUNNING, STOPPED, ... or "absent"
    engine: str  # lxc, vagrant, foreign, leftover, or "" when absent


def info(name: str) -> ContainerInfo:
    d = container_dir(name)
    config = d / "config"
    if not d.exists():
        return ContainerInfo(name, False, "absent", "")
    if not config.is_file():
        return ContainerInfo(name, True, "STOPPED", "leftover")
    text = config.read_text(errors="replace")
    engine = "lxc" if ENGINE_MARK in text else "vagrant" if VAGRANT_MARK in text else "foreign"
    r = host.run(["lxc-info", "-n", name, "-sH"], timeout=20, check=False)
    state = r.stdout.strip() or "UNKNOWN"
    return ContainerInfo(name, True, state, engine)


def running_names() -> list[str]:
    return host.run(["lxc-ls", "--running", "-1"], timeout=20, check=False).stdout.split()


def running_links() -> dict[str, str]:
    """Host-side veth of every running LXC container: {veth: container}."""
    links = {}
    for name in running_names():
        r = host.run(["lxc-info", "-n", name], timeout=20, check=False)
        for line in r.stdout.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "Link" and value.strip():
                links[value.strip()] = name
    return links


def running_addresses() -> dict[str, str]:
    """{IPv4 address: container} of every running LXC container (to refuse address clashes)."""
    out = host.run(["lxc-ls", "--running", "-f", "-F", "NAME,IPV4"], timeout=20, check=False).stdout
    found = {}
    for line in out.splitlines()[1:]:
        parts = line.replace(",", " ").split()
        for addr in parts[1:]:
            if addr != "-":
                found[addr] = parts[0]
    return found


def write_config(layout: Layout, node: LabNode, image: Path) -> None:
    """Create (or re-create) the `lxc` engine's container for a node, stopped and fresh."""
    name = layout.container(node)
    d = container_dir(name)
    d.mkdir(parents=True, exist_ok=True)
    (d / "delta0").mkdir(exist_ok=True)
    (d / "containerd").mkdir(exist_ok=True)
    net = layout.gateway.network
    if cgroup_v2_only():
        limits = [
            f"lxc.cgroup2.memory.max = {node.memory_mb}M",
            f"lxc.cgroup2.cpu.max = {node.cpus * 100000} 100000",
        ]
    else:
        limits = [
            f"lxc.cgroup.memory.limit_in_bytes = {node.memory_mb}M",
            "lxc.cgroup.cpu.cfs_period_us = 100000",
            f"lxc.cgroup.cpu.cfs_quota_us = {node.cpus * 100000}",
        ]
    lines = [
        f"{ENGINE_MARK} inventory={layout.path} node={node.name} image={image.name}",
        f"lxc.include = {image}/lxc-config",
        f"lxc.rootfs.path = overlay:{image}/rootfs:{d}/delta0",
        f"lxc.uts.name = {node.name}",
        "lxc.net.0.type = veth",
        f"lxc.net.0.link = {layout.bridge}",
        "lxc.net.0.flags = up",
        "lxc.net.0.name = eth0",
        f"lxc.net.0.hwaddr = {mac_for(node)}",
        f"lxc.net.0.ipv4.address = {node.address}/{net.prefixlen}",
        f"lxc.net.0.ipv4.gateway = {layout.gateway.ip}",
        *limits,
        f"lxc.mount.entry = {d}/containerd var/lib/containerd none bind,create=dir 0 0",
        "",
    ]
    tmp = d / "config.tmp"
    tmp.write_text("\n".join(lines))
    tmp.rename(d / "config")


def image_of(name: str) -> str | None:
    config = container_dir(name) / "config"
    if not config.is_file():
        return None
    for word in config.read_text(errors="replace").split():
        if word.startswith("image="):
            return word[len("image=") :]
    return None


def wipe_state(name: str) -> None:
    """Empty an `lxc`-engine node's writable layers: back to the image's fresh state."""
    d = container_dir(name)
    for sub in ("delta0", "containerd"):
        p = d / sub
        host.umount_under(p)
        if p.exists():
            shutil.rmtree(p)
        p.mkdir()


def start(name: str) -> None:
    logfile = container_dir(name) / "lxc.log"
    r = host.run(["lxc-start", "-n", name, "-d", f"--logfile={logfile}", "--logpriority=ERROR"],
                 timeout=60, check=False)
    if r.returncode != 0:
        detail = logfile.read_text(errors="replace")[-2000:] if logfile.is_file() else ""
        raise LabError(f"lxc-start {name} failed: {(r.stderr or r.stdout).strip()}\n{detail}")


def stop(name: str, *, kill: bool = True) -> None:
    """Stop a container (-k: at once; the lab throws the state away or keeps it on disk anyway)."""
    cmd = ["lxc-stop", "-n", name] + (["-k"] if kill else ["-t", "30"])
    r = host.run(cmd, timeout=60, check=False)
    if r.returncode not in (0, 2):  # 2: was not running
        raise LabError(f"lxc-stop {name} failed: {(r.stderr or r.stdout).strip()}")


def destroy(name: str) -> None:
    """Remove a stopped container and its directory, leaving no mount or cgroup behind."""
    d = container_dir(name)
    host.umount_under(d)
    if (d / "config").is_file():
        host.run(["lxc-destroy", "-n", name], timeout=120, check=False)
    if d.exists():  # a crashed creation: no usable config, or lxc-destroy gave up
        host.umount_under(d)
        shutil.rmtree(d, ignore_errors=False)
    busy = host.remove_cgroups([f"lxc.payload.{name}", f"lxc.monitor.{name}", name])
    if busy:
        raise LabError(f"{name}: cgroups still hold processes: {', '.join(busy)}")


def attach(name: str, *cmd: str, timeout: float = 60, check: bool = True):
    return host.run(["lxc-attach", "-n", name, "--", *cmd], timeout=timeout, check=check)


def wait_booted(name: str, timeout: float = 180) -> str:
    """Wait until systemd in the node finished booting; returns running/degraded/..."""
    deadline = time.monotonic() + timeout

    def booted() -> str | Pending:
        left = max(1, int(deadline - time.monotonic()))
        r = attach(name, "timeout", str(left), "systemctl", "is-system-running", "--wait",
                   timeout=left + 10, check=False)
        state = (r.stdout or r.stderr).strip()
        # not attachable yet (init still starting), or still "starting"
        return state if state in ("running", "degraded", "maintenance", "stopping") else Pending(state)

    result = poll(booted, timeout=timeout, interval=0.2)
    if isinstance(result, Pending):
        raise LabError(f"{name}: systemd did not finish booting in {timeout:.0f} s (last state: {result.why or 'none'}); "
                       "if it never started, this machine's inotify budget may be spent: `kbootstrap lab check`")
    return result


def failed_units(name: str) -> list[str]:
    r = attach(name, "systemctl", "--failed", "--plain", "--no-legend", check=False)
    return [line.split()[0] for line in r.stdout.splitlines() if line.strip()]


def host_keys(name: str) -> list[str]:
    """The node's SSH host public keys, read through LXC (out of band, so nothing to trust on first use)."""
    r = attach(name, "sh", "-c", "cat /etc/ssh/ssh_host_*_key.pub", timeout=30)
    keys = []
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and (parts[0].startswith("ssh-") or parts[0].startswith("ecdsa-")):
            keys.append(f"{parts[0]} {parts[1]}")
    if not keys:
        raise LabError(f"{name}: no SSH host keys found in /etc/ssh")
    return keys
