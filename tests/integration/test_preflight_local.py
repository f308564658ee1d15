"""The real preflight probe on this machine through the local transport: python3 really runs the packed
probe and its report matches what the test sees for itself (this machine's PID 1 need not be systemd)."""

from __future__ import annotations

import ipaddress
import os
import platform
import socket
import time
from contextlib import closing

import pytest

from kbootstrap.model.spec import build_spec
from kbootstrap.preflight import checks
from kbootstrap.preflight.facts import gather_preflight
from kbootstrap.preflight.run import run_preflight
from kbootstrap.transport.local import LocalTransport


def free_port(family=socket.AF_INET, host="127.0.0.1") -> int:
    with closing(socket.socket(family)) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@pytest.fixture
def listener():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    with closing(s):
        yield s.getsockname()[1]


def test_probe_reports_this_machine(listener):
    closed = free_port()
    t = LocalTransport()
    f = gather_preflight(t, [listener, closed], [("127.0.0.1", listener), ("127.0.0.1", closed)])
    assert t.round_trips.count == 1
    assert f.arch == platform.machine() and f.kernel == os.uname().release
    assert f.hostname == socket.gethostname() and f.cpus == os.cpu_count()
    assert f.systemd == os.path.isdir("/run/systemd/system")
    assert f.python_version >= (3, 6)
    if os.path.exists("/etc/machine-id"):
        assert f.machine_id == open("/etc/machine-id").read().strip()
    meminfo = dict(line.split(":", 1) for line in open("/proc/meminfo"))
    assert f.mem_total == int(meminfo["MemTotal"].split()[0]) * 1024
    assert abs(f.var_free - os.statvfs("/var").f_bavail * os.statvfs("/var").f_frsize) < 256 * 2**20
    assert f.sent_at <= f.host_time <= f.received_at  # one clock: the probe's time falls inside the call
    assert "lo" not in f.macs and all(len(m) == 17 for m in f.macs.values())
    assert len(open("/proc/swaps").read().splitlines()) - 1 == len(f.swaps)


def test_probe_sees_listening_ports_and_connects(listener):
    closed = free_port()
    f = gather_preflight(LocalTransport(), [listener, closed], [("127.0.0.1", listener), ("127.0.0.1", closed)])
    [held] = f.listening
    assert (held.port, held.address) == (listener, "127.0.0.1")
    assert held.process == f"{open('/proc/self/comm').read().strip()} (pid {os.getpid()})"
    results = {c.port: c for c in f.connects}
    assert results[listener].result == "ok"
    assert results[closed].result == "refused" and results[closed].reachable  # refused proves the route


def test_probe_reads_tcp6_listeners():
    try:
        s = socket.socket(socket.AF_INET6)
        s.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with closing(s):
        s.listen()
        port = s.getsockname()[1]
        f = gather_preflight(LocalTransport(), [port])
    assert [(x.port, x.address) for x in f.listening] == [(port, "::1")]


def test_kernel_features_and_cgroups():
    f = gather_preflight(LocalTransport(), [])
    filesystems = open("/proc/filesystems").read().split()
    if "overlay" in filesystems and not os.path.exists("/proc/modules"):
        assert f.modules["overlay"] == "builtin"  # this kernel: no module support, overlay compiled in
    elif "overlay" in filesystems:
        assert f.modules["overlay"] in ("loaded", "builtin")
    if os.path.isdir("/proc/sys/net/bridge"):
        assert f.modules["br_netfilter"] in ("loaded", "builtin")
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        assert f.cgroup == "v2"
    elif os.path.isdir("/sys/fs/cgroup/unified"):
        assert f.cgroup == "hybrid"
    assert f.commands["mount"] and set(f.commands) == {"systemctl", "iptables", "mount", "nsenter"}


def test_run_preflight_on_this_machine():
    """A one-node cluster on 127.0.0.1: only this machine's own facts can fail, and each says so. An inventory
    refuses a loopback node address, so the spec is built on another and pointed at loopback after: every
    connection the probe makes stays on this machine."""
    spec = build_spec({"cluster": {"name": "local"},
                       "nodes": [{"name": "cp1", "address": "10.77.0.250", "roles": ["control-plane"]}]})
    here = spec.nodes[0].model_copy(update={"address": ipaddress.IPv4Address("127.0.0.1")})
    spec = spec.model_copy(update={"nodes": [here]})
    assert str(spec.api_server_url) == "https://127.0.0.1:6443"
    start = time.time()
    out = run_preflight(spec, {"cp1": LocalTransport("cp1")}, will_install={"iptables"})
    assert time.time() - start < 30
    messages = [f.message for f in out]
    assert all(f.path == "cp1" for f in out)
    assert not any("clock" in m or "cannot reach" in m or "probe did not run" in m for m in messages)
    assert any("systemd is not PID 1" in m for m in messages) == (not os.path.isdir("/run/systemd/system"))
    hostname_differs = socket.gethostname().split(".")[0].lower() != "cp1"
    assert any("--hostname-override" in m for m in messages) == hostname_differs
    print(checks.format_problems(out))
