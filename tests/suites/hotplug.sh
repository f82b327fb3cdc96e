#!/usr/bin/env bash
# Changes to running domains under a real libvirtd (issue 18): libvirt runs no hook for
# `virsh attach-device --live`, `detach-device --live` or `metadata --live`, but rewrites
# the domain's status file (/run/libvirt/qemu/NAME.xml). Private libvirtd in its own
# namespaces (tests/lib/libvirtd.sh), diskless type='qemu' domains with <acpi/> (PCI
# hot-plug on the pc machine type). Needs root; ~1 minute.
#   with `virt-l3 watch` running, each within 1 s of the virsh command:
#     a filtered NIC attached (usb-net: unplugged without the guest's help; its <filterref>
#       parameters carry its addresses), then its metadata --live -> routed, neighbours,
#       tap isolated, no refusal; an address added (update-device --live of the filterref
#       parameters, metadata --live) -> routed; removed -> unrouted; another domain's
#       address claimed -> nothing changes, `status` shows the refusal, watch logs it;
#       the NIC detached -> its routes and neighbours gone; a PCI (virtio) NIC attached
#       -> routed
#     a NIC WITHOUT virt-l3's filter or metadata attached (usb-net) -> isolated, not in the
#       bridge table's accepted_ports, the host's broadcast frames not carried, `check`
#       names it with its domain; detached -> nothing left (accepted ports, routes, neighbours)
#   with watch stopped: `virt-l3 refresh DOMAIN` gives the same results synchronously
#       (exit 1 and one line on refusal).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib/libvirtd.sh
source "$here/../lib/libvirtd.sh"
# shellcheck source=../lib/e2e.sh
source "$here/../lib/e2e.sh"

LAB=hotplug$$
WATCH_PID=
e2e_on_exit() { [ -z "$WATCH_PID" ] || kill "$WATCH_PID" 2>/dev/null; }
e2e_on_failure() {
  echo "--- virt-l3 watch (tail) ---" >&2
  tail -n 20 "$(lab_dir "$LAB")/tmp/watch.log" >&2 2>/dev/null
}
e2e_trap "$LAB" 40

echo "hotplug: starting a private libvirtd (lab $LAB)"
e2e_lab_start "$LAB" || { echo "hotplug: the lab did not start" >&2; exit 1; }
echo "  nwfilter path (virt-l3 nwfilter define + inject): $E2E_USE_NWFILTER"
DIR=$(lab_dir "$LAB")
NS=https://download.cloudstack.org/libvirt/network

VM=vmh
UUID=22222222-0000-4000-8000-000000000001
MAC1=52:54:00:00:21:01
MAC2=52:54:00:00:21:02
MAC3=52:54:00:00:21:03
MAC4=52:54:00:00:21:04
OTHER=vmo
OTHER_UUID=22222222-0000-4000-8000-000000000002

virsh_() { e2e_virsh "$@"; }
present() { e2e_present "$1"; }
absent() { e2e_absent "$1"; }
neigh_is() { e2e_neigh "$LAB" "$1" | grep -i "lladdr $2 PERMANENT" >/dev/null; }
no_neigh() { ! e2e_neigh "$LAB" "$1" | grep lladdr >/dev/null; }
status_() { lab_exec "$LAB" "$E2E_BIN" status; }
refused() { status_ 2>/dev/null | grep -q "REFUSED"; }
not_refused() { ! refused; }
tap_of() { e2e_taps "$LAB" "$VM" | awk -v m="$1" 'tolower($3) == m { print $1 }'; }
isolated_nic() { local t; t=$(tap_of "$1") && [ -n "$t" ] && e2e_tap_isolated "$LAB" "$t"; }
# within SECONDS DESCRIPTION CMD...: a check that CMD holds within SECONDS (polled every 20 ms).
within() {
  local limit=$1 what=$2 t0
  shift 2
  t0=$EPOCHREALTIME
  E2E_POLL_INTERVAL=0.02 poll "$limit" "$@"
  local rc=$?
  local ms=$(((${EPOCHREALTIME/./} - ${t0/./}) / 1000))
  check "$what (${ms} ms)" test "$rc" = 0 -a "$ms" -le $((limit * 1000))
}

# A domain XML with <acpi/> (PCI hot-plug on the pc machine type).
hp_domain() { e2e_domain "$@" | sed "s|</os>|</os>\n  <features><acpi/></features>|"; }

