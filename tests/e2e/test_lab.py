"""The lab's nodes are real hosts: own systemd, address, hostname and filesystem, key-only SSH with a
recorded host key, passwordless sudo — and they come and go without leaving anything on the machine.

Runs once per layout in KB_LAB_LAYOUTS (see conftest.py). Tests that need one engine say so.
"""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import paramiko
import pytest

from kbootstrap.lab import host as labhost
from kbootstrap.lab import known_hosts, lifecycle, load_layout, lxc, ssh
from kbootstrap.lab.layout import REPO

pytestmark = pytest.mark.lab


def each_node(lab, hosts, check):
    """Run check(node, host) on every node; fail once, naming every node that failed."""
    failures = []
    for node in lab.layout.nodes:
        try:
            check(node, hosts[node.name])
        except AssertionError as e:
            failures.append(f"{node.name} ({node.address}): {e}")
    assert not failures, "\n".join(failures)


# ----------------------------------------------------------------------------------------------------
# what every node is


def test_ssh_login_uses_the_recorded_host_key(lab, hosts):
    def check(node, h):
        assert h.run("true").rc == 0
        presented = h.backend.client.get_transport().get_remote_server_key()
        recorded = known_hosts.entries(lab.layout.known_hosts, str(node.address))
        assert f"{presented.get_name()} {presented.get_base64()}" in recorded

    each_node(lab, hosts, check)


def test_unknown_host_key_is_rejected(lab, tmp_path):
    """Strict checking is real: with a known_hosts file lacking the node, the login is refused."""
    node = lab.layout.nodes[0]
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    from dataclasses import replace

    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        ssh.connect(replace(lab.layout, known_hosts=empty), node)


