"""OS packages in a bundle (`kbootstrap artifacts debs`): real apt, real .debs from Debian's archive, real dpkg.

The .debs are added to a small temporary bundle against a real dpkg status file: the lab node image's when it is
there (`~/.cache/kbootstrap/lab/images/*/rootfs`), otherwise this machine's status cut down to a minimal system
(Essential/required packages and what they depend on). The checks do not trust the code under test: every Depends
and Pre-Depends of every bundled .deb (read with `dpkg-deb -f`) must be met by the status file or another bundled
.deb of the same role set, and the .debs are installed for real — extracted (haproxy runs from the extracted tree)
and, as root with the lab image, with one `dpkg -i` call in a chroot on a copy of the image.

Needs apt-get and dpkg-deb, fresh apt lists and Debian's archive (~35 MB downloaded); marked `tools` (CI runs it).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from kbootstrap.artifacts.bundle import open_bundle
from kbootstrap.artifacts.catalog import OS_PACKAGES, Kind, packages_for
from kbootstrap.artifacts.cli import artifacts
from kbootstrap.artifacts.debs import (
    INSTALLED_QUERY,
    add_debs,
    baseline_status,
    compare_versions,
    debs_for,
    debs_to_install,
    installed_versions,
    parse_stanzas,
)
from kbootstrap.artifacts.errors import ArtifactError
from kbootstrap.artifacts.manifest import Manifest, read_manifest, sha256_file, verify_dir, write_manifest

pytestmark = [
    pytest.mark.tools,
    pytest.mark.skipif(not (shutil.which("apt-get") and shutil.which("dpkg-deb")), reason="needs apt-get and dpkg-deb"),
]

LAB_CACHE = Path(os.environ.get("KB_LAB_CACHE") or Path.home() / ".cache/kbootstrap/lab")
ROLES = sorted({r for p in OS_PACKAGES for r in p.roles})


def _lab_image() -> Path | None:
    roots = [p.parent.parent.parent.parent for p in LAB_CACHE.glob("images/*/rootfs/var/lib/dpkg/status")]
    return max(roots, key=lambda r: r.stat().st_mtime) if roots else None


# --- dependency checks, independent of how kbootstrap.artifacts.debs resolves ------------------------------------

def _clauses(field: str) -> list[list[str]]:
    """`a (>= 1) | b:any, c` → [["a", "b"], ["c"]]: names only (versions and arch qualifiers ignored)."""
    out = []
    for clause in filter(None, (c.strip() for c in field.split(","))):
        out.append([re.split(r"[\s(:\[]", alt.strip(), maxsplit=1)[0] for alt in clause.split("|")])
    return out


def _names(stanza: dict[str, str]) -> set[str]:
    """The package name and every virtual package it provides."""
    return {stanza["Package"], *(alt[0] for alt in _clauses(stanza.get("Provides", "")))}


def _installed(status: Path) -> list[dict[str, str]]:
    return [s for s in parse_stanzas(status.read_text(errors="replace")) if s.get("Status") == "install ok installed"]


def _deb(path: Path) -> dict[str, str]:
    r = subprocess.run(["dpkg-deb", "-f", str(path), "Package", "Version", "Architecture", "Depends", "Pre-Depends",
                        "Provides"], capture_output=True, text=True, check=True)
    return parse_stanzas(r.stdout)[0]


def _unmet(debs: list[dict[str, str]], have: set[str], fields=("Depends", "Pre-Depends")) -> list[str]:
    return [f"{d['Package']}: {field} {' | '.join(alts)}" for d in debs for field in fields
            for alts in _clauses(d.get(field, "")) if not set(alts) & have]


def _minimal_status(src: Path, dest: Path) -> Path:
    """This machine's installed Essential/required packages and what they depend on (installed), as a status file."""
    installed = _installed(src)
    provides = {}
    for s in installed:
        for n in _names(s):
            provides.setdefault(n, s["Package"])
    by_name = {s["Package"]: s for s in installed}
    todo = [s["Package"] for s in installed if (s.get("Essential") == "yes" or s.get("Priority") == "required")
            and s["Package"] != "usrmerge"]
    keep: set[str] = set()
    while todo:
        name = todo.pop()
        if name in keep:
            continue
        keep.add(name)
        s = by_name[name]
        for alts in _clauses(s.get("Depends", "")) + _clauses(s.get("Pre-Depends", "")):
            met = [provides[a] for a in alts if a in provides]
            if met and not set(met) & keep:
                todo.append(met[0])
    text = src.read_text(errors="replace").split("\n\n")
    dest.write_text("\n\n".join(t.strip("\n") for t in text
                                if (m := re.match(r"Package: (\S+)", t.strip("\n"))) and m[1] in keep) + "\n")
    return dest


