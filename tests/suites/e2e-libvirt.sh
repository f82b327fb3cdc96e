#!/usr/bin/env bash
# End to end with a real libvirtd (issue 4): virt-l3 installed in hooks/qemu.d of a private
# libvirtd (tests/lib/libvirtd.sh: own mount and network namespaces), real type='qemu'
# domains without a disk, driven with virsh. Needs root; ~1 minute.
#   start -> routes and neighbours; destroy -> gone; invalid annotations -> virsh start
#   fails with virt-l3's error and leaves nothing; libvirtd restart after routes were
#   deleted by hand -> reconnect restores them; save/restore; two domains starting at
#   once (and two claiming one address at once); two routed NICs + one non-routed NIC.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib/libvirtd.sh
source "$here/../lib/libvirtd.sh"
# shellcheck source=../lib/e2e.sh
source "$here/../lib/e2e.sh"

LAB=e2elv$$
e2e_trap "$LAB" 40

echo "e2e-libvirt: starting a private libvirtd (lab $LAB)"
e2e_lab_start "$LAB" || { echo "e2e-libvirt: the lab did not start" >&2; exit 1; }
echo "  nwfilter path (virt-l3 nwfilter define + inject): $E2E_USE_NWFILTER"
STATE=$(lab_dir "$LAB")/tmp/state
lab_exec "$LAB" ip link add br-vlan100 type bridge
lab_exec "$LAB" ip link set br-vlan100 up

step() { e2e_case "$@"; }
virsh_() { e2e_virsh "$@"; }
present() { e2e_present "$1"; }
absent() { e2e_absent "$1"; }
neigh_is() { e2e_neigh "$LAB" "$1" | grep -i "lladdr $2 PERMANENT" >/dev/null; }
no_neigh() { ! e2e_neigh "$LAB" "$1" | grep lladdr >/dev/null; }
running() { e2e_running "$1"; }
shut_off() { e2e_shut_off "$1"; }
no_record() { ! grep -rqs "$1" "$STATE"; }
status_ok() { lab_exec "$LAB" "$E2E_BIN" status >/dev/null; }
status_bad() { ! status_ok; }
not_isolated() { ! e2e_tap_isolated "$LAB" "$1"; }
all_isolated() {
  local tap br mac
  while read -r tap br mac; do
    [ "$br" = cloudbr0 ] || continue
    e2e_tap_isolated "$LAB" "$tap" || return 1
  done < <(e2e_taps "$LAB" "$1")
}
nothing_routed() { [ -z "$(e2e_all_routes "$LAB")" ]; }

# --- start / destroy ---------------------------------------------------------------------
step "start and destroy"
e2e_domain vm1 11111111-0000-4000-8000-000000000001 \
  52:54:00:00:01:01,cloudbr0,192.0.2.11,2001:db8:1::11 | e2e_define "$LAB"
check "virsh start vm1 succeeds" virsh_ start vm1
check "vm1 runs" running vm1
check "route 192.0.2.11/32 dev cloudbr0 proto 52" present 192.0.2.11/32
check "route 2001:db8:1::11/128 dev cloudbr0 proto 52" present 2001:db8:1::11/128
check "permanent neighbour 192.0.2.11 -> 52:54:00:00:01:01" neigh_is 192.0.2.11 52:54:00:00:01:01
check "permanent neighbour 2001:db8:1::11 -> 52:54:00:00:01:01" neigh_is 2001:db8:1::11 52:54:00:00:01:01
check "vm1's tap is on cloudbr0 and isolated" all_isolated vm1
check "virt-l3 status: every entry present" status_ok
check "virsh destroy vm1 succeeds" virsh_ destroy vm1
check "route 192.0.2.11/32 gone" absent 192.0.2.11/32
check "route 2001:db8:1::11/128 gone" absent 2001:db8:1::11/128
check "neighbour 192.0.2.11 gone" no_neigh 192.0.2.11
check "neighbour 2001:db8:1::11 gone" no_neigh 2001:db8:1::11
check "vm1's record gone" no_record 11111111-0000-4000-8000-000000000001

# --- invalid annotations ----------------------------------------------------------------
step "invalid annotations refuse the start"
# 192.0.2.12 is fine, 224.0.0.5 is multicast: the whole domain is refused at prepare.
# Defined as is: `virt-l3 nwfilter define/inject` would already refuse it.
e2e_domain bad1 11111111-0000-4000-8000-000000000002 \
  52:54:00:00:02:01,cloudbr0,192.0.2.12,224.0.0.5 | E2E_USE_NWFILTER=false e2e_define "$LAB"