# The live metadata of $VM: one <nic> block per MAC,ADDR[,ADDR...] argument (default
# namespace: libvirt puts the root element in $NS with the prefix cloudstack, and the
# children stay in $NS).
set_metadata() {
  local body="" nic a
  for nic in "$@"; do
    IFS=, read -r -a parts <<<"$nic"
    body+="<nic mac='${parts[0]}'>"
    for a in "${parts[@]:1}"; do
      case "$a" in
        *:*) body+="<address address='$a' prefix='128' family='ipv6'/>" ;;
        *) body+="<address address='$a' prefix='32' family='ipv4'/>" ;;
      esac
    done
    body+="</nic>"
  done
  virsh_ metadata "$VM" --live --uri "$NS" --key cloudstack --set "<network xmlns='$NS'>$body</network>" >/dev/null
}

# The domain as the cloud wants it now (NIC = MAC,ADDR...): as a cloud would, its filters
# defined (`virt-l3 nwfilter define`) and the <filterref>s, with their IP/IPV6 parameters,
# written into its interfaces (`virt-l3 nwfilter inject`).
DOM_XML=$DIR/tmp/$VM.xml
want() {
  local nics=() n
  for n in "$@"; do nics+=("${n%%,*},cloudbr0,${n#*,}"); done
  hp_domain "$VM" "$UUID" "${nics[@]}" >"$DOM_XML"
  if [ "$E2E_USE_NWFILTER" = true ]; then
    lab_exec "$LAB" "$E2E_BIN" nwfilter define -c qemu:///system <"$DOM_XML" >/dev/null || return 1
    lab_exec "$LAB" "$E2E_BIN" nwfilter inject <"$DOM_XML" >"$DOM_XML.injected" || return 1
  else
    cp "$DOM_XML" "$DOM_XML.injected"
  fi
}
# iface MAC MODEL: the file of that interface's XML in the wanted domain, with this model.
iface() {
  local f=$DIR/tmp/iface-${1//:/}.xml
  awk -v mac="$1" '/<interface/ { buf = ""; on = 1 }
    on { buf = buf $0 "\n" }
    /<\/interface>/ && on { on = 0; if (index(buf, mac)) printf "%s", buf }' "$DOM_XML.injected" |
    sed "s|<model type='virtio'/>|<model type='$2'/>|" >"$f"
  echo "$f"
}
# The hot-plugged NIC is a usb-net: unplugging a PCI device needs the guest's ACPI eject,
# which a diskless guest sitting in its BIOS never does (a PCI NIC is attached below).
attach_nic2() { virsh_ attach-device "$VM" "$(iface "$MAC2" usb-net)" --live >/dev/null; }
detach_nic2() { virsh_ detach-device "$VM" "$DIR/tmp/iface-${MAC2//:/}.xml" --live >/dev/null; }
# The first NIC's <filterref> parameters, live (libvirt re-instantiates its filter).
update_nic1() { virsh_ update-device "$VM" "$(iface "$MAC1" virtio)" --live >/dev/null; }
nic2_gone() { [ -z "$(tap_of "$MAC2")" ]; }
start_watch() {
  nsenter -t "$(lab_pid "$LAB")" -m -n -- "$E2E_BIN" watch 2>>"$DIR/tmp/watch.log" &
  WATCH_PID=$!
  sleep 0.5 # subscribed, first reconcile done
}
stop_watch() {
  kill "$WATCH_PID" 2>/dev/null
  wait "$WATCH_PID" 2>/dev/null
  WATCH_PID=
}

# --- set-up: two running domains ---------------------------------------------------------
e2e_case "two running domains"
hp_domain "$VM" "$UUID" "$MAC1,cloudbr0,192.0.2.31" | e2e_define "$LAB"
hp_domain "$OTHER" "$OTHER_UUID" "52:54:00:00:22:01,cloudbr0,192.0.2.99" | e2e_define "$LAB"
check "virsh start $VM" virsh_ start "$VM"
check "virsh start $OTHER" virsh_ start "$OTHER"
check "route 192.0.2.31/32 present" present 192.0.2.31/32
check "route 192.0.2.99/32 present ($OTHER)" present 192.0.2.99/32
start_watch

# --- with watch ------------------------------------------------------------------------
e2e_case "watch: a NIC attached (attach-device --live, then metadata --live)"
check "the NIC's filter defined" want "$MAC1,192.0.2.31" "$MAC2,192.0.2.32,2001:db8:21::32"
check "virsh attach-device --live (usb-net, filtered)" attach_nic2
within 1 "route 192.0.2.32/32" present 192.0.2.32/32
within 1 "route 2001:db8:21::32/128" present 2001:db8:21::32/128
within 1 "neighbour 192.0.2.32 -> $MAC2" neigh_is 192.0.2.32 "$MAC2"
within 1 "neighbour 2001:db8:21::32 -> $MAC2" neigh_is 2001:db8:21::32 "$MAC2"
within 1 "the new tap isolated" isolated_nic "$MAC2"
check "virsh metadata --live (the new NIC's addresses)" \
  set_metadata "$MAC1,192.0.2.31" "$MAC2,192.0.2.32,2001:db8:21::32"
within 1 "no refusal pending" not_refused
check "route 192.0.2.32/32 still present" present 192.0.2.32/32
check "route 192.0.2.31/32 still present" present 192.0.2.31/32

e2e_case "watch: an address added (update-device + metadata --live), then removed"
check "the filter allows 192.0.2.33" want "$MAC1,192.0.2.31,192.0.2.33" "$MAC2,192.0.2.32,2001:db8:21::32"
check "virsh update-device --live (the filterref's parameters)" update_nic1
check "virsh metadata --live (+192.0.2.33)" \
  set_metadata "$MAC1,192.0.2.31,192.0.2.33" "$MAC2,192.0.2.32,2001:db8:21::32"
within 1 "route 192.0.2.33/32" present 192.0.2.33/32
within 1 "neighbour 192.0.2.33 -> $MAC1" neigh_is 192.0.2.33 "$MAC1"
within 1 "no refusal pending" not_refused
check "the filter without 192.0.2.33" want "$MAC1,192.0.2.31" "$MAC2,192.0.2.32,2001:db8:21::32"
check "virsh update-device --live" update_nic1
check "virsh metadata --live (-192.0.2.33)" \
  set_metadata "$MAC1,192.0.2.31" "$MAC2,192.0.2.32,2001:db8:21::32"
within 1 "route 192.0.2.33/32 gone" absent 192.0.2.33/32
within 1 "neighbour 192.0.2.33 gone" no_neigh 192.0.2.33
within 1 "no refusal pending" not_refused

e2e_case "watch: another domain's address claimed"
routes_before=$(e2e_all_routes "$LAB")
neigh_before=$(lab_exec "$LAB" ip neigh show nud permanent)
check "virsh metadata --live (+192.0.2.99, $OTHER's)" \
  set_metadata "$MAC1,192.0.2.31,192.0.2.99" "$MAC2,192.0.2.32,2001:db8:21::32"
within 1 "status shows the refusal" refused
s=$(status_ 2>/dev/null)
check "status names the reason (got: $(grep REFUSED <<<"$s"))" \
  grep -q "REFUSED.*192.0.2.99 is already owned by domain $OTHER" <<<"$s"
sleep 0.3
check "nothing changed in the routes" test "$(e2e_all_routes "$LAB")" = "$routes_before"
check "nothing changed in the neighbours" test "$(lab_exec "$LAB" ip neigh show nud permanent)" = "$neigh_before"
check "watch logged the refusal" grep -q "192.0.2.99 is already owned" "$DIR/tmp/watch.log"
check "virsh metadata --live (back as it was)" \
  set_metadata "$MAC1,192.0.2.31" "$MAC2,192.0.2.32,2001:db8:21::32"
within 1 "the refusal cleared" not_refused

e2e_case "watch: the NIC detached (detach-device --live, its metadata still there)"
check "virsh detach-device --live" detach_nic2
within 1 "libvirt reports the NIC gone" nic2_gone
within 1 "route 192.0.2.32/32 gone" absent 192.0.2.32/32
within 1 "route 2001:db8:21::32/128 gone" absent 2001:db8:21::32/128
within 1 "neighbour 192.0.2.32 gone" no_neigh 192.0.2.32
within 1 "neighbour 2001:db8:21::32 gone" no_neigh 2001:db8:21::32
check "no refusal pending" not_refused
check "virsh metadata --live (without the NIC)" set_metadata "$MAC1,192.0.2.31"
sleep 0.3
check "no refusal pending" not_refused
check "route 192.0.2.31/32 still present" present 192.0.2.31/32
check "virt-l3 status: every entry present" status_

e2e_case "watch: a PCI (virtio) NIC attached"
check "the NIC's filter defined" want "$MAC1,192.0.2.31" "$MAC3,192.0.2.35"
check "virsh attach-device --live (virtio, filtered)" \
  virsh_ attach-device "$VM" "$(iface "$MAC3" virtio)" --live
within 1 "route 192.0.2.35/32" present 192.0.2.35/32
within 1 "neighbour 192.0.2.35 -> $MAC3" neigh_is 192.0.2.35 "$MAC3"
within 1 "the new tap isolated" isolated_nic "$MAC3"
check "virsh metadata --live (its addresses)" set_metadata "$MAC1,192.0.2.31" "$MAC3,192.0.2.35"
within 1 "no refusal pending" not_refused

# A NIC without virt-l3's filter and without metadata (issue 14): libvirt runs no hook,
# no record names its tap. The bridge table drops every frame from and to it (it is not
# in accepted_ports), watch isolates it and logs it, `check` names it with its domain.
e2e_case "watch: a NIC WITHOUT virt-l3's filter attached (usb-net), then detached"
IFACE4=$DIR/tmp/iface-unfiltered.xml
cat >"$IFACE4" <<EOF
<interface type='bridge'>
  <mac address='$MAC4'/>
  <source bridge='cloudbr0'/>
  <model type='usb-net'/>
</interface>
EOF
accepted_ports() {
  lab_exec "$LAB" nft list set bridge virt_l3 accepted_ports | grep -o '"[^"]*"' | tr -d '"' | sort
}
tx_packets() { lab_exec "$LAB" cat "/sys/class/net/$1/statistics/tx_packets"; }
# flood TAP...: 20 ARP requests for 192.0.2.31 (the first NIC's address) the host
# broadcasts on cloudbr0 (the bridge floods them to every port it may, the first NIC's
# filter lets them through); prints how many of them each TAP transmitted (packet
# sockets on the taps: what the kernel hands to the tap, whether qemu reads it or not).
flood() {
  lab_exec "$LAB" /usr/bin/python3 -c '
import socket, sys, time
taps = [socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3)) for _ in sys.argv[1:]]
for s, name in zip(taps, sys.argv[1:]):
    s.bind((name, 0))
    s.setblocking(False)
out = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
out.bind(("cloudbr0", 0))
mac = bytes.fromhex(open("/sys/class/net/cloudbr0/address").read().strip().replace(":", ""))
arp = bytes.fromhex("0001080006040001") + mac + socket.inet_aton("169.254.0.1") + bytes(6) + socket.inet_aton("192.0.2.31")
frame = (b"\xff" * 6 + mac + b"\x08\x06" + arp + b"virt-l3-hotplug").ljust(60, b"\0")
for _ in range(20):
    out.send(frame)
time.sleep(0.3)
counts = []
for s in taps:
    n = 0
    try:
        while True:
            n += b"virt-l3-hotplug" in s.recv(65535)
    except BlockingIOError:
        pass
    counts.append(str(n))
print(" ".join(counts))' "$@"
}
no_neigh_mac() { ! lab_exec "$LAB" ip neigh show | grep -qi "$1"; }
not_accepted() { ! accepted_ports | grep -qx "$1"; }
tap_gone() { ! lab_exec "$LAB" ip link show "$1" >/dev/null 2>&1; }
nic4_gone() { [ -z "$(tap_of "$MAC4")" ]; }
accepted_before=$(accepted_ports)
routes_before=$(e2e_all_routes "$LAB")
check "virsh attach-device --live (usb-net, no filterref, no metadata)" \
  virsh_ attach-device "$VM" "$IFACE4" --live
