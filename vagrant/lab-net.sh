#!/bin/sh
# The lab's private bridge, the one piece of host networking the lab makes.
#
#   lab-net.sh up BRIDGE GATEWAY/PREFIX   create the bridge if absent and give it the gateway address
#   lab-net.sh down BRIDGE                delete it once no interface is attached to it any more
#
# Used by the Vagrantfile (triggers) and by `kbootstrap lab`. Network safety: the bridge gets only the
# inventory's gateway address; no NAT, no forwarding, no sysctl is read or written. A fixed MAC keeps
# the nodes' ARP entry for the gateway valid while ports come and go (a bridge otherwise takes the
# lowest port MAC, and all zeroes when it has none), and addrgenmode none keeps the host from sending
# IPv6 link-local chatter onto it. Idempotent; safe to run concurrently (flock).
set -eu

usage() { sed -n '4,5p' "$0" >&2; exit 2; }
[ $# -ge 2 ] || usage
op=$1 br=$2
case $br in *[!A-Za-z0-9_.-]*|"") echo "lab-net: bad bridge name '$br'" >&2; exit 2 ;; esac

SUDO=
[ "$(id -u)" = 0 ] || SUDO=sudo

lockdir=/run/lock
[ -d "$lockdir" ] && [ -w "$lockdir" ] || lockdir=${TMPDIR:-/tmp}
exec 9>"$lockdir/kbootstrap-lab-net-$br.lock"
flock 9

is_bridge() { [ -d "/sys/class/net/$br/bridge" ]; }

case $op in
  up)
    [ $# -eq 3 ] || usage
    gw=$3
    case $gw in */*) ;; *) echo "lab-net: gateway must be ADDRESS/PREFIX, got '$gw'" >&2; exit 2 ;; esac
    if [ -e "/sys/class/net/$br" ]; then
      is_bridge || { echo "lab-net: $br exists and is not a bridge; refusing to touch it" >&2; exit 1; }
    else
      mac=02$(printf '%s' "$br" | sha256sum | cut -c1-10 | sed 's/../:&/g')
      $SUDO ip link add name "$br" address "$mac" type bridge
      $SUDO ip link set dev "$br" addrgenmode none
    fi
    if ! ip -4 -o addr show dev "$br" | grep -qF " inet $gw "; then
      $SUDO ip addr add "$gw" dev "$br"
    fi
    $SUDO ip link set dev "$br" up
    ;;
  down)
    [ -e "/sys/class/net/$br" ] || exit 0
    is_bridge || { echo "lab-net: $br is not a bridge; leaving it" >&2; exit 1; }
    ports=$(ls "/sys/class/net/$br/brif")
    [ -z "$ports" ] || exit 0  # another node or layout still uses it
    $SUDO ip link del dev "$br"
    ;;
  *) usage ;;
esac
