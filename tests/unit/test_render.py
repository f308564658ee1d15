"""Rendered files: both control-plane forms carry the same flags, user values are escaped for their format,
and each role gets what it needs."""

from __future__ import annotations

import json
import shlex
import tomllib

import pytest
import yaml

from kbootstrap.model.spec import build_spec
from kbootstrap.pki.issue import ensure_pki
from kbootstrap.pki.secrets import ensure_secrets
from kbootstrap.render import RenderContext, render_host
from kbootstrap.render.templates import systemd_arg


def render(data, tmp_path, token=None):
    spec = build_spec(data)
    root = tmp_path / "cluster"
    ctx = RenderContext(spec, ensure_pki(spec, root), ensure_secrets(root), bootstrap_token=token)
    return spec, {n.name: {a.path: a for a in render_host(ctx, n)} for n in spec.nodes}


def unit_args(content: bytes) -> list[str]:
    """ExecStart argv of a unit, undoing systemd's quoting and specifier escapes (%% and $$)."""
    text = content.decode().replace("\\\n", " ")
    line = next(l for l in text.splitlines() if l.startswith("ExecStart="))
    return [a.replace("%%", "%").replace("$$", "$") for a in shlex.split(line.removeprefix("ExecStart="))]


@pytest.fixture
def small(stacked_data):
    # ECDSA keys keep these tests fast; the key type does not change what is rendered where.
    stacked_data["certificates"] = {"key_algorithm": "ecdsa-p256"}
    return stacked_data


def test_static_pod_and_systemd_forms_carry_identical_flags(small, tmp_path):
    _, pods = render(small, tmp_path / "a")
    small["cluster"]["control_plane_form"] = "systemd"
    _, units = render(small, tmp_path / "a")  # same cluster directory: same PKI
    for component in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        pod = yaml.safe_load(pods["cp2"][f"/etc/kubernetes/manifests/{component}.yaml"].content)
        argv = unit_args(units["cp2"][f"/etc/systemd/system/{component}.service"].content)
        assert pod["spec"]["containers"][0]["command"][1:] == argv[1:], component
        assert argv[0] == f"/usr/local/bin/{component}"
    # kube-proxy needs the host's iptables userland: a systemd service in both forms.
    for files in (pods, units):
        assert "/etc/systemd/system/kube-proxy.service" in files["cp2"]
        assert "/etc/kubernetes/manifests/kube-proxy.yaml" not in files["cp2"]


def test_user_values_are_escaped_for_systemd(small, tmp_path):
    nasty = 'a b"c%d$e\\f'
    small["cluster"]["control_plane_form"] = "systemd"
    small["extra_args"] = {"kube-apiserver": {"oidc-username-prefix": nasty}}
    _, files = render(small, tmp_path)
    argv = unit_args(files["cp1"]["/etc/systemd/system/kube-apiserver.service"].content)
    assert f"--oidc-username-prefix={nasty}" in argv
    assert systemd_arg("%h") == "%%h" and systemd_arg("$HOME") == "$$HOME"
    with pytest.raises(ValueError):
        systemd_arg("a\nb")


def test_user_values_are_escaped_for_toml_and_yaml(small, tmp_path):
    small["container_runtime"] = {"sandbox_image": 'reg.example/pause:3"x\\', "registry_mirrors": {
        "docker.io": ['https://m.example/"q"']}}
    small["nodes"][5]["labels"] = {"example.com/tier": "front_end.1"}
    small["component_config"] = {"kubelet": {"maxPods": 42, "evictionHard": {"memory.available": "5%"}}}
    _, files = render(small, tmp_path)
    w1 = files["w1"]
    toml = tomllib.loads(w1["/etc/containerd/config.toml"].content.decode())
    assert toml["plugins"]["io.containerd.grpc.v1.cri"]["sandbox_image"] == 'reg.example/pause:3"x\\'
    assert toml["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"]
    hosts = tomllib.loads(w1["/etc/containerd/certs.d/docker.io/hosts.toml"].content.decode())
    assert list(hosts["host"]) == ['https://m.example/"q"'] and hosts["server"] == "https://registry-1.docker.io"
    kubelet = yaml.safe_load(w1["/var/lib/kubelet/config.yaml"].content)
    assert kubelet["maxPods"] == 42 and kubelet["evictionHard"] == {"memory.available": "5%"}
    assert kubelet["authentication"]["x509"]["clientCAFile"] == "/etc/kubernetes/pki/ca.crt"  # deep merge kept it
    assert "--node-labels=example.com/tier=front_end.1" in unit_args(w1["/etc/systemd/system/kubelet.service"].content)


def test_external_etcd_hosts_run_etcd_as_a_service_and_no_kubelet(external_data, tmp_path):
    external_data["certificates"] = {"key_algorithm": "ecdsa-p256"}
    spec, files = render(external_data, tmp_path)
    etcd1 = files["xetcd1"]
    assert "/etc/systemd/system/etcd.service" in etcd1
    assert not any("kubelet" in p or "containerd" in p for p in etcd1)
    argv = unit_args(etcd1["/etc/systemd/system/etcd.service"].content)
    assert "--initial-cluster=xetcd1=https://10.77.0.111:2380,xetcd2=https://10.77.0.112:2380,xetcd3=https://10.77.0.113:2380" in argv
    api = unit_args(files["xcp1"]["/etc/systemd/system/kube-apiserver.service"].content)
    assert "--etcd-servers=https://10.77.0.111:2379,https://10.77.0.112:2379,https://10.77.0.113:2379" in api


