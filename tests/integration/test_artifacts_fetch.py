"""`kbootstrap artifacts fetch|bundle|verify` against a real HTTP server on 127.0.0.1.

The server is a mirror in kubespray's files_repo layout (`/dl.k8s.io/release/...`, `/github.com/...`) holding real
files made here: executables, real gzip tarballs with the members the catalog installs, and checksum files in the
form each project publishes (a bare digest for dl.k8s.io and cri-tools; `sha256sum` lines for etcd's SHA256SUMS,
containerd, runc and the CNI plugins). The catalog rows are the real ones of 1.34.2; only the bytes differ, so the
lock used is one written for these bytes (the repository's lock pins the real upstream digests).
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import subprocess
import sys
import tarfile
import threading
from collections import defaultdict
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from kbootstrap.artifacts.catalog import Kind, release_artifacts
from kbootstrap.artifacts.errors import ArtifactError, ChecksumMismatch
from kbootstrap.artifacts.fetch import Fetcher
from kbootstrap.artifacts.lock import Lock, LockEntry, dump_lock, load_lock

VERSION = "1.34.2"
REL = release_artifacts(VERSION)


def _script(name: str, version: str) -> bytes:
    return f"#!/bin/sh\necho '{name} version v{version}'\n".encode()


def _tarball(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode = len(data), 0o755
            tar.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def _content(d) -> bytes:
    if d.kind is Kind.BINARY:
        return _script(d.component, d.version)
    return _tarball({i.member: _script(i.dest.rsplit("/", 1)[1], d.version) for i in d.install})


class Mirror:
    """A directory served over HTTP on 127.0.0.1, recording every request path."""

    def __init__(self, root: Path):
        self.root = root
        self.requests: list[str] = []
        self.files: dict[str, bytes] = {}
        mirror = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *a, **kw):
                super().__init__(*a, directory=str(root), **kw)

            def do_GET(self):  # noqa: N802
                mirror.requests.append(self.path)
                super().do_GET()

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def path_for(self, url: str) -> Path:
        p = urlsplit(url)
        return self.root / p.netloc / p.path.lstrip("/")

    def put(self, url: str, data: bytes) -> None:
        target = self.path_for(url)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def mirror(tmp_path):
    m = Mirror(tmp_path / "mirror")
    sums: dict[str, list[str]] = defaultdict(list)
    for d in REL.downloads:
        data = _content(d)
        m.files[d.component] = data
        m.put(d.url, data)
        digest = hashlib.sha256(data).hexdigest()
        if d.checksum_format == "bare":
            m.put(d.checksum_url, f"{digest}\n".encode())
        else:
            sums[d.checksum_url].append(f"{digest}  {d.filename}")
    for url, lines in sums.items():  # shared files (etcd SHA256SUMS, runc.sha256sum) hold other names too
        m.put(url, ("\n".join([f"{'0' * 64}  some-other-file.tar.gz", *lines]) + "\n").encode())
    yield m
    m.stop()


def lock_for(files: dict[str, bytes], tmp_path: Path, **override: str) -> Path:
    entries = {
        d.component: LockEntry(d.component, d.version, d.url,
                               override.get(d.component, hashlib.sha256(files[d.component]).hexdigest()), "test")
        for d in REL.downloads
    }
    path = tmp_path / "lock.json"
    path.write_text(dump_lock(Lock(VERSION, "amd64", entries)))
    return path


def cached_files(cache: Path) -> list[str]:
    return sorted(p.relative_to(cache).as_posix() for p in cache.rglob("*") if p.is_file())


def kb_artifacts(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if k != "KBOOTSTRAP_ARTIFACTS_SOURCE"}
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "kbootstrap.artifacts", *args], capture_output=True, text=True,
                          env=e, timeout=120)


# --- fetch ---------------------------------------------------------------------------------------------------------

def test_fetch_verifies_every_file_then_an_offline_rerun_reuses_the_cache(mirror, tmp_path):
    cache = tmp_path / "cache"
    lock = lock_for(mirror.files, tmp_path)
    r = kb_artifacts("fetch", "--version", VERSION, "--cache-dir", str(cache), "--source", mirror.url,
                     "--lock", str(lock))
    assert r.returncode == 0, r.stderr
    assert "verified" in r.stderr  # plain progress lines when not on a TTY
    assert "\x1b[" not in r.stderr
    manifest = json.loads((cache / "manifest.json").read_text())
    assert manifest["format"] == "kbootstrap-bundle/v1" and manifest["origin"] == "upstream"
    by_component = {f["component"]: f for f in manifest["files"]}
    assert set(by_component) == set(REL.components)
    for d in REL.downloads:
        f = by_component[d.component]
        data = (cache / f["path"]).read_bytes()
        assert data == mirror.files[d.component]
        assert f["sha256"] == hashlib.sha256(data).hexdigest() and f["size"] == len(data)
        assert f["version"] == d.version and f["url"] == d.url
    assert cached_files(cache) == sorted(["manifest.json", *(d.path for d in REL.downloads)])
    # every file and its checksum file came from the mirror, in the files_repo layout
    assert "/dl.k8s.io/release/v1.34.2/bin/linux/amd64/kubelet.sha256" in mirror.requests

    mirror.stop()  # the network is gone: a rerun must need nothing from it
    n = len(mirror.requests)
    r = kb_artifacts("fetch", "--version", VERSION, "--cache-dir", str(cache), "--offline", "--lock", str(lock))
    assert r.returncode == 0, r.stderr
    assert r.stderr.count(": cached") == len(REL.downloads)
    # without --offline too: a verified cache is not downloaded again
    r = kb_artifacts("fetch", "--version", VERSION, "--cache-dir", str(cache), "--source", mirror.url,
                     "--lock", str(lock))
    assert r.returncode == 0, r.stderr
    assert len(mirror.requests) == n


def test_source_can_come_from_the_environment(mirror, tmp_path):
    cache = tmp_path / "cache"
    r = kb_artifacts("fetch", "--version", VERSION, "--cache-dir", str(cache), "--no-lock", "--only", "kubectl",
                     env={"KBOOTSTRAP_ARTIFACTS_SOURCE": mirror.url})
    assert r.returncode == 0, r.stderr
    assert (cache / "kubectl/kubectl").read_bytes() == mirror.files["kubectl"]


def test_corrupted_download_is_refused_naming_file_expected_and_actual_and_nothing_is_kept(mirror, tmp_path):
    d = REL.get("kube-apiserver")
    good = mirror.files["kube-apiserver"]
    bad = good.replace(b"version", b"VERSION")
    mirror.put(d.url, bad)  # the published .sha256 still names the good file
    cache = tmp_path / "cache"
    r = kb_artifacts("fetch", "--version", VERSION, "--cache-dir", str(cache), "--source", mirror.url, "--no-lock",
                     "--only", "kube-apiserver")
    assert r.returncode == 1
    msg = " ".join(r.stderr.split())
    assert "kube-apiserver" in msg and "mismatch" in msg
    assert hashlib.sha256(good).hexdigest() in msg and hashlib.sha256(bad).hexdigest() in msg
    assert "Traceback" not in r.stderr
    assert [f for f in cached_files(cache) if f != "manifest.json"] == []  # no file, no partial download


def test_missing_checksum_file_is_refused_and_nothing_is_downloaded(mirror, tmp_path):
    d = REL.get("containerd")
    mirror.path_for(d.checksum_url).unlink()
    cache = tmp_path / "cache"
    with pytest.raises(ArtifactError, match=r"containerd-2\.1\.4-linux-amd64\.tar\.gz: cannot get its published checksum.*404"):
        Fetcher(REL, cache, mirror.url).run(["containerd"])
    assert not (cache / d.path).exists()
    assert not any(p.endswith(d.filename) for p in mirror.requests if not p.endswith(".sha256sum"))
    assert [f for f in cached_files(cache) if f != "manifest.json"] == []


def test_checksum_file_without_an_entry_for_the_file_is_refused(mirror, tmp_path):
    d = REL.get("etcd")
    mirror.put(d.checksum_url, f"{'1' * 64}  etcd-v9.9.9-linux-amd64.tar.gz\n".encode())
    with pytest.raises(ArtifactError, match="has no sha256 for etcd-v3.6.4-linux-amd64.tar.gz"):
        Fetcher(REL, tmp_path / "cache", mirror.url).run(["etcd"])
    assert not (tmp_path / "cache" / d.path).exists()


def test_lock_mismatch_is_refused_even_when_file_and_published_checksum_agree(mirror, tmp_path):
    wrong = "ab" * 32
    lock = load_lock(lock_for(mirror.files, tmp_path, kubelet=wrong))
    cache = tmp_path / "cache"
    with pytest.raises(ChecksumMismatch) as e:
        Fetcher(REL, cache, mirror.url, lock).run(["kubelet"])
    assert e.value.expected == wrong
    assert e.value.actual == hashlib.sha256(mirror.files["kubelet"]).hexdigest()
    assert "kubelet" in str(e.value) and "lock" in str(e.value)
    assert not (cache / "kubelet/kubelet").exists()
    # the published checksum is compared with the lock before the download: the binary was never requested
    assert "/dl.k8s.io/release/v1.34.2/bin/linux/amd64/kubelet" not in mirror.requests


def test_lock_mismatch_on_the_cli_exits_1_with_a_clear_message(mirror, tmp_path):
    lock = lock_for(mirror.files, tmp_path, crictl="cd" * 32)
    r = kb_artifacts("fetch", "--version", VERSION, "--cache-dir", str(tmp_path / "c"), "--source", mirror.url,
                     "--lock", str(lock), "--only", "crictl")
    assert r.returncode == 1
    msg = " ".join(r.stderr.split())
    assert "crictl-v1.34.0-linux-amd64.tar.gz" in msg and "cd" * 32 in msg and "lock" in msg


def test_a_tampered_cache_file_is_fetched_again_and_refused_offline(mirror, tmp_path):
    cache = tmp_path / "cache"
    lock = load_lock(lock_for(mirror.files, tmp_path))
    Fetcher(REL, cache, mirror.url, lock).run(["kube-proxy"])
    (cache / "kube-proxy/kube-proxy").write_bytes(b"#!/bin/sh\necho owned\n")
    with pytest.raises(ArtifactError, match="not in the cache"):
        Fetcher(REL, cache, None, lock, offline=True).run(["kube-proxy"])
    assert not (cache / "kube-proxy/kube-proxy").exists()  # the tampered copy is gone, not reused
    assert "kube-proxy" not in (cache / "manifest.json").read_text()  # and the cache no longer claims it
    Fetcher(REL, cache, mirror.url, lock).run(["kube-proxy"])
    assert (cache / "kube-proxy/kube-proxy").read_bytes() == mirror.files["kube-proxy"]


def test_server_error_midway_leaves_no_partial_file(mirror, tmp_path):
    d = REL.get("runc")
    mirror.path_for(d.url).unlink()  # checksum published, file gone (404)
    cache = tmp_path / "cache"
    with pytest.raises(ArtifactError, match="HTTP 404"):
        Fetcher(REL, cache, mirror.url).run(["runc"])
    assert [f for f in cached_files(cache) if f != "manifest.json"] == []
    assert not list(cache.rglob(".*part*"))


# --- bundle and verify ------------------------------------------------------------------------------------------

def test_bundle_directory_and_tarball_verify_and_tampering_is_reported(mirror, tmp_path):
    cache = tmp_path / "cache"
    lock = lock_for(mirror.files, tmp_path)
    assert kb_artifacts("fetch", "--cache-dir", str(cache), "--source", mirror.url, "--lock", str(lock)).returncode == 0
    out, tar = tmp_path / "bundle", tmp_path / "bundle.tar.gz"
    r = kb_artifacts("bundle", "--from", str(cache), "-o", str(out), "--tar", str(tar))
    assert r.returncode == 0, r.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert {f["component"] for f in manifest["files"]} == set(REL.components)
    for f in manifest["files"]:
        assert {"path", "sha256", "size", "component", "version", "kind", "install"} <= f.keys()
    with tarfile.open(tar) as t:
        names = t.getnames()
    assert names[0] == "manifest.json" and set(names[1:]) == {f["path"] for f in manifest["files"]}

    for target in (out, tar, cache):
        r = kb_artifacts("verify", str(target))
        assert r.returncode == 0, r.stderr
        assert f"{len(REL.downloads)} file(s) verified" in " ".join(r.stdout.split())

    # a changed byte, a missing file and a stray file are each named
    (out / "kubelet/kubelet").write_bytes(b"#!/bin/sh\necho changed\n")
    (out / "etcd" / REL.get("etcd").filename).unlink()
    (out / "stray.bin").write_bytes(b"x")
    r = kb_artifacts("verify", str(out))
    assert r.returncode == 1
    msg = " ".join(r.stderr.split())
    assert "kubelet/kubelet: size" in msg or "kubelet/kubelet: sha256" in msg
    assert "etcd-v3.6.4-linux-amd64.tar.gz: missing" in msg
    assert "stray.bin: not listed in the manifest" in msg


def test_bundle_refuses_a_source_that_no_longer_matches_its_manifest(mirror, tmp_path):
    cache = tmp_path / "cache"
    Fetcher(REL, cache, mirror.url).run(["kubectl"])
    (cache / "kubectl/kubectl").write_bytes(b"changed")
    r = kb_artifacts("bundle", "--from", str(cache), "-o", str(tmp_path / "b"))
    assert r.returncode == 1 and "refusing to bundle" in r.stderr
    assert not (tmp_path / "b" / "manifest.json").exists()
