"""`join: local` workers on the controller's side (spec rules, PKI, rendering, what kbootstrap connects to)
and on the node's side (the node profile, choosing this node, the CA-only render) — no host needed.
The lab run is tests/e2e/test_join_local.py."""

from __future__ import annotations

import copy
import datetime as dt
from pathlib import Path

import click
import pytest
import yaml

from kbootstrap.cli.main import _duration, select_nodes
from kbootstrap.errors import SpecError
from kbootstrap.local.join import LocalJoinError, this_node
from kbootstrap.local.node_profile import ProfileError, profile_yaml, spec_from_profile
from kbootstrap.model.spec import build_spec, load_inventory
from kbootstrap.pki.issue import ca_only, ensure_pki
from kbootstrap.pki.secrets import ensure_secrets
from kbootstrap.pki.table import Hosts, PerNode, nodes_for
from kbootstrap.render import RenderContext, render_host
from kbootstrap.render.cluster_addons import CLUSTER_INFO, LOCAL_JOIN
from tests.conftest import render_context

LOCAL = Path(__file__).resolve().parents[2] / "inventories" / "lab-local.yaml"


@pytest.fixture(scope="module")
def spec():
    return load_inventory(LOCAL)


@pytest.fixture(scope="module")
def ctx(spec, tmp_path_factory):
    root = tmp_path_factory.mktemp("cluster")
    return render_context(spec, root)


def _data() -> dict:
    return copy.deepcopy(yaml.safe_load(LOCAL.read_text()))


def test_only_a_worker_without_ssh_settings_joins_locally():
    data = _data()
    data["nodes"][3] |= {"roles": ["worker", "control-plane"], "host_key": "ssh-ed25519 AAAA"}
    with pytest.raises(SpecError) as e:
        build_spec(data)
    text = "\n".join(str(p) for p in e.value.problems)
    assert "nodes[3] (lw2).join: local: only a worker joins itself" in text
    assert "'ssh' and 'host_key' do not apply" in text


def test_the_controller_never_connects_to_a_local_worker(spec):
    assert [n.name for n in select_nodes(spec, ())] == ["llb1", "lcp1", "lw1"]
    assert [n.name for n in select_nodes(spec, (), connected=False)] == ["llb1", "lcp1", "lw1", "lw2"]
    with pytest.raises(click.BadParameter, match="join --local"):
        select_nodes(spec, ("lw2",))


def test_a_local_worker_still_gets_a_pod_subnet_routes_and_a_hosts_entry(spec, ctx):
    assert str(spec.pod_subnets["lw2"]) == "10.244.2.0/24"
    lw1 = {a.path: a.content.decode() for a in render_host(ctx, spec.node("lw1"))}
    assert "10.244.2.0/24 via 10.77.0.244" in lw1["/etc/systemd/system/kbootstrap-pod-routes.service"]


def test_no_kbootstrap_issued_key_for_a_local_worker(spec, ctx):
    assert "lw2" not in [n.name for n in nodes_for(spec, PerNode.KUBELET_NODE)]
    assert "lw2" not in [n.name for n in nodes_for(spec, Hosts.KUBELET_NODES)]
    files = {a.path: a for a in render_host(ctx, spec.node("lw2"))}
    assert [p for p in files if "/pki/" in p] == ["/etc/kubernetes/pki/ca.crt"]
    assert not any(a.secret for a in files.values())  # no key, no token (the token comes only at join time)
    kubelet = yaml.safe_load(files["/var/lib/kubelet/config.yaml"].content)
    assert kubelet["serverTLSBootstrap"] is True and "tlsCertFile" not in kubelet
    proxy = yaml.safe_load(files["/etc/kubernetes/kube-proxy.conf"].content)
    assert proxy["users"][0]["user"] == {"client-certificate": "/var/lib/kubelet/pki/kubelet-client-current.pem",
                                         "client-key": "/var/lib/kubelet/pki/kubelet-client-current.pem"}
    # ...while lw1, joined over SSH, keeps its CA-signed serving certificate and the kube-proxy key.
    lw1 = {a.path for a in render_host(ctx, spec.node("lw1"))}
    assert {"/etc/kubernetes/pki/kubelet-serving.key", "/etc/kubernetes/kube-proxy.conf"} <= lw1


