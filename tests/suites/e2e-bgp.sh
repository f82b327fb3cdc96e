#!/usr/bin/env bash
# End to end over BGP (issue 4): a private libvirtd with virt-l3 as its qemu.d hook (the
# hypervisor namespace, tests/lib/libvirtd.sh) peers over BGP with a second namespace,
# the upstream router (BIRD). On the hypervisor side the routing daemon runs the shipped
# packaging/examples/bird.conf, then packaging/examples/frr.conf, with only the @...@
# placeholders replaced. For each: `virsh start` -> the VM's /32 and /128 appear at the
# peer; `virsh destroy` -> withdrawn; a route that is not virt-l3's never leaves.
# Prints the time from `virsh start` returning to the prefixes at the peer, and from
# `virsh destroy` returning to their withdrawal (E2E_BGP_ROUNDS rounds, default 3).
# Needs root; ~1-2 minutes.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib/libvirtd.sh
source "$here/../lib/libvirtd.sh"
# shellcheck source=../lib/e2e.sh
source "$here/../lib/e2e.sh"

LAB=e2ebgp$$
PEER=vl3peer$$
ROUNDS=${E2E_BGP_ROUNDS:-3}
HV_AS=65000 PEER_AS=65001
HV4=192.168.255.1 PEER4=192.168.255.2 HV6=fd00:255::1 PEER6=fd00:255::2
peer_created=false

e2e_on_failure() {
  echo "--- peer BIRD ---" >&2
  peer_birdc show protocols >&2 2>&1 || true
}
e2e_on_exit() {
  if [ "$peer_created" = true ]; then
    [ -s "$PDIR/bird.pid" ] && kill "$(cat "$PDIR/bird.pid")" 2>/dev/null
    ip netns del "$PEER" 2>/dev/null
  fi
  return 0
}
e2e_trap "$LAB" 20

since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

echo "e2e-bgp: starting a private libvirtd (lab $LAB) and the upstream router (netns $PEER)"
e2e_lab_start "$LAB" || { echo "e2e-bgp: the lab did not start" >&2; exit 1; }
DIR=$(lab_dir "$LAB")/tmp
PDIR=$DIR/peer
mkdir -p "$PDIR"
ip netns add "$PEER" || exit 1
peer_created=true
ip -n "$PEER" link set lo up
ip -n "$(lab_netns "$LAB")" link add up0 type veth peer name down0 netns "$PEER"
lab_exec "$LAB" ip addr add "$HV4/30" dev up0
lab_exec "$LAB" ip addr add "$HV6/64" dev up0 nodad
lab_exec "$LAB" ip link set up0 up
ip -n "$PEER" addr add "$PEER4/30" dev down0
ip -n "$PEER" addr add "$PEER6/64" dev down0 nodad
ip -n "$PEER" link set down0 up

# The upstream router: accepts everything the hypervisor sends, sends nothing.
cat >"$PDIR/bird.conf" <<EOF
log "$PDIR/bird.log" all;
router id $PEER4;
protocol device { scan time 10; }
protocol bgp hv4 {
  local $PEER4 as $PEER_AS; neighbor $HV4 as $HV_AS;
  connect delay time 1; connect retry time 2; error wait time 1, 5;
  ipv4 { import all; export none; };
}
protocol bgp hv6 {
  local $PEER6 as $PEER_AS; neighbor $HV6 as $HV_AS;
  connect delay time 1; connect retry time 2; error wait time 1, 5;
  ipv6 { import all; export none; };
}
EOF
ip netns exec "$PEER" bird -c "$PDIR/bird.conf" -s "$PDIR/bird.ctl" -P "$PDIR/bird.pid" || exit 1
peer_birdc() { birdc -s "$PDIR/bird.ctl" "$@"; }
at_peer() { peer_birdc show route "$1" | grep "^${1//./\\.} " >/dev/null; }
gone_at_peer() { ! at_peer "$1"; }
both_at_peer() { at_peer "$1" && at_peer "$2"; }
both_gone_at_peer() { gone_at_peer "$1" && gone_at_peer "$2"; }
# The kernel metric travels as MED (virt-l3's live-migration classes, docs/ROUTING.md).
med_at_peer() { peer_birdc show route "$1" all | grep "BGP.med: $2\$" >/dev/null; }
both_med_at_peer() { med_at_peer "$1" "$3" && med_at_peer "$2" "$3"; }
# As virt-l3 changes a metric: add the route with the new metric, then delete the old one.
remetric() { # PREFIX OLD NEW
  local f
  f=$(e2e_family "$1")
  lab_exec "$LAB" ip "$f" route add "$1" dev cloudbr0 proto "$E2E_PROTO" metric "$3" &&
    lab_exec "$LAB" ip "$f" route del "$1" dev cloudbr0 proto "$E2E_PROTO" metric "$2"
}
remetric_both() { remetric "$1" "$3" "$4" && remetric "$2" "$3" "$4"; }
established() { [ "$(peer_birdc show protocols | grep -c 'Established')" = 2 ]; }

