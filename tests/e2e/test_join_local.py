"""`kbootstrap join --local` on the lab, for real: a worker that joins itself, like `kubeadm join`.

Layout `lab-local`: lab-mini's shape (a load balancer, a stacked control plane, worker lw1 joined over SSH) plus lw2,
listed with `join: local`. The controller runs `init`, `join` and `token create --print-join-command`; the
test then acts as the operator on lw2's console (lxc-attach, as root): it copies kbootstrap (pip --target)
and the bundle there and runs the printed command. SSH from the controller to lw2 is never used by kbootstrap.

Proven: refusals (wrong pin, wrong secret, unknown token, a node the inventory joins over SSH) exit 2 and
leave the node untouched; the join ends with lw2 Ready; its serving certificate came by CSR, approved by
kbootstrap-csr-approver and signed by the cluster CA (the apiserver reaches lw2's kubelet with its CA check);
kube-proxy on lw2 runs as the node and programs the Services; lw2 holds no CA key, no shared kube-proxy key
and no token; a pod on lw2 answers from lw1 across the pod routes; a re-run without a token changes nothing
and restarts nothing; the controller's commands never connect to lw2; `verify` checks lw2 through the API;
`reset --local` undoes the join on lw2 (a second one changes nothing) and lw2 joins again with a new token;
kbootstrap-node-sync gives the joined lw2 the route and hosts entry of a worker added to the inventory later.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from kbootstrap.artifacts.build import default_bundle_dir
from kbootstrap.lab import lifecycle
from kbootstrap.lab.layout import REPO, load_layout
from kbootstrap.model.spec import load_inventory
from tests.conftest import kb, kubectl

pytestmark = [pytest.mark.lab, pytest.mark.bundle]

BUNDLE = default_bundle_dir("1.34.2")
KUBECTL = BUNDLE / "kubectl" / "kubectl"
INVENTORY = REPO / "inventories" / "lab-local.yaml"
NODE = "lw2"
NODE_PY = "/opt/kbootstrap"  # kbootstrap and its dependencies on lw2 (pip --target), as an operator would copy them
NODE_BUNDLE = "/opt/bundle"


class Lab:
    def __init__(self, home: Path, tools):
        _, self.testinfra_host, self.timings = tools
        self.home = home
        self.layout = load_layout(INVENTORY)
        self.spec = load_inventory(INVENTORY)
        self.admin_conf = home / "clusters" / self.spec.cluster.name / "admin.conf"
        self.container = self.layout.container(self.layout.node(NODE))

    def kb(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
        return kb(*args, home=self.home, timeout=timeout)

    def kubectl(self, *args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        return kubectl(KUBECTL, self.admin_conf, *args, check=check, timeout=timeout)

    def on_node(self, command: str, stdin: bytes | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
        """A root shell on lw2's console (not SSH: kbootstrap's controller never reaches this node)."""
        return subprocess.run(["lxc-attach", "-n", self.container, "--clear-env", "--",
                               "env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                               "sh", "-c", command], input=stdin, capture_output=True, timeout=timeout)

    def kb_on_node(self, *args: str) -> subprocess.CompletedProcess:
        """kbootstrap as the operator runs it on lw2: the copy there, as root, no inventory."""
        p = self.on_node(f"cd / && PYTHONPATH={NODE_PY} python3 -m kbootstrap {shlex.join(args)}")
        return subprocess.CompletedProcess(p.args, p.returncode, p.stdout.decode(), p.stderr.decode())

    def join_local(self, *args: str) -> subprocess.CompletedProcess:
        return self.kb_on_node("join", "--local", *args)

    def host(self, name: str):
        return self.testinfra_host(self.layout, self.layout.node(name), sudo=True)


def _copy_tree(lab: Lab, src: Path, dest: str) -> None:
    tar = subprocess.Popen(["tar", "-C", str(src), "-cf", "-", "."], stdout=subprocess.PIPE)
    p = subprocess.run(["lxc-attach", "-n", lab.container, "--", "sh", "-c", f"mkdir -p {dest} && tar -C {dest} -xf -"],
                       stdin=tar.stdout, capture_output=True, timeout=300)
    tar.stdout.close()
    assert tar.wait() == 0 and p.returncode == 0, p.stderr


@pytest.fixture(scope="module")
def lab(tmp_path_factory, lab_tools):
    lab_tools[0]("lxc")
    if not (BUNDLE / "manifest.json").exists():
        pytest.fail(f"no lab bundle at {BUNDLE}: run lab/build-bundle.sh 1.34.2")
    home = tmp_path_factory.mktemp("home-lab-local")
    lab = Lab(home, lab_tools)
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    lifecycle.down(lab.layout, log=log)
    try:
        lifecycle.up(lab.layout, "lxc", log=log)
        # The cluster is made without lw2 (test_listing_... adds it, as an operator would on a running cluster).
        before = home / "lab-local-without-lw2.yaml"
        doc = yaml.safe_load(INVENTORY.read_text())
        before.write_text(yaml.safe_dump({**doc, "nodes": [n for n in doc["nodes"] if n["name"] != NODE]}))
        for command in (["init", "-i", str(before)], ["join", "-i", str(before)]):
            started = time.monotonic()
            p = lab.kb(*command)
            assert p.returncode == 0, p.stdout + p.stderr
            lab.timings.append(f"lab-local: {command[0]} {time.monotonic() - started:.0f}s")
        # The operator's copy of kbootstrap for the node: the package and its dependencies, no inventory.
        payload = home / "node-python"
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-compile", "--target", str(payload),
                        str(REPO)], check=True, capture_output=True, timeout=600)
        _copy_tree(lab, payload, NODE_PY)
        _copy_tree(lab, BUNDLE, NODE_BUNDLE)
        yield lab
    finally:
        if not os.environ.get("KB_KEEP_LAB"):
            lifecycle.down(lab.layout, log=log)


def _join_command(lab: Lab, ttl: str = "10m") -> list[str]:
    p = lab.kb("token", "create", "-i", str(INVENTORY), "--ttl", ttl, "--print-join-command")
    assert p.returncode == 0, p.stderr
    words = shlex.split(p.stdout.strip())
    assert words[:4] == ["kbootstrap", "join", "--local", "--server"], p.stdout
    return words[3:]  # --server URL --token T --ca-cert-hash PIN


def _arg(words: list[str], flag: str) -> str:
    return words[words.index(flag) + 1]


def _untouched(lab: Lab) -> None:
    p = lab.on_node("ls -d /etc/kubernetes /var/lib/kubelet /var/lib/kbootstrap /etc/systemd/system/kubelet.service "
                    "/etc/containerd 2>/dev/null; systemctl is-active kubelet")
    assert p.stdout.decode().split() == ["inactive"], p.stdout.decode()


def _changes(p: subprocess.CompletedProcess) -> dict[str, list[str]]:
    assert p.returncode == 0, p.stdout + p.stderr
    return {h["host"]: [f"{c['action']} {c['target']}" for c in h["changes"] if c["action"] != "wait"]
            for h in json.loads(p.stdout)["hosts"]}


def _verify(lab: Lab) -> tuple[int, dict[str, dict[str, bool]]]:
    """`kbootstrap verify` on the controller: its exit code and each host's rows (check -> passed)."""
    p = lab.kb("verify", "-i", str(INVENTORY), "--output", "json", timeout=300)
    rows: dict[str, dict[str, bool]] = {}
    for c in json.loads(p.stdout)["checks"]:
        rows.setdefault(c["host"], {})[c["check"]] = c["ok"]
    return p.returncode, rows