def test_control_planes_run_the_approver_for_local_workers_only(spec, ctx, tmp_path):
    cp = {a.path: a for a in render_host(ctx, spec.node("lcp1"))}
    assert yaml.safe_load(cp["/etc/kubernetes/kbootstrap/nodes.json"].content) == {"lw2": "10.77.0.244"}
    assert "/etc/kubernetes/csr-approver.conf" in cp and LOCAL_JOIN in cp and CLUSTER_INFO in cp
    mini = load_inventory(LOCAL.parent / "lab-mini.yaml")
    plain = {a.path for a in render_host(RenderContext(mini, ensure_pki(mini, tmp_path), ensure_secrets(tmp_path)),
                                         mini.node("mcp1"))}
    assert CLUSTER_INFO in plain  # discovery works on every cluster, as with kubeadm...
    assert not {LOCAL_JOIN, "/etc/kubernetes/csr-approver.conf", "/etc/kubernetes/kbootstrap/nodes.json"} & plain


def test_reset_stops_the_approver_and_removes_its_files(ctx):
    from kbootstrap.phases.reset import reset_paths, services_to_stop

    lcp1 = ctx.spec.node("lcp1")
    assert services_to_stop(ctx, lcp1)[-1] == "kbootstrap-csr-approver"
    assert {"/usr/local/lib/kbootstrap/csr_approver.py", "/etc/kubernetes/kbootstrap/nodes.json",
            "/etc/systemd/system/kbootstrap-csr-approver.service"} <= set(reset_paths(ctx, lcp1))


def test_a_local_worker_gets_the_node_sync_timer_and_reset_stops_it_first(spec, ctx):
    from kbootstrap.engine.steps import ServicesStep
    from kbootstrap.phases.reset import reset_paths, services_to_stop

    sync = {"/etc/systemd/system/kbootstrap-node-sync.service", "/etc/systemd/system/kbootstrap-node-sync.timer"}
    lw2 = {a.path: a for a in render_host(ctx, spec.node("lw2"))}
    assert sync <= set(lw2) and not sync & {a.path for a in render_host(ctx, spec.node("lw1"))}
    unit = lw2["/etc/systemd/system/kbootstrap-node-sync.service"].content.decode()
    assert "--node-name lw2" in unit and "EnvironmentFile=/etc/kubernetes/kbootstrap/node-sync.env" in unit
    assert "--token" not in unit
    assert services_to_stop(ctx, spec.node("lw2"))[:3] == ["kbootstrap-node-sync.timer", "kbootstrap-node-sync",
                                                           "kubelet"]
    assert {"/etc/systemd/system/timers.target.wants/kbootstrap-node-sync.timer", *sync} <= \
           set(reset_paths(ctx, spec.node("lw2")))
    assert ServicesStep(["kbootstrap-node-sync.timer", "kubelet"], {}).wants().units == [
        "kbootstrap-node-sync.timer", "kubelet.service"]


def test_node_sync_env_holds_the_join_inputs_and_no_secret(ctx, tmp_path):
    import sys

    import kbootstrap
    from kbootstrap.local.discovery import ca_pin
    from kbootstrap.local.join import node_sync_env

    ca = ctx.pki.ca("ca").cert_pem
    env = node_sync_env("https://10.77.0.241:6443", ca, tmp_path).decode()
    values = dict(line.split("=", 1) for line in env.splitlines() if not line.startswith("#"))
    assert values == {
        "KBOOTSTRAP_PYTHON": f'"{sys.executable}"',
        "PYTHONPATH": f'"{Path(kbootstrap.__file__).resolve().parent.parent}"',
        "KBOOTSTRAP_SERVER": '"https://10.77.0.241:6443"',
        "KBOOTSTRAP_CA_CERT_HASH": f'"{ca_pin(ca)}"',
        "KBOOTSTRAP_ARTIFACTS": f'"{tmp_path}"',
    }
    with pytest.raises(LocalJoinError, match="KBOOTSTRAP_ARTIFACTS"):
        node_sync_env("https://10.77.0.241:6443", ca, tmp_path / 'a"b')


