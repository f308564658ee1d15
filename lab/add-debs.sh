#!/usr/bin/env bash
# Add the OS packages lab nodes need (haproxy, keepalived, iptables, conntrack: catalog.OS_PACKAGES) to the lab
# bundle as .debs, with their dependency closure against the lab node image, and print the bundle directory.
#
#   lab/add-debs.sh [VERSION | BUNDLE_DIR]      default: the lab bundle of kbootstrap/model/versions.py's DEFAULT_VERSION
#
# Lab nodes have no network: these .debs reach them inside the bundle, over SSH (docs/lab.md). The closure is what
# apt on this machine would install on a node, computed against the node image's own dpkg status
# (images/<hash>/rootfs/var/lib/dpkg/status; vagrant/build-box.sh builds the image first if needed, as `lab up`
# does, and prints it when it is there). Downloads from this machine's Debian mirror (needs fresh apt lists);
# never changes this machine's packages. Re-running adds nothing. Run as root (the image build needs it).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${PYTHON:-python3}"
cd "$repo"
target="${1:-}"
if [ -n "$target" ] && [ -d "$target" ]; then
  bundle="$target"
else
  bundle="$("$py" -c 'import sys; from kbootstrap.model import versions; from kbootstrap.artifacts.build import default_bundle_dir
print(default_bundle_dir((sys.argv[1] or versions.DEFAULT_VERSION).removeprefix("v")))' "$target")"
fi
[ -f "$bundle/manifest.json" ] || { echo "add-debs: no bundle at $bundle (lab/build-bundle.sh makes it)" >&2; exit 1; }
image="$(bash "$repo/vagrant/build-box.sh" | tail -n 1)"
status="$image/rootfs/var/lib/dpkg/status"
[ -f "$status" ] || { echo "add-debs: $status is missing (build-box.sh printed $image)" >&2; exit 1; }
"$py" -m kbootstrap.artifacts debs --bundle "$bundle" --against "$status" >&2
echo "$bundle"