out=$(virsh_ start bad1 2>&1)
rc=$?
check "virsh start bad1 fails" test "$rc" != 0
check "the error shows virt-l3's message (got: ${out//$'\n'/ })" grep -q 'virt-l3.*224.0.0.5' <<<"$out"
check "bad1 is shut off" shut_off bad1
check "no route for bad1's valid address" absent 192.0.2.12/32
check "no neighbour for bad1's valid address" no_neigh 192.0.2.12
check "no record for bad1" no_record 11111111-0000-4000-8000-000000000002
check "no tap left on cloudbr0" test -z "$(lab_exec "$LAB" ip -br link show master cloudbr0)"
check "no proto 52 route at all" nothing_routed
virsh_ undefine bad1 >/dev/null

# --- reconnect --------------------------------------------------------------------------
step "libvirtd restart after the routes were deleted by hand"
e2e_domain vm3 11111111-0000-4000-8000-000000000003 \
  52:54:00:00:03:01,cloudbr0,192.0.2.13,2001:db8:1::13 | e2e_define "$LAB"
check "virsh start vm3 succeeds" virsh_ start vm3
check "route 192.0.2.13/32 present" present 192.0.2.13/32
lab_exec "$LAB" ip -4 route del 192.0.2.13/32 dev cloudbr0 proto 52
lab_exec "$LAB" ip -6 route del 2001:db8:1::13/128 dev cloudbr0 proto 52
lab_exec "$LAB" ip -4 neigh del 192.0.2.13 dev cloudbr0
check "routes deleted by hand" absent 192.0.2.13/32
check "virt-l3 status sees the missing entries" status_bad
qemu_pid=$(lab_exec "$LAB" pgrep -f 'guest=vm3,')
check "libvirtd stops (vm3 keeps running)" lab_libvirtd_stop "$LAB"
check "vm3's qemu survived libvirtd" test -d "/proc/$qemu_pid"
check "libvirtd starts again" lab_libvirtd_start "$LAB"
check "vm3 still runs (reconnected)" running vm3
check "reconnect restored 192.0.2.13/32" present 192.0.2.13/32
check "reconnect restored 2001:db8:1::13/128" present 2001:db8:1::13/128
check "reconnect restored the neighbour 192.0.2.13" neigh_is 192.0.2.13 52:54:00:00:03:01
check "virt-l3 status: every entry present" status_ok

# --- save / restore ---------------------------------------------------------------------
step "save and restore"
save=$(lab_dir "$LAB")/tmp/vm3.save
check "virsh save vm3 succeeds" virsh_ save vm3 "$save"
check "vm3 is shut off after save" shut_off vm3
check "saved: route 192.0.2.13/32 gone" absent 192.0.2.13/32
check "saved: route 2001:db8:1::13/128 gone" absent 2001:db8:1::13/128
check "saved: neighbour gone" no_neigh 192.0.2.13
check "virsh restore succeeds" virsh_ restore "$save"
check "vm3 runs after restore" running vm3
check "restored: route 192.0.2.13/32" present 192.0.2.13/32
check "restored: route 2001:db8:1::13/128" present 2001:db8:1::13/128
check "restored: neighbour 192.0.2.13" neigh_is 192.0.2.13 52:54:00:00:03:01
check "restored: tap isolated" all_isolated vm3
check "virsh destroy vm3 succeeds" virsh_ destroy vm3
check "destroyed: route 192.0.2.13/32 gone" absent 192.0.2.13/32

# --- concurrency ------------------------------------------------------------------------
step "two domains starting at once"
e2e_domain vm4 11111111-0000-4000-8000-000000000004 \
  52:54:00:00:04:01,cloudbr0,192.0.2.14,2001:db8:1::14 | e2e_define "$LAB"
e2e_domain vm5 11111111-0000-4000-8000-000000000005 \
  52:54:00:00:05:01,cloudbr0,192.0.2.15,2001:db8:1::15 | e2e_define "$LAB"
virsh_ start vm4 >/dev/null 2>&1 &
p4=$!
virsh_ start vm5 >/dev/null 2>&1 &
p5=$!
check "virsh start vm4 succeeds" wait "$p4"
check "virsh start vm5 succeeds" wait "$p5"
for a in 192.0.2.14/32 2001:db8:1::14/128 192.0.2.15/32 2001:db8:1::15/128; do
  check "route $a present" present "$a"
