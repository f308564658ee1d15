"""Preflight rules on crafted facts: each rule fires naming the host and what was expected, a clean
cluster gives nothing, every problem comes at once; plus the probe's wire format and its 3.6 grammar."""

from __future__ import annotations

import ast
import json
import time
from dataclasses import replace
from pathlib import Path

import pytest

from kbootstrap.errors import StepError, TransportError
from kbootstrap.hostside import probe
from kbootstrap.model.spec import build_spec
from kbootstrap.preflight import checks
from kbootstrap.preflight.checks import Finding, Severity, check, format_problems, reach_targets, required_ports
from kbootstrap.preflight.facts import COMMANDS, Connect, Listener, PreflightFacts, Swap, from_json, gather_preflight
from kbootstrap.preflight.run import run_preflight
from kbootstrap.transport.base import CommandResult, RoundTrips

E, W = Severity.ERROR, Severity.WARNING


@pytest.fixture
def spec(stacked_data):
    return build_spec(stacked_data)


def clean(spec, name: str) -> PreflightFacts:
    """Facts of a host that passes every rule: each node gets its own ids; every peer answers 'refused'."""
    i = [n.name for n in spec.nodes].index(name) + 1
    node = spec.node(name)
    return PreflightFacts(
        os_id="debian", os_version="12", os_pretty="Debian GNU/Linux 12 (bookworm)", arch="x86_64",
        kernel="6.1.0-18-amd64", systemd=True, container=None, swaps=(), listening=(), hostname=name,
        machine_id=f"{i:032x}", product_uuid=f"4c4c4544-0000-0000-0000-{i:012x}", macs={"eth0": f"52:54:00:00:00:{i:02x}"},
        modules={"overlay": "loadable", "br_netfilter": "builtin"}, cgroup="v2", var_free=20 * 2**30,
        mem_total=4 * 2**30, cpus=4, python="3.11.2", python_version=(3, 11, 2),
        commands={c: f"/usr/bin/{c}" for c in COMMANDS},
        connects=tuple(Connect(t.address, t.port, "refused") for t in reach_targets(spec, node)),
        host_time=1000.0, sent_at=999.9, received_at=1000.1,
    )


def cluster(spec, **changes: dict) -> dict[str, PreflightFacts]:
    """Clean facts for every node, with some fields replaced on the named hosts."""
    facts = {n.name: clean(spec, n.name) for n in spec.nodes}
    for name, fields in changes.items():
        facts[name] = replace(facts[name], **fields)
    return facts


def found(spec, *, facts=None, **kw) -> list[tuple[str, Severity, str]]:
    return [(f.path, f.severity, f.message) for f in check(spec, facts or cluster(spec), **kw)]


def test_clean_cluster_has_no_findings(spec):
    assert found(spec) == []
    assert format_problems([]) == "preflight: every check passed"


