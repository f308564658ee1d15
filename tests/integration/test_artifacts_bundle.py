"""The lab bundles built from source (`lab/build-bundle.sh VERSION`): each verifies, and every binary reports its pin
(or the substitute the manifest records, with its reason).

Runs once per supported release whose bundle exists (build it first: `lab/build-bundle.sh VERSION`, ~30+ min cold on
2 cores); a missing one skips, or fails under KB_FORBID_SKIPS when KB_BUNDLE_VERSIONS lists it (conftest.py). Set
KB_BUNDLE_DIR to check another directory. Takes a few seconds a bundle: it hashes ~700 MB and runs each binary once.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kbootstrap.artifacts.catalog import CNI_PLUGINS, KUBE_BINARIES, PINS, Kind, release_artifacts
from kbootstrap.artifacts.manifest import verify_dir
from kbootstrap.model import versions

pytestmark = pytest.mark.bundle


@pytest.fixture(scope="module")
def bundle(lab_bundle):
    """(version, directory, manifest) of a lab bundle that verifies: every file's sha256 and size as listed."""
    version, path = lab_bundle
    m, problems = verify_dir(path)
    assert problems == [], problems
    return version, path, m


def _run(path: Path, *args: str) -> str:
    r = subprocess.run([str(path), *args], capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
    return (r.stdout + r.stderr).strip()


def test_bundle_is_complete_and_in_the_artifacts_bundle_format(bundle):
    version, _, manifest = bundle
    rel = versions.release(version)
    assert manifest.origin == "built" and manifest.kubernetes == version
    names = {Path(f.path).name for f in manifest.files if f.kind is Kind.BINARY}
    assert {*KUBE_BINARIES, "etcd", "etcdctl", "etcdutl", "crictl", *CNI_PLUGINS, "containerd", "containerd-shim-runc-v2",
            "ctr", "runc"} <= names
    images = {f.image for f in manifest.files if f.kind is Kind.OCI_IMAGE}
    assert f"registry.k8s.io/pause:{rel.pause}" in images
    assert f"registry.k8s.io/kube-apiserver:{rel.tag}" in images and f"registry.k8s.io/etcd:{rel.etcd}-0" in images
    # installs land where the upstream files of the catalog would put them
    dests = {i.dest for f in manifest.files for i in f.install}
    upstream = {i.dest for d in release_artifacts(version).downloads for i in d.install}
    assert upstream <= dests
    assert manifest.info["recipe"] and "timings" in manifest.info


@pytest.mark.parametrize("name", list(KUBE_BINARIES))
def test_kubernetes_binary_reports_the_pinned_version(bundle, name):
    version, path, _ = bundle
    args = ("version", "--client") if name == "kubectl" else ("--version",)
    out = _run(path / name / name, *args)
    assert f"v{version}" in out, out
    assert "v0.0.0" not in out


def _pin_or_recorded_substitute(manifest, component: str, module: str, pin: str) -> str:
    """The version a node tool must report: its catalog pin, or the lab substitute the manifest records for it."""
    (entry,) = {f.version for f in manifest.files if f.component == component}
    if entry != pin:
        subs = [s for s in manifest.info["substitutions"] if s["module"] == module]
        assert [(s["wanted"], s["used"]) for s in subs] == [(f"v{pin}", f"v{entry}")], subs
        assert subs[0]["why"], subs
    return entry


def test_node_and_etcd_binaries_report_their_pins(bundle):
    version, path, manifest = bundle
    rel = versions.release(version)
    pins = PINS[rel.minor]
    crictl = _pin_or_recorded_substitute(manifest, "crictl", "sigs.k8s.io/cri-tools", pins.crictl)
    assert f"etcd Version: {rel.etcd}" in _run(path / "etcd/etcd", "--version")
    assert f"etcdctl version: {rel.etcd}" in _run(path / "etcd/etcdctl", "version")
    assert f"etcdutl version: {rel.etcd}" in _run(path / "etcd/etcdutl", "version")
    assert f"v{crictl}" in _run(path / "crictl/crictl", "--version")
    assert f"v{pins.containerd}" in _run(path / "containerd/containerd", "--version")
    assert f"v{pins.containerd}" in _run(path / "containerd/ctr", "--version")
    assert f"runc version {pins.runc}" in _run(path / "runc/runc", "--version")
    for p in CNI_PLUGINS:
        assert f"v{pins.cni_plugins}" in _run(path / "cni-plugins" / p), p


def test_control_plane_binaries_are_static(bundle):
    _, path, _ = bundle
    for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "kubectl"):
        r = subprocess.run(["ldd", str(path / name / name)], capture_output=True, text=True)
        out = r.stdout + r.stderr
        assert "not a dynamic executable" in out or "statically linked" in out, (name, out)