def test_stacked_apiserver_prefers_its_local_etcd(small, tmp_path):
    _, files = render(small, tmp_path)
    pod = yaml.safe_load(files["cp2"]["/etc/kubernetes/manifests/kube-apiserver.yaml"].content)
    flag = next(a for a in pod["spec"]["containers"][0]["command"] if a.startswith("--etcd-servers="))
    assert flag == "--etcd-servers=https://10.77.0.22:2379,https://10.77.0.21:2379,https://10.77.0.23:2379"


def test_loadbalancers(small, tmp_path):
    _, files = render(small, tmp_path)
    cfg = files["lb1"]["/etc/haproxy/haproxy.cfg"].content.decode()
    for cp, ip in (("cp1", "10.77.0.21"), ("cp2", "10.77.0.22"), ("cp3", "10.77.0.23")):
        assert f"server {cp} {ip}:6443 check check-ssl verify required ca-file /etc/kubernetes/pki/ca.crt" in cfg
    assert "uri /readyz" in cfg and "bind 0.0.0.0:6443" in cfg
    k1 = files["lb1"]["/etc/keepalived/keepalived.conf"].content.decode()
    k2 = files["lb2"]["/etc/keepalived/keepalived.conf"].content.decode()
    assert "priority 150" in k1 and "priority 149" in k2
    assert "10.77.0.10/32 dev eth0" in k1 and "unicast_peer {\n        10.77.0.12" in k1
    sysctl = files["lb1"]["/etc/sysctl.d/99-kbootstrap.conf"].content.decode()
    assert "net.ipv4.ip_nonlocal_bind = 1" in sysctl and "ip_forward" not in sysctl


def test_single_loadbalancer_has_no_keepalived(tmp_path):
    import pathlib
    data = yaml.safe_load((pathlib.Path(__file__).resolve().parents[2] / "inventories/lab-mini.yaml").read_text())
    data["certificates"] = {"key_algorithm": "ecdsa-p256"}
    spec, files = render(data, tmp_path)
    assert "/etc/keepalived/keepalived.conf" not in files["mlb1"]
    assert "bind 10.77.0.201:6443" in files["mlb1"]["/etc/haproxy/haproxy.cfg"].content.decode()
    assert spec.api_server_url == "https://10.77.0.201:6443"


def test_cni_subnet_and_routes_per_node(small, tmp_path):
    spec, files = render(small, tmp_path)
    conf = json.loads(files["w1"]["/etc/cni/net.d/10-kbootstrap.conflist"].content)
    rng = conf["plugins"][0]["ipam"]["ranges"][0][0]
    assert rng == {"subnet": "10.244.3.0/24", "gateway": "10.244.3.1"}
    routes = files["w1"]["/etc/systemd/system/kbootstrap-pod-routes.service"].content.decode()
    assert "ExecStart=/sbin/ip route replace 10.244.0.0/24 via 10.77.0.21" in routes
    assert "10.244.3.0/24" not in routes  # not a route to itself


def test_worker_bootstrap_kubeconfig_only_with_a_join_token(small, tmp_path):
    _, files = render(small, tmp_path)
    assert "/etc/kubernetes/bootstrap-kubelet.conf" not in files["w1"]
    _, files = render(small, tmp_path, token="abcdef.0123456789abcdef")
    a = files["w1"]["/etc/kubernetes/bootstrap-kubelet.conf"]
    assert a.secret and a.mode == 0o600
    doc = yaml.safe_load(a.content)
    assert doc["users"][0]["user"] == {"token": "abcdef.0123456789abcdef"}
    assert "/etc/kubernetes/bootstrap-kubelet.conf" not in files["cp1"]


def test_encryption_config_is_secret_and_stable(small, tmp_path):
    _, a = render(small, tmp_path)
    _, b = render(small, tmp_path)
    enc = a["cp1"]["/etc/kubernetes/encryption-config.yaml"]
    assert enc.secret and enc.mode == 0o600 and enc.content == b["cp1"]["/etc/kubernetes/encryption-config.yaml"].content
    doc = yaml.safe_load(enc.content)
    assert doc["resources"][0]["providers"][-1] == {"identity": {}}


def test_versions_pin_images(small, tmp_path):
    small["cluster"]["kubernetes_version"] = "1.33.6"
    _, files = render(small, tmp_path)
    pod = yaml.safe_load(files["cp1"]["/etc/kubernetes/manifests/kube-apiserver.yaml"].content)
    assert pod["spec"]["containers"][0]["image"] == "registry.k8s.io/kube-apiserver:v1.33.6"
    etcd = yaml.safe_load(files["cp1"]["/etc/kubernetes/manifests/etcd.yaml"].content)
    assert etcd["spec"]["containers"][0]["image"] == "registry.k8s.io/etcd:3.5.21-0"
    toml = tomllib.loads(files["w1"]["/etc/containerd/config.toml"].content.decode())
    assert toml["plugins"]["io.containerd.grpc.v1.cri"]["sandbox_image"] == "registry.k8s.io/pause:3.10"
