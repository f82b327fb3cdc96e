#!/usr/bin/env bash
# `virt-l3 check` against a real libvirtd (tests/lib/libvirtd.sh: private mount and network
# namespaces), with the default paths and programs: libvirtd --version, virsh
# nwfilter-list, ebtables, /etc/libvirt/hooks/qemu.d/virt-l3. tests/check_netns.rs covers
# every item with stand-ins; this suite shows the libvirt items read the real thing.
# Needs root; ~20 s.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib/libvirtd.sh
source "$here/../lib/libvirtd.sh"
# shellcheck source=../lib/e2e.sh
source "$here/../lib/e2e.sh"

LAB=chk$$
trap 'lab_stop "$LAB"' EXIT
trap 'exit 130' INT TERM

echo "check-libvirt: starting a private libvirtd (lab $LAB)"
e2e_lab_start "$LAB" || { echo "check-libvirt: the lab did not start" >&2; exit 1; }

# The item's status in `virt-l3 check --json` run inside the lab (no routing daemon there).
item() {
  lab_exec "$LAB" "$E2E_BIN" check --json --bird-socket /nonexistent/bird.ctl \
    --vtysh /nonexistent/vtysh |
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

e2e_summary