# --- the bundle under test --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def status(tmp_path_factory) -> Path:
    image = _lab_image()
    if image is not None:
        return image / "var/lib/dpkg/status"
    return _minimal_status(Path("/var/lib/dpkg/status"), tmp_path_factory.mktemp("status") / "status")


def _empty_bundle(path: Path) -> Path:
    path.mkdir(parents=True)
    write_manifest(path, Manifest("1.34.2", "amd64", "built", (), {"note": "test bundle"}))
    return path


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, status) -> Path:
    root = _empty_bundle(tmp_path_factory.mktemp("debs") / "bundle")
    r = CliRunner().invoke(artifacts, ["debs", "--bundle", str(root), "--against", str(status)])
    assert r.exit_code == 0, r.output
    assert re.search(r"\d+ \.deb\(s\) added", r.output), r.output
    return root


@pytest.fixture(scope="module")
def manifest(bundle) -> Manifest:
    return read_manifest(bundle)


@pytest.fixture(scope="module")
def fields(bundle, manifest) -> dict[str, dict[str, str]]:
    return {f.path: _deb(bundle / f.path) for f in manifest.files}


def test_every_table_package_is_bundled_for_its_roles_or_already_installed(manifest, status):
    installed = {s["Package"] for s in _installed(status)}
    debs = {f.package: f for f in manifest.files}
    for p in OS_PACKAGES:
        if p.name in installed:
            continue
        assert p.name in debs, f"{p.name} is neither installed in {status} nor in the bundle"
        assert debs[p.name].component == p.name and set(p.roles) <= set(debs[p.name].roles)
    assert manifest.files, "nothing was bundled"


def test_manifest_entries_describe_each_deb(bundle, manifest, fields):
    assert verify_dir(bundle)[1] == []
    for f in manifest.files:
        d = fields[f.path]
        assert f.kind is Kind.DEB and f.path.startswith("debs/") and f.path.endswith(".deb")
        assert (f.package, f.version) == (d["Package"], d["Version"])
        assert f.path == f"debs/{d['Package']}_{d['Version'].split(':', 1)[-1]}_{d['Architecture']}.deb"
        assert f.sha256 == sha256_file(bundle / f.path) and f.size == (bundle / f.path).stat().st_size
        assert f.url and f.url.startswith("http") and f.install == ()
        assert f.component in {p.name for p in OS_PACKAGES} and f.roles and set(f.roles) <= set(ROLES)
    assert len({f.package for f in manifest.files}) == len(manifest.files), "one version per package"
    assert manifest.info["note"] == "test bundle" and manifest.info["debs"]["against"]


def test_every_dependency_is_installed_or_bundled(manifest, fields, status):
    have = {n for s in _installed(status) for n in _names(s)} | {n for d in fields.values() for n in _names(d)}
    assert _unmet(list(fields.values()), have) == []


