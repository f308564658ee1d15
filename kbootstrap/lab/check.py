"""`kbootstrap lab check`: what the lab needs on this machine, every missing piece named with what provides it.

One report, before any container is made (`lab up` runs it first and refuses on a problem): the commands and
files the lab runs and reads, each with the Debian package that ships it (a package `lxc` only recommends is
missing on a fresh machine: lxc-templates was); the kernel features the nodes use (they share this machine's
kernel and cannot load a module); cgroups; root; and how many hosts fit in this machine's inotify budget, which
every privileged node draws from (root's `fs.inotify.max_user_instances`, a host sysctl the lab never changes).

`root` checks the commands and files of another filesystem tree (a fresh Debian root in CI, a test root with a
file removed); the kernel, cgroups and the budget are always this machine's. Standard library only.
"""

from __future__ import annotations

import glob
import gzip
import os
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# command -> (Debian package, why the lab needs it)
COMMANDS = {
    "lxc-start": ("lxc", "starts each node"),
    "lxc-stop": ("lxc", "stops a node"),
    "lxc-attach": ("lxc", "waits for a node's boot and reads its SSH host keys out of band"),
    "lxc-info": ("lxc", "reads a node's state"),
    "lxc-ls": ("lxc", "lists the running nodes"),
    "lxc-destroy": ("lxc", "removes a node"),
    "ip": ("iproute2", "makes the lab bridge"),
    "debootstrap": ("debootstrap", "builds the node image"),
    "gpgv": ("gpgv", "debootstrap verifies the Release file's signature"),
    "chroot": ("coreutils", "builds the node image"),
    "sha256sum": ("coreutils", "keys the image cache"),
    "tar": ("tar", "packs the image as a box"),
    "gzip": ("gzip", "packs the image as a box"),
    "flock": ("util-linux", "one image build at a time"),
    "mount": ("mount", "node roots"),
    "umount": ("mount", "removes a crashed run's mounts"),
    "ssh-keygen": ("openssh-client", "makes the lab's SSH key"),
}
# path (a glob) -> (package, why)
FILES = {
    "/usr/share/lxc/config/debian.common.conf": ("lxc-templates", "every node's LXC config includes it"),
    "/usr/share/lxc/config/common.conf": ("liblxc-common", "debian.common.conf includes it"),
    "/usr/share/debootstrap/scripts/bookworm": ("debootstrap", "the node image is Debian bookworm"),
    "/usr/share/keyrings/debian-archive-keyring.gpg": ("debian-archive-keyring",
                                                       "debootstrap checks bookworm's Release file with it"),
}
VAGRANT_COMMANDS = {"vagrant": ("vagrant", "the vagrant engine and the README's Vagrant path")}
VAGRANT_FILES = {
    "/usr/share/rubygems-integration/all/specifications/vagrant-lxc-*.gemspec": ("vagrant-lxc",
                                                                                 "Vagrant's lxc provider"),
}
# feature -> (kernel option, where a running kernel shows it, why)
KERNEL = {
    "overlay": ("CONFIG_OVERLAY_FS", "/proc/filesystems:overlay", "node roots and containerd's snapshotter"),
    "veth": ("CONFIG_VETH", "", "each node's link to the lab bridge"),
    "bridge": ("CONFIG_BRIDGE", "/sys/module/bridge", "the lab bridge"),
    "br_netfilter": ("CONFIG_BRIDGE_NETFILTER", "/proc/sys/net/bridge", "bridged pod traffic through iptables"),
    "nf_conntrack": ("CONFIG_NF_CONNTRACK", "/proc/sys/net/netfilter/nf_conntrack_max", "kube-proxy"),
    "ip_tables": ("CONFIG_IP_NF_IPTABLES", "/proc/net/ip_tables_names", "kube-proxy's and the CNI's rules"),
}
PATH_DIRS = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")

# inotify instances one node takes, measured on lab nodes (docs/lab.md): booted with nothing on it, and running
# its part of a cluster after init and join (lab-stacked and lab-external, 1.34.2): a control plane 21-27
# (containerd, kubelet, kube-proxy, the control plane), a worker 13, a load balancer or an etcd host 4.
INOTIFY_PER_NODE_IDLE = 4
INOTIFY_IN_CLUSTER = {"control-plane": 27, "worker": 13}
INOTIFY_RESERVE = 8  # left for this machine's own programs


