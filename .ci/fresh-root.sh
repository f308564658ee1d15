#!/usr/bin/env bash
# Prove .ci/packages on a fresh Debian 12, whatever this machine already has: debootstrap a minbase root
# (cached), install exactly the list into a fresh copy with --no-install-recommends, as .ci/install does, and run
# `kbootstrap lab check --engine vagrant --root` against it. A package the lab needs that only a Recommends or a
# hand install brought onto this machine fails here, naming the file or command and its package.
#
#   .ci/fresh-root.sh [PACKAGES_FILE]      default: .ci/packages; exit status: the check's (0 = all there)
#
# Cache (outside the repository): ${KB_CACHE:-~/.cache/kbootstrap}/fresh-root/: the minbase tarball, keyed by
# suite, mirror, debootstrap's version and this script; apt's downloaded .debs (bind-mounted, so a warm run
# downloads nothing). The root's apt reaches the packages as this machine's does (its sources and Acquire::
# settings are copied in). Services never start: a policy-rc.d answers 101. Runs as root; removes the root after.
set -euo pipefail
cd "$(dirname "$0")/.."
list=${1:-.ci/packages}
suite=bookworm
mirror=${KB_LAB_MIRROR:-http://deb.debian.org/debian}
cache=${KB_CACHE:-$HOME/.cache/kbootstrap}/fresh-root
log() { echo "fresh-root: $*" >&2; }
[ "$(id -u)" = 0 ] || { log "must run as root (debootstrap, chroot)"; exit 2; }
[ -f "$list" ] || { log "no package list $list"; exit 2; }

mkdir -p "$cache/archives/partial"
key=$( { echo "$suite $mirror"; dpkg-query -W -f='${Version}' debootstrap; cat "$0"; } | sha256sum | cut -c1-16)
base=$cache/$suite-minbase-$key.tar
if [ ! -f "$base" ]; then
  log "debootstrap --variant=minbase $suite (cold, ~1 min; cached as $base)"
  tmp=$(mktemp -d /var/tmp/kb-minbase.XXXXXX)
  debootstrap --variant=minbase "$suite" "$tmp" "$mirror" >"$tmp.log" 2>&1 || { tail -20 "$tmp.log" >&2; exit 1; }
  tar --numeric-owner -C "$tmp" -cf "$base.tmp" .
  mv "$base.tmp" "$base"
  rm -rf --one-file-system "$tmp" "$tmp.log"
  for old in "$cache"/*-minbase-*.tar; do [ "$old" = "$base" ] || rm -f "$old"; done
fi

root=$(mktemp -d /var/tmp/kb-fresh-root.XXXXXX)
chmod 755 "$root"  # apt downloads as _apt
cleanup() {
  awk '{print $2}' /proc/mounts | { grep -E "^$root(/|\$)" || true; } | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m"
  done
  rm -rf --one-file-system "$root"
}
trap cleanup EXIT
tar --numeric-owner -C "$root" -xf "$base"

# apt in the root reaches the packages as this machine's apt does; nothing starts.
cp /etc/resolv.conf "$root/etc/resolv.conf"
if compgen -G "/etc/apt/sources.list.d/*" >/dev/null; then
  rm -f "$root/etc/apt/sources.list"
  cp /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list "$root/etc/apt/sources.list.d/" 2>/dev/null || true
fi
[ -s /etc/apt/sources.list ] && cp /etc/apt/sources.list "$root/etc/apt/sources.list"
grep -ls '^Acquire::' /etc/apt/apt.conf.d/* | while read -r f; do cp "$f" "$root/etc/apt/apt.conf.d/"; done
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d" && chmod 755 "$root/usr/sbin/policy-rc.d"
mount -t proc proc "$root/proc"
mount --bind "$cache/archives" "$root/var/cache/apt/archives"

# shellcheck disable=SC2046 # one package a word
packages=$(grep -v '^\s*#' "$list" | xargs)
log "apt-get install --no-install-recommends $(echo "$packages" | wc -w) packages from $list into $root"
chroot "$root" apt-get update -qq
DEBIAN_FRONTEND=noninteractive chroot "$root" apt-get install -y -qq --no-install-recommends $packages \
  >"$root/install.log" 2>&1 || { tail -30 "$root/install.log" >&2; exit 1; }
log "installed: $(chroot "$root" dpkg-query -W -f='${db:Status-Abbrev}\n' | grep -c '^ii') packages in the root"

log "kbootstrap lab check --engine vagrant --root $root"
set +e
python3 -m kbootstrap lab check --engine vagrant --root "$root"
rc=$?
set -e
exit $rc