@pytest.mark.parametrize("role", ROLES)
def test_the_debs_of_one_role_are_a_closed_set(manifest, fields, status, role):
    """What `debs_for` gives a host of one role installs on its own: nothing it needs is left to another role."""
    subset = [fields[f.path] for f in debs_for(manifest, {role})]
    have = {n for s in _installed(status) for n in _names(s)} | {n for d in subset for n in _names(d)}
    assert _unmet(subset, have) == []
    installed = {s["Package"] for s in _installed(status)}
    assert {p for p in packages_for({role}) if p not in installed} <= {d["Package"] for d in subset}
    assert [f.path for f in debs_for(manifest, {role})] == sorted(f.path for f in debs_for(manifest, {role}))


def test_pre_depends_are_met_by_the_host_already_so_one_dpkg_call_installs_them(fields, status):
    have = {n for s in _installed(status) for n in _names(s)}
    assert _unmet(list(fields.values()), have, fields=("Pre-Depends",)) == []


def test_a_second_run_adds_nothing(bundle, status):
    before = {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in bundle.rglob("*")}
    text = (bundle / "manifest.json").read_bytes()
    r = CliRunner().invoke(artifacts, ["debs", "--bundle", str(bundle), "--against", str(status)])
    assert r.exit_code == 0, r.output
    assert "0 .deb(s) added" in r.output and "manifest unchanged" in r.output, r.output
    assert (bundle / "manifest.json").read_bytes() == text
    assert {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in bundle.rglob("*")} == before


