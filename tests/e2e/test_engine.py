"""The engine on real hosts (the lab, real sshd): plan/apply of every rendered file, idempotent re-runs,
services restarted only when their inputs change, one-line errors for each way a host can be unusable,
and convergence after a host was down mid-run."""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from kbootstrap.engine.runner import Phase, run_phases
from kbootstrap.engine.steps import FilesStep, ServicesStep
from kbootstrap.model.artifact import Artifact
from kbootstrap.model.spec import load_inventory
from kbootstrap.transport.ssh import SSHTransport
from tests.conftest import kb as shared_kb

pytestmark = [pytest.mark.lab, pytest.mark.lab_engine("lxc")]


def kb(*args: str, check: bool = False) -> subprocess.CompletedProcess:
    return shared_kb(*args, check=check, timeout=600)


@pytest.fixture(scope="module")
def cluster_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("engine") / "cluster"


@pytest.fixture(scope="module")
def applied(lab, cluster_dir):
    """`kbootstrap apply` once on a fresh lab: the first run, timed."""
    inv = str(lab.layout.inventory)
    t0 = time.monotonic()
    first = kb("apply", "-i", inv, "--cluster-dir", str(cluster_dir), "--output", "json", check=True)
    return {"inventory": inv, "cluster_dir": str(cluster_dir), "first": json.loads(first.stdout),
            "first_seconds": time.monotonic() - t0}


def test_first_apply_writes_every_rendered_file(lab, applied, root_hosts, cluster_dir, tmp_path):
    first = applied["first"]
    assert all(h["ok"] for h in first["hosts"]) and sum(len(h["changes"]) for h in first["hosts"]) > 100
    kb("render", "-i", applied["inventory"], "-o", str(tmp_path / "r"), "--cluster-dir", str(cluster_dir), check=True)
    hosts = root_hosts
    for node in ("cp1", "w1", "lb1"):
        h = hosts[node]
        for local in (tmp_path / "r" / node).rglob("*"):
            if not local.is_file():
                continue
            path = "/" + str(local.relative_to(tmp_path / "r" / node))
            f = h.file(path)
            assert f.exists, (node, path)
            assert f.sha256sum == hashlib.sha256(local.read_bytes()).hexdigest(), (node, path)
            assert f.mode == local.stat().st_mode & 0o7777 and f.user == "root", (node, path)
    assert hosts["cp1"].file("/etc/kubernetes/pki/ca.key").mode == 0o600
    assert not hosts["w1"].file("/etc/kubernetes/pki/ca.key").exists
    assert not hosts["cp1"].file("/etc/kubernetes/pki/etcd/ca.key").exists


def test_second_apply_changes_nothing_in_one_round_trip(applied):
    t0 = time.monotonic()
    again = json.loads(_apply_json(applied))
    seconds = time.monotonic() - t0
    assert [h for h in again["hosts"] if h["changes"]] == []
    assert {h["round_trips"] for h in again["hosts"]} == {1}
    print(f"no-op apply of {len(again['hosts'])} hosts: {seconds:.1f}s (first run {applied['first_seconds']:.1f}s)")


def _apply_json(applied) -> str:
    r = kb("apply", "-i", applied["inventory"], "--cluster-dir", applied["cluster_dir"], "--output", "json")
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_plan_shows_a_drifted_file_with_a_diff_and_a_secret_as_digest(applied, root_hosts):
    hosts = root_hosts
    inv, cd = applied["inventory"], applied["cluster_dir"]
    assert kb("plan", "-i", inv, "--cluster-dir", cd).returncode == 0
    hosts["lb1"].run("sudo sed -i 's/timeout client 1h/timeout client 2h/' /etc/haproxy/haproxy.cfg")
    hosts["cp2"].run("echo tampered | sudo tee -a /etc/kubernetes/pki/apiserver.key >/dev/null")
    r = kb("plan", "-i", inv, "--cluster-dir", cd)
    assert r.returncode == 3, r.stdout + r.stderr
    assert "-    timeout client 2h" in r.stdout and "+    timeout client 1h" in r.stdout
    assert "update        /etc/kubernetes/pki/apiserver.key  (sha256 " in r.stdout
    assert "[secret: digest only]" in r.stdout and "PRIVATE KEY" not in r.stdout and "tampered" not in r.stdout
    # plan changed nothing:
    assert "2h" in hosts["lb1"].file("/etc/haproxy/haproxy.cfg").content_string
    fixed = json.loads(_apply_json(applied))
    changed = {(h["host"], c["target"]) for h in fixed["hosts"] for c in h["changes"]}
    assert changed == {("lb1", "/etc/haproxy/haproxy.cfg"), ("cp2", "/etc/kubernetes/pki/apiserver.key")}
    assert kb("plan", "-i", inv, "--cluster-dir", cd).returncode == 0


def _transport(lab, name: str) -> SSHTransport:
    spec = load_inventory(lab.layout.inventory)
    node = spec.node(name)
    return SSHTransport(name, str(node.address), spec.ssh_for(node))


UNIT = "/etc/systemd/system/kbtest-sleeper.service"


def _unit(text: str) -> Artifact:
    body = f"[Unit]\nDescription=kbootstrap engine test ({text})\n\n[Service]\nExecStart=/bin/sleep infinity\n\n" \
           "[Install]\nWantedBy=multi-user.target\n"
    return Artifact(UNIT, body.encode(), restarts=("kbtest-sleeper",))


