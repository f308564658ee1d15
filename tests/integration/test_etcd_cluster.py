"""A real 3-member etcd cluster from the rendered etcd units and generated certificates.

Each member runs in its own network namespace on a private bridge (10.78.0.0/24, no forwarding, no NAT),
with exactly the flags of its rendered /etc/systemd/system/etcd.service. The only change: the host paths
/etc/kubernetes and /var/lib/etcd are rooted in the test's directory.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.tools

BRIDGE = "kbt-etcd0"
NET = "10.78.0"
MEMBERS = {"e1": f"{NET}.11", "e2": f"{NET}.12", "e3": f"{NET}.13"}

INVENTORY = {
    "cluster": {"name": "etcdtest", "topology": "external", "control_plane_form": "systemd"},
    "nodes": [{"name": "cp1", "address": f"{NET}.21", "roles": ["control-plane"]}]
    + [{"name": n, "address": a, "roles": ["etcd"]} for n, a in MEMBERS.items()],
}


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def _teardown_net() -> None:
    for name in MEMBERS:
        _ip("netns", "del", f"kbt-{name}", check=False)  # also removes the veth end inside it
        _ip("link", "del", f"kbt-{name}h", check=False)
    _ip("link", "del", BRIDGE, check=False)


def _unit_args(unit: Path) -> list[str]:
    """ExecStart of a rendered unit, split the way systemd does for our quoting."""
    text = unit.read_text().replace("\\\n", " ")
    line = next(l for l in text.splitlines() if l.startswith("ExecStart="))
    return shlex.split(line.removeprefix("ExecStart="))


@pytest.fixture(scope="module")
def etcd_cluster(tmp_path_factory):
    if not shutil.which("etcd") or not shutil.which("etcdctl"):
        pytest.skip("etcd/etcdctl not installed (apt-get install etcd-server etcd-client)")
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    work = tmp_path_factory.mktemp("etcd")
    inv = work / "inv.yaml"
    inv.write_text(yaml.safe_dump(INVENTORY))
    subprocess.run([sys.executable, "-m", "kbootstrap", "render", "-i", str(inv), "-o", str(work / "tree"),
                    "--cluster-dir", str(work / "cluster")], check=True, capture_output=True)

    _teardown_net()  # leftovers of a crashed earlier run
    procs: list[subprocess.Popen] = []
    try:
        _ip("link", "add", BRIDGE, "type", "bridge")
        _ip("addr", "add", f"{NET}.1/24", "dev", BRIDGE)
        _ip("link", "set", BRIDGE, "up")
        for name, addr in MEMBERS.items():
            ns = f"kbt-{name}"
            _ip("netns", "add", ns)
            _ip("link", "add", f"{ns}h", "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("link", "set", f"{ns}h", "master", BRIDGE, "up")
            _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        for name in MEMBERS:
            root = work / "tree" / name
            args = _unit_args(root / "etc/systemd/system/etcd.service")
            assert args[0] == "/usr/local/bin/etcd"
            data = work / f"data-{name}"
            data.mkdir(mode=0o700)
            args = [a.replace("/etc/kubernetes/", f"{root}/etc/kubernetes/").replace("/var/lib/etcd", str(data))
                    for a in args[1:]]
            log = open(work / f"{name}.log", "wb")
            procs.append(subprocess.Popen(["ip", "netns", "exec", f"kbt-{name}", shutil.which("etcd"), *args],
                                          stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        yield work
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        _teardown_net()


def _etcdctl(work: Path, client_host: str, cert: str, *args: str, endpoint: str = f"https://{NET}.11:2379"):
    pki = work / "tree" / client_host / "etc/kubernetes/pki"
    cmd = ["etcdctl", f"--endpoints={endpoint}", f"--cacert={pki}/etcd/ca.crt", "--dial-timeout=3s",
           "--command-timeout=5s"]
    if cert:
        cmd += [f"--cert={pki}/{cert}.crt", f"--key={pki}/{cert}.key"]
    return subprocess.run(cmd + list(args), capture_output=True, text=True, env={**os.environ, "ETCDCTL_API": "3"})


def _healthy_lines(r: subprocess.CompletedProcess) -> list[str]:
    return [l for l in (r.stdout + r.stderr).splitlines() if "is healthy" in l]


def _wait_healthy(work: Path, timeout: float = 30) -> subprocess.CompletedProcess:
    """`endpoint health --cluster` until every member answers. A member that has joined but not yet published
    its client URLs is left out of `--cluster` and the command still exits 0 (seen in CI), so wait for all three."""
    deadline = time.monotonic() + timeout
    while True:
        r = _etcdctl(work, "e1", "etcd/healthcheck-client", "endpoint", "health", "--cluster")
        if (r.returncode == 0 and len(_healthy_lines(r)) == len(MEMBERS)) or time.monotonic() > deadline:
            return r
        time.sleep(0.5)


def test_cluster_is_healthy_over_mtls(etcd_cluster):
    r = _wait_healthy(etcd_cluster)
    logs = "\n".join((etcd_cluster / f"{n}.log").read_text()[-1500:] for n in MEMBERS)
    assert r.returncode == 0, r.stdout + r.stderr + logs
    assert len(_healthy_lines(r)) == 3, r.stdout + r.stderr
    members = _etcdctl(etcd_cluster, "e1", "etcd/healthcheck-client", "member", "list")
    assert sorted(l.split(", ")[2] for l in members.stdout.splitlines()) == ["e1", "e2", "e3"]


def test_apiserver_client_cert_reads_and_writes_on_every_member(etcd_cluster):
    assert _wait_healthy(etcd_cluster).returncode == 0
    put = _etcdctl(etcd_cluster, "cp1", "apiserver-etcd-client", "put", "/kbootstrap/probe", "ok")
    assert put.returncode == 0, put.stderr
    for addr in MEMBERS.values():
        get = _etcdctl(etcd_cluster, "cp1", "apiserver-etcd-client", "get", "/kbootstrap/probe", "--print-value-only",
                       endpoint=f"https://{addr}:2379")
        assert get.stdout.strip() == "ok", (addr, get.stderr)


def _rejections(work: Path) -> list[str]:
    return [l for l in (work / "e1.log").read_text().splitlines() if "rejected connection" in l]


def test_client_without_an_etcd_ca_signed_cert_is_refused(etcd_cluster):
    assert _wait_healthy(etcd_cluster).returncode == 0
    # No client certificate at all. (etcdctl retries until its deadline; the server's log says why.)
    before = len(_rejections(etcd_cluster))
    r = _etcdctl(etcd_cluster, "cp1", "", "get", "/kbootstrap/probe")
    assert r.returncode != 0 and "ok" not in r.stdout
    # A valid certificate, but from the cluster CA instead of the etcd CA (kube-apiserver's kubelet client cert).
    r = _etcdctl(etcd_cluster, "cp1", "apiserver-kubelet-client", "get", "/kbootstrap/probe")
    assert r.returncode != 0 and "ok" not in r.stdout
    time.sleep(0.5)
    refused = _rejections(etcd_cluster)[before:]
    assert any("didn't provide a certificate" in l or "bad certificate" in l for l in refused), refused
    assert any("unknown authority" in l for l in refused), refused
