"""The controller check and `lab up`'s refusals, on this machine for real (issue: a newcomer never sees an
lxc-start parse error, and a failed up leaves nothing behind).

- `kbootstrap lab check` passes here (CI installed everything) and, against a test root with a file or a
  command removed (an overlay over this machine's own root: nothing of the machine changes), names the missing
  file or command and its package and exits 1;
- `lab up` with lxc-templates' file hidden (a tmpfs over /usr/share/lxc/config in a private mount namespace)
  refuses with exit 2, naming the file and the package, and makes no container and no bridge;
- `lab up` of a layout larger than this machine's inotify budget is refused the same way, naming the limit;
- a `lab up` that fails half-way (its nodes booted, then their host keys cannot be recorded: the inventory's
  ssh.known_hosts lies under a regular file) exits 1 with a one-line error and leaves no container, directory
  or bridge behind.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from kbootstrap.lab import check, lxc
from kbootstrap.lab.layout import REPO
from tests.conftest import kb

pytestmark = [pytest.mark.lab, pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")]

BRIDGE = "kbchk0"
DEBIAN_COMMON = "/usr/share/lxc/config/debian.common.conf"


def _inventory(tmp_path: Path, cluster: str, count: int) -> Path:
    """A lab inventory of its own (cluster, bridge, network), so nothing here meets another test's layout."""
    doc = yaml.safe_load((REPO / "inventories" / "lab-mini.yaml").read_text())
    doc["cluster"]["name"] = cluster
    doc["lab"] = {"bridge": BRIDGE, "gateway": "10.78.0.1/22"}
    doc["nodes"] = [{"name": "clb1", "address": "10.78.0.10", "roles": ["loadbalancer"], "size": {"cpus": 1, "memory_mb": 256}},
                    {"name": "ccp1", "address": "10.78.0.11", "roles": ["control-plane", "etcd"], "size": {"cpus": 1, "memory_mb": 512}}]
    doc["nodes"] += [{"name": f"cw{i}", "address": f"10.78.{1 + i // 250}.{1 + i % 250}", "roles": ["worker"],
                      "size": {"cpus": 1, "memory_mb": 256}} for i in range(count - 2)]
    path = tmp_path / f"{cluster}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _kb(*args: str, prefix: tuple[str, ...] = (), timeout: float = 600) -> subprocess.CompletedProcess:
    return kb(*args, prefix=prefix, timeout=timeout)


def _nothing_of(cluster: str) -> None:
    left = sorted(p.name for p in lxc.LXC_PATH.glob(f"{cluster}-*")) if lxc.LXC_PATH.is_dir() else []
    assert left == [], f"containers left behind: {left}"
    running = subprocess.run(["lxc-ls", "-1"], capture_output=True, text=True).stdout.split()
    assert not [n for n in running if n.startswith(f"{cluster}-")]
    assert not Path(f"/sys/class/net/{BRIDGE}").exists(), f"bridge {BRIDGE} left behind"


@pytest.fixture
def overlay_root(tmp_path):
    """This machine's root as the lower layer of an overlay: deleting in the merged view changes nothing here."""
    upper, work, merged = (tmp_path / d for d in ("upper", "work", "merged"))
    for d in (upper, work, merged):
        d.mkdir()
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir=/,upperdir={upper},workdir={work}",
                    str(merged)], check=True)
    try:
        yield merged
    finally:
        subprocess.run(["umount", str(merged)], check=True)


def test_the_check_passes_on_this_machine():
    p = _kb("lab", "check", "--engine", "vagrant")
    print(p.stdout)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.splitlines()[-1] == "the lab has everything it needs on this machine"
    assert "more booted hosts fit" in p.stdout


def test_the_check_names_a_removed_file_and_command_with_their_packages(overlay_root):
    (overlay_root / DEBIAN_COMMON.lstrip("/")).unlink()
    (overlay_root / "usr/bin/lxc-attach").unlink()
    assert Path(DEBIAN_COMMON).is_file() and Path("/usr/bin/lxc-attach").is_file()  # this machine's are untouched
    p = _kb("lab", "check", "--root", str(overlay_root))
    print(p.stdout)
    assert p.returncode == 1, p.stdout + p.stderr
    missing = [line for line in p.stdout.splitlines() if line.startswith("MISSING")]
    assert len(missing) == 2, missing
    assert DEBIAN_COMMON in missing[1] and "in package lxc-templates" in missing[1]
    assert "lxc-attach" in missing[0] and "in package lxc" in missing[0]
    assert p.stdout.splitlines()[-1] == "2 problem(s); install: apt-get install --no-install-recommends lxc lxc-templates"
    assert "Traceback" not in p.stderr


def test_lab_up_without_lxc_templates_refuses_before_making_anything(tmp_path):
    inv = _inventory(tmp_path, "lab-chk", 3)
    hide = ("unshare", "--mount", "--propagation", "private", "sh", "-c",
            'mount -t tmpfs -o size=1m kbchk /usr/share/lxc/config && exec "$@"', "sh")
    p = _kb("lab", "up", "-i", str(inv), prefix=hide)
    print(p.stdout + p.stderr)
    assert p.returncode == 2, p.stdout + p.stderr
    assert DEBIAN_COMMON in p.stderr and "lxc-templates" in p.stderr and "not starting anything" in p.stderr
    assert "Failed to load config" not in p.stderr  # never got as far as LXC's own parse error
    assert "Traceback" not in p.stderr
    _nothing_of("lab-chk")


def test_a_layout_larger_than_the_inotify_budget_is_refused_naming_the_limit(tmp_path):
    budget = check.inotify_budget()
    fits = budget.free // check.INOTIFY_PER_NODE_IDLE
    inv = _inventory(tmp_path, "lab-chk", fits + 1)
    p = _kb("lab", "up", "-i", str(inv))
    print(p.stderr)
    assert p.returncode == 2, p.stdout + p.stderr
    assert f"{fits + 1} node(s) to start need" in p.stderr
    assert "fs.inotify.max_user_instances" in p.stderr and f"at most {fits} more hosts fit" in p.stderr
    _nothing_of("lab-chk")


def test_an_up_that_fails_half_way_leaves_no_container(tmp_path):
    inv = _inventory(tmp_path, "lab-chk", 3)
    (tmp_path / "a-file").write_text("")
    doc = yaml.safe_load(inv.read_text())
    doc["ssh"]["known_hosts"] = str(tmp_path / "a-file" / "known_hosts")
    inv.write_text(yaml.safe_dump(doc, sort_keys=False))
    p = _kb("lab", "up", "-i", str(inv))
    print(p.stderr)
    assert p.returncode == 1, p.stdout + p.stderr
    started = p.stderr.index("lab: lab-chk: 3 node(s) started")
    assert p.stderr.index("lab: lab-chk: up failed") > started and "removing its nodes" in p.stderr
    assert p.stderr.splitlines()[-1].startswith("error: ") and str(tmp_path / "a-file") in p.stderr.splitlines()[-1]
    assert "Traceback" not in p.stderr
    _nothing_of("lab-chk")
