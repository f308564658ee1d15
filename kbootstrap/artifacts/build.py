"""Build the lab's bundle from source: Kubernetes and everything a node runs, from the Go module proxy.

No release site is reachable where the lab runs, so the release binaries are compiled from the same sources:
- kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy, kubectl from `k8s.io/kubernetes`
  through a small wrapper module whose `replace` lines point the staging modules (`k8s.io/api`, …) at their
  published `v0.X.Y`; version stamped with `-X k8s.io/component-base/version.*` (and client-go's copy) as the
  release build does; `CGO_ENABLED=0`, `-trimpath -s -w`;
- etcd + etcdctl + etcdutl (the version versions.py pairs), crictl, the CNI plugins kbootstrap uses, containerd + its runc
  shim + ctr, and runc (cgo + static libseccomp, as runc's own release build);
- the pause image (a static C binary, gcc) and static-pod images for the control plane and etcd (OCI archives).

The result is a bundle in exactly the `kbootstrap artifacts bundle` format (manifest.json, origin "built") in
`~/.cache/kbootstrap/bundles/<version>/`, reused while the recipe (every input below, this file, images.py and
pause.c, what the build takes from catalog.py, the Go version) hashes the same. Where the module proxy lacks an exact
version, the nearest patch of the same minor is used (failing any, a lab-only stand-in of LAB_STANDINS: crictl 1.34.0
for 1.33) and recorded in `info.substitutions` of the manifest — never silently. The OS packages (.debs) the nodes
need are added afterwards by lab/add-debs.sh (debs.py).

    python -m kbootstrap.artifacts.build 1.34.2 [--force] [--cold]     (lab/build-bundle.sh wraps this)
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kbootstrap.artifacts.catalog import (
    CNI_PLUGINS,
    CONTAINERD_BINARIES,
    ETCD_BINARIES,
    KUBE_BINARIES,
    PINS,
    Install,
    Kind,
    control_plane_images,
    release_artifacts,
)
from kbootstrap.artifacts.errors import ArtifactError
from kbootstrap.artifacts.fetch import cache_root
from kbootstrap.artifacts.images import binary_image, build_image_archive, build_pause_binary, pause_image
from kbootstrap.artifacts.manifest import Manifest, ManifestFile, sha256_file, verify_dir, write_manifest
from kbootstrap.model import versions

Log = Callable[[str], None]
HERE = Path(__file__).resolve().parent

# runc v1.3.x ships a patched go-selinux as a nested module (internal/third_party/selinux) that module zips
# do not contain; the upstream go-selinux release carrying the same CVE-2025-52881 fixes stands in for it.
RUNC_SELINUX = "v1.13.0"
# Modules the public checksum database does not answer for (seen: 404 from sum.golang.org for cri-tools);
# verified instead against the go.sum hash recorded here when first fetched (through the module proxy, the build of
# 2025-11 for the lab); a module without an entry here has its hash recorded in the bundle manifest (info.modules).
NOSUMDB = ("sigs.k8s.io/cri-tools",)
KNOWN_SUMS = {"sigs.k8s.io/cri-tools@v1.34.0": "h1:KqL9EJ+WgHtz1HR1exezm91n+o8O2uMLs/eHzHJHAWw="}
# Lab-only stand-ins from another minor, for a pinned module of which the Go module proxy serves no patch of the
# pinned minor at all: (module, "vX.Y") -> (version used, why that is sound). The catalog keeps the official pin —
# `artifacts fetch` downloads that from the release site; only this from-source build takes the stand-in, after the
# exact pin and every patch of its minor were refused, and records it in the manifest's info.substitutions.
LAB_STANDINS: dict[tuple[str, str], tuple[str, str]] = {
    # The proxy answers 403 for every cri-tools v1.33.x (and for its version list). crictl is a CRI client only: the
    # 1.34 one speaks the same CRI v1 API (runtime.v1, the only one the kubelet uses since 1.26) to any supported
    # runtime; nothing in the cluster talks to crictl (kbootstrap and operators run it on nodes).
    ("sigs.k8s.io/cri-tools", "v1.33"): (
        "v1.34.0", "lab-only stand-in: crictl 1.34 speaks CRI v1, the API of every runtime the 1.33 kubelet "
                   "supports; the catalog pin (release downloads) is unchanged"),
}


def default_bundle_dir(version: str) -> Path:
    return cache_root() / "bundles" / version


@dataclass
class Go:
    """Runs the Go toolchain with a fixed environment (and optional private caches for a cold build)."""

    work: Path
    log: Log
    gocache: Path | None = None
    gomodcache: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    last_error: str = ""

    def __post_init__(self):
        go = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None)
        if go is None:
            raise ArtifactError("the lab build needs Go >= 1.24 on PATH (or /usr/local/go/bin/go)")
        self.go = go
        fixed = ("GOFLAGS", "GOTOOLCHAIN", "GOOS", "GOARCH", "GOWORK", "CGO_ENABLED")
        base = {k: v for k, v in os.environ.items() if k not in fixed}
        base.update(GOTOOLCHAIN="local", GOFLAGS="-mod=mod -buildvcs=false", GOWORK="off",
                    GONOSUMDB=",".join(NOSUMDB), CGO_ENABLED="0", GOOS="linux", GOARCH="amd64")
        if self.gocache:
            base["GOCACHE"] = str(self.gocache)
        if self.gomodcache:
            base["GOMODCACHE"] = str(self.gomodcache)
        base.update(self.env)
        self.env = base

    def run(self, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
            capture: bool = True) -> str:
        e = {**self.env, **(env or {})}
        r = subprocess.run([self.go, *args], cwd=cwd or self.work, env=e, capture_output=True, text=True)
        if r.returncode != 0:
            raise ArtifactError(f"go {' '.join(args)} (in {cwd or self.work}) failed:\n{r.stderr[-4000:]}")
        return r.stdout

    def version(self) -> str:
        return self.run("env", "GOVERSION").strip()

    def download(self, module: str, version: str) -> dict | None:
        """`go mod download -json` of one module version; None when the proxy does not serve it."""
        e = {**self.env}
        r = subprocess.run([self.go, "mod", "download", "-json", f"{module}@{version}"], cwd=self.work, env=e,
                           capture_output=True, text=True)
        try:
            info = json.loads(r.stdout) if r.stdout.strip() else {}
        except json.JSONDecodeError:
            info = {}
        if r.returncode != 0 or info.get("Error"):
            self.last_error = info.get("Error") or r.stderr.strip()[-300:]
            return None
        return info

    def versions_of(self, module: str) -> list[str]:
        out = subprocess.run([self.go, "list", "-m", "-versions", module], cwd=self.work, env=self.env,
                             capture_output=True, text=True).stdout.split()
        return out[1:]


def _semver_key(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", v.split("-")[0])[:3])


def resolve(go: Go, module: str, wanted: str, why: dict | None = None) -> tuple[str, dict]:
    """The exact version if the proxy serves it (and the checksum database vouches for it), else the nearest
    served patch of the same minor; `why` receives the reason the exact version was refused."""
    info = go.download(module, wanted)
    if info is not None:
        return wanted, info
    if why is not None:
        err = getattr(go, "last_error", "")
        why["why"] = ("checksum database has no entry (sum.golang.org 404)" if "sumdb" in err and "404" in err
                      else "module proxy refuses this version" if "403" in err or "not available" in err
                      else err or "not served")
    minor = ".".join(wanted.split(".")[:2]) + "."
    w = _semver_key(wanted)
    cands = [v for v in go.versions_of(module) if v.startswith(minor) and "-" not in v]
    cands.sort(key=lambda v: (abs(_semver_key(v)[2] - w[2]), -_semver_key(v)[2]))
    for v in cands:
        info = go.download(module, v)
        if info is not None:
            return v, info
    raise ArtifactError(f"{module}@{wanted}: not served by the Go module proxy, nor any {minor}x patch")


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def resolve_lab(go: Go, module: str, wanted: str, why: dict) -> tuple[str, dict]:
    """`resolve`, then the module's lab stand-in (LAB_STANDINS) when the proxy serves no patch of the pin's minor."""
    try:
        return resolve(go, module, wanted, why)
    except ArtifactError as e:
        standin = LAB_STANDINS.get((module, _minor(wanted)))
        if standin is None:
            raise
        used, reason = standin
        info = go.download(module, used)
        if info is None:
            raise ArtifactError(f"{e}; its lab stand-in {used} is not served either") from None
        why["why"] = f"{why.get('why', 'not served')}, nor any {_minor(wanted)}.x patch; {reason}"
        return used, info


@dataclass(frozen=True)
class Built:
    component: str
    name: str
    path: Path
    version: str
    install: Install
    roles: tuple[str, ...]


class LabBuild:
    def __init__(self, version: str, work: Path, log: Log, cold: bool = False):
        self.rel = versions.release(version)
        self.pins = PINS[self.rel.minor]
        self.work = work
        self.log = log
        self.out = work / "bundle"
        self.go = Go(work, log, gocache=work / "gocache" if cold else None,
                     gomodcache=work / "gomodcache" if cold else None)
        self.built: list[Built] = []
        self.info: dict = {"substitutions": [], "timings": {}, "modules": {}, "versions": {}}

    # --- helpers ------------------------------------------------------------------------------------------------
    def _timed(self, name: str, fn: Callable[[], None]) -> None:
        t = time.monotonic()
        self.log(f"build: {name} ...")
        fn()
        took = round(time.monotonic() - t, 1)
        self.info["timings"][name] = took
        self.log(f"build: {name} done in {took}s")

    def _module_src(self, module: str, version: str) -> tuple[Path, dict]:
        """A writable copy of a module's source (its own go.mod/go.sum/vendor apply when built in place)."""
        why: dict = {}
        got, info = resolve_lab(self.go, module, version, why)
        info = {**info, "Version": got}
        if got != version:
            self.info["substitutions"].append({"module": module, "wanted": version, "used": got, **why})
        key = f"{module}@{got}"
        expected = KNOWN_SUMS.get(key)
        if expected and info.get("Sum") != expected:
            raise ArtifactError(f"{key}: go.sum hash {info.get('Sum')} differs from the recorded {expected}")
        self.info["modules"][key] = {"sum": info.get("Sum"), "origin": info.get("Origin")}
        dest = self.work / "src" / key.replace("/", "_")
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(info["Dir"], dest)
        for p in [dest, *dest.rglob("*")]:
            if not p.is_symlink():
                p.chmod(p.stat().st_mode | 0o200)
        return dest, info

    def _add(self, component: str, name: str, path: Path, version: str, dest: str, roles: tuple[str, ...]):
        self.built.append(Built(component, name, path, version, Install(dest), roles))

    def _go_build(self, cwd: Path, pkg: str, out: Path, ldflags: str, tags: str = "", cgo: bool = False,
                  env: dict | None = None) -> None:
        args = ["build", "-trimpath", "-o", str(out)]
        if tags:
            args += ["-tags", tags]
        args += ["-ldflags", ldflags, pkg]
        self.go.run(*args, cwd=cwd, env={"CGO_ENABLED": "1" if cgo else "0", **(env or {})})

    # --- Kubernetes -----------------------------------------------------------------------------------------------
    def kubernetes(self) -> None:
        v = self.rel.kubernetes
        tag = f"v{v}"
        mod = self.work / "src" / "kubernetes"
        mod.mkdir(parents=True, exist_ok=True)
        holder: dict = {}

        def prepare():
            info = self.go.download("k8s.io/kubernetes", tag)
            if info is None:
                raise ArtifactError(f"k8s.io/kubernetes@{tag} is not served by the Go module proxy")
            holder["info"] = info
            gomod = Path(info["GoMod"]).read_text()
            staging = re.findall(r"^\s*(k8s\.io/[\w.-]+) => \./staging/src/", gomod, re.M)
            godir = re.search(r"^go (\S+)", gomod, re.M).group(1)
            godebug = re.findall(r"^godebug .*$", gomod, re.M)
            staging_v = "v0." + v.split(".", 1)[1]
            lines = [f"module kbootstrap.lab/kubernetes\n\ngo {godir}\n", *godebug, f"\nrequire k8s.io/kubernetes {tag}\n",
                     "replace ("]
            for m in sorted(staging):
                if m.startswith("k8s.io/sample-"):
                    continue
                why: dict = {}
                got, _ = resolve(self.go, m, staging_v, why)
                if got != staging_v:
                    self.info["substitutions"].append({"module": m, "wanted": staging_v, "used": got, **why})
                lines.append(f"\t{m} => {m} {got}")
            lines.append(")\n")
            (mod / "go.mod").write_text("\n".join(lines))
            (mod / "go.sum").unlink(missing_ok=True)
            self.go.run("get", *(f"k8s.io/kubernetes/cmd/{b}@{tag}" for b in KUBE_BINARIES), cwd=mod)
            self.info["modules"][f"k8s.io/kubernetes@{tag}"] = {"sum": info.get("Sum"), "origin": info.get("Origin")}

        self._timed("kubernetes: resolve + download modules", prepare)
        info = holder["info"]
        major, minor = v.split(".")[:2]
        commit = (info.get("Origin") or {}).get("Hash", "")
        build_date = _info_time(info)
        ld = ["-s", "-w"]
        for pkg in ("k8s.io/client-go/pkg/version", "k8s.io/component-base/version"):
            ld += [f"-X {pkg}.gitVersion={tag}", f"-X {pkg}.gitMajor={major}", f"-X {pkg}.gitMinor={minor}",
                   f"-X {pkg}.gitCommit={commit}", f"-X {pkg}.gitTreeState=clean", f"-X {pkg}.buildDate={build_date}"]
        ldflags = " ".join(ld)
        self.info["kubernetes_ldflags"] = ldflags
        for name, roles in KUBE_BINARIES.items():
            out = self.out / name / name
            self._timed(f"kubernetes: {name}",
                        functools.partial(self._go_build, mod, f"k8s.io/kubernetes/cmd/{name}", out, ldflags))
            self._add(name, name, out, v, f"/usr/local/bin/{name}", roles)

    # --- etcd -------------------------------------------------------------------------------------------------------
    def etcd(self) -> None:
        e = f"v{self.rel.etcd}"
        mod = self.work / "src" / "etcd"
        mod.mkdir(parents=True, exist_ok=True)
        parts = ("server/v3", "etcdctl/v3", "etcdutl/v3", "api/v3", "client/pkg/v3", "client/v3", "pkg/v3")
        holder: dict[str, Any] = {}

        def prepare():
            godir = "1.23.0"
            (mod / "go.mod").write_text(f"module kbootstrap.lab/etcd\n\ngo {godir}\n")
            self.go.run("get", *(f"go.etcd.io/etcd/{p}@{e}" for p in parts), cwd=mod)
            info = self.go.download("go.etcd.io/etcd/server/v3", e) or {}
            holder["commit"] = (info.get("Origin") or {}).get("Hash", "")
            self.info["modules"][f"go.etcd.io/etcd/server/v3@{e}"] = {"sum": info.get("Sum"), "origin": info.get("Origin")}

        self._timed("etcd: resolve + download modules", prepare)
        ld = f"-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA={holder['commit'][:8] or 'gomodule'}"
        for name, pkg in (("etcd", "go.etcd.io/etcd/server/v3"), ("etcdctl", "go.etcd.io/etcd/etcdctl/v3"),
                          ("etcdutl", "go.etcd.io/etcd/etcdutl/v3")):
            out = self.out / "etcd" / name
            self._timed(f"etcd: {name}", functools.partial(self._go_build, mod, pkg, out, ld))
            self._add("etcd", name, out, self.rel.etcd, f"/usr/local/bin/{name}", ("etcd",))

    # --- node tools ------------------------------------------------------------------------------------------------
    def crictl(self) -> None:
        holder: dict[str, Any] = {}
        self._timed("crictl: download",
                    lambda: holder.update(zip(("src", "info"),
                                              self._module_src("sigs.k8s.io/cri-tools", f"v{self.pins.crictl}"),
                                              strict=True)))
        v = holder["info"]["Version"]  # the pin, or its lab stand-in (LAB_STANDINS), recorded as a substitution
        out = self.out / "crictl" / "crictl"
        ld = f"-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version={v}"
        self._timed("crictl: crictl", lambda: self._go_build(holder["src"], "./cmd/crictl", out, ld))
        self._add("crictl", "crictl", out, v.removeprefix("v"), "/usr/local/bin/crictl", ("node",))

    def cni(self) -> None:
        v = f"v{self.pins.cni_plugins}"
        holder: dict[str, Any] = {}
        self._timed("cni-plugins: download",
                    lambda: holder.update(zip(("src", "info"),
                                              self._module_src("github.com/containernetworking/plugins", v), strict=True)))
        ld = f"-s -w -X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion={v}"
        where = {"bridge": "main", "host-local": "ipam", "loopback": "main", "portmap": "meta"}
        for p in CNI_PLUGINS:
            out = self.out / "cni-plugins" / p
            self._timed(f"cni-plugins: {p}",
                        functools.partial(self._go_build, holder["src"], f"./plugins/{where[p]}/{p}", out, ld))
            self._add("cni-plugins", p, out, self.pins.cni_plugins, f"/opt/cni/bin/{p}", ("node",))

    def containerd(self) -> None:
        v = f"v{self.pins.containerd}"
        holder: dict[str, Any] = {}
        self._timed("containerd: download",
                    lambda: holder.update(zip(("src", "info"),
                                              self._module_src("github.com/containerd/containerd/v2", v), strict=True)))
        rev = (holder["info"].get("Origin") or {}).get("Hash", "")
        pkg = "github.com/containerd/containerd/v2/version"
        ld = f"-s -w -X {pkg}.Version={v} -X {pkg}.Revision={rev} -X {pkg}.Package=github.com/containerd/containerd/v2"
        for name in ("containerd", "containerd-shim-runc-v2", "ctr"):
            out = self.out / "containerd" / name
            self._timed(f"containerd: {name}",
                        functools.partial(self._go_build, holder["src"], f"./cmd/{name}", out, ld, tags="no_btrfs"))
            self._add("containerd", name, out, self.pins.containerd, f"/usr/local/bin/{name}", ("node",))

    def runc(self) -> None:
        v = f"v{self.pins.runc}"
        holder: dict[str, Any] = {}

        def prepare():
            src, info = self._module_src("github.com/opencontainers/runc", v)
            self.go.run("mod", "edit", "-dropreplace=github.com/opencontainers/selinux",
                        f"-replace=github.com/opencontainers/selinux=github.com/opencontainers/selinux@{RUNC_SELINUX}",
                        cwd=src)
            self.info["substitutions"].append({
                "module": "github.com/opencontainers/selinux", "wanted": "runc's internal/third_party/selinux",
                "used": RUNC_SELINUX, "why": "nested module, not in the module zip"})
            holder.update(src=src, info=info)

        self._timed("runc: download", prepare)
        if not Path("/usr/lib/x86_64-linux-gnu/libseccomp.a").exists():
            raise ArtifactError("building runc needs libseccomp's static library: apt-get install libseccomp-dev")
        commit = (holder["info"].get("Origin") or {}).get("Hash", "")[:8]
        ld = (f"-s -w -X main.version={self.pins.runc} -X main.gitCommit={commit} "
              "-linkmode external -extldflags -static")
        out = self.out / "runc" / "runc"
        self._timed("runc: runc", lambda: self._go_build(holder["src"], ".", out, ld,
                                                        tags="seccomp urfave_cli_no_docs netgo osusergo", cgo=True))
        self._add("runc", "runc", out, self.pins.runc, "/usr/local/sbin/runc", ("node",))

    # --- images ----------------------------------------------------------------------------------------------------
    def images(self) -> list[ManifestFile]:
        entries = []
        rel = release_artifacts(self.rel.kubernetes)

        def build_all():
            pause_bin = build_pause_binary(self.work / "pause", self.rel.pause)
            for img in rel.images:  # pause
                out = self.out / img.path
                build_image_archive(pause_image(img.ref, pause_bin.read_bytes()), out)
                entries.append(self._image_entry(img.component, img.ref, out, self.rel.pause, ("node",)))
            by_name = {b.name: b for b in self.built}
            for img in control_plane_images(self.rel.kubernetes):
                if img.component == "kube-proxy":
                    continue  # the upstream image carries iptables; the lab runs kube-proxy as a service
                names = ("etcd", "etcdctl") if img.component == "etcd" else (img.component,)
                if not all(n in by_name for n in names):
                    continue  # a partial build (--only) has no binary for this image
                files = {n: by_name[n].path.read_bytes() for n in names}
                spec = binary_image(img.ref, files)
                if img.component == "etcd":
                    spec = dataclasses.replace(spec, entrypoint=("/usr/local/bin/etcd",))
                out = self.out / img.path
                build_image_archive(spec, out)
                version = self.rel.etcd if img.component == "etcd" else self.rel.kubernetes
                roles = ("etcd",) if img.component == "etcd" else ("control-plane",)
                entries.append(self._image_entry(img.component, img.ref, out, version, roles))

        self._timed("images", build_all)
        return entries

    def _image_entry(self, component: str, ref: str, path: Path, version: str,
                     roles: tuple[str, ...]) -> ManifestFile:
        return ManifestFile(path.relative_to(self.out).as_posix(), sha256_file(path), path.stat().st_size,
                            component, version, Kind.OCI_IMAGE, (), None, ref, roles)

    # --- checks ----------------------------------------------------------------------------------------------------
    def check_versions(self) -> None:
        """Run every binary's version command; it must report the pinned version."""
        for b in self.built:
            if b.component == "cni-plugins":
                cmd, want = [str(b.path)], f"v{b.version}"
            elif b.name == "containerd-shim-runc-v2":
                cmd, want = [str(b.path), "-v"], f"v{b.version}"
            elif b.name == "kubectl":
                cmd, want = [str(b.path), "version", "--client"], f"v{b.version}"
            elif b.component == "etcd":
                cmd, want = [str(b.path), "--version"] if b.name == "etcd" else [str(b.path), "version"], b.version
            else:
                cmd, want = [str(b.path), "--version"], b.version
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
            text = (r.stdout + r.stderr).strip()
            if want not in text:
                raise ArtifactError(f"{b.name}: `{' '.join(cmd[1:]) or '(no args)'}` reports {text[:300]!r}, not {want}")
            self.info["versions"][b.name] = text.splitlines()[0] if text else ""

    def manifest(self, recipe: dict, recipe_hash: str, images: list[ManifestFile]) -> Manifest:
        files = [
            ManifestFile(b.path.relative_to(self.out).as_posix(), sha256_file(b.path), b.path.stat().st_size,
                         b.component, b.version, Kind.BINARY, (b.install,), None, None, b.roles)
            for b in self.built
        ] + images
        info = {**self.info, "recipe": recipe_hash, "recipe_inputs": recipe, "go": self.go.version(),
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        return Manifest(self.rel.kubernetes, "amd64", "built", tuple(sorted(files, key=lambda f: f.path)), info)


def _info_time(info: dict) -> str:
    """The module version's commit time (from the proxy's .info) as the build date: reproducible."""
    info_file = info.get("Info")
    if info_file and Path(info_file).exists():
        t = json.loads(Path(info_file).read_text()).get("Time")
        if t:
            return t
    return "1970-01-01T00:00:00Z"


def catalog_inputs(version: str) -> str:
    """What the build takes from catalog.py (names, versions, install paths, roles, images), hashed: the rest of the
    catalog (URLs, the OS package table, …) can change without rebuilding the bundle."""
    rel = release_artifacts(version)
    data = {
        "binaries": {"kube": KUBE_BINARIES, "cni": CNI_PLUGINS, "etcd": ETCD_BINARIES,
                     "containerd": CONTAINERD_BINARIES},
        "files": [[d.component, d.version, str(d.kind), list(d.roles), [[i.dest, i.member, i.mode] for i in d.install]]
                  for d in rel.downloads],
        "images": [[i.component, i.ref, i.path] for i in (*rel.images, *control_plane_images(version))],
        "kinds": [str(k) for k in (Kind.BINARY, Kind.OCI_IMAGE)],
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def recipe_for(version: str, go_version: str) -> tuple[dict, str]:
    rel = versions.release(version)
    pins = PINS[rel.minor]
    sources = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
               for p in (HERE / "build.py", HERE / "images.py", HERE / "pause" / "pause.c")}
    sources["catalog"] = catalog_inputs(version)
    recipe = {
        "kubernetes": rel.kubernetes, "etcd": rel.etcd, "pause": rel.pause, "containerd": pins.containerd,
        "runc": pins.runc, "crictl": pins.crictl, "cni_plugins": pins.cni_plugins, "go": go_version,
        "runc_selinux": RUNC_SELINUX, "sources": sources,
    }
    return recipe, hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def existing_bundle(out_dir: Path, recipe_hash: str) -> Path | None:
    try:
        manifest, problems = verify_dir(out_dir)
    except ArtifactError:
        return None
    if manifest.origin == "built" and manifest.info.get("recipe") == recipe_hash and not problems:
        return out_dir
    return None


STEPS = ("kubernetes", "etcd", "crictl", "cni", "containerd", "runc")


def build_bundle(version: str, out_dir: Path | None = None, force: bool = False, cold: bool = False,
                 log: Log = lambda m: print(m, file=sys.stderr, flush=True),
                 only: tuple[str, ...] = STEPS) -> Path:
    """Build (or reuse) the lab bundle of one release; returns its directory."""
    if version not in versions.SUPPORTED:
        raise ArtifactError(f"unsupported version {version!r}; supported: {', '.join(versions.SUPPORTED)}")
    out_dir = out_dir or default_bundle_dir(version)
    probe = Go(Path(tempfile.gettempdir()), log)
    recipe, recipe_hash = recipe_for(version, probe.version())
    recipe["steps"] = list(only)
    recipe_hash = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
    if not force and existing_bundle(out_dir, recipe_hash):
        log(f"build: reusing {out_dir} (recipe {recipe_hash})")
        return out_dir
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".build-{version}-", dir=out_dir.parent))
    started = time.monotonic()
    try:
        b = LabBuild(version, work, log, cold=cold)
        log(f"build: Kubernetes {version} bundle, recipe {recipe_hash}, {b.go.version()}, work dir {work}")
        for step in only:
            getattr(b, step)()
        b.check_versions()
        images = b.images()
        b.info["timings"]["total"] = round(time.monotonic() - started, 1)
        manifest = b.manifest(recipe, recipe_hash, images)
        write_manifest(b.out, manifest)
        _, problems = verify_dir(b.out)
        if problems:
            raise ArtifactError("built bundle does not verify: " + "; ".join(map(str, problems)))
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        if out_dir.exists():
            out_dir.rename(old)
        b.out.rename(out_dir)
        shutil.rmtree(old, ignore_errors=True)
        size = sum(f.size for f in manifest.files)
        log(f"build: {out_dir}: {len(manifest.files)} files, {size / 1e6:.1f} MB, "
            f"{b.info['timings']['total']}s")
        for s in b.info["substitutions"]:
            log(f"build: NOTE substituted {s['module']}: wanted {s['wanted']}, used {s['used']} ({s.get('why', '')})")
        return out_dir
    finally:
        _rmtree_writable(work)


def _rmtree_writable(path: Path) -> None:
    """Module caches are read-only; make them writable so a cold build's private caches can be removed."""
    if not path.exists():
        return
    for p in path.rglob("*"):
        if p.is_dir() and not p.is_symlink():
            try:
                p.chmod(p.stat().st_mode | 0o700)
            except OSError:
                pass
    shutil.rmtree(path, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m kbootstrap.artifacts.build", description=__doc__.split("\n\n")[0])
    ap.add_argument("version", nargs="?", default=versions.DEFAULT_VERSION)
    ap.add_argument("--output", type=Path, help="bundle directory [default: ~/.cache/kbootstrap/bundles/VERSION]")
    ap.add_argument("--force", action="store_true", help="rebuild even if a bundle of the same recipe exists")
    ap.add_argument("--cold", action="store_true", help="use empty private Go caches (measures a cold build)")
    ap.add_argument("--only", action="append", choices=STEPS, help="build only these parts (repeat)")
    a = ap.parse_args(argv)
    try:
        path = build_bundle(a.version.removeprefix("v"), a.output, a.force, a.cold, only=tuple(a.only or STEPS))
    except ArtifactError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
