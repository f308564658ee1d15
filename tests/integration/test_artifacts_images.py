"""Locally built OCI image archives import into a real containerd and run.

A private containerd (Debian's) is started for the test with its own root, state and socket in a temporary
directory and the CRI plugin disabled; it is stopped by its PID afterwards. `ctr -n k8s.io images import` —
exactly what kbootstrap runs on a node — must accept each archive under its reference, unpack it, and
`ctr run` must start the image's program.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import pytest

from kbootstrap.artifacts.images import binary_image, build_image_archive, build_pause_binary, pause_image
from kbootstrap.model import versions

NS = "k8s.io"


def _need(*progs: str) -> None:
    missing = [p for p in progs if shutil.which(p) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (apt-get install containerd runc gcc libc6-dev)")


@pytest.fixture(scope="module")
def containerd(tmp_path_factory):
    _need("containerd", "ctr", "runc", "gcc")
    if os.geteuid() != 0:
        pytest.skip("containerd needs root")
    d = tmp_path_factory.mktemp("ctrd")
    sock = d / "containerd.sock"
    config = d / "config.toml"
    config.write_text(
        "version = 2\n"
        f'root = "{d}/root"\nstate = "{d}/state"\n'
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
        f'[grpc]\n  address = "{sock}"\n'
        f'[ttrpc]\n  address = "{sock}.ttrpc"\n'
        f'[debug]\n  address = "{sock}.debug"\n'
    )
    log = open(d / "containerd.log", "wb")
    proc = subprocess.Popen(["containerd", "--config", str(config)], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            r = subprocess.run(["ctr", "-a", str(sock), "version"], capture_output=True, text=True)
            if r.returncode == 0:
                break
            if proc.poll() is not None:
                pytest.fail(f"containerd exited: {(d / 'containerd.log').read_text()[-2000:]}")
            time.sleep(0.2)
        else:
            pytest.fail(f"containerd did not answer: {(d / 'containerd.log').read_text()[-2000:]}")
        yield str(sock)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()
        # containerd leaves overlay mounts of unpacked snapshots only while running; make sure none remain
        with open("/proc/self/mounts") as f:
            for line in f:
                mnt = line.split()[1]
                if mnt.startswith(str(d)):
                    subprocess.run(["umount", "-l", mnt], capture_output=True)


def ctr(sock: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["ctr", "-a", sock, "-n", NS, *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.tools
def test_pause_image_imports_under_its_reference_and_runs(containerd, tmp_path):
    rel = versions.release(versions.DEFAULT_VERSION)
    ref = f"registry.k8s.io/pause:{rel.pause}"
    binary = build_pause_binary(tmp_path / "pause", rel.pause)
    archive = tmp_path / f"pause-{rel.pause}.tar"
    digest = build_image_archive(pause_image(ref, binary.read_bytes()), archive)

    r = ctr(containerd, "images", "import", str(archive))
    assert r.returncode == 0, r.stderr
    r = ctr(containerd, "images", "ls")
    assert ref in r.stdout and digest in r.stdout, r.stdout
    r = ctr(containerd, "images", "check")
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith(ref))
    assert "complete" in line, r.stdout
    # the image's program runs (version flag so it exits at once)
    r = ctr(containerd, "run", "--rm", ref, f"kbt-pause-{os.getpid()}", "/pause", "-v")
    assert r.returncode == 0, r.stderr
    assert f"pause.c {rel.pause}" in r.stdout


@pytest.mark.tools
def test_static_pod_style_image_resolves_its_command_on_path(containerd, tmp_path):
    # A static binary stands in for etcd: the image puts it in /usr/local/bin, and the kubelet (like ctr here)
    # starts it by bare name, as the rendered static pod manifests do (`command: [etcd, ...]`).
    tool = build_pause_binary(tmp_path / "tool", "img-test")
    ref = "registry.k8s.io/etcd:0.0.0-test"
    archive = tmp_path / "etcd.tar"
    build_image_archive(binary_image(ref, {"etcd": tool.read_bytes()}), archive)
    assert ctr(containerd, "images", "import", str(archive)).returncode == 0
    r = ctr(containerd, "run", "--rm", ref, f"kbt-etcdtest-{os.getpid()}", "etcd", "--version")
    assert r.returncode == 0, r.stderr
    assert "img-test" in r.stdout


# Not `tools`: a missing bundle skips or fails by KB_BUNDLE_VERSIONS and KB_FORBID_SKIPS (conftest.py's lab_bundle),
# once per supported release.
@pytest.mark.bundle
def test_every_image_of_the_lab_bundle_imports_and_runs_the_pinned_binary(lab_bundle, containerd):
    from kbootstrap.artifacts.catalog import Kind
    from kbootstrap.artifacts.manifest import read_manifest

    version, root = lab_bundle
    manifest = read_manifest(root)
    assert manifest.kubernetes == version
    images = [f for f in manifest.files if f.kind is Kind.OCI_IMAGE]
    assert len(images) >= 5
    for f in images:
        r = ctr(containerd, "images", "import", str(root / f.path), timeout=300)
        assert r.returncode == 0, (f.path, r.stderr)
        assert f.image in ctr(containerd, "images", "ls", "-q").stdout
        if f.component == "pause":
            args = ["/pause", "-v"]
        elif f.component == "etcd":
            args = ["etcd", "--version"]
        else:
            args = [f.component, "--version"]
        name = f"kbt-bundle-{version}-{f.component}-{os.getpid()}".replace(".", "-")
        r = ctr(containerd, "run", "--rm", f.image, name, *args, timeout=120)
        assert r.returncode == 0, (f.image, r.stderr)
        assert f.version in r.stdout, (f.image, r.stdout)
