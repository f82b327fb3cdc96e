#!/usr/bin/env bash
# `virt-l3 check` against a real libvirtd (tests/lib/libvirtd.sh: private mount and network
# namespaces), with the default paths and programs: libvirtd --version, virsh
# nwfilter-list, ebtables, /etc/libvirt/hooks/qemu.d/virt-l3. tests/check_netns/ covers
# every item with stand-ins (and a real BIRD); this suite shows the libvirt items read
# the real thing, and the routing items read a real FRR's running configuration.
# Needs root; ~20 s.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib/libvirtd.sh
source "$here/../lib/libvirtd.sh"
# shellcheck source=../lib/e2e.sh
source "$here/../lib/e2e.sh"

LAB=chk$$
e2e_trap "$LAB" 30

echo "check-libvirt: starting a private libvirtd (lab $LAB)"
e2e_lab_start "$LAB" || { echo "check-libvirt: the lab did not start" >&2; exit 1; }

# The item's status in `virt-l3 check --json` run inside the lab (no BIRD there; vtysh
# finds FRR once it runs).
item() {
  lab_exec "$LAB" "$E2E_BIN" check --json --bird-socket /nonexistent/bird.ctl |
    jq -r --arg id "$1" '.items[] | select(.id == $id) | .status'
}
is() { [ "$(item "$1")" = "$2" ]; }

version=$(lab_exec "$LAB" libvirtd --version)
check "libvirt ok with the real libvirtd ($version)" is libvirt ok
check "hook ok: qemu.d/virt-l3 installed as the suite installs it" is hook ok
check "nwfilter ok: virsh nwfilter-list answers" is nwfilter ok
check "ebtables ok" is ebtables ok
check "state ok: no routed domain, no stray route" is state ok

lab_libvirtd_stop "$LAB"
check "nwfilter fails with libvirtd stopped" is nwfilter fail
lab_libvirtd_start "$LAB" || exit 1
check "nwfilter ok again with libvirtd started" is nwfilter ok

lab_exec "$LAB" chmod 0644 /etc/libvirt/hooks/qemu.d/virt-l3
check "hook fails when the entry is not executable" is hook fail
lab_exec "$LAB" rm /etc/libvirt/hooks/qemu.d/virt-l3
check "hook fails when the entry is gone" is hook fail

# FRR (zebra + bgpd) with the shipped example, as tests/suites/e2e-bgp.sh runs it.
check "routing-daemon fails before FRR runs" is routing-daemon fail
e2e_template "$E2E_ROOT/packaging/examples/frr.conf" 192.0.2.2 65010 65001 192.0.2.1 2001:db8::1 |
  lab_write "$LAB" /etc/frr/frr.conf
e2e_on_exit() { e2e_frr_stop "$LAB"; }
if e2e_frr_start "$LAB"; then
  check "routing-daemon ok: FRR answers vtysh" is routing-daemon ok
  check "routing-config ok: FRR's running configuration redistributes cloudbr0" is routing-config ok
  lab_exec "$LAB" vtysh -c 'configure terminal' -c 'route-map VIRT-L3 permit 10' \
    -c 'no match interface cloudbr0' -c 'match interface eth0' >/dev/null
  check "routing-config fails once the route-map matches another interface" is routing-config fail
  lab_exec "$LAB" vtysh -c 'configure terminal' -c 'route-map VIRT-L3 permit 10' \
    -c 'no match interface eth0' -c 'match interface cloudbr0' -c 'exit' -c 'router bgp 65010' \
    -c 'address-family ipv6 unicast' -c 'no redistribute kernel route-map VIRT-L3' >/dev/null
  check "routing-config fails without IPv6 redistribution" is routing-config fail
else
  check "FRR starts with packaging/examples/frr.conf" false
fi

e2e_summary