LOCAL_ROWS = {"node Ready (API)", "kubelet through the API server"}


def test_listing_the_local_worker_updates_the_cluster_and_never_connects_to_it(lab):
    """lw2 added to the inventory of the running cluster: `init` and `join` publish its profile, start the
    approver and give every node its route and hosts entry, without ever connecting to lw2."""
    p = lab.kb("join", "-i", str(INVENTORY), "--host", NODE)
    assert p.returncode == 2 and "join --local" in p.stderr, p.stderr
    init = _changes(lab.kb("init", "-i", str(INVENTORY), "--output", "json"))
    join = _changes(lab.kb("join", "-i", str(INVENTORY), "--output", "json"))
    assert NODE not in init and NODE not in join and "lcp1" in init and "lw1" in join
    assert any(c.startswith("run ") and " apply --server-side " in c
               and "-f /etc/kubernetes/addons/kbootstrap-local-join.yaml" in c for c in init["lcp1"]), init["lcp1"]
    assert "start kbootstrap-csr-approver" in init["lcp1"], init["lcp1"]
    lw1 = lab.host("lw1")
    assert lw1.run("getent hosts lw2").stdout.split()[0] == "10.77.0.244"
    subnet = str(lab.spec.pod_subnets[NODE])
    assert f"{subnet} via 10.77.0.244" in lw1.run("ip route show").stdout
    # A second init and join change nothing.
    assert not any(_changes(lab.kb("init", "-i", str(INVENTORY), "--output", "json")).values())
    assert not any(_changes(lab.kb("join", "-i", str(INVENTORY), "--output", "json")).values())


