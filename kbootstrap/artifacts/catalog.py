"""What kbootstrap installs on hosts, per supported Kubernetes release: one typed table.

Every row is one file as the upstream project publishes it — its official URL, the URL of the checksum file the
project publishes beside it, and how the file lands on a host (a binary copied as is, or members of a tarball).
Which versions go together is pinned here per release (`PINS`), next to `kbootstrap/model/versions.py`, which pins what
kubeadm pairs (etcd, pause). The sha256 of each file is pinned separately, in a reviewable lock file
(`kbootstrap/artifacts/lock/<version>.json`, see `lock.py`).

Mirrors: the upstream URL `https://HOST/PATH` is fetched from `SOURCE/HOST/PATH` when a source is given
(`--source` / `KBOOTSTRAP_ARTIFACTS_SOURCE`) — the layout kubespray's `files_repo` uses, so a mirror made for one
serves the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import urlsplit

from kbootstrap.model import versions


class Kind(StrEnum):
    BINARY = "binary"  # one executable, copied to `dest`
    TARBALL = "tar.gz"  # a tarball; `Install.member` names what is copied out of it
    OCI_IMAGE = "oci-image"  # an OCI image layout tar, imported with `ctr -n k8s.io images import`
    DEB = "deb"  # a Debian package (`debs/<file>.deb`), installed with `dpkg -i` (see `OS_PACKAGES`, debs.py)


class ChecksumFormat(StrEnum):
    BARE = "bare"  # the file holds only the hex digest (dl.k8s.io `X.sha256`, cri-tools `X.tar.gz.sha256`)
    SUMS = "sums"  # `sha256sum` output: "HEX  NAME" lines (etcd SHA256SUMS, containerd `.sha256sum`, runc, CNI)


@dataclass(frozen=True)
class Install:
    """One file placed on a host from a downloaded artifact."""

    dest: str  # absolute path on the host
    member: str | None = None  # path inside the tarball; None for a binary artifact
    mode: int = 0o755


@dataclass(frozen=True)
class Download:
    """One upstream file: where it is published, where its checksum is published, what it installs."""

    component: str  # "kube-apiserver", "etcd", "containerd", "cni-plugins", ...
    version: str  # the component's own version, without a leading "v"
    url: str  # the official release URL
    checksum_url: str  # the checksum file the project publishes for it
    checksum_format: ChecksumFormat
    kind: Kind
    install: tuple[Install, ...]
    roles: tuple[str, ...]  # which hosts need it: "control-plane", "etcd", "node" (every kubelet host), "admin"

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[1]

    @property
    def path(self) -> str:
        """Where the file lies inside a cache directory or bundle."""
        return f"{self.component}/{self.filename}"

    def url_from(self, source: str | None) -> str:
        return mirror_url(self.url, source)

    def checksum_url_from(self, source: str | None) -> str:
        return mirror_url(self.checksum_url, source)


def mirror_url(url: str, source: str | None) -> str:
    """`https://dl.k8s.io/release/...` → `SOURCE/dl.k8s.io/release/...` (kubespray's files_repo layout)."""
    if not source:
        return url
    parts = urlsplit(url)
    return f"{source.rstrip('/')}/{parts.netloc}{parts.path}"


@dataclass(frozen=True)
class Pins:
    """Component versions that go with one Kubernetes release (besides etcd/pause, which versions.py pins)."""

    containerd: str
    runc: str
    crictl: str
    cni_plugins: str


# Why these: containerd's RELEASES.md "Kubernetes Support" matrix recommends for 1.34 containerd 2.1.3+, 2.0.6+,
# 1.7.28+ or 1.6.39+ (and for 1.33 2.1.0+, 2.0.4+, 1.7.24+, 1.6.36+); containerd 2.x also answers the kubelet's
# RuntimeConfig CRI call (cgroup driver from the runtime; GA in 1.34, the config fallback goes in 1.36).
# runc 1.3.3 carries the November 2025 security fixes. crictl follows the Kubernetes minor. CNI plugins: latest.
PINS: dict[str, Pins] = {
    "1.34": Pins(containerd="2.1.4", runc="1.3.3", crictl="1.34.0", cni_plugins="1.8.0"),
    "1.33": Pins(containerd="2.1.4", runc="1.3.3", crictl="1.33.0", cni_plugins="1.8.0"),
}

KUBE_BINARIES: dict[str, tuple[str, ...]] = {
    "kube-apiserver": ("control-plane",),
    "kube-controller-manager": ("control-plane",),
    "kube-scheduler": ("control-plane",),
    "kubelet": ("node",),
    "kube-proxy": ("node",),
    "kubectl": ("control-plane", "admin"),
}
CNI_PLUGINS = ("bridge", "host-local", "loopback", "portmap")
# etcdutl works on data files: snapshot status and restore (gone from etcdctl in etcd 3.6).
ETCD_BINARIES = ("etcd", "etcdctl", "etcdutl")
CONTAINERD_BINARIES = ("containerd", "containerd-shim-runc-v2", "ctr")


@dataclass(frozen=True)
class Image:
    """An OCI image the bundle can carry (built locally for the lab; pulled from a registry otherwise)."""

    component: str
    ref: str  # "registry.k8s.io/pause:3.10.1"

    @property
    def path(self) -> str:
        name = self.ref.rsplit("/", 1)[1].replace(":", "-")
        return f"images/{name}.tar"


@dataclass(frozen=True)
class ReleaseArtifacts:
    kubernetes: str
    arch: str
    downloads: tuple[Download, ...]
    images: tuple[Image, ...] = field(default=())

    def get(self, component: str) -> Download:
        for d in self.downloads:
            if d.component == component:
                return d
        raise KeyError(component)

    @property
    def components(self) -> list[str]:
        return [d.component for d in self.downloads]


def release_artifacts(version: str, arch: str = "amd64") -> ReleaseArtifacts:
    """Every upstream file kbootstrap installs for one supported Kubernetes release."""
    rel = versions.release(version)
    pins = PINS[rel.minor]
    k8s = rel.kubernetes
    dl: list[Download] = []
    for name, roles in KUBE_BINARIES.items():
        url = f"https://dl.k8s.io/release/v{k8s}/bin/linux/{arch}/{name}"
        dl.append(Download(name, k8s, url, url + ".sha256", ChecksumFormat.BARE, Kind.BINARY,
                           (Install(f"/usr/local/bin/{name}"),), roles))
    e = rel.etcd
    base = f"https://github.com/etcd-io/etcd/releases/download/v{e}"
    top = f"etcd-v{e}-linux-{arch}"
    dl.append(Download("etcd", e, f"{base}/{top}.tar.gz", f"{base}/SHA256SUMS", ChecksumFormat.SUMS, Kind.TARBALL,
                       tuple(Install(f"/usr/local/bin/{b}", f"{top}/{b}") for b in ETCD_BINARIES), ("etcd",)))
    c = pins.containerd
    base = f"https://github.com/containerd/containerd/releases/download/v{c}"
    name = f"containerd-{c}-linux-{arch}.tar.gz"
    dl.append(Download("containerd", c, f"{base}/{name}", f"{base}/{name}.sha256sum", ChecksumFormat.SUMS,
                       Kind.TARBALL, tuple(Install(f"/usr/local/bin/{b}", f"bin/{b}") for b in CONTAINERD_BINARIES),
                       ("node",)))
    r = pins.runc
    base = f"https://github.com/opencontainers/runc/releases/download/v{r}"
    dl.append(Download("runc", r, f"{base}/runc.{arch}", f"{base}/runc.sha256sum", ChecksumFormat.SUMS, Kind.BINARY,
                       (Install("/usr/local/sbin/runc"),), ("node",)))
    t = pins.crictl
    base = f"https://github.com/kubernetes-sigs/cri-tools/releases/download/v{t}"
    name = f"crictl-v{t}-linux-{arch}.tar.gz"
    dl.append(Download("crictl", t, f"{base}/{name}", f"{base}/{name}.sha256", ChecksumFormat.BARE, Kind.TARBALL,
                       (Install("/usr/local/bin/crictl", "crictl"),), ("node",)))
    n = pins.cni_plugins
    base = f"https://github.com/containernetworking/plugins/releases/download/v{n}"
    name = f"cni-plugins-linux-{arch}-v{n}.tgz"
    dl.append(Download("cni-plugins", n, f"{base}/{name}", f"{base}/{name}.sha256", ChecksumFormat.SUMS,
                       Kind.TARBALL, tuple(Install(f"/opt/cni/bin/{p}", f"./{p}") for p in CNI_PLUGINS), ("node",)))
    images = (Image("pause", f"registry.k8s.io/pause:{rel.pause}"),)
    return ReleaseArtifacts(k8s, arch, tuple(dl), images)


@dataclass(frozen=True)
class OsPackage:
    """A Debian package a role needs on its hosts beyond the base system; it travels in the bundle as .debs."""

    name: str  # the Debian package name, as `dpkg-query -W NAME` knows it
    roles: tuple[str, ...]  # the bundle roles of the hosts that need it (see `Download.roles`; + "loadbalancer")
    why: str


# OS packages per role, installed from .debs in the bundle with their dependency closure (hosts may have no
# package mirror: the lab nodes have none). Roles are the bundle's: "node" = every host running a kubelet
# (control planes and workers), "loadbalancer" = the inventory role. Changing this table needs no rebuild of the
# lab bundle: `kbootstrap artifacts debs` (lab/add-debs.sh) adds what is missing.
OS_PACKAGES: tuple[OsPackage, ...] = (
    OsPackage("haproxy", ("loadbalancer",),
              "the API server load balancer: TCP 6443 to every kube-apiserver, /readyz checks over TLS"),
    OsPackage("keepalived", ("loadbalancer",), "the VRRP virtual IP shared by two or more load balancers"),
    OsPackage("iptables", ("node",),
              "kube-proxy (iptables mode) programs Services with iptables-restore/iptables-save; "
              "the CNI bridge (ipMasq) and portmap plugins run iptables too"),
    # kube-proxy itself clears stale UDP conntrack entries over netlink since 1.32 (kubernetes#126847; up to 1.31 it
    # ran this tool): conntrack stays for inspecting and flushing a node's conntrack table when debugging Services.
    OsPackage("conntrack", ("node",), "inspecting/flushing the node's conntrack table (kube-proxy <= 1.31 ran it)"),
)


def packages_for(roles: set[str] | frozenset[str]) -> list[str]:
    """The top-level OS packages a host with these bundle roles needs, in table order (for an installed check:
    `dpkg-query -W -f='${Status}' NAME` prints `install ok installed`)."""
    return [p.name for p in OS_PACKAGES if set(p.roles) & set(roles)]


def os_package(name: str) -> OsPackage:
    for p in OS_PACKAGES:
        if p.name == name:
            return p
    raise KeyError(name)


def control_plane_images(version: str) -> tuple[Image, ...]:
    """The static-pod images, named as `render` names them (kbootstrap/render/context.py)."""
    rel = versions.release(version)
    out = [Image(c, f"registry.k8s.io/{c}:{rel.tag}") for c in
           ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy")]
    out.append(Image("etcd", f"registry.k8s.io/etcd:{rel.etcd}-0"))
    return tuple(out)