done
check "neighbour 192.0.2.14" neigh_is 192.0.2.14 52:54:00:00:04:01
check "neighbour 192.0.2.15" neigh_is 192.0.2.15 52:54:00:00:05:01
virsh_ destroy vm4 >/dev/null &
p4=$!
virsh_ destroy vm5 >/dev/null &
p5=$!
check "virsh destroy vm4 succeeds" wait "$p4"
check "virsh destroy vm5 succeeds" wait "$p5"
check "no proto 52 route left" nothing_routed

step "two domains claiming one address at once"
e2e_domain vm6 11111111-0000-4000-8000-000000000006 \
  52:54:00:00:06:01,cloudbr0,192.0.2.16 | e2e_define "$LAB"
e2e_domain vm7 11111111-0000-4000-8000-000000000007 \
  52:54:00:00:07:01,cloudbr0,192.0.2.16 | e2e_define "$LAB"
virsh_ start vm6 >/dev/null 2>&1 &
p6=$!
virsh_ start vm7 >/dev/null 2>&1 &
p7=$!
wait "$p6"
r6=$?
wait "$p7"
r7=$?
check "exactly one of vm6, vm7 started (exit codes $r6, $r7)" test $(((r6 == 0) + (r7 == 0))) = 1
if [ "$r6" = 0 ]; then winner=vm6 mac=52:54:00:00:06:01 loser=vm7; else winner=vm7 mac=52:54:00:00:07:01 loser=vm6; fi
check "the winner ($winner) runs, the other is shut off" bash -c '[ "$1" = running ] && [ "$2" = "shut off" ]' _ \
  "$(virsh_ domstate "$winner")" "$(virsh_ domstate "$loser")"
check "192.0.2.16 points at the winner's MAC" neigh_is 192.0.2.16 "$mac"
virsh_ destroy "$winner" >/dev/null
check "192.0.2.16 gone after destroy" absent 192.0.2.16/32
check "the loser can start now" virsh_ start "$loser"
virsh_ destroy "$loser" >/dev/null

# --- multi-NIC --------------------------------------------------------------------------
step "two routed NICs and one non-routed NIC"
e2e_domain vm8 11111111-0000-4000-8000-000000000008 \
  52:54:00:00:08:01,cloudbr0,198.51.100.1,2001:db8:a::1 \
  52:54:00:00:08:02,cloudbr0,198.51.100.2,2001:db8:a::2,203.0.113.0/28@198.51.100.2 \
  52:54:00:00:08:03,br-vlan100 | e2e_define "$LAB"
check "virsh start vm8 succeeds" virsh_ start vm8
for a in 198.51.100.1/32 2001:db8:a::1/128 198.51.100.2/32 2001:db8:a::2/128; do
  check "route $a present" present "$a"
done
check "routed prefix 203.0.113.0/28 via 198.51.100.2 onlink" \
  grep -q 'via 198.51.100.2 .*onlink' <<<"$(e2e_route "$LAB" 203.0.113.0/28)"
check "neighbour 198.51.100.1 -> NIC 1" neigh_is 198.51.100.1 52:54:00:00:08:01
check "neighbour 2001:db8:a::2 -> NIC 2" neigh_is 2001:db8:a::2 52:54:00:00:08:02
check "both routed taps isolated" all_isolated vm8
tap3=$(e2e_taps "$LAB" vm8 | awk '$2 == "br-vlan100" { print $1 }')
check "the non-routed NIC has a tap on br-vlan100 ($tap3)" test -n "$tap3"
check "the non-routed tap is left alone (not isolated)" not_isolated "$tap3"
check "no route or neighbour on br-vlan100" test -z "$(lab_exec "$LAB" ip route show dev br-vlan100; lab_exec "$LAB" ip neigh show dev br-vlan100 nud permanent)"
check "exactly 5 proto 52 routes" test "$(e2e_all_routes "$LAB" | wc -l)" = 5
check "virsh destroy vm8 succeeds" virsh_ destroy vm8
check "no proto 52 route left" nothing_routed
check "no record or address claim left in the state dir" test -z "$(find "$STATE" -type f ! -name lock)"

echo "e2e-libvirt: $SECONDS s"
e2e_summary