def test_refusals_leave_the_node_untouched(lab):
    words = _join_command(lab)
    server, token, pin = _arg(words, "--server"), _arg(words, "--token"), _arg(words, "--ca-cert-hash")
    artifacts = ["--artifacts", NODE_BUNDLE]
    wrong_pin = "sha256:" + ("0" * 64 if pin[-1] != "0" else "1" * 64)
    cases = [
        (["--server", server, "--token", token, "--ca-cert-hash", wrong_pin], "--ca-cert-hash says"),
        (["--server", server, "--token", token[:7] + ("a" if token[7] != "a" else "b") + token[8:],
          "--ca-cert-hash", pin], "does not match cluster-info's signature"),
        (["--server", server, "--token", "zzzzzz.0123456789abcdef", "--ca-cert-hash", pin], "unknown to the cluster"),
        (["--server", server, "--token", token, "--ca-cert-hash", pin, "--node-name", "lw1"], "join: ssh"),
        (["--server", server, "--token", "not-a-token", "--ca-cert-hash", pin], "--token: expected"),
    ]
    for args, message in cases:
        p = lab.join_local(*args, *artifacts)
        assert p.returncode == 2 and message in p.stderr, (args, p.stdout, p.stderr)
        assert token.split(".")[1] not in p.stdout + p.stderr  # the secret is never printed
    _untouched(lab)