def test_openssh_client_accepts_the_recorded_host_key(lab):
    """The known_hosts file works for OpenSSH too (StrictHostKeyChecking=yes, nothing else trusted)."""
    node = lab.layout.nodes[-1]
    r = subprocess.run(
        ["ssh", "-F", "/dev/null", "-i", str(lab.layout.ssh_key), "-o", "IdentitiesOnly=yes",
         "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
         "-o", f"UserKnownHostsFile={lab.layout.known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
         "-o", "ConnectTimeout=10", f"{lab.layout.ssh_user}@{node.address}", "hostname"],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == node.name


def test_systemd_is_running(lab, hosts):
    def check(node, h):
        state = h.run("systemctl is-system-running").stdout.strip()
        failed = h.run("systemctl --failed --plain --no-legend").stdout.strip()
        assert state == "running", f"systemd is {state}; failed units: {failed or 'none'}"

    each_node(lab, hosts, check)


def test_hostname_is_the_node_name(lab, hosts):
    def check(node, h):
        assert h.check_output("hostname") == node.name
        assert h.check_output("hostname -f") == node.name  # resolvable without DNS (nss-myhostname)

    each_node(lab, hosts, check)


def test_address_and_gateway_come_from_the_inventory(lab, hosts):
    gw = lab.layout.gateway

    def check(node, h):
        addrs = h.interface("eth0").addresses
        assert str(node.address) in addrs, addrs
        assert f"default via {gw.ip} dev eth0" in h.check_output("ip -4 route show default")
        assert h.check_output("ip -4 -o addr show dev eth0").count(" inet ") == 1

    each_node(lab, hosts, check)


def test_passwordless_sudo(lab, hosts, root_hosts):
    def check(node, h):
        assert h.user().name == lab.layout.ssh_user
        r = h.run("sudo -n true")
        assert r.rc == 0, r.stderr
        assert h.check_output("sudo -n id -u") == "0"
        root = root_hosts[node.name]  # the fixture for root-only files
        assert root.check_output("id -u") == "0"
        assert root.file("/etc/shadow").sha256sum and not h.file("/etc/shadow").sha256sum

    each_node(lab, hosts, check)


def test_each_node_has_its_own_filesystem_and_identity(lab, hosts):
    first, *others = lab.layout.nodes
    marker = f"/home/{lab.layout.ssh_user}/kb-lab-{uuid.uuid4().hex}"
    hosts[first.name].check_output(f"echo {first.name} > {marker}")
    try:
        assert hosts[first.name].file(marker).content_string.strip() == first.name
        for n in others:
            assert not hosts[n.name].file(marker).exists, f"{marker} written on {first.name} is visible on {n.name}"
    finally:
        hosts[first.name].run(f"rm -f {marker}")
    machine_ids = {n.name: hosts[n.name].file("/etc/machine-id").content_string.strip() for n in lab.layout.nodes}
    assert len(set(machine_ids.values())) == len(machine_ids), machine_ids
    host_keys = {n.name: hosts[n.name].file("/etc/ssh/ssh_host_ed25519_key.pub").content_string.split()[1]
                 for n in lab.layout.nodes}
    assert len(set(host_keys.values())) == len(host_keys), "nodes share SSH host keys"


def test_node_has_only_the_fresh_vm_packages(lab, hosts):
    """A fresh cloud VM: python3 for tools, no container runtime, etcd or haproxy (kbootstrap's job)."""
    def check(node, h):
        for pkg in ("openssh-server", "sudo", "python3", "systemd", "dbus", "iproute2"):
            assert h.package(pkg).is_installed, pkg
        for pkg in ("containerd", "etcd-server", "haproxy", "kubelet"):
            assert not h.package(pkg).is_installed, pkg

    each_node(lab, hosts, check)


def test_kubelet_tunables_are_presented_without_touching_the_host(lab, hosts, host_sysctls_before):
    """The node shows the kernel settings the kubelet expects; the machine keeps its own values."""
    expected = {"vm/overcommit_memory": "1", "kernel/panic": "10", "kernel/panic_on_oops": "1"}

    def check(node, h):
        for key, value in expected.items():
            assert h.file(f"/proc/sys/{key}").content_string.strip() == value, key
        assert h.file("/dev/kmsg").exists
        assert h.run("sudo -n sh -c 'echo 0 > /proc/sys/kernel/panic'").rc != 0  # read-only in the node

    each_node(lab, hosts, check)
    now = {k: Path("/proc/sys", k).read_text().strip() for k in host_sysctls_before}
    assert now == host_sysctls_before
    assert now.get("net/ipv4/ip_forward", "0") == "0"


def test_bridge_has_only_the_gateway_address(lab):
    out = subprocess.run(["ip", "-o", "addr", "show", "dev", lab.layout.bridge],
                         capture_output=True, text=True, check=True).stdout
    addrs = [line.split()[3] for line in out.splitlines()]
    assert addrs == [str(lab.layout.gateway)]


def test_sizes_come_from_the_inventory(lab):
    """Each node's memory limit and CPU quota are the inventory's size (read on the host)."""
    for node in lab.layout.nodes:
        cg = f"lxc.payload.{lab.layout.container(node)}"
        if lxc.cgroup_v2_only():
            limit = int(Path(f"/sys/fs/cgroup/{cg}/memory.max").read_text())
            quota, period = map(int, Path(f"/sys/fs/cgroup/{cg}/cpu.max").read_text().split())
        else:
            limit = int(Path(f"/sys/fs/cgroup/memory/{cg}/memory.limit_in_bytes").read_text())
            quota = int(Path(f"/sys/fs/cgroup/cpu/{cg}/cpu.cfs_quota_us").read_text())
            period = int(Path(f"/sys/fs/cgroup/cpu/{cg}/cpu.cfs_period_us").read_text())
        assert limit == node.memory_mb * 1024 * 1024, node.name
        assert quota == node.cpus * period, node.name


@pytest.mark.lab_engine("lxc")
def test_every_lab_layout_fits_on_the_machine_at_once(lab, timed):
    """All lab inventories up together on one bridge (distinct names and addresses; every node's
    systemd `running` although all privileged nodes share root's 128 inotify instances)."""
    others = [load_layout(p) for p in sorted((REPO / "inventories").glob("lab-*.yaml"))
              if p.resolve() != lab.layout.path]
    try:
        for other in others:
            result = timed(f"up {other.cluster} beside it", lifecycle.up, other, "lxc", log=print)
            assert set(result.states.values()) == {"running"}, result.states
        total = len(lab.layout.nodes) + sum(len(o.nodes) for o in others)
        states = [lxc.info(lab.layout.container(n)).state for n in lab.layout.nodes]
        assert states == ["RUNNING"] * len(states)
        print(f"{total} nodes up at once")
    finally:
        for other in others:
            lifecycle.down(other, log=print)
    assert labhost.bridge_exists(lab.layout.bridge)  # still in use by this layout


# ----------------------------------------------------------------------------------------------------
# coming and going (these change the layout: they run last for their engine)


def _assert_nothing_left(layout):
    names = [layout.container(n) for n in layout.nodes]
    listed = subprocess.run(["lxc-ls", "-1"], capture_output=True, text=True, check=True).stdout.split()
    assert not set(names) & set(listed), f"containers left: {set(names) & set(listed)}"
    assert not [n for n in names if lxc.container_dir(n).exists()], "container directories left"
    for root in labhost.cgroup_roots():
        left = [p.name for p in root.glob("lxc.*") if any(n in p.name for n in names)]
        assert not left, f"cgroups left in {root}: {left}"
    others = lxc.running_links()  # another layout may share the bridge; its ports are not ours
    ports = [p for p in labhost.bridge_ports(layout.bridge) if p not in others]
    assert not ports, f"veths left on {layout.bridge}: {ports}"
    if not others:
        assert not labhost.bridge_exists(layout.bridge), f"bridge {layout.bridge} left"
    if not lxc.running_names():
        pivots = [str(p) for pat in ("lxc.pivot", "*/lxc.pivot") for p in Path("/sys/fs/cgroup").glob(pat)]
        assert not pivots, f"LXC helper cgroups left: {pivots}"
    mounts = Path("/proc/self/mounts").read_text()
    assert not [n for n in names if str(lxc.container_dir(n)) in mounts], "mounts left"
    monitors = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert not [n for n in names if f"[lxc monitor] {lxc.LXC_PATH} {n}" in monitors], "lxc monitor processes left"


@pytest.mark.lab_disruptive
@pytest.mark.lab_engine("lxc")  # the vagrant engine shares this code; one engine is enough
def test_up_and_down_survive_a_crashed_run(lab, timed):
    """Leftovers of a run that died half-way (a node's directory without config, empty cgroups,
    a stray veth on the bridge, a bridge without its address) do not stop `down` nor `up`;
    both are idempotent."""
    layout = lab.layout
    victim = layout.container(layout.nodes[0])
    lifecycle.down(layout, log=print)
    # what a crash could leave: a half-created node, cgroups, a veth on a bridge missing its address
    (lxc.container_dir(victim) / "delta0" / "etc").mkdir(parents=True)
    for root in labhost.cgroup_roots()[:3]:
        (root / f"lxc.payload.{victim}").mkdir()
    subprocess.run(["sh", labhost.vagrant_dir() / "lab-net.sh", "up", layout.bridge, str(layout.gateway)], check=True)
    subprocess.run(["ip", "addr", "flush", "dev", layout.bridge], check=True)
    subprocess.run(["ip", "link", "add", "kbstray0", "type", "veth", "peer", "name", "kbstray1"], check=True)
    subprocess.run(["ip", "link", "set", "kbstray0", "master", layout.bridge], check=True)
    try:
        timed("down over a crashed run", lifecycle.down, layout, log=print)
        timed("down again (nothing to do)", lifecycle.down, layout, log=print)
        _assert_nothing_left(layout)
        assert not Path("/sys/class/net/kbstray1").exists()
    finally:
        subprocess.run(["ip", "link", "del", "kbstray0"], capture_output=True)
    (lxc.container_dir(victim) / "delta0").mkdir(parents=True)  # half-created again, then up
    timed("up over a half-created node", lifecycle.up, layout, "lxc", log=print)
    second = timed("up again (already up)", lifecycle.up, layout, "lxc", log=print)
    assert set(second.states.values()) == {"running"}


@pytest.mark.lab_disruptive
@pytest.mark.lab_engine("lxc")  # the fast path; the vagrant engine's reset is destroy + up
def test_reset_returns_fresh_nodes(lab, hosts, host_for, timed):
    node = lab.layout.nodes[0]
    marker = f"/home/{lab.layout.ssh_user}/kb-lab-reset"
    hosts[node.name].check_output(f"touch {marker}")
    old_id = hosts[node.name].file("/etc/machine-id").content_string.strip()
    timed("reset", lifecycle.reset, lab.layout, log=print)
    fresh = host_for(lab.layout, node)  # the node's host keys are new: recorded again by reset
    assert not fresh.file(marker).exists
    assert fresh.file("/etc/machine-id").content_string.strip() != old_id
    assert fresh.run("systemctl is-system-running").stdout.strip() == "running"


@pytest.mark.lab_disruptive
@pytest.mark.lab_engine("vagrant")
def test_vagrant_halt_then_up_again(lab, host_for, timed):
    layout = lab.layout
    timed("vagrant halt", lifecycle.vagrant, layout, "halt", timeout=300)
    assert {lxc.info(layout.container(n)).state for n in layout.nodes} == {"STOPPED"}
    timed("vagrant up after halt", lifecycle.vagrant, layout, "up", "--provider=lxc", timeout=600)
    for node in layout.nodes:
        assert lxc.wait_booted(layout.container(node)) == "running"
        h = host_for(layout, node)  # same disks, same host keys: the recorded ones still hold
        assert h.check_output("hostname") == node.name
        assert str(node.address) in h.interface("eth0").addresses


@pytest.mark.lab_disruptive
def test_teardown_leaves_nothing_behind(lab, timed):
    """vagrant engine: `vagrant destroy -f`; lxc engine: `kbootstrap lab down`. Then nothing is left:
    no container, directory, cgroup, veth, mount, monitor process, nor the bridge."""
    if lab.engine == "vagrant":
        timed("vagrant destroy -f", lifecycle.vagrant, lab.layout, "destroy", "-f", timeout=600)
    else:
        timed("down", lifecycle.down, lab.layout, log=print)
    _assert_nothing_left(lab.layout)
