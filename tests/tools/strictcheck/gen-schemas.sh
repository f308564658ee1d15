#!/usr/bin/env bash
# Write kbootstrap/model/schemas/<minor>/{kubelet,kube-proxy}.json: the field types of KubeletConfiguration and
# KubeProxyConfiguration of each supported release, read from the upstream Go types by `strictcheck -schema`
# (schema.go). kbootstrap checks an inventory's component_config against them. Re-run after adding a release;
# tests/integration/test_component_schemas.py fails when a committed file differs from what this writes.
#
#   tests/tools/strictcheck/gen-schemas.sh [OUT_DIR]      default: kbootstrap/model/schemas
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
out="${1:-$repo/kbootstrap/model/schemas}"
for v in 1.34.2 1.33.6; do
  bin="$(bash "$repo/tests/tools/strictcheck/build.sh" "$v")"
  minor="${v%.*}"
  mkdir -p "$out/$minor"
  "$bin" -schema kubelet.config.k8s.io/v1beta1/KubeletConfiguration >"$out/$minor/kubelet.json"
  "$bin" -schema kubeproxy.config.k8s.io/v1alpha1/KubeProxyConfiguration >"$out/$minor/kube-proxy.json"
done
echo "$out"