def in_cluster(roles: Iterable[str]) -> int:
    """inotify instances a node with these roles takes once its cluster runs."""
    return max([INOTIFY_PER_NODE_IDLE, *(INOTIFY_IN_CLUSTER.get(r, 0) for r in roles)])


@dataclass(frozen=True)
class Finding:
    kind: str  # command, file, kernel, cgroup, privilege, budget, network
    name: str
    ok: bool
    detail: str  # what was found, or what provides it
    package: str = ""  # the Debian package to install, when that is the fix


@dataclass(frozen=True)
class Budget:
    limit: int
    used: int

    @property
    def free(self) -> int:
        return max(0, self.limit - self.used - INOTIFY_RESERVE)

    def hosts(self, per_node: int) -> int:
        return self.free // per_node


# ----------------------------------------------------------------------------------------------------
# files and commands, under a root


def resolve_in(root: Path, path: str, hops: int = 40) -> Path | None:
    """The file `path` names inside `root`, its symlinks followed inside root too; None if absent."""
    parts = [p for p in path.split("/") if p]
    resolved: list[str] = []
    while parts:
        part = parts.pop(0)
        if part == ".":
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        here = root.joinpath(*resolved, part)
        if here.is_symlink():
            hops -= 1
            if hops < 0:
                return None
            target = os.readlink(here)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p] + parts
            continue
        if not here.exists() and not os.path.lexists(here):
            return None
        resolved.append(part)
    return root.joinpath(*resolved)


def find_command(root: Path, name: str) -> Path | None:
    for d in PATH_DIRS:
        p = resolve_in(root, f"{d}/{name}")
        if p is not None and p.is_file() and os.access(p, os.X_OK):
            return Path(d) / name
    return None


def find_file(root: Path, pattern: str) -> str | None:
    if any(c in pattern for c in "*?["):
        hits = sorted(glob.glob(str(root) + pattern)) if str(root) != "/" else sorted(glob.glob(pattern))
        return hits[0][len(str(root).rstrip("/")):] if hits else None
    p = resolve_in(root, pattern)
    return pattern if p is not None and p.is_file() else None


def check_files(root: Path, commands: dict, files: dict) -> list[Finding]:
    out = []
    for name, (pkg, why) in commands.items():
        found = find_command(root, name)
        out.append(Finding("command", name, found is not None, str(found) if found else f"{why}; in package {pkg}",
                           "" if found else pkg))
    for pattern, (pkg, why) in files.items():
        path = find_file(root, pattern)
        out.append(Finding("file", pattern, path is not None, path or f"{why}; in package {pkg}",
                           "" if path else pkg))
    return out


# ----------------------------------------------------------------------------------------------------
# this machine: kernel, cgroups, privilege, inotify


def kernel_config() -> dict[str, str]:
    try:
        text = gzip.decompress(Path("/proc/config.gz").read_bytes()).decode(errors="replace")
    except OSError:
        return {}
    return dict(line.split("=", 1) for line in text.splitlines() if line.startswith("CONFIG_") and "=" in line)


def _shown(trace: str) -> bool:
    if ":" in trace:
        path, word = trace.split(":", 1)
        try:
            return word in Path(path).read_text().split()
        except OSError:
            return False
    return bool(trace) and os.path.exists(trace)


