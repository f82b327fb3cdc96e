#!/usr/bin/env bash
# The CloudStack agent hook (issue 9) against a real private libvirtd (tests/lib/libvirtd.sh):
# hooks/cloudstack/libvirt-vm-xml-transformer.groovy, installed where cloudstack-agent looks
# for it and called the way the agent calls it (tests/lib/cloudstack-agent-hook.groovy:
# GroovyScriptEngine, then transform(logger, xml)), and the shell wrapper
# hooks/virt-l3-prepare-domain. Needs root and groovy; ~40 s.
#   two routed NICs + one VLAN NIC -> filterref on exactly the routed NICs, filters defined
#   in libvirtd, the VM starts and is routed; a refused domain -> the script throws with
#   virt-l3's reason, no filter defined; a failing virt-l3 -> the agent's fallback (the
#   unchanged XML) is refused by virt-l3's hook at prepare; the wrapper = the script.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib/libvirtd.sh
source "$here/../lib/libvirtd.sh"
# shellcheck source=../lib/e2e.sh
source "$here/../lib/e2e.sh"

command -v groovy >/dev/null || { echo "cloudstack-hook: needs groovy (scripts/deps.sh test)" >&2; exit 1; }
# Debian's groovy looks for /usr/lib/jvm/default-java, absent when another package pulled the JRE in.
if [ -z "${JAVA_HOME:-}" ] && [ ! -x /usr/lib/jvm/default-java/bin/java ]; then
  JAVA_HOME=$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")
  export JAVA_HOME
fi

LAB=cshook$$
e2e_trap "$LAB" 30

echo "cloudstack-hook: starting a private libvirtd (lab $LAB)"
e2e_lab_start "$LAB" || { echo "cloudstack-hook: the lab did not start" >&2; exit 1; }
T=$(lab_dir "$LAB")/tmp
lab_exec "$LAB" ip link add br-vlan100 type bridge
lab_exec "$LAB" ip link set br-vlan100 up
HOOKS=/etc/cloudstack/agent/hooks
lab_write "$LAB" "$HOOKS/libvirt-vm-xml-transformer.groovy" <"$E2E_ROOT/hooks/cloudstack/libvirt-vm-xml-transformer.groovy"

step() { e2e_case "$@"; }
virsh_() { e2e_virsh "$@"; }
# The agent's call; $1: the virt-l3 binary the script runs.
agent() {
  lab_exec "$LAB" env VIRT_L3_BIN="$1" groovy "$E2E_ROOT/tests/lib/cloudstack-agent-hook.groovy" \
    "$HOOKS" libvirt-vm-xml-transformer.groovy transform
}
filter_of() { xmllint --xpath "string(//interface[mac/@address='$2']/filterref/@filter)" "$1"; }
has_filter() { [ "$(filter_of "$1" "$2")" = "$3" ]; }
no_filter() { [ -z "$(filter_of "$1" "$2")" ]; }
defined_with() { virsh_ nwfilter-dumpxml "$1" 2>/dev/null | grep "$2" >/dev/null; }
not_defined() { ! virsh_ nwfilter-dumpxml "$1" >/dev/null 2>&1; }
running() { e2e_running "$1"; }
present() { e2e_present "$1"; }
grep_q() { grep -q "$1" "$2"; }
rc_is() { [ "$1" = "$2" ]; }

step "the agent's transformer on two routed NICs and a VLAN NIC"
e2e_domain cs1 c5c5c5c5-0000-4000-8000-000000000001 \
  52:54:00:c5:01:01,cloudbr0,192.0.2.51,2001:db8:c5::51 \
  52:54:00:c5:01:02,cloudbr0,192.0.2.52,2001:db8:c5::52 \
  52:54:00:c5:01:03,br-vlan100 >"$T/cs1.xml"
agent "$E2E_BIN" <"$T/cs1.xml" >"$T/cs1.out.xml" 2>"$T/cs1.err"
check "the transformer succeeds" rc_is "$?" 0
check "NIC 52:54:00:c5:01:01 carries virt-l3-nic-525400c50101" has_filter "$T/cs1.out.xml" 52:54:00:c5:01:01 virt-l3-nic-525400c50101
check "NIC 52:54:00:c5:01:02 carries virt-l3-nic-525400c50102" has_filter "$T/cs1.out.xml" 52:54:00:c5:01:02 virt-l3-nic-525400c50102
check "the VLAN NIC carries no filter" no_filter "$T/cs1.out.xml" 52:54:00:c5:01:03
check "libvirtd has virt-l3-nic-525400c50101 with 192.0.2.51" defined_with virt-l3-nic-525400c50101 192.0.2.51
check "libvirtd has virt-l3-nic-525400c50102 with 2001:db8:c5::52" defined_with virt-l3-nic-525400c50102 2001:db8:c5::52
check "libvirtd has the building block virt-l3-no-other" defined_with virt-l3-no-other virt-l3-no-other
check "the agent's log says what was defined" grep_q "INFO virt-l3: .*virt-l3-nic-525400c50102" "$T/cs1.err"
check "virsh define of the transformed XML" virsh_ define "$T/cs1.out.xml"
check "virsh start cs1 (virt-l3's hook requires the filter)" virsh_ start cs1
check "cs1 runs" running cs1
check "route 192.0.2.51/32 proto 52" present 192.0.2.51/32
check "route 2001:db8:c5::52/128 proto 52" present 2001:db8:c5::52/128
virsh_ destroy cs1 >/dev/null 2>&1

step "a domain virt-l3 refuses"
e2e_domain cs2 c5c5c5c5-0000-4000-8000-000000000002 \
  52:54:00:c5:02:01,cloudbr0,192.0.2.53,224.0.0.5 >"$T/cs2.xml"
agent "$E2E_BIN" <"$T/cs2.xml" >"$T/cs2.out.xml" 2>"$T/cs2.err"
check "the transformer throws" rc_is "$?" 1
check "with virt-l3's reason, naming domain and value" grep_q "ERROR virt-l3: .*virt-l3 refuses domain cs2: .*224.0.0.5" "$T/cs2.err"
check "no filter defined for it" not_defined virt-l3-nic-525400c50201

step "virt-l3 fails in the transformer: the agent starts the unchanged XML, the hook refuses it"
e2e_domain cs3 c5c5c5c5-0000-4000-8000-000000000003 \
  52:54:00:c5:03:01,cloudbr0,192.0.2.54 >"$T/cs3.xml"
agent /bin/false <"$T/cs3.xml" >/dev/null 2>"$T/cs3.err"
check "the transformer throws" rc_is "$?" 1
virsh_ define "$T/cs3.xml" >/dev/null
virsh_ start cs3 >"$T/cs3.start" 2>&1
check "virsh start of the unchanged XML fails" rc_is "$?" 1
check "with virt-l3's reason (no nwfilter)" grep_q "does not carry virt-l3's nwfilter" "$T/cs3.start"
check "cs3 is not routed" test -z "$(e2e_route "$LAB" 192.0.2.54/32)"

step "the shell wrapper does what the Groovy script does"
wrapper() { lab_exec "$LAB" env VIRT_L3_BIN="$E2E_BIN" "$E2E_ROOT/hooks/virt-l3-prepare-domain" "$@"; }
wrapper <"$T/cs1.xml" >"$T/cs1.sh.xml" 2>/dev/null
check "the wrapper succeeds" rc_is "$?" 0
check "its XML is byte for byte the Groovy script's" cmp -s "$T/cs1.sh.xml" "$T/cs1.out.xml"
wrapper qemu:///system <"$T/cs2.xml" >"$T/cs2.sh.xml" 2>"$T/cs2.sh.err"
check "on a refused domain it fails" rc_is "$?" 1
check "printing nothing on stdout" test ! -s "$T/cs2.sh.xml"
check "and virt-l3's reason on stderr" grep_q "virt-l3 refuses domain cs2" "$T/cs2.sh.err"

e2e_summary
