"""The lab machine's side: running commands, the node image, the bridge, and sweeping leftovers.

Rules kept here (network safety): the only host network object the lab makes is its bridge, with the
inventory's gateway address and nothing else: no NAT, no forwarding, no sysctl read or written.
Processes: every command runs in its own session; on a timeout only that session is ended, by its id.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from kbootstrap.lab.errors import LabError
from kbootstrap.lab.layout import REPO, Layout

Log = Callable[[str], None]


def stderr_log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def vagrant_dir() -> Path:
    d = Path(os.environ.get("KB_LAB_VAGRANT_DIR") or REPO / "vagrant")
    if not (d / "Vagrantfile").is_file():
        raise LabError(f"the lab needs the repository's vagrant/ directory (looked in {d}; set KB_LAB_VAGRANT_DIR)")
    return d


def run(
    cmd: Sequence[str | os.PathLike],
    *,
    timeout: float = 120,
    check: bool = True,
    env: dict[str, str] | None = None,
    cwd: str | os.PathLike | None = None,
    capture: bool = True,
) -> subprocess.CompletedProcess:
    """Run a command to completion. On timeout end its process group (which we started) by id."""
    argv = [str(c) for c in cmd]
    out = subprocess.PIPE if capture else None
    try:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=out,
            stdin=subprocess.DEVNULL,
            text=True,
            env=None if env is None else {**os.environ, **env},
            cwd=cwd,
            start_new_session=True,
        )
    except FileNotFoundError:
        raise LabError(f"{argv[0]} is not installed (see docs/lab.md for the packages the lab needs)") from None
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except BaseException:  # timeout, ^C: end what we started, then re-raise
        _end_group(proc)
        raise
    result = subprocess.CompletedProcess(argv, proc.returncode, stdout or "", stderr or "")
    if check and proc.returncode != 0:
        detail = (result.stderr or result.stdout or "").strip()[-2000:]
        raise LabError(f"`{' '.join(argv)}` failed ({proc.returncode}): {detail}")
    return result


def _end_group(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)  # the session we created for this command, by its id
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=5)
            return
        except subprocess.TimeoutExpired:
            continue


def require_root(*tools: str) -> None:
    if os.geteuid() != 0:
        raise LabError("the lab runs privileged LXC containers and makes a bridge: run it as root")
    for tool in ("lxc-start", "ip", *tools):
        if shutil.which(tool) is None:
            raise LabError(f"{tool} is missing: apt-get install --no-install-recommends lxc debootstrap iproute2")


# ----------------------------------------------------------------------------------------------------
# the node image


def ensure_image(layout: Layout, *, vagrant: bool, log: Log = stderr_log) -> Path:
    """Build the node image if its recipe changed (cached by hash), optionally add the vagrant box."""
    script = vagrant_dir() / "build-box.sh"
    cmd: list[str | Path] = ["bash", script, *(["--vagrant"] if vagrant else [])]
    env = {"KB_LAB_CACHE": str(layout.cache_dir)}
    result = run(cmd, timeout=900, check=False, env=env)
    stdout, stderr = result.stdout, result.stderr
    for line in stderr.splitlines():
        if line.startswith("build-box:"):
            log(line)
    if result.returncode != 0:
        raise LabError(f"building the lab image failed:\n{stderr.strip()[-3000:]}")
    image = Path(stdout.strip().splitlines()[-1])
    if not (image / "rootfs").is_dir() or not (image / "lxc-config").is_file():
        raise LabError(f"build-box.sh printed {image}, which is not an image directory")
    return image


# ----------------------------------------------------------------------------------------------------
# the bridge


def check_no_overlap(layout: Layout) -> None:
    """Refuse to put the lab on a network the host already reaches through another interface."""
    net = layout.gateway.network
    out = run(["ip", "-4", "-o", "route", "show"], timeout=10).stdout
    for line in out.splitlines():
        parts = line.split()
        if not parts or parts[0] == "default":
            continue
        try:
            dest = ipaddress.IPv4Network(parts[0], strict=False)
        except ValueError:
            continue
        dev = parts[parts.index("dev") + 1] if "dev" in parts else ""
        if dev != layout.bridge and dest.overlaps(net):
            raise LabError(f"lab network {net} overlaps the host's route `{line.strip()}`; pick another lab.gateway")


def bridge_up(layout: Layout) -> None:
    check_no_overlap(layout)
    run(["sh", vagrant_dir() / "lab-net.sh", "up", layout.bridge, str(layout.gateway)], timeout=30)


def bridge_down(bridge: str) -> bool:
    """Delete the bridge if nothing is attached any more. True if it is gone."""
    run(["sh", vagrant_dir() / "lab-net.sh", "down", bridge], timeout=30)
    return not Path(f"/sys/class/net/{bridge}").exists()


def bridge_ports(bridge: str) -> list[str]:
    d = Path(f"/sys/class/net/{bridge}/brif")
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


def bridge_exists(bridge: str) -> bool:
    return Path(f"/sys/class/net/{bridge}/bridge").is_dir()


def delete_stray_veths(bridge: str, in_use: set[str], log: Log = stderr_log) -> None:
    """Remove veth ports of the lab bridge that no running container owns (a crashed run's)."""
    for port in bridge_ports(bridge):
        if port in in_use or not Path(f"/sys/class/net/{port}").exists():
            continue
        kind = run(["ip", "-d", "-o", "link", "show", "dev", port], timeout=10, check=False).stdout
        if " veth " not in kind:
            continue
        log(f"lab: removing stray {port} from {bridge}")
        run(["ip", "link", "del", "dev", port], timeout=10, check=False)


# ----------------------------------------------------------------------------------------------------
# mounts and cgroups


def umount_under(path: Path) -> None:
    """Unmount anything mounted at or under path, deepest first (a crashed run's leftovers)."""
    root = str(path.resolve())
    with open("/proc/self/mounts") as f:
        targets = [line.split()[1].replace("\\040", " ") for line in f]
    for t in sorted((t for t in targets if t == root or t.startswith(root + "/")), reverse=True):
        if subprocess.run(["umount", t], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", t], capture_output=True)


def cgroup_roots() -> list[Path]:
    base = Path("/sys/fs/cgroup")
    if (base / "cgroup.controllers").exists():  # pure cgroup v2
        return [base]
    return [p for p in base.iterdir() if p.is_dir() and not p.is_symlink()]


def remove_cgroups(names: Sequence[str]) -> list[str]:
    """rmdir the given cgroup directories (and empty children) in every hierarchy; report busy ones."""
    busy = []
    for root in cgroup_roots():
        for name in names:
            top = root / name
            if not top.is_dir():
                continue
            for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
                _rmdir(d)
            if not _rmdir(top):
                busy.append(str(top))
    return busy


def _rmdir(d: Path) -> bool:
    try:
        d.rmdir()  # only ever succeeds on an empty cgroup: never disturbs a live one
        return True
    except FileNotFoundError:
        return True
    except OSError:
        return False