def _veth_works() -> bool:
    """No trace of veth without making one: make a pair in a throwaway network namespace."""
    try:
        r = subprocess.run(["unshare", "--net", "ip", "link", "add", "kbchk0", "type", "veth", "peer", "name", "kbchk1"],
                           capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


def check_kernel() -> list[Finding]:
    config = kernel_config()
    release = os.uname().release
    out = []
    for name, (option, trace, why) in KERNEL.items():
        value = config.get(option)
        if _shown(trace) or value == "y" or (name == "veth" and not config and _veth_works()):
            out.append(Finding("kernel", name, True, "built in" if value == "y" else "present"))
        elif value == "m":
            out.append(Finding("kernel", name, False, f"{option}=m but not loaded: modprobe {name} on this machine "
                                                       f"(the nodes share its kernel and cannot load modules; {why})"))
        else:
            out.append(Finding("kernel", name, False, f"kernel {release} lacks it: a kernel with {option} ({why})"))
    return out


def check_cgroups() -> list[Finding]:
    base = Path("/sys/fs/cgroup")
    if (base / "cgroup.controllers").exists():
        have = set((base / "cgroup.controllers").read_text().split())
        version = "v2"
    else:
        have = {p.name for p in base.iterdir() if p.is_dir()} if base.is_dir() else set()
        version = "v1"
    out = []
    for ctrl, why in (("memory", "each node's memory_mb limit"), ("cpu", "each node's cpus quota"),
                      ("pids", "the kubelet's pod pid limits")):
        ok = ctrl in have
        out.append(Finding("cgroup", f"{ctrl} ({version})", ok, "available" if ok else
                           f"the {ctrl} controller is not available ({why}): enable it on the kernel command line"))
    return out


def check_privilege() -> list[Finding]:
    ok = os.geteuid() == 0
    return [Finding("privilege", "root", ok, "running as root" if ok else
                    "the lab runs privileged LXC containers and makes a bridge: run it as root")]


def inotify_budget(uid: int = 0) -> Budget:
    """Root's inotify instances: the limit, and how many its processes hold now (each open inotify file
    counted once per process: a shared one is counted twice, which errs on the safe side)."""
    limit = int(Path("/proc/sys/fs/inotify/max_user_instances").read_text())
    used = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if os.stat(f"/proc/{pid}").st_uid != uid:
                continue
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:inotify":
                    used += 1
        except OSError:  # the process ended, or its fds are not ours to read
            continue
    return Budget(limit, used)


def check_budget(budget: Budget) -> Finding:
    idle = budget.hosts(INOTIFY_PER_NODE_IDLE)
    return Finding("budget", "lab hosts", idle > 0,
                   f"{idle} more booted hosts fit (root's inotify instances: {budget.used} of "
                   f"fs.inotify.max_user_instances={budget.limit} used, {INOTIFY_RESERVE} kept; a node takes "
                   f"{INOTIFY_PER_NODE_IDLE} booted; in a running cluster a control plane up to "
                   f"{INOTIFY_IN_CLUSTER['control-plane']}, a worker {INOTIFY_IN_CLUSTER['worker']}, a load "
                   f"balancer or etcd host {INOTIFY_PER_NODE_IDLE}: one cluster layout up at a time)")


def check_fit(starting: dict[str, int], budget: Budget) -> list[Finding]:
    """Whether the nodes about to start ({layout: how many}) fit in the budget, counted together."""
    out, free = [], budget.free
    for cluster, count in starting.items():
        need = count * INOTIFY_PER_NODE_IDLE
        ok = need <= free
        detail = (f"{count} node(s) to start need {need} of root's inotify instances; {free} free "
                  f"({budget.used} of fs.inotify.max_user_instances={budget.limit} used, {INOTIFY_RESERVE} kept "
                  f"for this machine)")
        if not ok:
            detail += (f": at most {free // INOTIFY_PER_NODE_IDLE} more hosts fit on this machine; bring another "
                       "layout down or use a smaller one (the lab never raises the limit)")
        out.append(Finding("budget", cluster, ok, detail))
        free -= need if ok else 0
    return out


def controller(engine: str = "lxc", root: Path = Path("/"), starting: dict[str, int] | None = None,
               budget: Budget | None = None) -> list[Finding]:
    """Every check of this machine for the given engine (vagrant adds Vagrant and its lxc provider); with
    `starting` ({layout: nodes it would start}), whether those fit, instead of how many hosts would. `budget`:
    the inotify count the caller already took (one scan of /proc)."""
    commands, files = dict(COMMANDS), dict(FILES)
    if engine == "vagrant":
        commands.update(VAGRANT_COMMANDS)
        files.update(VAGRANT_FILES)
    budget = budget or inotify_budget()
    fit = check_fit(starting, budget) if starting is not None else [check_budget(budget)]
    return [*check_privilege(), *check_files(root, commands, files), *check_kernel(), *check_cgroups(), *fit]


def problems(findings: Iterable[Finding]) -> list[Finding]:
    return [f for f in findings if not f.ok]


def packages(findings: Iterable[Finding]) -> list[str]:
    """The packages that would fix the findings, each once, in order."""
    return list(dict.fromkeys(f.package for f in findings if f.package and not f.ok))


def report(findings: list[Finding]) -> str:
    """The report as plain text: one line a check, then one line saying what to do."""
    lines = [f"{'ok' if f.ok else 'MISSING':<8} {f.kind:<9} {f.name:<45} {f.detail}" for f in findings]
    bad = problems(findings)
    pkgs = packages(bad)
    if not bad:
        lines.append("the lab has everything it needs on this machine")
    else:
        lines.append(f"{len(bad)} problem(s)" + (
            f"; install: apt-get install --no-install-recommends {' '.join(pkgs)}" if pkgs else ""))
    return "\n".join(lines)
