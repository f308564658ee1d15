"""The user's journey on the lab, for real: `kbootstrap init`, then `kbootstrap join`, ending with a highly
available cluster — both topologies (stacked etcd with static pods, external etcd with systemd services).

Proven per layout: every node Ready through the VIP, etcd healthy over mTLS with every member, a Deployment's
pods scheduled and running on workers, a second init and join change nothing, the second join touches only
the new worker (both join times printed), a control plane down keeps the API and etcd quorum, the active
load balancer down moves the VIP (failover time printed).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kbootstrap.artifacts.build import default_bundle_dir
from kbootstrap.lab import lifecycle
from kbootstrap.lab.layout import REPO, load_layout
from kbootstrap.phases.services import etcd_health
from kbootstrap.spec import ControlPlaneForm, Role, load_inventory

pytestmark = [pytest.mark.lab, pytest.mark.bundle]

LAYOUTS = [s for s in os.environ.get("KB_CLUSTER_LAYOUTS", "lab-stacked,lab-external").split(",") if s]
BUNDLE = default_bundle_dir("1.34.2")
KUBECTL = BUNDLE / "kubectl" / "kubectl"


class Cluster:
    def __init__(self, name: str, home: Path, tools):
        _, self.testinfra_host, self.timings = tools
        self.inventory = REPO / "inventories" / f"{name}.yaml"
        self.layout = load_layout(self.inventory)
        self.spec = load_inventory(self.inventory)
        self.home = home
        self.admin_conf = home / "clusters" / self.spec.cluster.name / "admin.conf"

    def kb(self, *args: str, timeout: float = 900) -> tuple[int, dict | None, str]:
        """Run the kbootstrap CLI as a user would; JSON output parsed when asked for."""
        env = {**os.environ, "KBOOTSTRAP_HOME": str(self.home)}
        p = subprocess.run([sys.executable, "-m", "kbootstrap", *args, "-i", str(self.inventory)],
                           capture_output=True, text=True, env=env, timeout=timeout)
        data = json.loads(p.stdout) if "--output" in args and p.stdout.strip().startswith("{") else None
        return p.returncode, data, p.stdout + p.stderr

    def kubectl(self, *args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run([str(KUBECTL), "--kubeconfig", str(self.admin_conf), "--request-timeout", "5s", *args],
                              capture_output=True, text=True, check=check, timeout=timeout)

    def host(self, name: str, sudo: bool = True):
        return self.testinfra_host(self.layout, self.layout.node(name), sudo=sudo)

    def lxc(self, action: str, node: str) -> None:
        subprocess.run([f"lxc-{action}", "-n", self.layout.container(self.layout.node(node))], check=True,
                       capture_output=True, timeout=120)


def changed_hosts(data: dict, ignore_waits: bool = True) -> set[str]:
    return {h["host"] for h in data["hosts"]
            if any(not (ignore_waits and c["action"] == "wait") for c in h["changes"])}


def wait_for(fn, timeout: float, what: str, interval: float = 1.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            result = fn()
            if result:
                return result
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
            last = e
        time.sleep(interval)
    pytest.fail(f"{what}: not within {timeout:.0f}s ({getattr(last, 'stderr', last)})")


@pytest.fixture(scope="module", params=LAYOUTS)
def cluster(request, tmp_path_factory, lab_tools):
    lab_tools[0]("lxc")
    if not (BUNDLE / "manifest.json").exists():
        pytest.fail(f"no lab bundle at {BUNDLE}: run lab/build-bundle.sh 1.34.2")
    # KB_CLUSTER_HOME keeps the cluster directory (PKI, admin.conf) somewhere known; KB_KEEP_LAB=1 leaves the
    # last layout's cluster running after the tests (to look around); both are for debugging.
    home = Path(os.environ["KB_CLUSTER_HOME"]) if os.environ.get("KB_CLUSTER_HOME") else \
        tmp_path_factory.mktemp(f"home-{request.param}")
    c = Cluster(request.param, home, lab_tools)
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    lifecycle.down(c.layout, log=log)
    try:
        lifecycle.up(c.layout, "lxc", log=log)
        yield c
    finally:
        if not os.environ.get("KB_KEEP_LAB"):
            lifecycle.down(c.layout, log=log)


def test_init_dry_run_changes_nothing(cluster):
    rc, data, out = cluster.kb("init", "--dry-run", "--output", "json")
    assert rc == 3, out  # changes pending
    assert data["applied"] is False and sum(len(h["changes"]) for h in data["hosts"]) > 0
    lb = cluster.spec.loadbalancers[0].name
    assert not cluster.host(lb).file("/etc/haproxy").exists  # not even the package went on


def test_init_brings_the_control_plane_up(cluster):
    t0 = time.monotonic()
    rc, data, out = cluster.kb("init", "--output", "json")
    cluster.timings.append(f"{cluster.spec.cluster.name}: init (first run) in {time.monotonic() - t0:.1f} s")
    assert rc == 0, out
    nodes = json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    names = {n["metadata"]["name"] for n in nodes}
    assert names == {n.name for n in cluster.spec.control_planes}
    for n in nodes:
        assert {c["type"]: c["status"] for c in n["status"]["conditions"]}["Ready"] == "True", n["metadata"]["name"]
        assert "node-role.kubernetes.io/control-plane" in n["metadata"]["labels"]
    # The kubeconfig on the controller talks to the VIP (or the single load balancer).
    assert cluster.spec.api_server_url in cluster.admin_conf.read_text()


def test_join_first_worker_then_the_rest_touches_only_the_new_one(cluster):
    workers = [n.name for n in cluster.spec.workers]
    t0 = time.monotonic()
    rc, data, out = cluster.kb("join", "--host", workers[0], "--output", "json")
    first = time.monotonic() - t0
    assert rc == 0, out
    assert changed_hosts(data) == {workers[0]}
    t0 = time.monotonic()
    rc, data, out = cluster.kb("join", "--output", "json")
    rest = time.monotonic() - t0
    assert rc == 0, out
    assert changed_hosts(data) == set(workers[1:])  # the joined worker and the control planes are untouched
    cluster.timings.append(f"{cluster.spec.cluster.name}: join {workers[0]} in {first:.1f} s; "
                   f"join again ({', '.join(workers[1:]) or 'nothing new'}) in {rest:.1f} s")
    ready = cluster.kubectl("get", "nodes", "-o", "jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=='Ready')].status} {end}").stdout
    assert sorted(ready.split()) == sorted(f"{n.name}=True" for n in cluster.spec.kubelet_nodes)
    # The token existed only during the join.
    tokens = cluster.kubectl("get", "secrets", "-n", "kube-system", "--field-selector",
                             "type=bootstrap.kubernetes.io/token", "-o", "name").stdout
    assert tokens.strip() == ""
    for w in workers:
        assert not cluster.host(w).file("/etc/kubernetes/bootstrap-kubelet.conf").exists


def _start_times(cluster) -> dict[str, str]:
    """Each kbootstrap-started service's start time, per host (a restart would change it)."""
    units = cluster.spec.cluster.control_plane_form is ControlPlaneForm.SYSTEMD
    services = {n.name: (["haproxy", "keepalived"] if n.has(Role.LOADBALANCER) else [])
                + (["etcd"] if cluster.spec.is_etcd_member(n) and (units or not n.has(Role.CONTROL_PLANE)) else [])
                + (["kube-apiserver", "kube-controller-manager", "kube-scheduler"]
                   if units and n.has(Role.CONTROL_PLANE) else [])
                + (["containerd", "kubelet", "kube-proxy"] if n in cluster.spec.kubelet_nodes else [])
                for n in cluster.spec.nodes}
    return {f"{h}/{s}": cluster.host(h).check_output(f"systemctl show -p ExecMainStartTimestampMonotonic --value {s}")
            for h, names in services.items() for s in names}