def test_a_tampered_deb_is_refused(bundle, manifest, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    haproxy = next(f for f in manifest.files if f.package == "haproxy")
    data = bytearray((copy / haproxy.path).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / haproxy.path).write_bytes(bytes(data))
    problems = verify_dir(copy)[1]
    assert [p.path for p in problems] == [haproxy.path] and "sha256" in problems[0].message
    with pytest.raises(ArtifactError, match="does not verify"):
        open_bundle(copy)


def test_extracted_haproxy_is_a_real_runnable_haproxy(bundle, manifest, tmp_path):
    root = tmp_path / "root"
    for f in debs_for(manifest, {"loadbalancer"}):
        subprocess.run(["dpkg-deb", "-x", str(bundle / f.path), str(root)], check=True)
    haproxy = root / "usr/sbin/haproxy"
    assert haproxy.is_file()
    libs = ":".join(str(p) for p in (root / "usr/lib/x86_64-linux-gnu", root / "lib/x86_64-linux-gnu") if p.is_dir())
    env = {"PATH": "/usr/bin:/bin", "LD_LIBRARY_PATH": libs}
    r = subprocess.run([str(haproxy), "-v"], capture_output=True, text=True, env=env, timeout=30)
    version = next(f.version for f in manifest.files if f.package == "haproxy")
    assert r.returncode == 0 and f"HAProxy version {version}" in r.stdout, r.stdout + r.stderr
    # the libraries the bundle carries for it are the ones it runs with
    ldd = subprocess.run(["ldd", str(haproxy)], capture_output=True, text=True, env=env).stdout
    assert re.search(rf"liblua5\.3\.so\.0 => {re.escape(str(root))}/", ldd), ldd


def test_without_a_status_file_the_closure_is_against_the_essential_and_required_packages(tmp_path):
    root = _empty_bundle(tmp_path / "bundle")
    result = add_debs(root, None, ["haproxy", "conntrack"], log=lambda m: None)
    assert {f.package for f in result.added} >= {"haproxy", "conntrack"} and result.changed
    base = baseline_status(tmp_path / "baseline", tmp_path / "work")
    base_installed = _installed(base)
    assert {"dpkg", "libc6", "apt", "base-files"} <= {s["Package"] for s in base_installed}
    assert "usrmerge" not in {s["Package"] for s in base_installed}  # debootstrap leaves it out
    debs = [_deb(root / f.path) for f in read_manifest(root).files]
    assert _unmet(debs, {n for s in base_installed for n in _names(s)} | {n for d in debs for n in _names(d)}) == []
    image = _lab_image()
    if image is not None:  # a minbase host (the lab image) has at least the baseline
        lab = {s["Package"] for s in _installed(image / "var/lib/dpkg/status")}
        assert {s["Package"] for s in base_installed} <= lab
    assert verify_dir(root)[1] == []


def test_unknown_package_and_wrong_release_are_refused(tmp_path):
    root = _empty_bundle(tmp_path / "bundle")
    with pytest.raises(ArtifactError, match="unknown OS package 'nginx'"):
        add_debs(root, None, ["nginx"], log=lambda m: None)
    other = tmp_path / "status"
    other.write_text("Package: base-files\nStatus: install ok installed\nVersion: 13.8\nArchitecture: amd64\n")
    with pytest.raises(ArtifactError, match="Debian 13"):
        add_debs(root, other, ["conntrack"], log=lambda m: None)
    assert read_manifest(root).files == ()


def test_version_comparison_agrees_with_dpkg():
    versions = ["1.0", "1.0-1", "1.0-1+deb12u1", "1:1.0", "1.0~rc1", "1.0~rc1-1", "1.0a", "1.0+b1", "1.00", "1.0.0",
                "2.6.12-1+deb12u4", "2.6.12-1", "0~2023.04.11-1", "1:2.2.7-1+b2", "5.36.0-7+deb12u4",
                "5.36.0-7+deb12u1", "1.0-1~bpo12+1", "10", "9", "1.2.3-4.5", "1.0-a-b", "2:0.1:2-1"]
    for a in versions:
        for b in versions:
            c = compare_versions(a, b)
            op = "lt" if c < 0 else "eq" if c == 0 else "gt"
            assert subprocess.run(["dpkg", "--compare-versions", a, op, b]).returncode == 0, (a, op, b)


# --- installed for real: one dpkg -i in a chroot on a copy of the lab image ------------------------------------------

@pytest.mark.skipif(os.geteuid() != 0, reason="chroot and the image's numeric owners need root")
@pytest.mark.skipif(_lab_image() is None, reason=f"no lab image under {LAB_CACHE} (vagrant/build-box.sh builds it)")
@pytest.mark.parametrize("role", ROLES)
def test_one_dpkg_call_installs_a_roles_debs_on_the_lab_image(bundle, manifest, tmp_path, role):
    root = tmp_path / "node"
    subprocess.run(["cp", "-a", str(_lab_image()), str(root)], check=True)
    try:
        _install_and_check(bundle, manifest, root, role)
    finally:
        shutil.rmtree(root, ignore_errors=True)  # 160+ MB a copy


def _install_and_check(bundle: Path, manifest: Manifest, root: Path, role: str) -> None:
    (root / "usr/sbin/policy-rc.d").write_text("#!/bin/sh\nexit 101\n")  # install, start nothing
    (root / "usr/sbin/policy-rc.d").chmod(0o755)
    debs = debs_for(manifest, {role})
    (root / "tmp/kb-debs").mkdir()
    for f in debs:
        shutil.copyfile(bundle / f.path, root / "tmp/kb-debs" / Path(f.path).name)

    def chroot(*cmd: str) -> subprocess.CompletedProcess:
        return subprocess.run(["chroot", str(root), *cmd], capture_output=True, text=True, timeout=300,
                              env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"})

    assert debs_to_install(debs, installed_versions(chroot(*INSTALLED_QUERY).stdout)) == debs
    r = chroot("dpkg", "-i", *(f"/tmp/kb-debs/{Path(f.path).name}" for f in debs))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert chroot("dpkg", "--audit").stdout == ""
    installed = installed_versions(chroot(*INSTALLED_QUERY).stdout)
    for name in packages_for({role}):
        assert chroot("dpkg-query", "-W", "-f=${Status}", name).stdout == "install ok installed"
    assert debs_to_install(debs, installed) == []  # a second run installs nothing
    if role == "loadbalancer":
        assert "HAProxy version" in chroot("haproxy", "-v").stdout
        r = chroot("keepalived", "--version")
        assert "Keepalived v" in r.stdout + r.stderr
    else:
        assert "iptables-restore v" in chroot("iptables-restore", "--version").stdout
        assert "conntrack v" in chroot("conntrack", "--version").stdout
