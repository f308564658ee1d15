"""The artifact catalog, lock files, checksum parsing, the bundle manifest and OCI image archives (pure Python)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from kbootstrap.artifacts import build
from kbootstrap.artifacts.catalog import (
    CNI_PLUGINS,
    KUBE_BINARIES,
    OS_PACKAGES,
    PINS,
    Install,
    Kind,
    control_plane_images,
    mirror_url,
    packages_for,
    release_artifacts,
)
from kbootstrap.artifacts.cli import artifacts
from kbootstrap.artifacts.debs import compare_versions, debs_for, debs_to_install, installed_versions
from kbootstrap.artifacts.errors import ArtifactError
from kbootstrap.artifacts.fetch import parse_checksum
from kbootstrap.artifacts.images import LayerFile, binary_image, build_image_archive, layer_tar, pause_image
from kbootstrap.artifacts.lock import load_lock, lock_path
from kbootstrap.artifacts.manifest import Manifest, ManifestFile, verify_dir, write_manifest
from kbootstrap.model import versions

ALL = list(versions.SUPPORTED)


# --- catalog -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("version", ALL)
def test_catalog_pins_every_component_from_its_official_release_url(version):
    rel = release_artifacts(version)
    r = versions.release(version)
    assert set(rel.components) == {*KUBE_BINARIES, "etcd", "containerd", "runc", "crictl", "cni-plugins"}
    for name in KUBE_BINARIES:
        d = rel.get(name)
        assert d.url == f"https://dl.k8s.io/release/v{version}/bin/linux/amd64/{name}"
        assert d.checksum_url == d.url + ".sha256" and d.kind is Kind.BINARY
    etcd = rel.get("etcd")
    assert etcd.version == r.etcd  # the etcd kubeadm pairs with this release
    assert etcd.url.startswith(f"https://github.com/etcd-io/etcd/releases/download/v{r.etcd}/")
    assert etcd.checksum_url.endswith("/SHA256SUMS")
    assert {i.dest for i in etcd.install} == {"/usr/local/bin/etcd", "/usr/local/bin/etcdctl", "/usr/local/bin/etcdutl"}
    assert {i.dest for i in rel.get("cni-plugins").install} == {f"/opt/cni/bin/{p}" for p in CNI_PLUGINS}
    for d in rel.downloads:
        assert d.url.startswith(("https://dl.k8s.io/", "https://github.com/")), d.url
        assert d.path == f"{d.component}/{d.filename}"
        assert all(i.dest.startswith("/") for i in d.install)
    assert [i.ref for i in rel.images] == [f"registry.k8s.io/pause:{r.pause}"]


def test_containerd_pin_meets_the_minimum_containerd_recommends_for_the_release():
    # containerd RELEASES.md, "Kubernetes Support": 1.34 → 2.1.3+ (2.x line); 1.33 → 2.1.0+.
    minimum = {"1.34": (2, 1, 3), "1.33": (2, 1, 0)}
    for minor, pins in PINS.items():
        assert tuple(int(x) for x in pins.containerd.split(".")) >= minimum[minor]


def test_control_plane_images_are_named_as_render_names_them():
    refs = [i.ref for i in control_plane_images("1.34.2")]
    assert "registry.k8s.io/kube-apiserver:v1.34.2" in refs and "registry.k8s.io/etcd:3.6.4-0" in refs


def test_mirror_url_uses_the_files_repo_layout():
    url = "https://dl.k8s.io/release/v1.34.2/bin/linux/amd64/kubelet"
    assert mirror_url(url, None) == url
    assert mirror_url(url, "http://10.0.0.5:8080/mirror/") == \
        "http://10.0.0.5:8080/mirror/dl.k8s.io/release/v1.34.2/bin/linux/amd64/kubelet"
    assert mirror_url(url, "file:///srv/files") == "file:///srv/files/dl.k8s.io/release/v1.34.2/bin/linux/amd64/kubelet"


# --- lock files ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("version", ALL)
def test_lock_file_matches_the_catalog_and_every_pinned_digest_names_its_source(version):
    lock = load_lock(lock_path(version))
    assert lock.kubernetes == version
    assert lock.check_against(release_artifacts(version)) == []
    pinned = [e for e in lock.entries.values() if e.sha256]
    assert pinned, "at least the kubelet/kubectl digests are published by kubespray"
    for e in pinned:
        assert "kubespray" in e.source and "checksums.yml" in e.source and e.component.split("-")[0] in e.source
    for e in lock.entries.values():
        if e.sha256 is None:
            assert e.source.startswith("not pinned")


def test_lock_pins_the_kubelet_digest_kubespray_publishes():
    lock = load_lock(lock_path("1.34.2"))
    assert lock.get("kubelet").sha256 == "9c5e717b774ee9b9285ce47e7d2150c29e84837eb19a7eaa24b60b1543c9d58f"


def test_a_malformed_lock_digest_is_rejected(tmp_path):
    p = tmp_path / "lock.json"
    p.write_text(json.dumps({"kubernetes": "1.34.2", "files": {"kubelet": {"version": "1.34.2", "url": "u",
                                                                          "sha256": "ABC"}}}))
    with pytest.raises(ArtifactError, match="kubelet.sha256 is not a lower-case hex sha256"):
        load_lock(p)


# --- published checksum files ---------------------------------------------------------------------------------------

H1, H2 = "a" * 64, "b" * 64


def test_parse_bare_digest_as_dl_k8s_io_publishes_it():
    assert parse_checksum(f"{H1}\n", "kubelet", "u") == H1


def test_parse_sha256sum_lines_picks_the_named_file():
    text = f"{H2}  etcd-v3.6.4-darwin-arm64.zip\n{H1}  etcd-v3.6.4-linux-amd64.tar.gz\n"
    assert parse_checksum(text, "etcd-v3.6.4-linux-amd64.tar.gz", "u") == H1
    assert parse_checksum(f"{H1.upper()} *runc.amd64\n", "runc.amd64", "u") == H1
    assert parse_checksum(f"{H1}  ./dist/cni.tgz\n", "cni.tgz", "u") == H1


def test_parse_refuses_a_file_without_an_entry_for_the_name():
    with pytest.raises(ArtifactError, match="no sha256 for kubelet"):
        parse_checksum(f"{H1}  kubectl\n", "kubelet", "u")
    with pytest.raises(ArtifactError):
        parse_checksum("<html>not found</html>", "kubelet", "u")


# --- manifest ---------------------------------------------------------------------------------------------------------

def _bundle(tmp_path: Path) -> Path:
    root = tmp_path / "b"
    (root / "kubelet").mkdir(parents=True)
    data = b"#!/bin/sh\necho kubelet\n"
    (root / "kubelet/kubelet").write_bytes(data)
    entry = ManifestFile("kubelet/kubelet", hashlib.sha256(data).hexdigest(), len(data), "kubelet", "1.34.2",
                         Kind.BINARY, (Install("/usr/local/bin/kubelet"),), "https://dl.k8s.io/x", None, ("node",))
    write_manifest(root, Manifest("1.34.2", "amd64", "upstream", (entry,)))
    return root


def test_manifest_round_trips_and_verifies(tmp_path):
    root = _bundle(tmp_path)
    manifest, problems = verify_dir(root)
    assert problems == []
    again = Manifest.from_json(manifest.to_json(), "x")
    assert again == manifest
    assert again.files[0].install == (Install("/usr/local/bin/kubelet", None, 0o755),)


def test_verify_names_changed_missing_and_unlisted_files(tmp_path):
    root = _bundle(tmp_path)
    (root / "kubelet/kubelet").write_bytes(b"#!/bin/sh\necho KUBELET\n")  # same size, other bytes
    (root / "extra").write_text("x")
    _, problems = verify_dir(root)
    assert [str(p).split(":")[0] for p in problems] == ["kubelet/kubelet", "extra"]
    assert "sha256" in problems[0].message
    (root / "kubelet/kubelet").unlink()
    _, problems = verify_dir(root)
    assert problems[0].message == "missing"


@pytest.mark.parametrize("path", ["/etc/passwd", "../x", "a/../../x", "manifest.json"])
def test_manifest_refuses_unsafe_paths(path):
    bad = {"format": "kbootstrap-bundle/v1", "kubernetes": "1.34.2", "arch": "amd64", "origin": "upstream",
           "files": [{"path": path, "sha256": H1, "size": 1, "component": "x", "version": "1", "kind": "binary"}]}
    with pytest.raises(ArtifactError, match="unsafe path"):
        Manifest.from_json(json.dumps(bad), "m")


def test_manifest_refuses_an_unknown_format():
    with pytest.raises(ArtifactError, match="unknown bundle format"):
        Manifest.from_json(json.dumps({"format": "other/v9", "files": []}), "m")


# --- OS packages (.debs) ----------------------------------------------------------------------------------------------

def _deb_entry(package: str, version: str, roles: tuple[str, ...], component: str | None = None) -> ManifestFile:
    path = f"debs/{package}_{version.split(':', 1)[-1]}_amd64.deb"
    return ManifestFile(path, H1, 10, component or package, version, Kind.DEB, (), f"http://deb.debian.org/{path}",
                        None, roles, package)


def test_a_deb_entry_round_trips_and_old_manifests_load_without_package():
    entry = _deb_entry("conntrack", "1:1.4.7-1+b2", ("node",))
    m = Manifest("1.34.2", "amd64", "built", (entry,))
    again = Manifest.from_json(m.to_json(), "m")
    assert again == m and again.files[0].package == "conntrack" and again.files[0].kind is Kind.DEB
    assert json.loads(m.to_json())["files"][0]["kind"] == "deb"
    old = {"format": "kbootstrap-bundle/v1", "kubernetes": "1.34.2", "arch": "amd64", "origin": "built",
           "files": [{"path": "kubelet/kubelet", "sha256": H1, "size": 1, "component": "kubelet", "version": "1.34.2",
                      "kind": "binary", "install": [{"dest": "/usr/local/bin/kubelet", "mode": "0755"}]}]}
    loaded = Manifest.from_json(json.dumps(old), "m")
    assert loaded.files[0].package is None
    assert "package" not in json.loads(loaded.to_json())["files"][0]  # old manifests are written back as they were


def test_os_package_table_names_roles_and_reasons():
    assert packages_for({"loadbalancer"}) == ["haproxy", "keepalived"]
    assert packages_for({"node"}) == ["iptables", "conntrack"]
    assert packages_for({"node", "loadbalancer"}) == ["haproxy", "keepalived", "iptables", "conntrack"]
    assert packages_for({"etcd", "admin"}) == []
    for p in OS_PACKAGES:
        assert p.why and set(p.roles) <= {"loadbalancer", "node"}


def test_debs_for_gives_a_roles_debs_sorted_and_nothing_else():
    files = (_deb_entry("libnl-3-200", "3.7.0-0.2+b1", ("loadbalancer",), "keepalived"),
             _deb_entry("iptables", "1.8.9-2", ("node",)),
             _deb_entry("libnfnetlink0", "1.0.2-2", ("loadbalancer", "node"), "keepalived"),
             _deb_entry("haproxy", "2.6.12-1+deb12u4", ("loadbalancer",)),
             ManifestFile("kubelet/kubelet", H1, 1, "kubelet", "1.34.2", Kind.BINARY, (), None, None, ("node",)))
    m = Manifest("1.34.2", "amd64", "built", files)
    assert [f.package for f in debs_for(m, {"loadbalancer"})] == ["haproxy", "libnfnetlink0", "libnl-3-200"]
    assert [f.package for f in debs_for(m, {"node", "control-plane"})] == ["iptables", "libnfnetlink0"]
    assert debs_for(m, {"etcd"}) == []


def test_debs_to_install_skips_what_is_installed_and_never_downgrades():
    debs = [_deb_entry("haproxy", "2.6.12-1+deb12u4", ("loadbalancer",)),
            _deb_entry("libssl3", "3.0.17-1~deb12u2", ("loadbalancer",)),
            _deb_entry("perl-base", "5.36.0-7+deb12u4", ("loadbalancer",)),
            _deb_entry("liblua5.3-0", "5.3.6-2", ("loadbalancer",))]
    query = ("libssl3\t3.0.17-1~deb12u3\tinstall ok installed\n"   # newer: kept
             "perl-base\t5.36.0-7+deb12u2\tinstall ok installed\n"  # older: upgraded
             "liblua5.3-0\t5.3.6-2\tinstall ok installed\n"         # same: nothing to do
             "haproxy\t2.6.12-1+deb12u4\tdeinstall ok config-files\n")  # removed, config left: install
    installed = installed_versions(query)
    assert installed == {"libssl3": "3.0.17-1~deb12u3", "perl-base": "5.36.0-7+deb12u2", "liblua5.3-0": "5.3.6-2"}
    assert [f.package for f in debs_to_install(debs, installed)] == ["haproxy", "perl-base"]
    assert compare_versions("1:1.0", "9.9") > 0 and compare_versions("1.0~rc1", "1.0") < 0
    assert compare_versions("1.0-1+b1", "1.0-1") > 0 and compare_versions("1.00", "1.0") == 0


def test_the_build_recipe_hashes_what_it_takes_from_the_catalog_not_the_whole_file():
    recipe, _ = build.recipe_for("1.34.2", "go1.26.8")
    assert "catalog.py" not in recipe["sources"]
    assert recipe["sources"]["catalog"] == build.catalog_inputs("1.34.2") != build.catalog_inputs("1.33.6")


# --- OCI image archives ----------------------------------------------------------------------------------------------

def _read_archive(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as t:
        return {m.name: t.extractfile(m).read() for m in t.getmembers() if m.isfile()}


def test_image_archive_is_a_consistent_oci_layout(tmp_path):
    out = tmp_path / "pause.tar"
    digest = build_image_archive(pause_image("registry.k8s.io/pause:3.10.1", b"\x7fELF-pause"), out)
    files = _read_archive(out)
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    for name, data in files.items():  # every blob is named by its own digest
        if name.startswith("blobs/sha256/"):
            assert hashlib.sha256(data).hexdigest() == name.rsplit("/", 1)[1]
    index = json.loads(files["index.json"])
    (desc,) = index["manifests"]
    assert desc["digest"] == digest
    assert desc["annotations"] == {"io.containerd.image.name": "registry.k8s.io/pause:3.10.1",
                                   "org.opencontainers.image.ref.name": "3.10.1"}
    manifest = json.loads(files[f"blobs/sha256/{digest[7:]}"])
    config = json.loads(files[f"blobs/sha256/{manifest['config']['digest'][7:]}"])
    layer = files[f"blobs/sha256/{manifest['layers'][0]['digest'][7:]}"]
    raw = gzip.decompress(layer)
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(raw).hexdigest()]
    assert config["config"]["Entrypoint"] == ["/pause"] and config["config"]["User"] == "65535:65535"
    with tarfile.open(fileobj=io.BytesIO(raw)) as t:
        (m,) = t.getmembers()
        assert m.name == "pause" and m.mode == 0o755 and t.extractfile(m).read() == b"\x7fELF-pause"


def test_image_archive_is_byte_for_byte_reproducible(tmp_path):
    spec = binary_image("registry.k8s.io/kube-apiserver:v1.34.2", {"kube-apiserver": b"bin"})
    a, b = tmp_path / "a.tar", tmp_path / "b.tar"
    assert build_image_archive(spec, a) == build_image_archive(spec, b)
    assert a.read_bytes() == b.read_bytes()


def test_layer_adds_parent_directories_and_refuses_relative_paths():
    raw = layer_tar((LayerFile("/usr/local/bin/etcd", b"x"),))
    with tarfile.open(fileobj=io.BytesIO(raw)) as t:
        assert [m.name for m in t.getmembers()] == ["usr", "usr/local", "usr/local/bin", "usr/local/bin/etcd"]
    with pytest.raises(ArtifactError):
        layer_tar((LayerFile("../etc/passwd", b"x"),))


# --- lab build: version resolution and the recipe key ----------------------------------------------------------------

class FakeGo:
    def __init__(self, served: dict[str, list[str]]):
        self.served = served

    def download(self, module, version):
        return {"Dir": "/x", "Sum": "h1:x"} if version in self.served.get(module, []) else None

    def versions_of(self, module):
        return ["v0.34.0", "v0.34.1", "v0.34.4", "v0.35.0", *self.served.get(module, [])]


def test_resolve_uses_the_exact_version_when_the_proxy_serves_it():
    assert build.resolve(FakeGo({"k8s.io/api": ["v0.34.2"]}), "k8s.io/api", "v0.34.2")[0] == "v0.34.2"


def test_resolve_falls_back_to_the_nearest_served_patch_of_the_same_minor():
    go = FakeGo({"k8s.io/endpointslice": ["v0.34.1", "v0.34.4", "v0.35.0"]})
    assert build.resolve(go, "k8s.io/endpointslice", "v0.34.2")[0] == "v0.34.1"
    go = FakeGo({"k8s.io/x": ["v0.35.0"]})
    with pytest.raises(ArtifactError, match="nor any v0.34.x patch"):
        build.resolve(go, "k8s.io/x", "v0.34.2")


def test_a_module_with_no_patch_of_its_minor_takes_its_lab_stand_in_and_says_why():
    # The proxy serves no cri-tools v1.33.x at all (403, its version list too): the lab build takes crictl 1.34.0.
    go = FakeGo({"sigs.k8s.io/cri-tools": ["v1.34.0"]})
    go.versions_of = lambda module: []
    go.last_error = "reading https://proxy.golang.org/sigs.k8s.io/cri-tools/@v/v1.33.0.info: 403 Forbidden"
    why: dict = {}
    assert build.resolve_lab(go, "sigs.k8s.io/cri-tools", "v1.33.0", why)[0] == "v1.34.0"
    assert why["why"].startswith("module proxy refuses this version, nor any v1.33.x patch; lab-only stand-in")
    assert "CRI v1" in why["why"]
    # the exact pin wins whenever it is served; a module without a stand-in still fails; so does an unserved stand-in
    assert build.resolve_lab(FakeGo({"sigs.k8s.io/cri-tools": ["v1.33.0"]}), "sigs.k8s.io/cri-tools", "v1.33.0",
                             {})[0] == "v1.33.0"
    with pytest.raises(ArtifactError, match="nor any v0.34.x patch"):
        build.resolve_lab(FakeGo({}), "k8s.io/x", "v0.34.2", {})
    with pytest.raises(ArtifactError, match="lab stand-in v1.34.0 is not served either"):
        build.resolve_lab(FakeGo({}), "sigs.k8s.io/cri-tools", "v1.33.0", {})


def test_the_lab_stand_in_is_the_build_s_alone_the_catalog_keeps_the_official_pin():
    assert PINS["1.33"].crictl == "1.33.0" and PINS["1.34"].crictl == "1.34.0"
    assert release_artifacts("1.33.6").get("crictl").url.endswith("/v1.33.0/crictl-v1.33.0-linux-amd64.tar.gz")
    for (module, minor), (used, _) in build.LAB_STANDINS.items():
        assert f"{module}@{used}" in build.KNOWN_SUMS or module not in build.NOSUMDB, (module, used)


def test_recipe_hash_changes_with_the_version_and_the_toolchain():
    _, a = build.recipe_for("1.34.2", "go1.26.8")
    _, b = build.recipe_for("1.33.6", "go1.26.8")
    _, c = build.recipe_for("1.34.2", "go1.25.0")
    assert len({a, b, c}) == 3
    assert build.recipe_for("1.34.2", "go1.26.8")[1] == a


# --- CLI ---------------------------------------------------------------------------------------------------------------

def test_list_shows_versions_urls_and_lock_status():
    r = CliRunner().invoke(artifacts, ["list", "--version", "1.34.2"])
    assert r.exit_code == 0, r.output
    assert "9c5e717b774ee9b9285ce47e7d2150c29e84837eb19a7eaa24b60b1543c9d58f" in r.output
    assert "not pinned" in r.output and "registry.k8s.io/pause:3.10.1" in r.output


def test_unsupported_version_is_a_clean_error():
    r = CliRunner().invoke(artifacts, ["fetch", "--version", "1.20.0"])
    assert r.exit_code == 1 and "unsupported version" in r.output and "Traceback" not in r.output
