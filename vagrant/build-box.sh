#!/usr/bin/env bash
# Build the kbootstrap lab's node image ("a fresh cloud VM": Debian bookworm with systemd, sshd,
# sudo and python3 — no containerd/etcd/haproxy, kbootstrap installs those) from debootstrap,
# and pack it as a vagrant-lxc box.
#
#   vagrant/build-box.sh             build if needed; print the image directory
#   vagrant/build-box.sh --vagrant   also add the box to vagrant as kbootstrap/lab-bookworm (and drop
#                                    its older versions); `vagrant up` would add it by itself too
#
# Everything lives OUTSIDE the repository, in ${KB_LAB_CACHE:-~/.cache/kbootstrap/lab}:
#   id_ed25519{,.pub}           the lab's SSH key (the inventories point at it); made here if absent
#   images/<hash>/rootfs/       the root filesystem (lower layer of the `lxc` engine's overlay roots)
#   images/<hash>/lxc-config    the LXC settings every node gets (also inside the box)
#   images/<hash>/lab.box       the vagrant-lxc box made from it
#   lab-box.json                a box catalog with one version (from <hash>) for the Vagrantfile
# <hash> covers this script and the public key, so the image is rebuilt only when the recipe
# (or the key baked into it) changes. Must run as root (debootstrap, chroot, numeric owners).
set -euo pipefail

CACHE=${KB_LAB_CACHE:-$HOME/.cache/kbootstrap/lab}
MIRROR=${KB_LAB_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
BOX_NAME=kbootstrap/lab-bookworm
PACKAGES=systemd,systemd-sysv,openssh-server,sudo,python3,iproute2,ca-certificates,dbus,libnss-myhostname

want_vagrant=0
for arg in "$@"; do
  case $arg in
    --vagrant) want_vagrant=1 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "build-box.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "build-box.sh: must run as root" >&2; exit 1; }

log() { echo "build-box: $*" >&2; }

mkdir -p "$CACHE/images"
chmod 700 "$CACHE"
exec 9>"$CACHE/build.lock"
flock 9                                    # one build at a time (parallel test sessions)

KEY=$CACHE/id_ed25519
if [ ! -s "$KEY" ] || [ ! -s "$KEY.pub" ]; then
  rm -f "$KEY" "$KEY.pub"
  ssh-keygen -q -t ed25519 -N '' -C kbootstrap-lab -f "$KEY"
  log "made the lab key $KEY"
fi

HASH=$( { cat "$0"; cat "$KEY.pub"; echo "$SUITE"; } | sha256sum | cut -c1-16)
IMG=$CACHE/images/$HASH

# Remove mounts left under a directory (a crashed debootstrap leaves proc/sys mounted), deepest first.
umount_under() {
  local d m
  d=$(readlink -f "$1")
  awk '{print $2}' /proc/mounts | { grep -E "^$d(/|\$)" || true; } | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m"
  done
}
remove_tree() { [ -e "$1" ] || return 0; umount_under "$1"; rm -rf --one-file-system "$1"; }

