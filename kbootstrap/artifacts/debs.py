"""Debian packages in the bundle: what a role needs beyond the base system, as .deb files with their closure.

Hosts installed from a bundle may reach no package mirror (the lab nodes reach nothing), so the packages of
`catalog.OS_PACKAGES` travel in the bundle like the binaries: `debs/<package>_<version>_<arch>.deb`, one manifest
entry each (kind "deb"; sha256 and size checked by the usual verify; `package` = the Debian package, `version` =
its Debian version, `component` = the table's package that pulled it in, `roles` = the roles of every table package
whose closure holds it), pushed over SSH and installed with one `dpkg -i` call (`debs_for`, `debs_to_install`).

Which .debs: the dependency closure of each table package, computed by apt on this machine against what the target
hosts already have: a dpkg status file (`--against`, e.g. the lab image's `rootfs/var/lib/dpkg/status`) or, without
one, a Debian system holding only the Essential and Priority: required packages and what they depend on. apt runs
with that status file, a private archive directory, no package cache file, no extended_states and no lock: it plans
(`apt-get install --print-uris`) and downloads (`apt-get download`); each file is checked against the SHA256 of the
signed archive index before it enters the bundle. This machine's installed packages and dpkg status are never
touched. The .debs are for the Debian release this machine's apt lists describe: targets must run that release
(checked against the status file's base-files).
"""

from __future__ import annotations

import fcntl
import functools
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import unquote

from debian import deb822, debian_support

from kbootstrap.artifacts.catalog import OS_PACKAGES, Kind, OsPackage, os_package, packages_for
from kbootstrap.artifacts.errors import ArtifactError
from kbootstrap.artifacts.manifest import Manifest, ManifestFile, read_manifest, sha256_file, write_manifest

__all__ = ["DEBS_DIR", "INSTALLED_QUERY", "Deb", "DebsResult", "add_debs", "baseline_status", "compare_versions",
           "debs_for", "debs_to_install", "installed_versions", "packages_for"]

DEBS_DIR = "debs"
# What the engine runs on a host for `installed_versions`: every package dpkg knows, with its version and state.
INSTALLED_QUERY = ("dpkg-query", "-W", "-f=${Package}\\t${Version}\\t${Status}\\n")
Log = Callable[[str], None]

# Fields a dpkg status stanza needs for apt to resolve against it (see baseline_status).
_STATUS_FIELDS = ("Package", "Essential", "Priority", "Section", "Architecture", "Multi-Arch", "Version", "Replaces",
                  "Provides", "Depends", "Pre-Depends", "Breaks", "Conflicts")
_URI = re.compile(r"^'(?P<url>[^']+)' (?P<file>\S+\.deb) (?P<size>\d+) ")


# --- the install side (what the engine calls) -------------------------------------------------------------------------

def debs_for(manifest: Manifest, roles: set[str] | frozenset[str]) -> list[ManifestFile]:
    """The .deb entries a host with these bundle roles ("node", "loadbalancer", ...) needs, sorted by path.

    The set is closed under Depends/Pre-Depends against the status file it was computed for, and every
    Pre-Depends is already satisfied there, so one `dpkg -i FILE...` with all of them installs it (dpkg orders
    unpacking and configuration itself). Filter with `debs_to_install` first so a re-run installs nothing."""
    return sorted((f for f in manifest.files if f.kind is Kind.DEB and set(f.roles) & set(roles)),
                  key=lambda f: f.path)


def installed_versions(dpkg_query_output: str) -> dict[str, str]:
    """{package: version} of the packages `INSTALLED_QUERY` reports as `install ok installed`."""
    out: dict[str, str] = {}
    for line in dpkg_query_output.splitlines():
        parts = line.split("\t")
        if len(parts) == 3 and parts[2].strip() == "install ok installed":
            out[parts[0]] = parts[1]
    return out


def debs_to_install(debs: Sequence[ManifestFile], installed: dict[str, str]) -> list[ManifestFile]:
    """The .debs still to install on a host: its package is not installed, or only at an older version (a newer
    installed version is kept, never downgraded). Empty once `dpkg -i` of the set has succeeded."""
    return [f for f in debs if f.package not in installed or compare_versions(installed[f.package], f.version) < 0]


def compare_versions(a: str, b: str) -> int:
    """Debian version comparison (deb-version(7)): < 0, 0 or > 0, as `dpkg --compare-versions` (python-debian)."""
    return debian_support.version_compare(a, b)


# --- apt on this machine, against someone else's dpkg status ---------------------------------------------------------

