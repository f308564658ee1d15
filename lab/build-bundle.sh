#!/usr/bin/env bash
# Build the lab's Kubernetes bundle from source (Go module proxy + gcc) and print its directory.
#
#   lab/build-bundle.sh [VERSION] [--force] [--cold] [--only PART ...]
#
# VERSION: a release kbootstrap supports (default: kbootstrap/model/versions.py's DEFAULT_VERSION), e.g. 1.34.2.
# The bundle lands in ${KB_CACHE:-~/.cache/kbootstrap}/bundles/VERSION/ (outside the repository), in exactly the
# format `kbootstrap artifacts bundle` writes (manifest.json + files), and is reused while the build recipe
# (versions, Go toolchain, build sources) is unchanged. --cold uses empty private Go caches (to measure).
# Needs: Go >= 1.24 (PATH or /usr/local/go/bin), gcc + libc6-dev (pause, runc), libseccomp-dev (runc).
# Runs at nice 10: others share the machine's cores. Cold on 2 cores: see docs/artifacts.md.
# Then, as root, lab/add-debs.sh adds the OS packages the nodes need (.debs against the lab image; a no-op when they
# are there); not as root it says how to.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$PATH:/usr/local/go/bin"
py="${PYTHON:-python3}"
cd "$repo"
out="$(nice -n 10 "$py" -m kbootstrap.artifacts.build "$@")"
dir="$(printf '%s\n' "$out" | tail -n 1)"
if [ ! -f "$dir/manifest.json" ]; then  # --help and the like
  printf '%s\n' "$out"
  exit 0
fi
if [ "$(id -u)" = 0 ]; then
  bash "$repo/lab/add-debs.sh" "$dir" >/dev/null
else
  echo "build-bundle: not root: run lab/add-debs.sh $dir as root to add the nodes' OS packages (.debs)" >&2
fi
echo "$dir"