def _converge(t, unit: Artifact, conf: bytes, apply: bool = True):
    conf_file = Artifact("/etc/kbtest/sleeper.conf", conf, restarts=("kbtest-sleeper",))
    steps = [FilesStep([unit, conf_file]),
             ServicesStep(["kbtest-sleeper"], {"kbtest-sleeper": {UNIT, "/etc/kbtest/sleeper.conf"}})]
    result = run_phases({t.host: t}, [Phase("test", {t.host: steps})], apply=apply)
    assert not result.failed, result.failed[0].error
    return [(c.action, c.target) for c in result.hosts[0].changes]


def test_service_started_once_restarted_only_when_an_input_changes(lab, root_hosts):
    hosts = root_hosts
    t = _transport(lab, "w2")
    h = hosts["w2"]
    start_time = lambda: h.run("systemctl show -p ExecMainStartTimestampMonotonic --value kbtest-sleeper").stdout.strip()  # noqa: E731
    try:
        first = _converge(t, _unit("a"), b"x=1\n")
        assert ("daemon-reload", "systemd") in first and ("enable", "kbtest-sleeper") in first
        assert ("start", "kbtest-sleeper") in first
        assert h.service("kbtest-sleeper").is_running and h.service("kbtest-sleeper").is_enabled
        started = start_time()
        assert _converge(t, _unit("a"), b"x=1\n") == []  # nothing to do: not even a restart
        time.sleep(1)
        assert start_time() == started
        assert _converge(t, _unit("a"), b"x=2\n") == [("update", "/etc/kbtest/sleeper.conf"),
                                                       ("restart", "kbtest-sleeper")]
        assert start_time() != started
        changed_unit = _converge(t, _unit("b"), b"x=2\n")
        assert changed_unit == [("update", UNIT), ("daemon-reload", "systemd"), ("restart", "kbtest-sleeper")]
    finally:
        h.run(f"sudo systemctl disable --now kbtest-sleeper; sudo rm -rf {UNIT} /etc/kbtest; sudo systemctl daemon-reload")
        t.close()


def _inventory_variant(lab, tmp_path, change) -> str:
    data = yaml.safe_load(Path(lab.layout.inventory).read_text())
    for key in ("key", "known_hosts"):
        data["ssh"][key] = str(Path(data["ssh"][key]).expanduser())
    change(data)
    path = tmp_path / "inv.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_each_way_a_host_is_unusable_is_one_clear_line(lab, tmp_path, hosts):
    def run(change, host):
        inv = _inventory_variant(lab, tmp_path, change)
        r = kb("plan", "-i", inv, "--cluster-dir", str(tmp_path / "cd"), "--host", host)
        assert r.returncode == 1 and "Traceback" not in r.stdout + r.stderr, r.stdout + r.stderr
        return next(l for l in r.stdout.splitlines() if "FAILED" in l)

    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    line = run(lambda d: d["ssh"].update(known_hosts=str(empty)), "w1")
    assert "unknown host key for 10.77.0.31" in line and "--accept-new-host-keys" in line
    line = run(lambda d: d["ssh"].update(user="nobody2"), "w1")
    assert line.startswith("w1 [files] FAILED: w1: authentication failed for nobody2@10.77.0.31")
    other_key = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other_key)], check=True)
    line = run(lambda d: d["ssh"].update(key=str(other_key)), "w1")
    assert "authentication failed for vagrant@10.77.0.31" in line
    line = run(lambda d: d["nodes"].append({"name": "ghost", "address": "10.77.0.99", "roles": ["worker"]}), "ghost")
    assert "ghost: cannot reach 10.77.0.99:22 over SSH" in line
    # A user that may log in but has no sudo rights.
    h = hosts["w1"]
    h.run("sudo useradd -m nosudo && sudo mkdir -p ~nosudo/.ssh && sudo cp ~vagrant/.ssh/authorized_keys ~nosudo/.ssh/ "
          "&& sudo chown -R nosudo: ~nosudo/.ssh")
    try:
        line = run(lambda d: d["ssh"].update(user="nosudo"), "w1")
        assert "sudo needs a password for nosudo" in line
    finally:
        h.run("sudo userdel -r nosudo")


@pytest.mark.lab_disruptive
def test_a_host_down_mid_run_then_back_converges(lab, applied, root_hosts):
    """w2 is stopped: apply fails for w2 alone with a clear line, the others converge; w2 back, re-run converges."""
    inv, cd = applied["inventory"], applied["cluster_dir"]
    hosts = root_hosts
    for node in ("w1", "w2"):
        hosts[node].run("sudo rm -f /etc/crictl.yaml /var/lib/kubelet/config.yaml")
    container = f"{lab.layout.cluster}-w2"
    subprocess.run(["lxc-stop", "-n", container, "-k"], check=True)
    try:
        r = kb("apply", "-i", inv, "--cluster-dir", cd, "--output", "json")
        result = json.loads(r.stdout)
        by_host = {h["host"]: h for h in result["hosts"]}
        assert r.returncode == 1
        assert "cannot reach 10.77.0.32:22" in by_host["w2"]["error"]
        assert {c["target"] for c in by_host["w1"]["changes"]} == {"/etc/crictl.yaml", "/var/lib/kubelet/config.yaml"}
    finally:
        subprocess.run(["lxc-start", "-n", container], check=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        r = kb("apply", "-i", inv, "--cluster-dir", cd, "--output", "json")
        if r.returncode == 0:
            break
        time.sleep(2)
    assert r.returncode == 0, r.stdout + r.stderr
    again = json.loads(_apply_json(applied))
    assert [h for h in again["hosts"] if h["changes"]] == []
    leftovers = hosts["w2"].run("sudo find / -xdev -name '.*.kbtmp-*' 2>/dev/null").stdout.strip()
    assert leftovers == ""