def test_second_init_and_join_change_nothing(cluster):
    before = _start_times(cluster)
    for command in ("init", "join"):
        rc, data, out = cluster.kb(command, "--output", "json")
        assert rc == 0, out
        assert sum(len(h["changes"]) for h in data["hosts"]) == 0, out
        assert all(h["round_trips"] <= 2 for h in data["hosts"]), [(h["host"], h["round_trips"]) for h in data["hosts"]]
    assert _start_times(cluster) == before  # not even a restart


def test_pods_are_scheduled_and_run_on_workers(cluster):
    manifest = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "probe", "namespace": "default"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "probe"}},
                 "template": {"metadata": {"labels": {"app": "probe"}},
                              "spec": {"containers": [{"name": "pause", "image": cluster.spec.sandbox_image}]}}},
    }
    subprocess.run([str(KUBECTL), "--kubeconfig", str(cluster.admin_conf), "apply", "-f", "-"],
                   input=json.dumps(manifest), text=True, check=True, capture_output=True)
    cluster.kubectl("rollout", "status", "deployment/probe", "--timeout=120s", timeout=150)
    pods = json.loads(cluster.kubectl("get", "pods", "-l", "app=probe", "-o", "json").stdout)["items"]
    workers = {n.name for n in cluster.spec.workers}
    assert pods and all(p["spec"]["nodeName"] in workers for p in pods)  # control planes are tainted
    assert all(p["status"]["phase"] == "Running" and p["status"]["podIP"] for p in pods)