def test_the_node_renders_from_the_profile_exactly_as_the_controller_does(spec, ctx):
    """The profile carries no secret and no SSH detail, and pins the pod subnets (order no longer matters)."""
    text = profile_yaml(spec)
    assert "ssh" not in text and "vagrant" not in text and "artifacts" not in text and "lab" not in yaml.safe_load(text)
    on_node = spec_from_profile(text)
    assert on_node.pod_subnets == spec.pod_subnets and on_node.api_server_url == spec.api_server_url
    node_ctx = RenderContext(on_node, ca_only(ctx.pki.ca("ca").cert_pem), None)
    assert {a.path: a.content for a in render_host(node_ctx, on_node.node("lw2"))} == \
           {a.path: a.content for a in render_host(ctx, spec.node("lw2"))}
    reordered = yaml.safe_load(text)
    reordered["nodes"].reverse()
    assert spec_from_profile(yaml.safe_dump(reordered)).pod_subnets == spec.pod_subnets


def test_a_profile_of_another_format_is_refused():
    with pytest.raises(ProfileError, match="format 2"):
        spec_from_profile("format: 2\n")


def test_this_node_must_be_a_local_worker_with_its_address_here(spec):
    assert this_node(spec, "lw2", {"127.0.0.1", "10.77.0.244"}).name == "lw2"
    with pytest.raises(LocalJoinError, match="join: ssh"):
        this_node(spec, "lw1", {"10.77.0.243"})
    with pytest.raises(LocalJoinError, match="not a node of cluster lab-local .* lw2"):
        this_node(spec, "lw9", {"10.77.0.249"})
    with pytest.raises(LocalJoinError, match="not on this machine"):
        this_node(spec, "lw2", {"10.77.0.243"})


def test_token_ttl():
    assert _duration("90m") == dt.timedelta(minutes=90) and _duration("2d") == dt.timedelta(days=2)
    for bad in ("0h", "1w", "h", "1.5h"):
        with pytest.raises(click.BadParameter, match="expected a number and a unit"):
            _duration(bad)


@pytest.mark.parametrize("token_id", ["abc", "ABCDEF", "abcdef0", "abc-ef", "abcdef\n"])
def test_token_delete_refuses_a_malformed_id_before_connecting(token_id):
    from click.testing import CliRunner

    from kbootstrap.cli.main import main

    r = CliRunner().invoke(main, ["token", "delete", token_id, "-i", str(LOCAL)])
    assert r.exit_code == 2 and "expected the 6-character token id" in r.output, r.output


def test_the_join_keeps_what_reset_local_needs(spec, ctx, tmp_path, monkeypatch):
    from kbootstrap.local.join import Joined

    monkeypatch.setattr(Joined, "PATH", tmp_path / "joined.yaml")
    with pytest.raises(LocalJoinError, match="was not joined with `kbootstrap join --local`"):
        Joined.load()
    Joined("lw2", "https://10.77.0.241:6443", ctx.pki.ca("ca").cert_pem, profile_yaml(spec)).save()
    kept = Joined.load()
    assert (tmp_path / "joined.yaml").stat().st_mode & 0o777 == 0o600
    assert spec_from_profile(kept.profile).pod_subnets == spec.pod_subnets
    assert kept.ca_pem == ctx.pki.ca("ca").cert_pem and kept.node == "lw2"


def test_a_joined_node_trusts_its_own_ca_only_under_the_same_pin(ctx, tmp_path):
    """A re-run on a joined node uses no token and no network for trust; another cluster's pin is refused."""
    from kbootstrap.local.discovery import ca_pin
    from kbootstrap.local.join import establish_trust

    ca, cert = tmp_path / "ca.crt", tmp_path / "kubelet-client-current.pem"
    ca.write_bytes(ctx.pki.ca("ca").cert_pem)
    cert.write_text("the kubelet's, not read here")
    pin = ca_pin(ca.read_bytes())
    trust = establish_trust("https://10.77.0.241:6443", None, pin, ca_file=str(ca), client_cert=str(cert))
    assert trust.joined and trust.token is None and trust.ca_pem == ca.read_bytes()
    other = "sha256:" + "0" * 64
    with pytest.raises(LocalJoinError, match="belongs to another cluster .*reset --local"):
        establish_trust("https://10.77.0.241:6443", None, other, ca_file=str(ca), client_cert=str(cert))
    with pytest.raises(LocalJoinError, match="expected sha256:<64 hex digits>"):
        establish_trust("https://10.77.0.241:6443", None, pin[:-1], ca_file=str(ca), client_cert=str(cert))
    with pytest.raises(LocalJoinError, match="--token .* is needed"):
        establish_trust("https://10.77.0.241:6443", None, pin, ca_file=str(ca), client_cert=str(tmp_path / "none"))