def test_join_local_makes_a_ready_node_without_any_cluster_key(lab):
    words = _join_command(lab)
    started = time.monotonic()
    p = lab.join_local(*words, "--artifacts", NODE_BUNDLE)
    seconds = time.monotonic() - started
    assert p.returncode == 0, p.stdout + p.stderr
    assert _arg(words, "--token").split(".")[1] not in p.stdout + p.stderr
    lab.timings.append(f"lab-local: join --local {seconds:.0f}s")
    print(f"\njoin --local of {NODE}: {seconds:.1f}s", flush=True)

    node = json.loads(lab.kubectl("get", "node", NODE, "-o", "json").stdout)
    assert {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"] == "True"
    # The serving certificate: requested by the kubelet, approved by the approver, signed by the cluster CA.
    csrs = json.loads(lab.kubectl("get", "csr", "-o", "json").stdout)["items"]
    serving = [c for c in csrs if c["spec"]["signerName"] == "kubernetes.io/kubelet-serving"
               and c["spec"]["username"] == f"system:node:{NODE}"]
    assert serving and all(any(cond["type"] == "Approved" for cond in c["status"].get("conditions", []))
                           for c in serving), serving
    approver_log = lab.host("lcp1").run("journalctl -u kbootstrap-csr-approver --no-pager").stdout
    assert "approved" in approver_log and NODE in approver_log, approver_log
    issuer = lab.on_node("openssl x509 -noout -issuer -in /var/lib/kubelet/pki/kubelet-server-current.pem")
    assert b"CN = kubernetes" in issuer.stdout, issuer
    # kube-apiserver reaches lw2's kubelet and verifies it against the cluster CA (--kubelet-certificate-authority).
    assert lab.kubectl("get", "--raw", f"/api/v1/nodes/{NODE}/proxy/healthz").stdout.strip() == "ok"
    # verify passes, lw2 checked through the API only (no SSH row), the approver checked on the control plane.
    code, rows = _verify(lab)
    assert code == 0, rows
    assert rows[NODE] == dict.fromkeys(LOCAL_ROWS, True), rows[NODE]
    assert rows["lcp1"]["service kbootstrap-csr-approver"] and "ssh and sudo" in rows["lw1"]
    # The token is of no further use to lw2: the operator deletes it.
    token_id = _arg(words, "--token").split(".")[0]
    p = lab.kb("token", "delete", token_id, "-i", str(INVENTORY))
    assert p.returncode == 0 and f"token {token_id}: deleted" in p.stderr, p.stderr
    assert lab.kubectl("get", "secret", "-n", "kube-system", f"bootstrap-token-{token_id}", check=False).returncode == 1
    # Nothing of the cluster's keys or the token on the node.
    assert lab.on_node("ls /etc/kubernetes/pki").stdout.decode().split() == ["ca.crt"]
    assert lab.on_node("test -e /etc/kubernetes/bootstrap-kubelet.conf").returncode == 1  # removed after the join
    assert lab.on_node("grep -rl 'token' /etc/kubernetes /var/lib/kubelet").stdout == b""
    # kube-proxy runs as the node and has programmed the cluster's Services.
    proxy = lab.on_node("systemctl is-active kube-proxy; iptables -t nat -S KUBE-SERVICES; "
                        "journalctl -u kube-proxy --no-pager").stdout.decode()
    assert proxy.startswith("active") and "default/kubernetes:https" in proxy, proxy
    assert "forbidden" not in proxy.lower(), proxy


def test_a_pod_on_the_local_worker_runs_and_answers_across_nodes(lab):
    manifest = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "on-lw2", "namespace": "default"},
        "spec": {"nodeName": NODE, "containers": [{"name": "pause", "image": lab.spec.sandbox_image}]},
    }
    subprocess.run([str(KUBECTL), "--kubeconfig", str(lab.admin_conf), "apply", "-f", "-"],
                   input=json.dumps(manifest), text=True, check=True, capture_output=True)
    lab.kubectl("wait", "pod/on-lw2", "--for=condition=Ready", "--timeout=120s", timeout=150)
    pod = json.loads(lab.kubectl("get", "pod", "on-lw2", "-o", "json").stdout)
    ip = pod["status"]["podIP"]
    assert ip and __import__("ipaddress").ip_address(ip) in lab.spec.pod_subnets[NODE]
    # From lw1 (joined over SSH) to the pod on lw2, over the pod routes: the pod's own stack answers (it
    # refuses the port: ECONNREFUSED, 111), where a missing route would time out.
    probe = f"import socket; s = socket.socket(); s.settimeout(3); print(s.connect_ex(({ip!r}, 9)))"
    assert lab.host("lw1").run(f"python3 -c {shlex.quote(probe)}").stdout.strip() == "111"
    # kubectl logs goes through lw2's kubelet, on its CSR-issued serving certificate.
    assert lab.kubectl("logs", "on-lw2", check=False).returncode == 0


def test_second_join_local_needs_no_token_and_changes_nothing(lab):
    words = _join_command(lab)
    before = lab.on_node("systemctl show -p ActiveEnterTimestamp kubelet kube-proxy containerd").stdout
    args = ["--server", _arg(words, "--server"), "--ca-cert-hash", _arg(words, "--ca-cert-hash")]
    p = lab.join_local(*args, "--artifacts", NODE_BUNDLE, "--output", "json")
    assert p.returncode == 0, p.stdout + p.stderr
    changes = [c for h in json.loads(p.stdout)["hosts"] for c in h["changes"]]
    assert changes == [], changes
    assert lab.on_node("systemctl show -p ActiveEnterTimestamp kubelet kube-proxy containerd").stdout == before
    # The controller's second init still leaves everything (lw2 included, through the profile) as it is.
    p = lab.kb("init", "-i", str(INVENTORY), "--output", "json")
    assert p.returncode == 0 and not [c for h in json.loads(p.stdout)["hosts"] for c in h["changes"]
                                      if c["action"] != "wait"], p.stdout