def test_etcd_is_healthy_with_every_member_over_mtls(cluster):
    member = cluster.spec.etcd_members[0]
    h = cluster.host(member.name)
    argv = etcd_health(member)
    endpoints = ",".join(f"https://{m.address}:2379" for m in cluster.spec.etcd_members)
    argv[argv.index("--endpoints") + 1] = endpoints
    out = h.run(" ".join(argv))
    assert out.rc == 0, out.stderr
    assert out.stdout.count("is healthy") == len(cluster.spec.etcd_members), out.stdout
    # Without a client certificate the members refuse.
    no_cert = h.run(f"/usr/local/bin/etcdctl --endpoints https://{member.address}:2379 "
                    "--cacert /etc/kubernetes/pki/etcd/ca.crt --command-timeout 3s endpoint health")
    assert no_cert.rc != 0


def test_api_and_etcd_survive_a_control_plane_down(cluster):
    down = cluster.spec.control_planes[-1]
    cluster.lxc("stop", down.name)
    try:
        wait_for(lambda: cluster.kubectl("get", "--raw", "/readyz").returncode == 0, 60,
                 f"API through the load balancer with {down.name} down")
        cluster.kubectl("get", "nodes")
        if cluster.spec.is_etcd_member(down):  # stacked: quorum with 2 of 3
            member = next(m for m in cluster.spec.etcd_members if m.name != down.name)
            out = cluster.host(member.name).run(" ".join(etcd_health(member)))
            assert out.rc == 0 and "is healthy" in out.stdout, out.stderr
        # Writes still go through (etcd quorum).
        cluster.kubectl("create", "configmap", f"written-without-{down.name}", "--from-literal=k=v")
    finally:
        cluster.lxc("start", down.name)


def test_vip_moves_when_the_active_load_balancer_stops(cluster):
    if cluster.spec.load_balancer.vip is None:
        pytest.skip("one load balancer, no VIP")
    vip = str(cluster.spec.load_balancer.vip)
    holder = next(n for n in cluster.spec.loadbalancers if vip in cluster.host(n.name).check_output("ip -4 addr show"))
    cluster.kubectl("get", "--raw", "/readyz")
    t0 = time.monotonic()
    cluster.lxc("stop", holder.name)
    try:
        wait_for(lambda: subprocess.run([str(KUBECTL), "--kubeconfig", str(cluster.admin_conf), "--request-timeout",
                                         "1s", "get", "--raw", "/readyz"], capture_output=True).returncode == 0,
                 30, "API through the VIP after the active load balancer stopped", interval=0.2)
        failover = time.monotonic() - t0
        cluster.timings.append(f"{cluster.spec.cluster.name}: VIP failover {holder.name} -> peer, API answering in {failover:.1f} s")
        other = next(n for n in cluster.spec.loadbalancers if n.name != holder.name)
        assert vip in cluster.host(other.name).check_output("ip -4 addr show")
    finally:
        cluster.lxc("start", holder.name)


def _verify(cluster) -> tuple[int, dict | None, str]:
    return cluster.kb("verify", "--output", "json", timeout=300)


def test_verify_passes_then_fails_after_reset_and_init_brings_the_cluster_back(cluster):
    # The HA tests restarted a control plane and a load balancer: wait until everything is back.
    deadline = time.monotonic() + 180
    while True:
        rc, data, out = _verify(cluster)
        if rc == 0 or time.monotonic() > deadline:
            break
        time.sleep(5)
    assert rc == 0, out
    rc, _, out = cluster.kb("reset", "--yes", "--output", "json")
    assert rc == 0, out
    rc, _, out = cluster.kb("reset", "--yes", "--output", "json")
    assert rc == 0 and '"action"' not in out, out  # a second reset finds nothing to undo
    rc, data, out = _verify(cluster)
    assert rc == 1, out
    for lb in cluster.spec.loadbalancers:  # the VIP is gone with keepalived
        assert str(cluster.spec.load_balancer.vip or "none") not in cluster.host(lb.name).check_output("ip -4 addr show")
    for n in cluster.spec.kubelet_nodes:
        h = cluster.host(n.name)
        assert not h.file("/etc/kubernetes").exists and not h.file("/etc/cni/net.d/10-kbootstrap.conflist").exists
        assert "KUBE-" not in h.check_output("iptables-save")
    t0 = time.monotonic()
    for command in ("init", "join"):
        rc, _, out = cluster.kb(command, "--output", "json")
        assert rc == 0, out
    cluster.timings.append(f"{cluster.spec.cluster.name}: init + join after reset in {time.monotonic() - t0:.1f} s")
    rc, data, out = _verify(cluster)
    assert rc == 0, out