# --- one rule at a time: (host, changed facts, check kwargs, severity, words the message must hold) ------
RULES = [
    ("lb1", {"addresses": {"eth0": ("192.168.5.2/24", "10.77.0.10/32")}}, {}, E,
     ["the VIP 10.77.0.10 (load_balancer.vip) is outside eth0's subnet 192.168.5.0/24", "expected an unused address"]),
    ("lb2", {"addresses": {"ens3": ("10.77.0.12/24",), "lo": ("127.0.0.1/8",)}}, {}, E,
     ["interface eth0 (load_balancer.interface) has no IPv4 subnet here (interfaces: ens3, lo)"]),
    ("cp1", {"os_id": "fedora", "os_version": "40", "os_pretty": "Fedora Linux 40"}, {}, E,
     ["unsupported OS 'Fedora Linux 40'", "VERSION_ID=40", "expected Debian 11, 12 or 13, or Ubuntu 22.04 or 24.04"]),
    ("w1", {"os_version": "10"}, {}, E, ["VERSION_ID=10", "expected Debian 11, 12 or 13"]),
    ("lb1", {"arch": "riscv64"}, {}, E, ["unsupported architecture riscv64", "expected x86_64 or aarch64"]),
    ("w2", {"arch": "aarch64"}, {"bundle_arch": "amd64"}, E, ["aarch64 (arm64)", "the bundle's amd64"]),
    ("lb2", {"systemd": False}, {}, E, ["systemd is not PID 1", "expected systemd"]),
    ("w1", {"swaps": (Swap("/swap.img", 2097148),)}, {}, E, ["swap is on (/swap.img)", "failSwapOn"]),
    ("cp1", {"listening": (Listener(6443, "0.0.0.0", "nginx (pid 812)"),)}, {}, E,
     ["port 6443 is already in use by nginx (pid 812) on 0.0.0.0", "expected it free for kube-apiserver"]),
    ("cp2", {"listening": (Listener(2380, "::", None),)}, {}, E, ["port 2380", "another process", "etcd peers"]),
    ("lb1", {"listening": (Listener(6443, "10.77.0.11", "apache2 (pid 9)"),)}, {}, E, ["haproxy"]),
    ("w1", {"listening": (Listener(10256, "0.0.0.0", None),)}, {}, E, ["port 10256", "kube-proxy healthz"]),
    # a host kbootstrap set up, but another program holds the port: still refused (the journal can be stale)
    ("cp1", {"listening": (Listener(2379, "0.0.0.0", "python3 (pid 77)"),)},
     {"expected_listeners": {"cp1": {2379}}}, E, ["port 2379", "python3 (pid 77)", "etcd clients"]),
    ("cp3", {"host_time": 1009.0}, {}, E, ["clock is at least 8.9 s ahead of the controller's", "within 5 s"]),
    ("w2", {"host_time": 900.0}, {}, E, ["clock is at least 99.9 s behind the controller's"]),
    ("w1", {"hostname": "debian"}, {}, W, ["hostname is 'debian', not the inventory name 'w1'", "--hostname-override"]),
    ("w1", {"modules": {"overlay": "missing", "br_netfilter": "loaded"}}, {}, E,
     ["kernel module overlay is missing", "/lib/modules/6.1.0-18-amd64", "overlayfs"]),
    ("cp1", {"modules": {"overlay": "builtin"}}, {}, E, ["kernel module br_netfilter is missing"]),
    ("w2", {"cgroup": "hybrid"}, {}, W, ["cgroup hybrid", "expected cgroup v2"]),
    ("w2", {"cgroup": "none"}, {}, E, ["no cgroup filesystem", "expected cgroup v2"]),
    ("w1", {"var_free": 2**30}, {}, E, ["only 1.0 GiB free on /var", "expected at least 2.0 GiB"]),
    ("w1", {"commands": {"systemctl": "/bin/systemctl", "mount": "/bin/mount", "nsenter": "/bin/nsenter"}}, {}, E,
     ["command iptables not found on PATH", "expected it installed"]),
    ("lb1", {"commands": {}}, {}, E, ["command systemctl not found"]),
    ("cp1", {"cpus": 1}, {}, W, ["1 CPU(s)", "at least 2"]),
    ("cp1", {"mem_total": 1024 * 2**20}, {}, W, ["1024 MiB of memory", "at least 1700 MiB"]),
    ("w1", {"python": "3.5.3", "python_version": (3, 5, 3)}, {}, E, ["python3 is 3.5.3", "3.6 or newer"]),
]


@pytest.mark.parametrize("host,changes,kw,severity,words", RULES, ids=[f"{r[0]}-{next(iter(r[1]))}" for r in RULES])
def test_each_rule_names_the_host_and_the_expectation(spec, host, changes, kw, severity, words):
    [(path, sev, message)] = found(spec, facts=cluster(spec, **{host: changes}), **kw)
    assert (path, sev) == (host, severity)
    for w in words:
        assert w in message


