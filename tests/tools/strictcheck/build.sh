#!/usr/bin/env bash
# Build strictcheck against the Kubernetes staging modules of one release and print the binary's path.
#
#   tests/tools/strictcheck/build.sh [VERSION]      VERSION: v0.34.2 (default), 0.33.6, 1.33.6 or v1.33.6
#
# The binary goes to ${KB_CACHE:-$HOME/.cache/kbootstrap}/tools/strictcheck-vX.Y.Z/strictcheck and is
# reused while the sources (main.go, go.mod, go.sum, this script) are unchanged: a stamp file beside it
# holds their hash. go.mod/go.sum here pin v0.34.2; another version is resolved in a temporary copy
# (through the Go module proxy), so the repository is never touched. Progress goes to stderr, only the
# path to stdout. Cold (empty Go module and build caches, 2 cores): about 2 minutes for v0.34.2, ~40 modules
# downloaded and most of the time spent compiling k8s.io/api/core/v1; another ~2 minutes for a v0.33.x.
# Warm (binary cached, sources unchanged): instant.
set -euo pipefail

src="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
pinned="v0.34.2"
ver="${1:-$pinned}"
# 1.34.2 / v1.34.2 (a Kubernetes release) -> v0.34.2 (its staging modules); 0.34.2 -> v0.34.2.
ver="${ver#v}"
case "$ver" in
  1.*) ver="0.${ver#1.}" ;;
esac
ver="v$ver"
if ! [[ "$ver" =~ ^v0\.[0-9]+\.[0-9]+$ ]]; then
  echo "build.sh: bad version '${1:-}' (want e.g. v0.34.2 or 1.34.2)" >&2
  exit 2
fi

out_dir="${KB_CACHE:-$HOME/.cache/kbootstrap}/tools/strictcheck-$ver"
bin="$out_dir/strictcheck"
stamp="$(cat "$src"/*.go "$src/go.mod" "$src/go.sum" "$src/build.sh" | sha256sum | cut -d' ' -f1)"
if [[ -x "$bin" && -f "$out_dir/stamp" && "$(cat "$out_dir/stamp")" == "$stamp" ]]; then
  echo "$bin"
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  echo "build.sh: 'go' not found on PATH (Go >= 1.24 is needed to build strictcheck)" >&2
  exit 3
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp "$src"/*.go "$src/go.mod" "$src/go.sum" "$work/"
cd "$work"
export GOFLAGS="${GOFLAGS:-} -mod=mod"
modules=(k8s.io/api k8s.io/apimachinery k8s.io/apiserver k8s.io/client-go k8s.io/kubelet k8s.io/kube-proxy k8s.io/kube-scheduler)
built="$ver"
if [[ "$ver" != "$pinned" ]]; then
  # A fresh module: every dependency, sigs.k8s.io/json and sigs.k8s.io/yaml included, comes out at
  # the version the staging modules of $ver pick, i.e. strictcheck decodes as that release does.
  rm -f go.mod go.sum
  go mod init kbootstrap.test/strictcheck >/dev/null 2>&1
  try_get() { go get "${modules[@]/%/@$1}" >&2; }
  echo "build.sh: resolving staging modules at $ver" >&2
  if ! try_get "$ver"; then
    # Some module proxies do not serve every patch release. Patch releases never change API types
    # (Kubernetes' API change policy), so the newest patch of the same minor that all seven modules
    # have is an exact stand-in for the config types. Set KB_STRICTCHECK_EXACT=1 to refuse that.
    if [[ -n "${KB_STRICTCHECK_EXACT:-}" ]]; then
      echo "build.sh: $ver is not available for every module and KB_STRICTCHECK_EXACT is set" >&2
      exit 4
    fi
    minor="${ver%.*}"
    common=""
    for m in "${modules[@]}"; do
      vs="$(go list -m -versions "$m" | tr ' ' '\n' | grep -E "^${minor//./\\.}\\.[0-9]+$" | sort -u || true)"
      if [[ -z "$common" ]]; then common="$vs"; else common="$(comm -12 <(echo "$common") <(echo "$vs"))"; fi
    done
    built="$(echo "$common" | sed '/^$/d' | sort -t. -k3,3n | tail -n1)"
    if [[ -z "$built" ]]; then
      echo "build.sh: no $minor.x release is available for all of: ${modules[*]}" >&2
      exit 4
    fi
    echo "build.sh: NOTE: $ver is not served by the module proxy; using $built (same minor: identical API types)" >&2
    try_get "$built"
  fi
  go mod tidy >&2
fi
echo "build.sh: building strictcheck (staging modules $built) into $bin" >&2
start=$SECONDS
go build -trimpath -ldflags="-s -w" -o "$work/strictcheck" . >&2
mkdir -p "$out_dir"
# Rename into place so that concurrent builders (pytest-xdist) never see a half-written binary.
mv -f "$work/strictcheck" "$bin.tmp.$$"
mv -f "$bin.tmp.$$" "$bin"
echo "$built" > "$out_dir/modules-version"
echo "$stamp" > "$out_dir/stamp.tmp.$$"
mv -f "$out_dir/stamp.tmp.$$" "$out_dir/stamp"
echo "build.sh: built in $((SECONDS - start))s" >&2
echo "$bin"