def test_reset_local_undoes_the_join_and_the_node_joins_again(lab):
    p = lab.kb_on_node("reset", "--local")
    assert p.returncode == 2 and "--yes" in p.stderr, p.stderr
    p = lab.kb_on_node("reset", "--local", "--yes")
    assert p.returncode == 0, p.stdout + p.stderr
    left = lab.on_node("systemctl is-active kubelet kube-proxy containerd; "
                       "ls -d /etc/kubernetes /var/lib/kubelet /etc/cni/net.d/10-kbootstrap.conflist 2>/dev/null; "
                       "ip link show cni0 2>/dev/null; iptables-save | grep -c -e KUBE- -e CNI- || true").stdout.decode()
    assert left.split() == ["inactive", "inactive", "inactive", "0"], left
    p = lab.kb_on_node("reset", "--local", "--yes", "--output", "json")
    assert p.returncode == 0 and [c for h in json.loads(p.stdout)["hosts"] for c in h["changes"]] == [], p.stdout
    # verify sees it: kube-apiserver can no longer reach lw2's kubelet; every other host still passes.
    code, rows = _verify(lab)
    assert code == 1 and rows[NODE]["kubelet through the API server"] is False, rows
    assert all(ok for host, r in rows.items() if host != NODE for ok in r.values()), rows
    # As after `kubeadm reset`, the Node object stays until the operator deletes it; then lw2 joins anew.
    lab.kubectl("delete", "node", NODE, "--wait=true", timeout=60)
    words = _join_command(lab)
    p = lab.join_local(*words, "--artifacts", NODE_BUNDLE)
    assert p.returncode == 0, p.stdout + p.stderr
    node = json.loads(lab.kubectl("get", "node", NODE, "-o", "json").stdout)
    assert {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"] == "True"
    assert _verify(lab)[0] == 0


def _sync(lab: Lab) -> tuple[int, str]:
    """Start kbootstrap-node-sync.service on lw2, as its timer does: its exit code and this run's journal."""
    p = lab.on_node("systemctl start kbootstrap-node-sync.service", timeout=300)
    run = lab.on_node("systemctl show -p InvocationID --value kbootstrap-node-sync.service").stdout.decode().strip()
    journal = lab.on_node(f"journalctl _SYSTEMD_INVOCATION_ID={run} --no-pager -o cat").stdout.decode()
    return p.returncode, journal


def test_node_sync_gives_the_joined_worker_a_later_workers_route(lab):
    """kbootstrap-node-sync re-runs the join on lw2: a worker added to the inventory after lw2 joined (lw3,
    never booted: a route to it is harmless) gets its route and hosts entry on lw2 without anyone on lw2."""
    assert lab.on_node("systemctl is-enabled kbootstrap-node-sync.timer; systemctl is-active kbootstrap-node-sync.timer"
                       ).stdout.decode().split() == ["enabled", "active"]
    grown = lab.home / "lab-local-with-lw3.yaml"
    doc = yaml.safe_load(INVENTORY.read_text())
    doc["nodes"].append({"name": "lw3", "address": "10.77.0.245", "roles": ["worker"], "join": "local"})
    grown.write_text(yaml.safe_dump(doc))
    subnet = str(load_inventory(grown).pod_subnets["lw3"])
    for command in ("init", "join"):
        p = lab.kb(command, "-i", str(grown))
        assert p.returncode == 0, p.stdout + p.stderr
    assert f"{subnet} via 10.77.0.245" not in lab.on_node("ip route show").stdout.decode()

    before = lab.on_node("systemctl show -p ActiveEnterTimestamp kubelet kube-proxy containerd").stdout
    rc, journal = _sync(lab)
    assert rc == 0 and f"{NODE}: already joined" in journal, journal
    assert f"{subnet} via 10.77.0.245" in lab.on_node("ip route show").stdout.decode(), journal
    assert lab.on_node("getent hosts lw3").stdout.decode().split()[0] == "10.77.0.245"
    # Only the routes and hosts changed: the kubelet, kube-proxy and containerd kept running.
    assert lab.on_node("systemctl show -p ActiveEnterTimestamp kubelet kube-proxy containerd").stdout == before
    env = lab.on_node("cat /etc/kubernetes/kbootstrap/node-sync.env").stdout.decode()
    assert f'KBOOTSTRAP_ARTIFACTS="{NODE_BUNDLE}"' in env and "token" not in env.lower(), env
    # A second sync finds nothing to do.
    started = time.monotonic()
    rc, journal = _sync(lab)
    lab.timings.append(f"lab-local: node sync with nothing to do {time.monotonic() - started:.1f}s")
    assert rc == 0 and "1 host(s), 0 change(s) made" in journal, journal
    # reset --local takes the timer away with everything else.
    assert lab.kb_on_node("reset", "--local", "--yes").returncode == 0
    left = lab.on_node("systemctl is-active kbootstrap-node-sync.timer; ls /etc/systemd/system/kbootstrap-node-sync.* "
                       "/etc/systemd/system/timers.target.wants/kbootstrap-node-sync.timer 2>/dev/null").stdout
    assert left.decode().split() == ["inactive"], left