@pytest.mark.parametrize("host,changes,kw", [
    ("w1", {"os_id": "ubuntu", "os_version": "24.04"}, {}),
    ("w1", {"arch": "x86_64"}, {"bundle_arch": "amd64"}),
    ("lb1", {"swaps": (Swap("/dev/sda2", 1024),)}, {}),  # no kubelet, no swap rule
    ("lb1", {"var_free": 2**20, "modules": {}, "cgroup": "v1", "hostname": "x"}, {}),  # kubelet-only rules
    ("w1", {"hostname": "w1.example.com"}, {}),
    ("w1", {"commands": {}}, {"will_install": {"iptables", "mount", "nsenter", "systemctl"}}),
    ("lb1", {"commands": {"systemctl": "/bin/systemctl"}}, {}),  # iptables is for kubelet nodes
    ("cp1", {"listening": (Listener(6443, "0.0.0.0", "kube-apiserver (pid 7)"), Listener(2379, "::", "etcd (pid 8)"),
                           Listener(10257, "::", "kube-controller (pid 9)"), Listener(10250, "::", None),
                           Listener(8080, "0.0.0.0", "x"))},
     {"expected_listeners": {"cp1": {6443, 2379, 10257, 10250}}}),  # a re-run: kbootstrap's own services; 8080 not ours
    ("cp1", {"host_time": 1000.0, "sent_at": 990.0, "received_at": 1010.0}, {}),  # slow call: skew unknown, not wrong
    ("w1", {"modules": {"overlay": "loaded", "br_netfilter": "loadable"}}, {}),
])
def test_what_is_fine_is_not_reported(spec, host, changes, kw):
    assert found(spec, facts=cluster(spec, **{host: changes}), **kw) == []


def test_swap_is_fine_when_the_inventory_lets_the_kubelet_run_with_it(stacked_data):
    stacked_data["component_config"] = {"kubelet": {"failSwapOn": False}}
    spec = build_spec(stacked_data)
    assert found(spec, facts=cluster(spec, w1={"swaps": (Swap("/swap.img", 1),)})) == []


def test_unreachable_peers_name_both_ends(spec):
    w1, lb1 = spec.node("w1"), spec.node("lb1")
    facts = cluster(spec)
    conns = {(c.address, c.port): c for c in facts["cp1"].connects}
    conns[(str(w1.address), 10250)] = Connect(str(w1.address), 10250, "timeout")
    conns[(str(lb1.address), 6443)] = Connect(str(lb1.address), 6443, "unreachable", "No route to host")
    facts["cp1"] = replace(facts["cp1"], connects=tuple(conns.values()))
    assert found(spec, facts=facts) == [
        ("cp1", E, "cannot reach lb1 (10.77.0.11:6443): unreachable: No route to host; "
                   "needed for the API through its load balancer"),
        ("cp1", E, "cannot reach w1 (10.77.0.31:10250): timed out; needed for kube-apiserver to kubelet (logs, exec)"),
    ]


@pytest.mark.parametrize("field,value,words,severity", [
    ("machine_id", "ab" * 16, ["machine-id abab", "same as on cp1", "systemd-machine-id-setup"], E),
    ("product_uuid", "4c4c4544-dup", ["product_uuid 4c4c4544-dup is the same as on cp1"], E),
    ("macs", {"eth0": "52:54:00:aa:bb:cc"}, ["MAC address 52:54:00:aa:bb:cc on eth0 is the same as on cp1 (eth0)"], E),
])
def test_duplicates_name_both_hosts(spec, field, value, words, severity):
    facts = cluster(spec, cp1={field: value}, w2={field: value})
    [(path, sev, message)] = found(spec, facts=facts)
    assert (path, sev) == ("w2", severity)
    for w in words:
        assert w in message


def test_duplicate_hostnames_warn_and_containers_share_dmi(spec):
    facts = cluster(spec, lb1={"hostname": "node", "product_uuid": "same", "container": "lxc"},
                    lb2={"hostname": "node", "product_uuid": "same", "container": "lxc"})
    assert found(spec, facts=facts) == [
        ("lb2", W, "hostname node is the same as on lb1; expected every host's to be unique: the kubelet registers "
                   "with the inventory name, but logs and tools will mix the two up"),
    ]