@dataclass(frozen=True)
class Deb:
    """One .deb apt chose: package, Debian version, architecture, archive URL, size and the index's SHA256."""

    package: str
    version: str
    arch: str
    url: str
    size: int
    sha256: str = ""

    @property
    def filename(self) -> str:
        """The archive pool's name (no epoch): haproxy_2.6.12-1+deb12u4_amd64.deb."""
        return f"{self.package}_{self.version.split(':', 1)[-1]}_{self.arch}.deb"

    @property
    def path(self) -> str:
        return f"{DEBS_DIR}/{self.filename}"

    @property
    def spec(self) -> str:
        """NAME[:ARCH]=VERSION, as apt-get download and apt-cache show take it."""
        return f"{self.package}={self.version}" if self.arch == "all" else f"{self.package}:{self.arch}={self.version}"


class Apt:
    """apt-get / apt-cache with this machine's package lists, resolving against a private dpkg status file."""

    def __init__(self, status: Path, work: Path):
        if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
            raise ArtifactError("adding .debs to a bundle needs apt-get and dpkg-deb (a Debian machine)")
        self.status = status
        self.work = work
        (work / "archives" / "partial").mkdir(parents=True, exist_ok=True)

    def options(self) -> list[str]:
        opts = {
            "Dir::State::status": str(self.status),
            "Dir::State::extended_states": str(self.work / "extended_states"),
            "Dir::Cache::archives": f"{self.work / 'archives'}/",
            "Dir::Cache::pkgcache": "",
            "Dir::Cache::srcpkgcache": "",
            "Debug::NoLocking": "1",
            "APT::Install-Recommends": "0",
            "APT::Install-Suggests": "0",
            "APT::Get::Show-Versions": "0",
        }
        if os.geteuid() == 0:
            opts["APT::Sandbox::User"] = "root"  # the _apt user cannot enter our private temporary directory
        return [x for k, v in opts.items() for x in ("-o", f"{k}={v}")]

    def run(self, tool: str, *args: str, cwd: Path | None = None) -> str:
        cmd = [tool, *self.options(), *args]
        env = {**os.environ, "LC_ALL": "C", "DEBIAN_FRONTEND": "noninteractive"}
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env, timeout=1800)
        if r.returncode != 0:
            stale = re.search(r"404|Unable to fetch", r.stderr)
            hint = "; the package lists may be stale: run apt-get update" if stale else ""
            raise ArtifactError(f"`{tool} {' '.join(args[:8])}{' …' if len(args) > 8 else ''}` failed "
                                f"({r.returncode}): {r.stderr.strip()[-2000:]}{hint}")
        return r.stdout

    def plan(self, packages: Sequence[str]) -> list[Deb]:
        """The .debs `apt-get install PACKAGES` would fetch for a host with this status (its dependency closure)."""
        out = self.run("apt-get", "install", "--print-uris", "-qq", "-y", *packages)
        debs = []
        for line in out.splitlines():
            if m := _URI.match(line):
                name, version, arch = unquote(m["file"]).removesuffix(".deb").split("_")
                debs.append(Deb(name, version, arch, m["url"], int(m["size"])))
        return debs

    def with_index_sha256(self, debs: Sequence[Deb]) -> list[Deb]:
        """The same debs with the SHA256 the (signed) archive index gives each."""
        if not debs:
            return []
        found: dict[tuple[str, str, str], dict[str, str]] = {}
        for s in parse_stanzas(self.run("apt-cache", "show", *(d.spec for d in debs))):
            found.setdefault((s.get("Package", ""), s.get("Version", ""), s.get("Architecture", "")), s)
        out = []
        for d in debs:
            stanza = found.get((d.package, d.version, d.arch))
            if not stanza or not stanza.get("SHA256"):
                raise ArtifactError(f"{d.spec}: the archive index gives no SHA256 for it")
            out.append(replace(d, sha256=stanza["SHA256"]))
        return out

    def download(self, debs: Sequence[Deb], dest: Path) -> dict[str, Path]:
        """Fetch the debs into dest (apt checks each against the index); {bundle path: file}, each re-checked."""
        dest.mkdir(parents=True, exist_ok=True)
        self.run("apt-get", "download", *(d.spec for d in debs), cwd=dest)
        by_key = {(d.package, d.version, d.arch): d for d in debs}
        got: dict[str, Path] = {}
        for f in dest.glob("*.deb"):
            key = tuple(deb_fields(f, "Package", "Version", "Architecture"))
            d = by_key.get(key)  # type: ignore[arg-type]
            if d is None:
                raise ArtifactError(f"apt-get download gave {f.name}, which is none of the packages asked for")
            digest, size = sha256_file(f), f.stat().st_size
            if digest != d.sha256 or size != d.size:
                raise ArtifactError(f"{f.name}: sha256 {digest} ({size} bytes), the archive index says {d.sha256} "
                                    f"({d.size} bytes); not added")
            got[d.path] = f
        missing = [d.spec for d in debs if d.path not in got]
        if missing:
            raise ArtifactError(f"apt-get download did not fetch {', '.join(missing)}")
        return got


