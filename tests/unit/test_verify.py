"""`kbootstrap verify` without hosts: which checks each role gets, the judgements over host facts, the
report (table, JSON, exit code), and that an unreachable host is a failed row, not a traceback."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import replace
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from kbootstrap.errors import PKIError, TransportError
from kbootstrap.model.artifact import Artifact
from kbootstrap.model.spec import KeyAlgorithm, build_spec
from kbootstrap.pki.issue import KeyCert, Wanted, make_ca, new_key, sign
from kbootstrap.pki.table import Usage
from kbootstrap.render import RenderContext
from kbootstrap.transport.base import CommandResult, RoundTrips
from kbootstrap.transport.remote import FileFact
from kbootstrap.verify import checks as C
from kbootstrap.verify.output import checks_json, checks_table, exit_code, print_checks, summary

INVENTORIES = Path(__file__).resolve().parents[2] / "inventories"


def probes(data: dict) -> dict[str, list[str]]:
    spec = build_spec(data)
    ctx = RenderContext(spec, None, None)  # type: ignore[arg-type] - the plan needs the spec only
    return {n.name: [p.what for p in C.host_probes(ctx, n)] for n in spec.nodes}


NODE = ["service containerd", "service kubelet", "service kube-proxy", "service kbootstrap-pod-routes",
        "port 10250 listening", "kubelet serving certificate"]
FILES = "files (exist, mode, sha256)"


def test_stacked_static_pod_checks_per_role(stacked_data):
    p = probes(stacked_data)
    assert p["lb1"] == [FILES, "service haproxy", "port 6443 listening", "service keepalived",
                        "keepalived VIP 10.77.0.10"]
    assert p["cp1"] == [FILES, *NODE, "port 6443 listening",
                        "container kube-apiserver running", "container kube-controller-manager running",
                        "container kube-scheduler running", "container etcd running",
                        "port 2379 listening", "port 2380 listening", "etcd endpoint health", "etcd members = 3"]
    assert p["w1"] == [FILES, *NODE]
    assert p["cp2"] == p["cp3"] == p["cp1"] and p["w2"] == p["w1"] and p["lb2"] == p["lb1"]


def test_systemd_form_checks_services_instead_of_containers(stacked_data):
    stacked_data["cluster"]["control_plane_form"] = "systemd"
    cp = probes(stacked_data)["cp1"]
    assert [w for w in cp if w.startswith("service ")] == [
        "service containerd", "service kubelet", "service kube-proxy", "service kbootstrap-pod-routes",
        "service kube-apiserver", "service kube-controller-manager", "service kube-scheduler", "service etcd"]
    assert not [w for w in cp if w.startswith("container ")]


def test_external_etcd_hosts_run_etcd_as_a_service_and_no_kubelet(external_data):
    p = probes(external_data)
    assert p["xetcd1"] == [FILES, "service etcd", "port 2379 listening", "port 2380 listening",
                           "etcd endpoint health", "etcd members = 3"]
    assert "etcd endpoint health" not in p["xcp1"] and "service kube-apiserver" in p["xcp1"]  # systemd form
    assert "container etcd running" not in p["xcp1"] and "service etcd" not in p["xcp1"]


def test_single_load_balancer_without_vip_has_no_keepalived_checks():
    import yaml

    p = probes(yaml.safe_load((INVENTORIES / "lab-mini.yaml").read_text()))
    assert p["mlb1"] == [FILES, "service haproxy", "port 6443 listening"]
    assert p["mcp1"][-1] == "etcd members = 1"


def test_probe_labels_match_the_rows_the_judges_make():
    assert C.Probe("port", expect=6443).what == C.port_check("h", 6443, "10.0.0.1", {}).what
    assert C.Probe("etcd-members", expect=3).what == C.etcd_members_check("h", ["a", "b", "c"], "{}").what
    assert C.Probe("service", "kubelet").what == C.service_check("h", "kubelet", True, True).what


# ------------------------------------------------------------------------------------------------------
# files


def fact(a: Artifact, **kw) -> FileFact:
    return replace(FileFact(a.sha256, a.mode, a.owner, a.group, len(a.content)), **kw)


def test_file_checks_pass_when_every_file_is_as_rendered():
    key = Artifact("/etc/kubernetes/pki/ca.key", b"k", 0o600, secret=True)
    conf = Artifact("/etc/haproxy/haproxy.cfg", b"c")
    rows = C.file_checks("lb1", [key, conf], {key.path: fact(key), conf.path: fact(conf)})
    assert [(r.what, r.ok) for r in rows] == [("files present", True), ("file modes", True),
                                              ("file contents (sha256)", True)]
    assert rows[0].detail == "2 files" and "1 private files 0600" in rows[1].detail


def test_file_checks_name_missing_loose_and_changed_files():
    key = Artifact("/etc/kubernetes/pki/ca.key", b"k", 0o600, secret=True)
    conf = Artifact("/etc/haproxy/haproxy.cfg", b"c")
    gone = Artifact("/etc/keepalived/keepalived.conf", b"x")
    facts = {key.path: fact(key, mode=0o644), conf.path: fact(conf, sha256="0" * 64), gone.path: None}
    present, modes, contents = C.file_checks("lb1", [key, conf, gone], facts)
    assert not present.ok and present.detail == "missing: /etc/keepalived/keepalived.conf"
    assert not modes.ok and modes.detail == "/etc/kubernetes/pki/ca.key 0644 root:root (want 0600 root:root)"
    assert not contents.ok and "/etc/haproxy/haproxy.cfg" in contents.detail
    assert "keepalived" not in contents.detail  # a missing file is reported once


# ------------------------------------------------------------------------------------------------------
# kubelet serving certificate


def _ca(cn: str = "kubernetes") -> KeyCert:
    key = new_key(KeyAlgorithm.ECDSA_P256)
    return KeyCert(key, make_ca(cn, key, 3650))


def _serving(ca: KeyCert, ip: str = "10.77.0.31", days: int = 365, now: dt.datetime | None = None) -> KeyCert:
    key = new_key(KeyAlgorithm.ECDSA_P256)
    want = Wanted("kubelet-serving", "w1", "ca", "system:node:w1", ("system:nodes",), (Usage.SERVER,),
                  ("w1",), (IPv4Address(ip),), "pki/nodes/w1/kubelet-serving")
    return KeyCert(key, sign(want, key, ca, days, now))


def test_serving_certificate_valid_signed_and_matching_passes():
    ca = _ca()
    kc = _serving(ca)
    row = C.serving_cert_check("w1", "10.77.0.31", kc.cert_pem, kc.key_pem, ca.cert)
    assert row.ok, row.detail
    assert row.detail.startswith("valid until ") and "key matches" in row.detail


@pytest.mark.parametrize("case, expect", [
    ("other key", "does not match its private key"),
    ("expired", "not valid now"),
    ("other CA", "not signed by the cluster CA"),
    ("other address", "no SAN for 10.77.0.31"),
    ("missing key", "missing: /etc/kubernetes/pki/kubelet-serving.key"),
])
def test_serving_certificate_problems_are_named_and_the_key_never_shown(case, expect):
    ca = _ca()
    kc = _serving(ca)
    cert, key, trust = kc.cert_pem, kc.key_pem, ca.cert
    if case == "other key":
        key = _serving(ca).key_pem
    elif case == "expired":
        cert = _serving(ca, days=1, now=dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=3)).cert_pem
    elif case == "other CA":
        trust = _ca("another").cert
    elif case == "other address":
        cert, key = (lambda k: (k.cert_pem, k.key_pem))(_serving(ca, ip="10.77.0.99"))
    elif case == "missing key":
        key = None
    row = C.serving_cert_check("w1", "10.77.0.31", cert, key, trust)
    assert not row.ok and expect in row.detail
    assert "PRIVATE KEY" not in row.detail


# ------------------------------------------------------------------------------------------------------
# etcd, ports, the VIP, nodes


def member_list(*names: str) -> str:
    return json.dumps({"header": {}, "members": [{"ID": i, "name": n} for i, n in enumerate(names)]})


def test_etcd_member_list_must_match_the_inventory():
    assert C.etcd_members_check("cp1", ["cp1", "cp2", "cp3"], member_list("cp2", "cp1", "cp3")).ok
    four = C.etcd_members_check("cp1", ["cp1", "cp2", "cp3", "cp4"], member_list("cp1", "cp2", "cp3"))
    assert not four.ok and four.what == "etcd members = 4"
    assert four.detail == "3 member(s): cp1, cp2, cp3; the inventory has cp1, cp2, cp3, cp4"
    unstarted = C.etcd_members_check("cp1", ["cp1", "cp2", "cp3"], member_list("cp1", "cp2", ""))
    assert not unstarted.ok and "(unstarted)" in unstarted.detail
    assert not C.etcd_members_check("cp1", ["cp1"], "Error: context deadline exceeded").ok


def test_ports_listen_on_all_addresses_or_the_node_address():
    listening = {22: {"0.0.0.0"}, 10250: {"::"}, 2379: {"10.77.0.21"}, 2381: {"127.0.0.1"}}
    assert C.port_check("cp1", 10250, "10.77.0.21", listening).ok
    assert C.port_check("cp1", 2379, "10.77.0.21", listening).ok
    local = C.port_check("cp1", 2381, "10.77.0.21", listening)
    assert not local.ok and "not on 10.77.0.21" in local.detail
    assert C.port_check("cp1", 6443, "10.77.0.21", listening).detail == "nothing listens"


def test_exactly_one_load_balancer_holds_the_vip():
    assert C.vip_check("10.77.0.10", {"lb1": True, "lb2": False}) == C.Check(
        "cluster", "VIP 10.77.0.10 on exactly one load balancer", True, "held by lb1")
    assert "split brain" in C.vip_check("10.77.0.10", {"lb1": True, "lb2": True}).detail
    assert C.vip_check("10.77.0.10", {"lb1": False, "lb2": False}).detail == "held by no load balancer"
    unknown = C.vip_check("10.77.0.10", {"lb1": True, "lb2": None})
    assert not unknown.ok and "lb2 not reachable" in unknown.detail


def test_node_ready_rows_per_kubelet_node():
    def node(name, status, reason=""):
        return {"metadata": {"name": name}, "status": {
            "conditions": [{"type": "MemoryPressure", "status": "False"},
                           {"type": "Ready", "status": status, "reason": reason}],
            "nodeInfo": {"kubeletVersion": "v1.34.2"}}}

    rows = C.node_ready_checks(["cp1", "w1", "w2"], json.dumps({"items": [node("cp1", "True"),
                                                                         node("w1", "False", "KubeletNotReady")]}))
    assert [(r.host, r.ok) for r in rows] == [("cp1", True), ("w1", False), ("w2", False)]
    assert rows[0].detail == "Ready, kubelet v1.34.2"
    assert "KubeletNotReady" in rows[1].detail and rows[2].detail == "not registered with the API server"
    assert not C.node_ready_checks(["cp1"], "error: the server doesn't have a resource type")[0].ok


def test_local_workers_add_the_approver_to_control_planes_and_get_no_host_probes():
    import yaml

    p = probes(yaml.safe_load((INVENTORIES / "lab-local.yaml").read_text()))
    assert "service kbootstrap-csr-approver" in p["lcp1"]
    assert "service kbootstrap-csr-approver" not in p["lw1"] + p["llb1"]
    stacked = probes(yaml.safe_load((INVENTORIES / "lab-stacked.yaml").read_text()))
    assert not any("kbootstrap-csr-approver" in what for rows in stacked.values() for what in rows)


def test_kubelet_through_the_api_server_row():
    ok = C.kubelet_proxy_check("lw2", 0, "ok", "")
    assert ok == C.Check("lw2", "kubelet through the API server", True,
                         "ok: serving certificate verified by kube-apiserver")
    down = C.kubelet_proxy_check("lw2", 1, "", 'Error from server: error trying to reach service: dial tcp '
                                 '10.77.0.244:10250: connect: connection refused\n')
    assert not down.ok and down.detail.endswith("connection refused")
    assert not C.kubelet_proxy_check("lw2", 0, "unhealthy", "").ok


# ------------------------------------------------------------------------------------------------------
# the report


ROWS = [C.Check("cp1", "service kubelet", True, "active, enabled"),
        C.Check("cp1", "etcd members = 3", False, "2 member(s): cp1, [cp2]"),
        C.Check("cluster", "API /readyz through https://10.77.0.10:6443", True, "ok")]


def test_table_has_a_row_per_check_with_the_host_once():
    console = Console(record=True, width=160)
    print_checks(ROWS, console)
    text = console.export_text()
    assert [c.header for c in checks_table(ROWS).columns] == ["host", "check", "result", "detail"]
    assert text.count("cp1") == 2 + 1  # the host column once, and twice in the details
    assert "FAIL" in text and "[cp2]" in text  # host output is not read as markup
    assert text.strip().endswith("3 checks, 1 failed (on cp1)")


def test_json_output_and_exit_code():
    doc = json.loads(checks_json(ROWS))
    assert doc["ok"] is False and doc["summary"] == summary(ROWS)
    assert doc["checks"][1] == {"host": "cp1", "check": "etcd members = 3", "ok": False,
                                "detail": "2 member(s): cp1, [cp2]"}
    assert exit_code(ROWS) == 1 and exit_code([ROWS[0], ROWS[2]]) == 0


@pytest.mark.parametrize("rows, code", [(ROWS, 1), ([ROWS[0]], 0)])
def test_cli_exits_non_zero_on_any_failed_check(monkeypatch, tmp_path, rows, code):
    import kbootstrap.verify.run as run
    from kbootstrap.verify.cli import verify

    seen = {}

    def fake(spec, cluster_dir, nodes, parallel):
        seen.update(cluster_dir=cluster_dir, nodes=[n.name for n in nodes], parallel=parallel)
        return rows

    monkeypatch.setattr(run, "run_verify", fake)
    inv = str(INVENTORIES / "lab-stacked.yaml")
    r = CliRunner().invoke(verify, ["-i", inv, "--cluster-dir", str(tmp_path), "--host", "cp1", "--host", "w1",
                                    "--parallel", "3", "--output", "json"])
    assert r.exit_code == code, r.output
    assert json.loads(r.output)["checks"][0]["check"] == "service kubelet"
    assert seen == {"cluster_dir": tmp_path, "nodes": ["cp1", "w1"], "parallel": 3}
    text = CliRunner().invoke(verify, ["-i", inv, "--cluster-dir", str(tmp_path)])
    assert text.exit_code == code and "kbootstrap verify: lab-stacked" in text.output
    # A `join: local` worker may be named: it is checked from the API only (run_verify never connects to it).
    local = CliRunner().invoke(verify, ["-i", str(INVENTORIES / "lab-local.yaml"), "--cluster-dir", str(tmp_path),
                                        "--host", "lw2"])
    assert local.exit_code == code and seen["nodes"] == ["lw2"], local.output


# ------------------------------------------------------------------------------------------------------
# reading the cluster directory, and hosts that cannot be reached


@pytest.fixture
def small_spec(stacked_data):
    stacked_data["certificates"] = {"key_algorithm": "ecdsa-p256"}
    return build_spec(stacked_data)


def tree(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


def test_the_cluster_directory_is_read_never_written(small_spec, tmp_path):
    from kbootstrap.pki.issue import ensure_pki
    from kbootstrap.pki.secrets import ensure_secrets
    from kbootstrap.render import render_host
    from kbootstrap.verify.context import load_context, stale_certificates

    root = tmp_path / "cluster"
    made = RenderContext(small_spec, ensure_pki(small_spec, root), ensure_secrets(root))
    before = tree(root)
    ctx = load_context(small_spec, root)
    assert tree(root) == before
    w1 = small_spec.node("w1")
    assert [a.sha256 for a in render_host(ctx, w1)] == [a.sha256 for a in render_host(made, w1)]
    assert stale_certificates(ctx) == []
    (root / "pki/nodes/w2/kubelet-serving.crt").unlink()
    (root / "pki/nodes/w2/kubelet-serving.key").unlink()
    with pytest.raises(PKIError, match="lacks pki/nodes/w2/kubelet-serving.crt"):
        load_context(small_spec, root)
    with pytest.raises(PKIError, match="no cluster directory"):
        load_context(small_spec, tmp_path / "absent")
    assert not (tmp_path / "absent").exists()


class Unreachable:
    host = "w2"
    round_trips = RoundTrips()

    def run(self, argv, *, sudo=False, stdin=b"", timeout=120) -> CommandResult:
        raise TransportError("w2", "cannot reach 10.77.0.32:22 over SSH (timed out); is the host up?")

    def close(self) -> None:
        pass


def test_an_unreachable_host_is_one_failed_row(small_spec):
    from kbootstrap.verify.run import HostChecks

    ctx = RenderContext(small_spec, None, None)  # type: ignore[arg-type]
    rows = HostChecks(ctx, small_spec.node("w2"), Unreachable()).run()
    assert rows == [C.Check("w2", "ssh and sudo", False,
                            "cannot reach 10.77.0.32:22 over SSH (timed out); is the host up?")]


class Answers:
    """A host that answers `id -u` as root and fails everything else: each probe becomes a failed row."""

    host = "w1"
    round_trips = RoundTrips()

    def run(self, argv, *, sudo=False, stdin=b"", timeout=120) -> CommandResult:
        if argv[-1:] == ["id -u"]:
            return CommandResult("w1", "sh -c", 0, b"0\n", b"")
        return CommandResult("w1", "sh -c", 1, b"", b"boom")

    def close(self) -> None:
        pass


def test_a_probe_that_errors_is_a_failed_row_not_a_traceback(small_spec):
    from kbootstrap.verify.run import HostChecks

    ctx = RenderContext(small_spec, None, None)  # type: ignore[arg-type]
    rows = HostChecks(ctx, small_spec.node("w1"), Answers()).run()
    assert rows[0] == C.Check("w1", "ssh and sudo", True, "vagrant@10.77.0.31, root")
    assert len(rows) > 5 and not any(r.ok for r in rows[1:])


def test_verify_runs_alone_as_a_module():
    """`python -m kbootstrap.verify` in a fresh interpreter: it failed on an import cycle with kbootstrap/cli/main.py."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "kbootstrap.verify", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "Check that the cluster runs as the inventory says" in r.stdout, r.stderr
    r = subprocess.run([sys.executable, "-c", "import kbootstrap.cli.reset"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