def test_every_problem_at_once(spec):
    facts = cluster(spec, w1={"systemd": False, "var_free": 0, "swaps": (Swap("/swapfile", 1),)},
                    lb2={"os_id": "centos"}, cp2={"host_time": 2000.0})
    assert [(p, s) for p, s, _ in found(spec, facts=facts)] == [("lb2", E), ("cp2", E), ("w1", E), ("w1", E), ("w1", E)]


def test_hosts_without_facts_are_skipped(spec):
    facts = cluster(spec)
    del facts["w2"]
    assert found(spec, facts=facts) == []


def test_required_ports_by_role(spec):
    assert set(required_ports(spec, spec.node("cp1"))) == {6443, 10257, 10259, 2379, 2380, 2381, 10250, 10248,
                                                           10256, 10249}
    assert set(required_ports(spec, spec.node("w1"))) == {10250, 10248, 10256, 10249}
    assert required_ports(spec, spec.node("lb1")) == {6443: "haproxy, the API load balancer"}


def targets(spec, name):
    return {(t.node, t.port) for t in reach_targets(spec, spec.node(name))}


def test_reach_targets_stacked(spec):
    kubelets = lambda me: {(n.name, 10250) for n in spec.kubelet_nodes if n.name != me}  # noqa: E731
    assert targets(spec, "cp1") == kubelets("cp1") | {
        ("cp2", 2380), ("cp3", 2380), ("cp2", 2379), ("cp3", 2379),  # etcd peers; apiserver to every member
        ("lb1", 6443), ("lb2", 6443),  # each LB's own address: nobody holds the VIP before init
    }
    assert targets(spec, "w1") == kubelets("w1") | {("lb1", 6443), ("lb2", 6443)}  # pod traffic; the API
    assert targets(spec, "lb1") == {("cp1", 6443), ("cp2", 6443), ("cp3", 6443)}  # no pairs of every host
    assert all(t.address != "10.77.0.10" for n in spec.nodes for t in reach_targets(spec, n))
    assert "pod traffic" in next(t.purpose for t in reach_targets(spec, spec.node("w1")) if t.node == "w2")


def test_reach_targets_external(external_data):
    spec = build_spec(external_data)
    assert ("xetcd2", 2380) in targets(spec, "xetcd1") and ("xetcd2", 2379) not in targets(spec, "xetcd1")
    assert ("xetcd1", 2379) in targets(spec, "xcp1") and ("xetcd1", 2380) not in targets(spec, "xcp1")


def test_format_groups_by_host_errors_first():
    text = format_problems([Finding("w1", "hostname differs", W), Finding("cp1", "port busy"),
                            Finding("w1", "no swapoff", E)])
    assert text.splitlines() == [
        "preflight: 2 errors, 1 warning on 2 hosts",
        "  w1:",
        "    error    no swapoff",
        "    warning  hostname differs",
        "  cp1:",
        "    error    port busy",
    ]
    assert checks.errors([Finding("a", "x", W), Finding("b", "y")]) == [Finding("b", "y")]


# --- the probe: its source, its wire format, the one command ----------------------------------------------
def test_probe_is_python36_stdlib_and_independent_of_kbootstrap():
    tree = ast.parse(Path(probe.__file__).read_text(), feature_version=(3, 6))
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not any(isinstance(n, ast.ImportFrom) for n in ast.walk(tree))
    assert "kbootstrap" not in imported


RAW = {
    "os": {"id": "ubuntu", "version_id": "24.04", "pretty_name": "Ubuntu 24.04.1 LTS"}, "arch": "x86_64",
    "kernel": "6.8.0-45-generic", "systemd": True, "container": None,
    "swaps": [{"name": "/swap.img", "type": "file", "size_kb": 4194300, "used_kb": 0}],
    "listening": [{"port": 6443, "address": "::", "process": "kube-apiserver (pid 4242)"}],
    "hostname": "mcp1", "machine_id": "f" * 32, "product_uuid": None, "macs": {"eth0": "00:16:3e:00:00:01"},
    "modules": {"overlay": "loaded", "br_netfilter": "loadable"}, "cgroup": "v2", "var_free": 10 * 2**30,
    "mem_total": 2 * 2**30, "cpus": 2, "python": "3.12.3", "python_version": [3, 12, 3],
    "commands": {"systemctl": "/usr/bin/systemctl", "iptables": None},
    "connects": [{"address": "10.77.0.201", "port": 22, "result": "refused", "error": ""}], "time": 100.5,
}