template() { e2e_template "$1" "$HV4" "$HV_AS" "$PEER_AS" "$PEER4" "$PEER6"; }

start_bird() {
  template "$E2E_ROOT/packaging/examples/bird.conf" >"$DIR/hv-bird.conf"
  if [ -n "${E2E_BIRD_SCAN_TIME:-}" ]; then # for measurements only (docs/ROUTING.md)
    sed -i "s/^  scan time 30;/  scan time $E2E_BIRD_SCAN_TIME;/" "$DIR/hv-bird.conf"
  fi
  grep -Eq '@[A-Z0-9_]+@' "$DIR/hv-bird.conf" && { echo "untemplated placeholder in bird.conf" >&2; return 1; }
  lab_exec "$LAB" bird -c "$DIR/hv-bird.conf" -s "$DIR/hv-bird.ctl" -P "$DIR/hv-bird.pid"
}
stop_bird() {
  lab_exec "$LAB" birdc -s "$DIR/hv-bird.ctl" down >/dev/null
}
start_frr() {
  template "$E2E_ROOT/packaging/examples/frr.conf" | lab_write "$LAB" /etc/frr/frr.conf || return 1
  grep -Eq '@[A-Z0-9_]+@' <(lab_exec "$LAB" cat /etc/frr/frr.conf) && { echo "untemplated placeholder in frr.conf" >&2; return 1; }
  e2e_frr_start "$LAB"
}
stop_frr() { e2e_frr_stop "$LAB"; }

RESULTS=()
run_daemon() {
  local daemon=$1 i n v4 v6 t up down ups=() downs=()
  echo "case ($SECONDS s): $daemon on the hypervisor"
  check "$daemon starts with packaging/examples/$daemon.conf" "start_$daemon"
  check "both BGP sessions (IPv4, IPv6) established" poll 90 established
  # Not virt-l3's: same bridge-less kernel table, another protocol / interface.
  lab_exec "$LAB" ip route add 198.18.0.0/24 dev up0 proto static
  lab_exec "$LAB" ip -6 route add 2001:db8:ffff::/48 dev up0 proto static
  for i in $(seq "$ROUNDS"); do
    n=$((RANDOM % 200 + 20))
    v4=192.0.2.$n v6=2001:db8:2::$n
    e2e_domain "bgp-$daemon-$i" "22222222-0000-4000-8000-$(printf %012d "$n")" \
      "52:54:00:00:22:$(printf %02x "$n"),cloudbr0,$v4,$v6" | e2e_define "$LAB"
    check "round $i: virsh start" lab_virsh "$LAB" start "bgp-$daemon-$i"
    t=$(now)
    if poll 60 both_at_peer "$v4/32" "$v6/128"; then
      up=$(since "$t")
      ups+=("$up")
      check "round $i: $v4/32 and $v6/128 at the peer after ${up}s" true
    else
      check "round $i: $v4/32 and $v6/128 at the peer within 60 s" false
    fi
    check "round $i: MED 100 (the kernel metric) at the peer" poll 10 both_med_at_peer "$v4/32" "$v6/128" 100
    if [ "$i" = 1 ]; then
      check "round $i: metric 100 -> 2000 in the kernel" remetric_both "$v4/32" "$v6/128" 100 2000
      check "round $i: MED 2000 at the peer" poll 10 both_med_at_peer "$v4/32" "$v6/128" 2000
      check "round $i: metric 2000 -> 100 in the kernel" remetric_both "$v4/32" "$v6/128" 2000 100
      check "round $i: MED 100 at the peer again" poll 10 both_med_at_peer "$v4/32" "$v6/128" 100
    fi
    check "round $i: a static route elsewhere is not announced" gone_at_peer 198.18.0.0/24
    check "round $i: an IPv6 static route elsewhere is not announced" gone_at_peer 2001:db8:ffff::/48
    check "round $i: virsh destroy" lab_virsh "$LAB" destroy "bgp-$daemon-$i"
    t=$(now)
    if poll 60 both_gone_at_peer "$v4/32" "$v6/128"; then
      down=$(since "$t")
      downs+=("$down")
      check "round $i: withdrawn at the peer after ${down}s" true
    else
      check "round $i: withdrawn at the peer within 60 s" false
    fi
    lab_virsh "$LAB" undefine "bgp-$daemon-$i" >/dev/null
  done
  lab_exec "$LAB" ip route del 198.18.0.0/24 dev up0 proto static
  lab_exec "$LAB" ip -6 route del 2001:db8:ffff::/48 dev up0 proto static
  "stop_$daemon"
  check "sessions down after $daemon stopped" poll 30 bash -c "! birdc -s '$PDIR/bird.ctl' show protocols | grep Established >/dev/null"
  RESULTS+=("$daemon: virsh start -> at peer: ${ups[*]:-none} s; virsh destroy -> withdrawn: ${downs[*]:-none} s")
}

run_daemon bird
run_daemon frr

echo "convergence (each round, seconds; polled every 50 ms):"
printf '  %s\n' "${RESULTS[@]}"
echo "e2e-bgp: $SECONDS s"
e2e_summary
