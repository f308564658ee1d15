#!/usr/bin/env bash
# The whole user journey on the local lab, as root on a fresh Debian 12 machine:
#   bash lab/journey.sh [lab-stacked|lab-external]
# installs what it needs (.ci/install: packages, kbootstrap, the bundle built once), brings the lab's hosts up,
# then `kbootstrap init` and `kbootstrap join`, and lists the nodes through the load balancer's VIP.
# Again on a finished cluster: nothing changes. Remove it all: kbootstrap lab down -i inventories/NAME.yaml
set -euo pipefail
cd "$(dirname "$0")/.."
name="${1:-lab-stacked}"
inv="inventories/$name.yaml"
[ -f "$inv" ] || { echo "no inventory $inv (try lab-stacked or lab-external)" >&2; exit 2; }
export started=$SECONDS
bash .ci/install
step() { printf '\n== %s  [+%ss]\n' "$*" "$((SECONDS - started))"; }

step "lab hosts up ($inv)"
kbootstrap lab up -i "$inv"
step "kbootstrap init -i $inv"
kbootstrap init -i "$inv"
step "kbootstrap join -i $inv"
kbootstrap join -i "$inv"
step "the cluster, through the API's load balancer"
conf="${KBOOTSTRAP_HOME:-$HOME/.local/share/kbootstrap}/clusters/$name/admin.conf"
"${KB_CACHE:-$HOME/.cache/kbootstrap}/bundles/1.34.2/kubectl/kubectl" --kubeconfig "$conf" get nodes -o wide
echo "admin kubeconfig: $conf"