class FakeTransport:
    def __init__(self, host, rc=0, stdout=b"", stderr=b"", raises=None):
        self.host, self.rc, self.stdout, self.stderr, self.raises = host, rc, stdout, stderr, raises
        self.round_trips, self.calls = RoundTrips(), []

    def run(self, argv, *, sudo=False, stdin=b"", timeout=120):
        if self.raises:
            raise self.raises
        self.calls.append((argv, sudo, json.loads(stdin)))
        return CommandResult(self.host, argv[0], self.rc, self.stdout, self.stderr)

    def close(self):
        pass


def test_gather_is_one_sudo_python_command_and_types_the_report():
    t = FakeTransport("mcp1", stdout=json.dumps(RAW).encode())
    ticks = iter([100.0, 101.0])
    f = gather_preflight(t, [6443, 2379, 6443], [("10.77.0.201", 22), ("10.77.0.201", 22)], clock=lambda: next(ticks))
    [(argv, sudo, request)] = t.calls
    assert argv[:2] == ["python3", "-c"] and sudo
    assert request["ports"] == [2379, 6443] and request["targets"] == [["10.77.0.201", 22]]
    assert request["timeout"] == 0.5 and request["modules"] == ["overlay", "br_netfilter"]
    assert f == from_json(RAW, 100.0, 101.0)
    assert f.listening == (Listener(6443, "::", "kube-apiserver (pid 4242)"),)
    assert f.connects[0].reachable and f.python_version == (3, 12, 3) and f.skew_bounds == (-0.5, 0.5)


def test_gather_failure_is_a_step_error():
    t = FakeTransport("mcp1", rc=127, stderr=b"sudo: python3: command not found")
    with pytest.raises(StepError, match="python3: command not found"):
        gather_preflight(t, [])
    with pytest.raises(StepError, match="unreadable report"):
        gather_preflight(FakeTransport("mcp1", stdout=b"{}"), [])


def test_run_preflight_reports_hosts_it_cannot_probe_with_the_others(external_data):
    keep = ("xcp1", "xw1", "xetcd1")
    spec = build_spec({**external_data, "load_balancer": {},
                       "nodes": [n for n in external_data["nodes"] if n["name"] in keep]})
    raw = {**RAW, "hostname": "xcp1", "swaps": [], "listening": [], "python_version": [3, 12, 3],
           "commands": dict.fromkeys(COMMANDS, "/usr/bin/x"), "connects": [], "time": time.time()}
    ts = {"xcp1": FakeTransport("xcp1", stdout=json.dumps(raw).encode()),
          "xw1": FakeTransport("xw1", rc=127, stderr=b"sudo: python3: command not found"),
          "xetcd1": FakeTransport("xetcd1", raises=TransportError("xetcd1", "connection refused (port 22)"))}
    out = run_preflight(spec, ts)
    assert [(f.path, f.severity) for f in out] == [("xetcd1", E), ("xw1", E)]  # xcp1 is clean
    assert "probe did not run (connection refused (port 22))" in out[0].message
    assert "probe did not run (exit 127: sudo: python3: command not found)" in out[1].message
    [(_, _, request)] = ts["xcp1"].calls
    assert set(request["ports"]) == set(required_ports(spec, spec.node("xcp1")))
    assert ["10.77.0.111", 2379] in request["targets"] and "nsenter" in request["commands"]


def test_a_vip_in_the_load_balancers_subnet_passes_held_or_not(spec):
    held = {"eth0": ("10.77.0.11/24", "10.77.0.10/32")}  # keepalived's MASTER holds the VIP as a /32
    assert found(spec, facts=cluster(spec, lb1={"addresses": held}, lb2={"addresses": {"eth0": ("10.77.0.12/24",)}})) == []