# Forget images of older recipes that no LXC container still uses as its root.
prune() {
  local d
  for d in "$CACHE"/images/*/ "$CACHE"/images/.build-*/; do
    [ -d "$d" ] || continue
    d=${d%/}
    [ "$d" = "$IMG" ] && continue
    if grep -qsF "$d/rootfs" /var/lib/lxc/*/config; then continue; fi
    log "removing old image $d"
    remove_tree "$d"
  done
}

build() {
  local tmp=$CACHE/images/.build-$HASH-$$ t0=$SECONDS
  trap 'remove_tree "'"$tmp"'"' EXIT
  mkdir -p "$tmp"
  local R=$tmp/rootfs
  log "debootstrap $SUITE into $R (cold build, ~1 min)"
  debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$R" "$MIRROR" >"$tmp/debootstrap.log" 2>&1 \
    || { tail -20 "$tmp/debootstrap.log" >&2; exit 1; }
  umount_under "$R"

  # --- the vagrant user: the lab key, NOPASSWD sudo --------------------------------------------
  chroot "$R" useradd --create-home --shell /bin/bash --user-group vagrant
  install -d -m 700 -o 1000 -g 1000 "$R/home/vagrant/.ssh"
  install -m 600 -o 1000 -g 1000 "$KEY.pub" "$R/home/vagrant/.ssh/authorized_keys"
  [ "$(chroot "$R" id -u vagrant)" = 1000 ] || { log "vagrant is not uid 1000"; exit 1; }
  echo 'vagrant ALL=(ALL) NOPASSWD:ALL' >"$R/etc/sudoers.d/vagrant"
  chmod 440 "$R/etc/sudoers.d/vagrant"

  # --- identity: every node must get its own ----------------------------------------------------
  # hostname: none in the image, so systemd keeps the one the container manager sets (uts name);
  # libnss-myhostname resolves it without an /etc/hosts entry (no sudo "unable to resolve host").
  rm -f "$R/etc/hostname"
  printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$R/etc/hosts"
  # machine-id: empty file = systemd generates one on the node's first boot and commits it;
  # dbus reads the same id.
  : >"$R/etc/machine-id"
  rm -f "$R/var/lib/dbus/machine-id"
  ln -s /etc/machine-id "$R/var/lib/dbus/machine-id"
  # sshd host keys: made per node on its first boot, not baked into the image. Ed25519 and ECDSA
  # only: an RSA-3072 key costs ~1.5 s of CPU per boot (most of a node's boot time, and every reset
  # is a first boot); every client the lab serves (OpenSSH, paramiko) prefers Ed25519.
  rm -f "$R"/etc/ssh/ssh_host_*
  printf 'HostKey /etc/ssh/ssh_host_ed25519_key\nHostKey /etc/ssh/ssh_host_ecdsa_key\n' \
    >"$R/etc/ssh/sshd_config.d/kbootstrap-lab-hostkeys.conf"
  cat >"$R/etc/systemd/system/kbootstrap-lab-hostkeys.service" <<'EOF'
[Unit]
Description=Generate this node's SSH host keys (kbootstrap lab image)
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/ssh_host_ed25519_key
ExecStart=/usr/bin/ssh-keygen -q -t ecdsa -N "" -f /etc/ssh/ssh_host_ecdsa_key

[Install]
RequiredBy=ssh.service
EOF
  chroot "$R" systemctl enable kbootstrap-lab-hostkeys.service >/dev/null 2>&1

  # --- network: the address comes from the container manager (static, no DHCP on the lab bridge) --
  # systemd-networkd manages eth0 but keeps the address/route set before boot.
  cat >"$R/etc/systemd/network/10-eth0.network" <<'EOF'
[Match]
Name=eth0

[Network]
DHCP=no
LinkLocalAddressing=no
IPv6AcceptRA=no
KeepConfiguration=yes
EOF
  chroot "$R" systemctl enable systemd-networkd.service >/dev/null 2>&1
  # No resolver in the lab: answer at once (127.0.0.1 refuses) instead of a timeout per lookup.
  rm -f "$R/etc/resolv.conf"
  echo 'nameserver 127.0.0.1' >"$R/etc/resolv.conf"

  # --- what the kubelet will need on a shared kernel (cheap here, documented in docs/lab.md) ------
  # no /dev/kmsg in a container: point it at the console, as kind does.
  echo 'L /dev/kmsg - - - - /dev/console' >"$R/etc/tmpfiles.d/kbootstrap-lab-kmsg.conf"
  # kubelet checks these tunables; the kernel is the host's and /proc/sys is read-only in the node:
  # present the expected values through per-node bind mounts (never write the host's).
  cat >"$R/usr/local/sbin/kbootstrap-lab-proc-sys" <<'EOF'
#!/bin/sh
# Present the kernel tunables the kubelet checks, without changing the shared kernel's values.
set -eu
d=/run/kbootstrap-lab/proc-sys
mkdir -p "$d"
while read -r key want; do
  f=/proc/sys/$(echo "$key" | tr . /)
  [ -e "$f" ] || continue
  [ "$(cat "$f")" = "$want" ] && continue
  echo "$want" >"$d/$key"
  mount --bind "$d/$key" "$f"
  mount -o remount,bind,ro "$f"
done <<LIST
vm.overcommit_memory 1
vm.panic_on_oom 0
kernel.panic 10
kernel.panic_on_oops 1
kernel.keys.root_maxkeys 1000000
kernel.keys.root_maxbytes 25000000
LIST
EOF
  chmod 755 "$R/usr/local/sbin/kbootstrap-lab-proc-sys"
  cat >"$R/etc/systemd/system/kbootstrap-lab-proc-sys.service" <<'EOF'
[Unit]
Description=Present the kernel tunables the kubelet expects (kbootstrap lab, shared kernel)
DefaultDependencies=no
ConditionVirtualization=container
After=systemd-remount-fs.service
Before=sysinit.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/kbootstrap-lab-proc-sys

[Install]
WantedBy=sysinit.target
EOF
  chroot "$R" systemctl enable kbootstrap-lab-proc-sys.service >/dev/null 2>&1

  # No network in the lab: apt's daily timers would only fail, and later race kbootstrap for the
  # dpkg lock. (A cloud image has them; the lab's nodes are better without.)
  chroot "$R" systemctl mask apt-daily.timer apt-daily-upgrade.timer >/dev/null 2>&1
  # Privileged nodes all count against the host's fs.inotify.max_user_instances (128 for root here,
  # a host sysctl the lab must not change): an idle node used 7; with 17+ nodes up, the newest ones
  # came up degraded (their systemd-ask-password-*.path units got no inotify instance). The two
  # password-agent path units and the console getty (lxc-attach is the lab's console) are not
  # needed: 4 a node.
  chroot "$R" systemctl mask systemd-ask-password-console.path systemd-ask-password-wall.path \
    console-getty.service >/dev/null 2>&1

  # --- smaller and quieter -----------------------------------------------------------------------
  # No man pages, docs (copyrights stay) or translations, now or for packages installed later:
  # 35% fewer files, which is what `vagrant up` (unpack) and `destroy` (delete) spend their time on.
  cat >"$R/etc/dpkg/dpkg.cfg.d/kbootstrap-lab-nodoc" <<'EOF'
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias
EOF
  find "$R/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
  find "$R/usr/share/man" "$R/usr/share/info" -mindepth 1 -delete
  find "$R/usr/share/locale" -mindepth 1 ! -type d ! -name locale.alias -delete
  find "$R/usr/share/doc" "$R/usr/share/locale" -mindepth 1 -type d -empty -delete
  chroot "$R" apt-get clean
  rm -rf "$R"/var/lib/apt/lists/* "$R"/var/log/*.log "$R"/var/cache/debconf/*-old "$R/root/.bash_history"
  echo "$HASH" >"$R/etc/kbootstrap-lab-image"

  # --- the vagrant-lxc box -----------------------------------------------------------------------
  local B=$tmp/box
  mkdir -p "$B"
  printf '{"provider": "lxc", "version": "1.0.0", "built-on": "%s", "kbootstrap-recipe": "%s"}\n' \
    "$(date -u +%FT%TZ)" "$HASH" >"$B/metadata.json"
  # The container config every lab node gets: vagrant-lxc appends it from the box, the `lxc`
  # engine includes $IMG/lxc-config.
  cat >"$tmp/lxc-config" <<'EOF'
lxc.include = /usr/share/lxc/config/debian.common.conf
lxc.arch = amd64
# systemd in the node needs every v1 controller mounted (cgroup:mixed:force), or runc cannot set
# cpu limits: "container could not join or create cgroup".
lxc.mount.auto =
lxc.mount.auto = proc:mixed sys:mixed cgroup:mixed:force
# Kubernetes in the node mounts and nests: no AppArmor confinement (a no-op where AppArmor is off).
lxc.apparmor.profile = unconfined
EOF
  cp "$tmp/lxc-config" "$B/lxc-config"
  echo "$HASH" >"$B/kbootstrap-recipe"
  tar --numeric-owner -C "$tmp" -c ./rootfs | gzip -1 >"$B/rootfs.tar.gz"
  tar -C "$B" -cf "$tmp/lab.box" metadata.json lxc-config kbootstrap-recipe rootfs.tar.gz
  (cd "$tmp" && sha256sum lab.box >lab.box.sha256)
  rm -rf "$B"
  rm -f "$tmp/debootstrap.log"
  mv "$tmp" "$IMG"
  trap - EXIT
  log "built image $HASH in $((SECONDS - t0)) s ($(du -sm "$IMG/rootfs" | cut -f1) MB rootfs)"
}

if [ ! -f "$IMG/lab.box" ]; then build; fi
rm -f "$CACHE/lab.box"  # an older layout of this cache

# A local box catalog: the Vagrantfile pins this version, so Vagrant adds the box by itself when the
# recipe changed (no stale box, no `vagrant box add --force` while machines are up).
VERSION=1.0.$((16#${HASH:0:8}))
cat >"$CACHE/lab-box.json.tmp" <<EOF
{"name": "$BOX_NAME",
 "description": "kbootstrap lab node: Debian $SUITE, built locally by vagrant/build-box.sh",
 "versions": [{"version": "$VERSION", "providers": [{"name": "lxc", "url": "file://$IMG/lab.box",
   "checksum_type": "sha256", "checksum": "$(cut -d' ' -f1 "$IMG/lab.box.sha256")"}]}]}
EOF
mv "$CACHE/lab-box.json.tmp" "$CACHE/lab-box.json"
prune

if [ "$want_vagrant" = 1 ]; then
  boxes=${VAGRANT_HOME:-$HOME/.vagrant.d}/boxes/${BOX_NAME//\//-VAGRANTSLASH-}
  if [ ! -d "$boxes/$VERSION/lxc" ]; then
    log "vagrant box add $BOX_NAME $VERSION"
    vagrant box add --provider lxc --box-version "$VERSION" "$CACHE/lab-box.json" >&2
  fi
  for d in "$boxes"/*/; do
    v=$(basename "$d")
    [ -d "$d" ] && [ "$v" != "$VERSION" ] || continue
    if [ -d "$d/lxc" ]; then
      log "vagrant box remove $BOX_NAME $v (an older recipe)"
      vagrant box remove --force --provider lxc --box-version "$v" "$BOX_NAME" >&2 || true
    fi
    rmdir "$d" 2>/dev/null || true  # vagrant leaves the empty version directory
  done
fi
echo "$IMG"
