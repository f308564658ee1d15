"""The lab bundle built from source (`lab/build-bundle.sh`): it verifies, and every binary reports its pin.

Skipped unless the bundle exists (build it first: `lab/build-bundle.sh`, ~30+ min cold on 2 cores). Set
KB_BUNDLE_DIR to check another directory. Takes a few seconds: it hashes ~600 MB and runs each binary once.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from kbootstrap import versions
from kbootstrap.artifacts.build import default_bundle_dir
from kbootstrap.artifacts.catalog import CNI_PLUGINS, KUBE_BINARIES, PINS, Kind, release_artifacts
from kbootstrap.artifacts.manifest import verify_dir

VERSION = versions.DEFAULT_VERSION
BUNDLE = Path(os.environ.get("KB_BUNDLE_DIR") or default_bundle_dir(VERSION))

pytestmark = [
    pytest.mark.bundle,
    pytest.mark.skipif(not (BUNDLE / "manifest.json").is_file(),
                       reason=f"no lab bundle at {BUNDLE} (build it with lab/build-bundle.sh {VERSION})"),
]


@pytest.fixture(scope="module")
def manifest():
    m, problems = verify_dir(BUNDLE)
    assert problems == [], problems
    return m


def _run(path: Path, *args: str) -> str:
    r = subprocess.run([str(path), *args], capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
    return (r.stdout + r.stderr).strip()


def test_bundle_is_complete_and_in_the_artifacts_bundle_format(manifest):
    rel = versions.release(VERSION)
    assert manifest.origin == "built" and manifest.kubernetes == VERSION
    names = {Path(f.path).name for f in manifest.files if f.kind is Kind.BINARY}
    assert {*KUBE_BINARIES, "etcd", "etcdctl", "crictl", *CNI_PLUGINS, "containerd", "containerd-shim-runc-v2",
            "ctr", "runc"} <= names
    images = {f.image for f in manifest.files if f.kind is Kind.OCI_IMAGE}
    assert f"registry.k8s.io/pause:{rel.pause}" in images
    assert f"registry.k8s.io/kube-apiserver:{rel.tag}" in images and f"registry.k8s.io/etcd:{rel.etcd}-0" in images
    # installs land where the upstream files of the catalog would put them
    dests = {i.dest for f in manifest.files for i in f.install}
    upstream = {i.dest for d in release_artifacts(VERSION).downloads for i in d.install}
    assert upstream <= dests
    assert manifest.info["recipe"] and "timings" in manifest.info


@pytest.mark.parametrize("name", list(KUBE_BINARIES))
def test_kubernetes_binary_reports_the_pinned_version(manifest, name):
    args = ("version", "--client") if name == "kubectl" else ("--version",)
    out = _run(BUNDLE / name / name, *args)
    assert f"v{VERSION}" in out, out
    assert "v0.0.0" not in out


def test_node_and_etcd_binaries_report_their_pins(manifest):
    rel = versions.release(VERSION)
    pins = PINS[rel.minor]
    assert f"etcd Version: {rel.etcd}" in _run(BUNDLE / "etcd/etcd", "--version")
    assert f"etcdctl version: {rel.etcd}" in _run(BUNDLE / "etcd/etcdctl", "version")
    assert f"v{pins.crictl}" in _run(BUNDLE / "crictl/crictl", "--version")
    assert f"v{pins.containerd}" in _run(BUNDLE / "containerd/containerd", "--version")
    assert f"v{pins.containerd}" in _run(BUNDLE / "containerd/ctr", "--version")
    assert f"runc version {pins.runc}" in _run(BUNDLE / "runc/runc", "--version")
    for p in CNI_PLUGINS:
        assert f"v{pins.cni_plugins}" in _run(BUNDLE / "cni-plugins" / p), p


def test_control_plane_binaries_are_static(manifest):
    for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "kubectl"):
        out = subprocess.run(["ldd", str(BUNDLE / name / name)], capture_output=True, text=True).stdout + \
            subprocess.run(["ldd", str(BUNDLE / name / name)], capture_output=True, text=True).stderr
        assert "not a dynamic executable" in out or "statically linked" in out, (name, out)