def deb_fields(path: Path, *names: str) -> list[str]:
    """Control fields of a .deb file (`dpkg-deb -f`), in the order asked, "" for an absent one."""
    r = subprocess.run(["dpkg-deb", "-f", str(path), *names], capture_output=True, text=True)
    if r.returncode != 0:
        raise ArtifactError(f"{path}: not a Debian package: {r.stderr.strip()}")
    if len(names) == 1:  # dpkg-deb prints the bare value of a single field
        return [r.stdout.strip()]
    s = (parse_stanzas(r.stdout) or [{}])[0]
    return [s.get(n, "") for n in names]


def parse_stanzas(text: str) -> list[dict[str, str]]:
    """deb822 paragraphs (dpkg status, apt-cache show): field → value (python-debian's reader)."""
    return [{k: "\n".join(line.strip() for line in v.strip().splitlines()) for k, v in p.items()}
            for p in deb822.Deb822.iter_paragraphs(text.splitlines()) if p]


def baseline_status(path: Path, work: Path) -> Path:
    """Write a dpkg status file of a Debian system holding only the Essential and Priority: required packages and
    what they depend on (as debootstrap --variant=minbase makes it), at this machine's candidate versions: what any
    host of this release already has."""
    r = subprocess.run(["apt-cache", "dumpavail"], capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"})
    if r.returncode != 0:
        raise ArtifactError(f"apt-cache dumpavail failed: {r.stderr.strip()[-500:]}")
    avail = parse_stanzas(r.stdout)
    required = sorted({s["Package"] for s in avail if s.get("Essential") == "yes" or s.get("Priority") == "required"}
                      - {"usrmerge"})
    if not required:
        raise ArtifactError("this machine's apt lists hold no Essential/required package: run apt-get update")
    empty = work / "empty-status"
    work.mkdir(parents=True, exist_ok=True)
    empty.write_text("")
    apt = Apt(empty, work / "apt")
    # As debootstrap does for bookworm: it merges /usr itself, installs the empty usr-is-merged and never the
    # usrmerge migration package (which would pull in perl); `usrmerge-` keeps apt from choosing it.
    if any(s["Package"] == "usr-is-merged" for s in avail):
        required = [*required, "usr-is-merged", "usrmerge-"]
    closure = apt.plan(required)
    stanzas = {(s.get("Package"), s.get("Version"), s.get("Architecture")): s
               for s in parse_stanzas(apt.run("apt-cache", "show", *(d.spec for d in closure)))}
    text = []
    for d in closure:
        s = stanzas[(d.package, d.version, d.arch)]
        lines = [f"Package: {d.package}", "Status: install ok installed"]
        lines += [f"{k}: {s[k]}" for k in _STATUS_FIELDS[1:] if k in s]
        text.append("\n".join(lines) + "\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(text))
    return path


def _release_major(version: str | None) -> str | None:
    """Debian major release from a base-files version ("12.4+deb12u11" → "12")."""
    m = re.match(r"(\d+)", version or "")
    return m.group(1) if m else None


def _check_release(status: Path, apt: Apt) -> str | None:
    target = next((s.get("Version") for s in parse_stanzas(status.read_text(errors="replace"))
                   if s.get("Package") == "base-files" and s.get("Status", "").endswith(" installed")), None)
    served = [v["Version"] for v in parse_stanzas(apt.run("apt-cache", "show", "base-files"))
              if v.get("Filename") and v.get("Version")]  # from the archive's lists, not the status file
    here = max(served, key=functools.cmp_to_key(compare_versions)) if served else None
    t, h = _release_major(target), _release_major(here)
    if t and h and t != h:
        raise ArtifactError(f"{status}: the target runs Debian {t} (base-files {target}), this machine's apt lists "
                            f"serve Debian {h} (base-files {here}): its .debs would not fit")
    return here


# --- adding them to a bundle ------------------------------------------------------------------------------------------

@dataclass
class DebsResult:
    manifest: Manifest
    added: list[ManifestFile] = field(default_factory=list)  # new files in the bundle
    kept: list[ManifestFile] = field(default_factory=list)  # already there, same sha256
    removed: list[ManifestFile] = field(default_factory=list)  # older versions of a package just added
    changed: bool = False  # manifest.json rewritten

    @property
    def added_bytes(self) -> int:
        return sum(f.size for f in self.added) - sum(f.size for f in self.removed)


def add_debs(bundle: Path, against: Path | None = None, packages: Sequence[str] | None = None,
             log: Log = lambda m: print(m, file=sys.stderr, flush=True)) -> DebsResult:
    """Add the .debs of `packages` (names from catalog.OS_PACKAGES; default: all) with their dependency closure
    against `against` (a dpkg status file or a root directory; default: the Essential/required baseline) to the
    bundle directory: files first, then manifest.json rewritten atomically. Nothing changes when they are there."""
    manifest = read_manifest(bundle)
    table = _table(packages)
    if against is not None and against.is_dir():
        against = against / "var/lib/dpkg/status"
    if against is not None and not against.is_file():
        raise ArtifactError(f"{against}: no such dpkg status file")
    native = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True).stdout.strip()
    if native and native != manifest.arch:
        raise ArtifactError(f"{bundle}: the bundle is for {manifest.arch}, this machine's apt serves {native}")
    with _locked(bundle), tempfile.TemporaryDirectory(prefix=".kb-debs-", dir=bundle.parent) as tmp:
        work = Path(tmp)
        if against is None:
            log("debs: computing the Essential/required baseline of this machine's release")
            status = baseline_status(work / "baseline-status", work / "baseline")
        else:
            status = against
        apt = Apt(status, work / "apt")
        release = _check_release(status, apt)
        pulled: dict[str, list[OsPackage]] = {}
        planned: dict[str, Deb] = {}
        for pkg in table:  # one closure per table package: the roles of each file are exactly the roles needing it
            for d in Apt(status, work / f"apt-{pkg.name}").plan([pkg.name]):
                planned.setdefault(d.path, d)
                pulled.setdefault(d.path, []).append(pkg)
        debs = apt.with_index_sha256(list(planned.values()))
        result = _apply(bundle, manifest, debs, pulled, apt, work, log)
        if result.changed:
            info = {**result.manifest.info, "debs": {
                "against": str(against) if against else "Essential + Priority: required packages (baseline)",
                "against_sha256": sha256_file(status) if against else None,
                "packages": [p.name for p in table], "base_files": release,
                "updated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }}
            result.manifest = replace(result.manifest, info=info)
            write_manifest(bundle, result.manifest)
            for f in result.removed:
                (bundle / f.path).unlink(missing_ok=True)
    return result


def _apply(bundle: Path, manifest: Manifest, debs: list[Deb], pulled: dict[str, list[OsPackage]], apt: Apt,
           work: Path, log: Log) -> DebsResult:
    old = {f.path: f for f in manifest.files if f.kind is Kind.DEB}
    by_package: dict[str, list[ManifestFile]] = {}
    for f in old.values():
        by_package.setdefault(f.package or "", []).append(f)
    result = DebsResult(manifest)
    fetch = [d for d in debs if not _present(bundle, old.get(d.path), d)]
    got: dict[str, Path] = {}
    if fetch:
        log(f"debs: downloading {len(fetch)} package(s), {sum(d.size for d in fetch) / 1e6:.1f} MB")
        got = apt.download(fetch, work / "download")
    new = manifest
    for d in debs:
        before = by_package.get(d.package, [])
        roles = {r for p in pulled[d.path] for r in p.roles} | {r for f in before for r in f.roles}
        component = old[d.path].component if d.path in old else pulled[d.path][0].name
        entry = ManifestFile(d.path, d.sha256, d.size, component, d.version, Kind.DEB, (), d.url, None,
                             tuple(sorted(roles)), d.package)
        if d.path in got:
            _place(got[d.path], bundle / d.path)
            result.added.append(entry)
        else:
            result.kept.append(entry)
        for f in before:
            if f.path != d.path:
                result.removed.append(f)  # one version per package: dpkg -i takes them all in one call
                new = new.without(f.path)
        new = new.with_file(entry)
    result.changed = new.to_json() != manifest.to_json()
    result.manifest = new
    return result


def _present(bundle: Path, entry: ManifestFile | None, d: Deb) -> bool:
    if entry is None or entry.sha256 != d.sha256:
        return False
    p = bundle / entry.path
    return p.is_file() and p.stat().st_size == d.size and sha256_file(p) == d.sha256


def _place(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part-{os.getpid()}")
    try:
        os.replace(src, tmp)
    except OSError:  # another filesystem
        shutil.copyfile(src, tmp)
    os.chmod(tmp, 0o644)
    os.replace(tmp, dest)


def _table(packages: Sequence[str] | None) -> list[OsPackage]:
    if not packages:
        return list(OS_PACKAGES)
    try:
        return [os_package(n) for n in dict.fromkeys(packages)]
    except KeyError as e:
        raise ArtifactError(f"unknown OS package {e.args[0]!r}; the table (catalog.OS_PACKAGES) has "
                            f"{', '.join(p.name for p in OS_PACKAGES)}") from None


@contextmanager
def _locked(bundle: Path) -> Iterator[None]:
    """One writer of a bundle's .debs at a time (the lock file lies beside the bundle, not in it)."""
    with open(bundle.parent / f".{bundle.name}.debs.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield
