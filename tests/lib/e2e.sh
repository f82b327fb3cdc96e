# shellcheck shell=bash
# Shared pieces of the end-to-end suites (tests/suites/e2e-*.sh): a libvirt lab with
# virt-l3 installed as a qemu.d hook, domain XML, assertions. Source after libvirtd.sh.
#
#   e2e_lab_start NAME [CONFIG_EXTRA]  lab + cloudbr0 (169.254.0.1/32, fe80::1/64) + hook
#   e2e_domain NAME UUID NIC...        print domain XML; NIC = MAC,BRIDGE[,ADDR...]
#                                      (ADDR: an IPv4/IPv6 address, or PREFIX@VIA for a routed
#                                      prefix); addresses go in CloudStack per-NIC metadata
#   e2e_route LAB PREFIX               the proto-52 route to PREFIX on cloudbr0 ("" when none)
#   e2e_neigh LAB ADDR                 the neighbour entry of ADDR on cloudbr0 ("" when none)
#   check DESCRIPTION CMD...           run CMD; count and print a failure when it fails
#   e2e_summary                        print the tally; return non-zero on any failure
#   e2e_trap LAB [LOG_LINES]           on exit: e2e_on_failure (when the suite defines it)
#                                      and the tail of libvirtd's log if the suite failed,
#                                      e2e_on_exit (when defined), lab_stop LAB
#   e2e_case TEXT                      print "case (N s): TEXT"
#   e2e_virsh / e2e_running / e2e_shut_off / e2e_present / e2e_absent
#                                      virsh, a domain's state, a proto-52 route, in $E2E_LAB
#   e2e_template FILE ROUTER_ID LOCAL_AS PEER_AS PEER_V4 PEER_V6
#                                      print a packaging/examples config, placeholders filled
#   e2e_frr_start LAB / e2e_frr_stop LAB
#                                      zebra + bgpd with the lab's /etc/frr/frr.conf loaded
#                                      as FRR's init script does (vtysh -b) / stop them

E2E_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
E2E_BIN=${VIRT_L3_BIN:-$E2E_ROOT/target/release/virt-l3}
E2E_PROTO=52
E2E_FAILURES=0
E2E_PASSES=0

e2e_build() {
  if [ ! -x "$E2E_BIN" ]; then
    (cd "$E2E_ROOT" && scripts/build-release.sh --quiet) || return 1
  fi
}

check() {
  local what=$1
  shift
  if "$@"; then
    E2E_PASSES=$((E2E_PASSES + 1))
    echo "  ok   $what"
  else
    E2E_FAILURES=$((E2E_FAILURES + 1))
    echo "  FAIL $what" >&2
  fi
}

e2e_summary() {
  echo "$E2E_PASSES checks passed, $E2E_FAILURES failed"
  [ "$E2E_FAILURES" = 0 ]
}

e2e_trap() {
  E2E_LAB=$1 E2E_LOG_LINES=${2:-30}
  trap e2e__exit EXIT
  trap 'exit 130' INT TERM
}

e2e__exit() {
  local rc=$?
  if [ "$rc" != 0 ] || [ "$E2E_FAILURES" != 0 ]; then
    if declare -F e2e_on_failure >/dev/null; then e2e_on_failure; fi
    echo "--- libvirtd log (tail) ---" >&2
    lab_log "$E2E_LAB" "$E2E_LOG_LINES" >&2 || true
  fi
  if declare -F e2e_on_exit >/dev/null; then e2e_on_exit; fi
  lab_stop "$E2E_LAB"
}

e2e_case() { echo "case ($SECONDS s): $*"; }
e2e_virsh() { lab_virsh "$E2E_LAB" "$@"; }
e2e_running() { [ "$(e2e_virsh domstate "$1" 2>/dev/null)" = running ]; }
e2e_shut_off() { [ "$(e2e_virsh domstate "$1" 2>/dev/null)" = "shut off" ]; }
e2e_present() { [ -n "$(e2e_route "$E2E_LAB" "$1")" ]; }
e2e_absent() { [ -z "$(e2e_route "$E2E_LAB" "$1")" ]; }

e2e_template() {
  sed -e "s/@ROUTER_ID@/$2/g" -e "s/@LOCAL_AS@/$3/g" -e "s/@PEER_AS@/$4/g" \
    -e "s/@PEER_V4@/$5/g" -e "s/@PEER_V6@/$6/g" "$1"
}

e2e_frr_start() {
  local lab=$1
  lab_exec "$lab" chown frr:frr /etc/frr/frr.conf /run/frr
  lab_exec "$lab" /usr/lib/frr/zebra -d -i /run/frr/zebra.pid || return 1
  lab_exec "$lab" /usr/lib/frr/bgpd -d -i /run/frr/bgpd.pid || return 1
  poll 20 lab_exec "$lab" vtysh -c 'show bgp summary' || return 1
  # How FRR's init script loads the integrated configuration.
  lab_exec "$lab" vtysh -b >/dev/null
}

e2e_frr_stop() {
  local lab=$1 d pid
  for d in bgpd zebra; do
    pid=$(lab_exec "$lab" cat "/run/frr/$d.pid" 2>/dev/null) || continue
    kill "$pid" 2>/dev/null
    poll 10 bash -c '! kill -0 "$1"' _ "$pid"
  done
  return 0
}

# Whether the nwfilter subcommands exist (then the lab covers the real path: define + inject).
e2e_have_nwfilter() {
  "$E2E_BIN" nwfilter --help >/dev/null 2>&1
}

e2e_lab_start() {
  local name=$1 extra=${2:-} dir nwf=false
  E2E_LAB=$name
  e2e_build || return 1
  LAB_LIBVIRTD=0 lab_start "$name" || return 1
  dir=$(lab_dir "$name")
  # A copy: other builds may replace target/release/virt-l3 while the suite runs.
  install -m 0755 "$E2E_BIN" "$dir/tmp/virt-l3" || return 1
  E2E_BIN=$dir/tmp/virt-l3
  lab_exec "$name" ip link add cloudbr0 type bridge
  lab_exec "$name" ip addr add 169.254.0.1/32 dev cloudbr0
  lab_exec "$name" ip addr add fe80::1/64 dev cloudbr0 nodad
  lab_exec "$name" ip link set cloudbr0 up
  if [ "${E2E_NWFILTER:-auto}" != off ] && e2e_have_nwfilter; then nwf=true; fi
  E2E_USE_NWFILTER=$nwf
  mkdir -p "$dir/tmp/state"
  lab_write "$name" /etc/virt-l3/config.toml <<EOF
# virt-l3 in the e2e lab $name
state_dir = "$dir/tmp/state"
require_nwfilter = $nwf
log_level = "info"
$extra
EOF
  lab_install_hook "$name" "$E2E_BIN" virt-l3
  lab_libvirtd_start "$name" || return 1
}

# Defines a domain from XML on stdin. When the lab uses the nwfilter (E2E_USE_NWFILTER),
# first as an operator/CloudStack would: `virt-l3 nwfilter define` (the domain's filters
# into libvirt) and `virt-l3 nwfilter inject` (the <filterref> into the domain XML).
e2e_define() {
  local lab=$1 dir xml
  dir=$(lab_dir "$lab")
  xml=$(mktemp "$dir/tmp/dom.XXXXXX.xml")
  cat >"$xml"
  if [ "${E2E_USE_NWFILTER:-false}" = true ]; then
    lab_exec "$lab" "$E2E_BIN" nwfilter define -c qemu:///system <"$xml" >/dev/null || return 1
    lab_exec "$lab" "$E2E_BIN" nwfilter inject <"$xml" >"$xml.injected" || return 1
    mv "$xml.injected" "$xml"
  fi
  lab_virsh "$lab" define "$xml" >/dev/null
}

e2e_domain() {
  local name=$1 uuid=$2 nic mac bridge a meta="" devs=""
  shift 2
  for nic in "$@"; do
    IFS=, read -r -a parts <<<"$nic"
    mac=${parts[0]}
    bridge=${parts[1]}
    devs+="    <interface type='bridge'><mac address='$mac'/><source bridge='$bridge'/><model type='virtio'/></interface>
"
    [ "${#parts[@]}" -gt 2 ] || continue
    meta+="      <cloudstack:nic mac='$mac'>
"
    for a in "${parts[@]:2}"; do
      case "$a" in
        *@*) meta+="        <cloudstack:route prefix='${a%@*}' via='${a#*@}'/>
" ;;
        *:*) meta+="        <cloudstack:address address='$a' prefix='128' family='ipv6'/>
" ;;
        *) meta+="        <cloudstack:address address='$a' prefix='32' family='ipv4'/>
" ;;
      esac
    done
    meta+="      </cloudstack:nic>
"
  done
  cat <<EOF
<domain type='qemu'>
  <name>$name</name>
  <uuid>$uuid</uuid>
  <metadata>
    <cloudstack:network xmlns:cloudstack="https://download.cloudstack.org/libvirt/network">
$meta    </cloudstack:network>
  </metadata>
  <memory unit='MiB'>32</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <on_crash>destroy</on_crash>
  <devices>
$devs    <memballoon model='none'/>
  </devices>
</domain>
EOF
}

e2e_family() { case "$1" in *:*) echo -6 ;; *) echo -4 ;; esac }

e2e_route() {
  local lab=$1 prefix=$2
  lab_exec "$lab" ip "$(e2e_family "$prefix")" route show exact "$prefix" proto "$E2E_PROTO" dev cloudbr0
}

e2e_neigh() {
  local lab=$1 addr=$2
  lab_exec "$lab" ip "$(e2e_family "$addr")" neigh show "$addr" dev cloudbr0
}

# The taps of a domain, one per line: TAP BRIDGE MAC
e2e_taps() {
  lab_virsh "$1" domiflist "$2" | awk 'NF >= 5 { print $1, $3, $5 }'
}

e2e_tap_isolated() {
  lab_exec "$1" ip -d link show "$2" | grep 'isolated on' >/dev/null
}

# Every proto-52 route and neighbour in the lab (routes only carry the protocol).
e2e_all_routes() {
  lab_exec "$1" ip -4 route show proto "$E2E_PROTO"
  lab_exec "$1" ip -6 route show proto "$E2E_PROTO"
}

# Wall-clock time with microseconds.
now() { echo "$EPOCHREALTIME"; }
# poll TIMEOUT CMD...: runs CMD every $E2E_POLL_INTERVAL seconds (default 0.05)
# until it succeeds or TIMEOUT seconds pass.
poll() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep "${E2E_POLL_INTERVAL:-0.05}"
  done
}
