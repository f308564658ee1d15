"""`certs renew` without hosts: which names it takes, what the cluster directory reissues (and keeps), and what a
renewed certificate restarts: the services that read it (their `restarts`) or the static pods (their manifest's
digest), nothing else."""

from __future__ import annotations

import datetime as dt

import pytest
import yaml

from kbootstrap.errors import Refused
from kbootstrap.model.spec import build_spec
from kbootstrap.pki.issue import Renewal, ensure_pki
from kbootstrap.pki.secrets import ensure_secrets
from kbootstrap.render import RenderContext, render_host
from kbootstrap.render.pki_files import DIGEST_ANNOTATION
from kbootstrap.workflows.certs_renew import RENEW, renewal
from kbootstrap.workflows.table import Inputs

LATER = dt.timedelta(seconds=1)


@pytest.fixture
def small(stacked_data):
    stacked_data["certificates"] = {"key_algorithm": "ecdsa-p256"}  # fast keys; the type changes nothing here
    return stacked_data


def _files(spec, root, renew=None):
    ctx = RenderContext(spec, ensure_pki(spec, root, renewal=renew), ensure_secrets(root))
    return ctx, {n.name: {a.path: a for a in render_host(ctx, n)} for n in spec.nodes}


def _now_renewal(**kw):
    return Renewal(fresh_since=dt.datetime.now(dt.UTC) + LATER, **kw)


def test_names_are_checked_against_the_table(small):
    spec = build_spec(small)
    assert renewal(spec, ("admin.conf", "apiserver"), 60, True).names == {"kubeconfig-admin", "apiserver"}
    assert renewal(spec, (), 60, True).names == frozenset()  # every leaf
    with pytest.raises(Refused, match="is a CA"):
        renewal(spec, ("etcd-ca",), 60, True)
    with pytest.raises(Refused, match="'nope' is not a certificate of this cluster; one of: .*apiserver"):
        renewal(spec, ("nope",), 60, True)


def test_named_leaves_are_reissued_and_nothing_else(small, tmp_path):
    spec = build_spec(small)
    root = tmp_path / "cluster"
    before = ensure_pki(spec, root)
    tomorrow = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    after = ensure_pki(spec, root, now=tomorrow, renewal=Renewal(tomorrow, frozenset({"apiserver"})))
    reissued = {k for k, kc in after.certs.items() if kc.cert.serial_number != before.certs[k].cert.serial_number}
    assert reissued == {("apiserver", cp.name) for cp in spec.control_planes}
    expiry = [pki.certs[("apiserver", "cp1")].cert.not_valid_after_utc for pki in (before, after)]
    assert expiry[1] - expiry[0] == dt.timedelta(days=1)  # brought forward by the time since issue
    assert [why for _, why in after.report.reissued] == ["renewed"] * 3
    # Issued since the window began: a re-run keeps them (it pushes what the first run renewed).
    again = ensure_pki(spec, root, now=tomorrow, renewal=Renewal(tomorrow - dt.timedelta(hours=1),
                                                                  frozenset({"apiserver"})))
    assert not again.report.reissued
    assert all(kc.cert.serial_number == after.certs[k].cert.serial_number for k, kc in again.certs.items())


def test_every_leaf_but_never_a_ca_and_a_dry_run_writes_nothing(small, tmp_path):
    spec = build_spec(small)
    root = tmp_path / "cluster"
    before = ensure_pki(spec, root)
    on_disk = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    dry = ensure_pki(spec, root, renewal=_now_renewal(save=False))
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == on_disk
    changed = {k for k, kc in dry.certs.items() if kc.cert.serial_number != before.certs[k].cert.serial_number}
    assert changed == {k for k in before.certs if k[0] not in ("ca", "etcd-ca", "front-proxy-ca")}
    assert dry.keypairs["sa"].public_key().public_numbers() == before.keypairs["sa"].public_key().public_numbers()


def _pod(files, node, component):
    return yaml.safe_load(files[node][f"/etc/kubernetes/manifests/{component}.yaml"].content)


def test_a_renewed_certificate_restarts_the_static_pods_that_read_it(small, tmp_path):
    spec = build_spec(small)
    root = tmp_path / "cluster"
    _, before = _files(spec, root)
    _, after = _files(spec, root, _now_renewal(names=frozenset({"kubeconfig-scheduler", "etcd-peer"})))
    digest = {c: (_pod(before, "cp1", c)["metadata"]["annotations"][DIGEST_ANNOTATION],
                  _pod(after, "cp1", c)["metadata"]["annotations"][DIGEST_ANNOTATION])
              for c in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd")}
    assert {c for c, (b, a) in digest.items() if b != a} == {"kube-scheduler", "etcd"}
    # In the static-pod form nothing is a service that a certificate restarts but the kubelet's own.
    assert after["cp1"]["/etc/kubernetes/pki/etcd/peer.crt"].restarts == ()
    assert after["cp1"]["/etc/kubernetes/pki/kubelet-serving.crt"].restarts == ("kubelet",)


def test_in_the_systemd_form_a_certificate_restarts_its_services(small, tmp_path):
    small["cluster"]["control_plane_form"] = "systemd"
    _, files = _files(build_spec(small), tmp_path / "cluster")
    cp = files["cp1"]
    assert cp["/etc/kubernetes/pki/apiserver.crt"].restarts == ("kube-apiserver",)
    assert cp["/etc/kubernetes/pki/etcd/server.key"].restarts == ("etcd",)
    assert set(cp["/etc/kubernetes/pki/sa.key"].restarts) == {"kube-apiserver", "kube-controller-manager"}
    assert cp["/etc/kubernetes/controller-manager.conf"].restarts == ("kube-controller-manager",)
    assert cp["/etc/kubernetes/admin.conf"].restarts == ()  # read by people, not by a component
    assert files["w1"]["/etc/kubernetes/kube-proxy.conf"].restarts == ("kube-proxy",)


def test_the_table_rolls_members_and_control_planes_one_at_a_time(external_data, tmp_path):
    external_data["certificates"] = {"key_algorithm": "ecdsa-p256"}
    spec = build_spec(external_data)
    ctx, _ = _files(spec, tmp_path / "cluster")
    inputs = Inputs(ctx, spec.connected_nodes)
    inputs.__dict__["binaries"] = {}  # no bundle here: the services' inputs are the rendered files alone
    phases = RENEW.build(inputs)
    assert [(p.name, sorted(p.steps)) for p in phases] == [
        *(("etcd-members", [m.name]) for m in spec.etcd_members),
        *(("control-planes", [cp.name]) for cp in spec.control_planes),
        ("nodes", sorted(n.name for n in spec.connected_nodes
                         if n not in spec.control_planes and n not in spec.etcd_members)),
    ]