TAP4=$(tap_of "$MAC4")
check "libvirt names its tap ($TAP4)" test -n "$TAP4"
within 1 "the unfiltered tap isolated" isolated_nic "$MAC4"
sleep 0.3
check "the unfiltered tap is not in accepted_ports (got: $(accepted_ports | tr '\n' ' '))" not_accepted "$TAP4"
check "accepted_ports unchanged" test "$(accepted_ports)" = "$accepted_before"
TAP1=$(tap_of "$MAC1")
read -r n1 n4 <<<"$(flood "$TAP1" "$TAP4")"
check "the host's broadcast reaches the accepted tap $TAP1 (control: $n1 of 20)" test "${n1:-0}" -ge 20
check "the unfiltered tap $TAP4 carries none of it ($n4 of 20)" test "${n4:-x}" = 0
check "watch logged the port with its domain" grep -q "port $TAP4 (domain $VM) joined" "$DIR/tmp/watch.log"
out=$(lab_exec "$LAB" "$E2E_BIN" check 2>&1)
check "virt-l3 check names $TAP4 blocked, with domain $VM (got: $(grep "$TAP4" <<<"$out"))" \
  bash -c 'tr -s "\n " "  " <<<"$1" | grep -q "Blocked (not accepted by virt-l3, they pass no frame): .*$2 (domain $3)"' \
  _ "$out" "$TAP4" "$VM"
check "no route for it" test "$(e2e_all_routes "$LAB")" = "$routes_before"
check "no neighbour with its MAC" no_neigh_mac "$MAC4"
check "virsh detach-device --live" virsh_ detach-device "$VM" "$IFACE4" --live
within 1 "libvirt reports it gone" nic4_gone
within 1 "its tap gone from the host" tap_gone "$TAP4"
check "nothing left: accepted_ports as before" test "$(accepted_ports)" = "$accepted_before"
check "nothing left: routes as before" test "$(e2e_all_routes "$LAB")" = "$routes_before"
check "nothing left: no neighbour with its MAC" no_neigh_mac "$MAC4"
check "no refusal pending" not_refused
stop_watch

# --- refresh, watch stopped -------------------------------------------------------------
e2e_case "refresh (watch stopped): the same, synchronously"
check "the filters defined" want "$MAC1,192.0.2.31,192.0.2.34" "$MAC2,192.0.2.42" "$MAC3,192.0.2.35"
check "virsh attach-device --live" attach_nic2
check "virsh update-device --live (the first NIC)" update_nic1
check "virsh metadata --live (the new NIC's addresses, +192.0.2.34)" \
  set_metadata "$MAC1,192.0.2.31,192.0.2.34" "$MAC2,192.0.2.42" "$MAC3,192.0.2.35"
check "nothing routed yet (watch stopped)" absent 192.0.2.42/32
check "virt-l3 refresh $VM exits 0" lab_exec "$LAB" "$E2E_BIN" refresh "$VM"
check "route 192.0.2.42/32 at once" present 192.0.2.42/32
check "route 192.0.2.34/32 at once" present 192.0.2.34/32
check "neighbour 192.0.2.42 -> $MAC2 at once" neigh_is 192.0.2.42 "$MAC2"
check "the new tap isolated at once" isolated_nic "$MAC2"
check "virt-l3 refresh $UUID (nothing to do) exits 0" lab_exec "$LAB" "$E2E_BIN" refresh "$UUID"
routes_before=$(e2e_all_routes "$LAB")
check "virsh metadata --live (+192.0.2.99, $OTHER's)" \
  set_metadata "$MAC1,192.0.2.31,192.0.2.34,192.0.2.99" "$MAC2,192.0.2.42" "$MAC3,192.0.2.35"
out=$(lab_exec "$LAB" "$E2E_BIN" refresh "$VM" 2>&1)
rc=$?
check "virt-l3 refresh exits 1 on refusal" test "$rc" = 1
check "one line naming the domain and the reason (got: $out)" \
  bash -c '[ "$(wc -l <<<"$1")" = 1 ] && grep -q "vmh.*192.0.2.99 is already owned by domain vmo" <<<"$1"' _ "$out"
check "nothing changed in the routes" test "$(e2e_all_routes "$LAB")" = "$routes_before"
check "status shows the refusal" refused
check "the filters without 192.0.2.34" want "$MAC1,192.0.2.31" "$MAC2,192.0.2.42" "$MAC3,192.0.2.35"
check "virsh update-device --live (the first NIC)" update_nic1
check "virsh metadata --live (-192.0.2.99, -192.0.2.34)" \
  set_metadata "$MAC1,192.0.2.31" "$MAC2,192.0.2.42" "$MAC3,192.0.2.35"
check "virt-l3 refresh $VM exits 0" lab_exec "$LAB" "$E2E_BIN" refresh "$VM"
check "route 192.0.2.34/32 gone at once" absent 192.0.2.34/32
check "the refusal cleared" not_refused
check "virsh detach-device --live" detach_nic2
check "libvirt reports the NIC gone" nic2_gone
check "virt-l3 refresh $VM exits 0 (the NIC's metadata still there)" lab_exec "$LAB" "$E2E_BIN" refresh "$VM"
check "route 192.0.2.42/32 gone at once" absent 192.0.2.42/32
check "neighbour 192.0.2.42 gone at once" no_neigh 192.0.2.42
out=$(lab_exec "$LAB" "$E2E_BIN" refresh nosuchvm 2>&1)
rc=$?
check "virt-l3 refresh of a domain that does not run exits 1, naming it (got: $out)" \
  bash -c '[ "$1" = 1 ] && grep -q nosuchvm <<<"$2"' _ "$rc" "$out"

e2e_case "stop"
check "virsh destroy $VM" virsh_ destroy "$VM"
check "virsh destroy $OTHER" virsh_ destroy "$OTHER"
check "no proto 52 route left" test -z "$(e2e_all_routes "$LAB")"
check "no record, claim or refusal note left" test -z "$(find "$DIR/tmp/state" -type f ! -name lock)"

echo "hotplug: $SECONDS s"
e2e_summary
