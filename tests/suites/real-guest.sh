#!/usr/bin/env bash
# A real guest (issue 19): a Debian cloud kernel + busybox initramfs (tests/lib/guest.sh,
# built from Debian's packages and cached under target/guest), booted by QEMU (TCG) under
# a private libvirtd with virt-l3 as its qemu.d hook and, when available, virt-l3's
# nwfilter bound to the NIC (as e2e-libvirt). The guest configures itself from
# `virt-l3 guest-config` of its domain. The hypervisor's BIRD runs the shipped
# packaging/examples/bird.conf and peers with an upstream router (BIRD with
# packaging/examples/bird-upstream.conf, plus kernel export so it forwards).
#   start -> the guest has exactly guest-config's addresses and routes, and its EUI-64
#   link-local; the upstream learns the /32 and /128 and reaches the guest (ping, TCP
#   echo); the guest reaches the upstream over both families (its own ping, TCP)
#   security groups (docs/SECURITY-GROUPS.md) -> the guest's services and connections
#   pass without them; `security_groups = true` + `virt-l3 reconcile`: CloudStack's
#   default closes ingress (ping, TCP); `virt-l3 security-group set` with a group: its
#   legitimate flows from the real guest pass in both families (ingress TCP 7-9 and
#   ping from the upstream, the guest's egress TCP 7007 and ping, replies of
#   established flows in both directions), ingress TCP 10 and egress TCP 7008 are
#   dropped, and pass once the group allows them
#   destroy -> withdrawn upstream (BIRD and kernel), nothing of virt-l3's left on the
#   hypervisor (routes, neighbours, records, taps, security-group elements)
# Prints the boot time (virsh start -> ready marker on the serial console).
# Needs root, qemu-system-x86, bird2; ~1-2 minutes (the first run also fetches two .debs).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib/libvirtd.sh
source "$here/../lib/libvirtd.sh"
# shellcheck source=../lib/e2e.sh
source "$here/../lib/e2e.sh"
# shellcheck source=../lib/guest.sh
source "$here/../lib/guest.sh"

LAB=rguest$$
UP=vl3rgup$$
HV_AS=65010 UP_AS=65001
HV4=10.255.1.1 UP4=10.255.1.2 HV6=fd00:255:1::1 UP6=fd00:255:1::2
DOM=rg-1 UUID=44444444-0000-4000-8000-000000000001 MAC=52:54:00:00:44:01
V4=192.0.2.41 V6=2001:db8:4::41
LL6=fe80::5054:ff:fe00:4401 # EUI-64 of $MAC
up_created=false

cleanup() {
  local rc=$?
  set +e
  if [ "$rc" != 0 ] || [ "$E2E_FAILURES" != 0 ]; then
    echo "--- guest console (tail) ---" >&2
    tail -n 30 "$DIR/$DOM.console" >&2 2>/dev/null
    echo "--- upstream BIRD ---" >&2
    birdc -s "$DIR/up/bird.ctl" show protocols >&2 2>&1
    echo "--- libvirtd log (tail) ---" >&2
    lab_log "$LAB" 20 >&2
  fi
  if [ "$up_created" = true ]; then
    [ -s "$DIR/up/bird.pid" ] && kill "$(cat "$DIR/up/bird.pid")" 2>/dev/null
    ip netns del "$UP" 2>/dev/null
  fi
  lab_stop "$LAB"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
step() { echo "case ($SECONDS s): $*"; }

echo "real-guest: building the guest (cached), a private libvirtd (lab $LAB), the upstream (netns $UP)"
guest_build || { echo "real-guest: the guest could not be built" >&2; exit 1; }
echo "  guest: $(du -h "$GUEST_KERNEL" | cut -f1) kernel, $(du -h "$GUEST_BASE_INITRD" | cut -f1) initramfs ($(dirname "$GUEST_KERNEL"))"
# The upstream router's test addresses sit on the hypervisor's uplink /30 and /64,
# networks virt-l3's firewall protects by default (the host's connected networks on
# non-routed interfaces: docs/FIREWALL.md). A fabric's destinations lie beyond its
# routers; here the guest talks to the router itself, so only the link-local range
# stays protected (as an operator whose guests must reach the uplink would set it).
# security_groups: off until the step that turns it on (below).
FW_LAB=$'security_groups = false\n[firewall]\nprotected_networks = ["169.254.0.0/16"]'
e2e_lab_start "$LAB" "$FW_LAB" || { echo "real-guest: the lab did not start" >&2; exit 1; }
echo "  nwfilter bound (virt-l3 nwfilter define + inject): $E2E_USE_NWFILTER"
DIR=$(lab_dir "$LAB")/tmp
HVNS=$(lab_netns "$LAB")
mkdir -p "$DIR/up"

# ---- the upstream router and the hypervisor's BIRD ---------------------------------
ip netns add "$UP" || exit 1
up_created=true
ip -n "$UP" link set lo up
ip -n "$HVNS" link add up0 type veth peer name hv1 netns "$UP"
lab_exec "$LAB" ip addr add "$HV4/30" dev up0
lab_exec "$LAB" ip addr add "$HV6/64" dev up0 nodad
lab_exec "$LAB" ip link set up0 up
lab_exec "$LAB" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
ip -n "$UP" addr add "$UP4/30" dev hv1
ip -n "$UP" addr add "$UP6/64" dev hv1 nodad
ip -n "$UP" link set hv1 up

template() { # FILE ROUTER_ID LOCAL_AS PEER_V4 PEER_V6 LOG
  sed -e "s/@ROUTER_ID@/$2/g" -e "s/@LOCAL_AS@/$3/g" -e "s/@PEER_AS@/$UP_AS/g" \
    -e "s/@PEER_V4@/$4/g" -e "s/@PEER_V6@/$5/g" \
    -e "s/@HV1_AS@/$HV_AS/g" -e "s/@HV1_V4@/$HV4/g" -e "s/@HV1_V6@/$HV6/g" \
    -e "s/@HV2_AS@/65020/g" -e "s/@HV2_V4@/10.255.2.1/g" -e "s/@HV2_V6@/fd00:255:2::1/g" \
    -e "s|^log syslog all;|log \"$6\" all;|" "$1"
}
template "$E2E_ROOT/packaging/examples/bird-upstream.conf" 10.255.0.1 "$UP_AS" - - "$DIR/up/bird.log" >"$DIR/up/bird.conf"
# The upstream forwards: its best routes go to its kernel.
cat >>"$DIR/up/bird.conf" <<'EOF'
protocol kernel { ipv4 { import none; export all; }; }
protocol kernel { ipv6 { import none; export all; }; }
EOF
ip netns exec "$UP" bird -c "$DIR/up/bird.conf" -s "$DIR/up/bird.ctl" -P "$DIR/up/bird.pid" || exit 1
template "$E2E_ROOT/packaging/examples/bird.conf" "$HV4" "$HV_AS" "$UP4" "$UP6" "$DIR/hv-bird.log" >"$DIR/hv-bird.conf"
grep -Eq '@[A-Z0-9_]+@' "$DIR/hv-bird.conf" "$DIR/up/bird.conf" && { echo "untemplated placeholder" >&2; exit 1; }
lab_exec "$LAB" bird -c "$DIR/hv-bird.conf" -s "$DIR/hv-bird.ctl" -P "$DIR/hv-bird.pid" || exit 1
ubirdc() { birdc -s "$DIR/up/bird.ctl" "$@"; }
established() { [ "$(ubirdc show protocols | grep -c '^hv1_v[46] .*Established')" = 2 ]; }
check "both BGP sessions (hypervisor <-> upstream) established" poll 90 established

# ---- helpers ----------------------------------------------------------------------
at_bird() { ubirdc show route for "$1" | grep -q "^${1//./\\.} "; }
in_up_kernel() { [ -n "$(ip -n "$UP" "$(e2e_family "$1")" route show exact "$1")" ]; }
upstream_has() { at_bird "$1" && in_up_kernel "$1"; }
upstream_lacks() { ! at_bird "$1" && ! in_up_kernel "$1"; }
ping_from_up() { ip netns exec "$UP" ping -c 1 -W 2 "$1" >/dev/null; }
echo_from_up() { [ "$(guest_tcp "$UP" "$1" 7 "hello over $1")" = "hello over $1" ]; }
name_from_up() { [ "$(guest_tcp "$UP" "$1" 8 "")" = "$DOM" ]; }
# The guest's own view, through its command port (its answers come back on the TCP session).
GUEST_VIEW=""
guest_view() { GUEST_VIEW=$(guest_sh "$UP" "$V4" "$@"); }
view_has() { grep -q -- "$1" <<<"$GUEST_VIEW"; }
view_lacks() { ! view_has "$1"; }
nothing_routed() { [ -z "$(e2e_all_routes "$LAB")" ]; }
no_neighbour() { [ -z "$(lab_exec "$LAB" ip neigh show dev cloudbr0 nud permanent)" ]; }

# ---- start --------------------------------------------------------------------------
step "start the real guest"
guest_domain "$DOM" "$UUID" "$DIR" "$MAC,cloudbr0,$V4,$V6" | e2e_define "$LAB" ||
  { echo "real-guest: define failed" >&2; exit 1; }
check "its initrd carries virt-l3 guest-config's netplan" guest_initrd "$LAB" "$DOM" "$DIR/$DOM.initrd"
t=$(now)
check "virsh start $DOM" lab_virsh "$LAB" start "$DOM"
started=$(since "$t")
if guest_wait_ready "$DIR/$DOM.console" 120; then
  BOOT=$(since "$t")
  check "the guest is ready after ${BOOT}s (virsh start returned after ${started}s)" true
else
  BOOT=none
  check "the guest is ready within 120 s" false
fi
check "route $V4/32 proto 52 on the hypervisor" test -n "$(e2e_route "$LAB" "$V4/32")"
check "route $V6/128 proto 52 on the hypervisor" test -n "$(e2e_route "$LAB" "$V6/128")"
t=$(now)
check "the upstream learns $V4/32 (BIRD and its kernel)" poll 30 upstream_has "$V4/32"
check "the upstream learns $V6/128 (BIRD and its kernel)" poll 30 upstream_has "$V6/128"
if [ "$E2E_FAILURES" != 0 ]; then
  echo "--- hypervisor BIRD / upstream BIRD / upstream kernel ---" >&2
  lab_exec "$LAB" birdc -s "$DIR/hv-bird.ctl" show route all >&2
  ubirdc show route all >&2
  ip -n "$UP" route >&2
  ip -n "$UP" -6 route >&2
  e2e_all_routes "$LAB" >&2
fi
echo "  at the upstream $(since "$t") s after the guest was ready"

step "the upstream reaches the guest"
check "ping $V4 from the upstream" poll 10 ping_from_up "$V4"
check "ping $V6 from the upstream" poll 10 ping_from_up "$V6"
check "TCP echo $V4:7 from the upstream" echo_from_up "$V4"
check "TCP echo [$V6]:7 from the upstream" echo_from_up "$V6"
check "TCP [$V6]:8 answers the guest's name" name_from_up "$V6"
# virt-l3's nwfilter lets only neighbour discovery reach the link-local (a ping to it is
# dropped, its solicitation is not): the guest answers for its EUI-64 link-local.
ll_neighbour() {
  lab_exec "$LAB" ping -c 1 -W 1 "$LL6%cloudbr0" >/dev/null 2>&1
  lab_exec "$LAB" ip -6 neigh show "$LL6" dev cloudbr0 | grep -i "lladdr $MAC" | grep -vq FAILED
}
check "the hypervisor's neighbour $LL6 (the guest's EUI-64 link-local) is $MAC" poll 10 ll_neighbour

step "the guest is configured as guest-config says"
guest_view "ip addr show; echo ROUTES4; ip -4 route show table all; echo ROUTES6; ip -6 route show table all; echo SYSCTL; sysctl net.ipv6.conf.eth0.accept_ra"
check "the guest has $V4/32" view_has "inet $V4/32 "
check "the guest has $V6/128" view_has "inet6 $V6/128 "
check "the guest has the EUI-64 link-local $LL6/64" view_has "inet6 $LL6/64 "
check "no other global address in the guest" test "$(grep -c 'scope global' <<<"$GUEST_VIEW")" = 2
check "default via 169.254.0.1 onlink" view_has "^default via 169.254.0.1 dev eth0 onlink"
check "default via fe80::1" view_has "^default via fe80::1 dev eth0"
check "accept_ra is 0 (accept-ra: false)" view_has "accept_ra = 0"
check "no DHCP or SLAAC address (nothing but the configured ones)" view_lacks "dynamic"

step "the guest reaches the upstream"
guest_view "ping -c 2 -W 2 $UP4 >/dev/null && echo PING4-OK; ping -c 2 -W 2 $UP6 >/dev/null && echo PING6-OK"
check "the guest pings $UP4" view_has PING4-OK
check "the guest pings $UP6" view_has PING6-OK
# A TCP connection from the guest: the upstream listens (both families, on 7007 and
# 7008) and answers each connection with the address it came from.
ip netns exec "$UP" timeout 300 python3 -c '
import select, socket
ls = []
for port in (7007, 7008):
    s = socket.socket(socket.AF_INET6)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port)); s.listen(4); ls.append(s)
while True:
    for s in select.select(ls, [], [])[0]:
        c, peer = s.accept()
        c.sendall(("from-upstream " + peer[0].removeprefix("::ffff:") + "\n").encode()); c.close()' \
  >/dev/null 2>&1 &
lpid=$!
listening() { [ -n "$(ip netns exec "$UP" ss -Hltn 'sport = :7008')" ]; }
check "the upstream listens on TCP 7007 and 7008" poll 20 listening
src_of() { case "$1" in *:*) echo "$V6" ;; *) echo "$V4" ;; esac }
upstream_of() { case "$1" in *:*) echo "$UP6" ;; *) echo "$UP4" ;; esac }
# The guest opens TCP to ADDR:PORT (busybox nc, 3 s to connect): the upstream's answer.
guest_opens() { guest_view "nc -w 3 $1 $2 </dev/null"; view_has "from-upstream $(src_of "$1")\$"; }
for a in "$UP4" "$UP6"; do
  check "the guest opens TCP to $a, seen from $(src_of "$a")" guest_opens "$a" 7007
done

# ---- security groups (docs/SECURITY-GROUPS.md) ------------------------------------------
# Enforcement turned on as an operator does (the configuration, then `virt-l3 reconcile`
# reinstalls the tables with the sets and applies the running guest's rules: none are
# known, so CloudStack's default), then a group set with `virt-l3 security-group set`.
# Its legitimate flows from the real guest pass; what it does not allow is dropped, and
# passes once the group allows it (so the drops are the group's, not a dead listener).
# A second service in the guest, port 10 (busybox nc, echo), which the group will not open.
guest_view "nc -ll -p 10 -e cat </dev/null >/dev/null 2>&1 &"
tcp_up() { # ADDR PORT: the upstream opens TCP to the guest (3 s), sends a line, reads it back
  [ "$(ip netns exec "$UP" timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2" || exit 1; echo "sg $2" >&3; read -r -t 2 l <&3; echo "$l"' \
    _ "$1" "$2" 2>/dev/null)" = "sg $2" ]
}
# Whether a TCP connection from the upstream to ADDR:PORT is established within 3 s.
no_connect() { ! ip netns exec "$UP" timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null; }
no_ping_from_up() { ! ip netns exec "$UP" ping -c 1 -W 1 "$1" >/dev/null; }
no_guest_opens() { ! guest_opens "$@"; }
for a in "$V4" "$V6"; do
  check "without security groups the upstream reaches [$a]:10" poll 10 tcp_up "$a" 10
  check "without security groups the guest reaches $(upstream_of "$a"):7008" guest_opens "$(upstream_of "$a")" 7008
done

step "security groups: security_groups = true, virt-l3 reconcile (CloudStack's default)"
lab_exec "$LAB" cat /etc/virt-l3/config.toml | sed 's/^security_groups = false$/security_groups = true/' >"$DIR/config.sg"
check "the configuration turns security_groups on" grep -qx 'security_groups = true' "$DIR/config.sg"
lab_write "$LAB" /etc/virt-l3/config.toml <"$DIR/config.sg"
check "virt-l3 reconcile installs the security-group tables" lab_exec "$LAB" "$E2E_BIN" reconcile
for a in "$V4" "$V6"; do
  check "no rules known (CloudStack's default): no ping to $a" no_ping_from_up "$a"
  check "no rules known: no TCP to [$a]:9 (the guest's shell port)" no_connect "$a" 9
done

# The group: ingress TCP 7-9 from the upstream router only, echo requests from anywhere;
# egress TCP 7007 to the upstream router only, echo requests. Everything else of ours is
# answered only as an established flow: the guest's echo replies and TCP answers leave
# through a closed egress, the upstream's answers come in through a closed ingress.
SG_BASE="I:tcp;7;9;$UP4/32,$UP6/128,NEXT;I:icmp;8;-1;0.0.0.0/0,NEXT;I:icmp;128;-1;::/0,NEXT;E:tcp;7007;7007;$UP4/32,$UP6/128,NEXT;E:icmp;8;-1;0.0.0.0/0,NEXT;E:icmp;128;-1;::/0,NEXT;"
step "security groups: a group for $DOM: $SG_BASE"
check "virt-l3 security-group set $DOM" lab_exec "$LAB" "$E2E_BIN" security-group set "$DOM" "$SG_BASE"
check "the rules are stored under the domain's UUID" test -s "$DIR/state/security-groups/$UUID.json"
for a in "$V4" "$V6"; do
  check "allowed ingress: ping $a from the upstream" poll 10 ping_from_up "$a"
  check "allowed ingress: TCP echo [$a]:7 (the answer leaves as established)" echo_from_up "$a"
  check "allowed ingress: TCP [$a]:8 answers the guest's name" name_from_up "$a"
  check "not allowed ingress: TCP [$a]:10 dropped" no_connect "$a" 10
done
for a in "$UP4" "$UP6"; do
  check "allowed egress: the guest opens TCP to $a:7007 (the answer returns as established)" guest_opens "$a" 7007
  check "not allowed egress: the guest's TCP to $a:7008 dropped" no_guest_opens "$a" 7008
done
guest_view "ping -c 2 -W 2 $UP4 >/dev/null && echo PING4-OK; ping -c 2 -W 2 $UP6 >/dev/null && echo PING6-OK"
check "allowed egress: the guest pings $UP4 (replies return as established)" view_has PING4-OK
check "allowed egress: the guest pings $UP6 (replies return as established)" view_has PING6-OK

SG_MORE="${SG_BASE}I:tcp;10;10;$UP4/32,$UP6/128,NEXT;E:tcp;7008;7008;$UP4/32,$UP6/128,NEXT;"
step "security groups: the group opens ingress TCP 10 and egress TCP 7008"
check "virt-l3 security-group set $DOM (two more rules)" lab_exec "$LAB" "$E2E_BIN" security-group set "$DOM" "$SG_MORE"
for a in "$V4" "$V6"; do
  check "now allowed ingress: TCP [$a]:10" tcp_up "$a" 10
done
for a in "$UP4" "$UP6"; do
  check "now allowed egress: the guest's TCP to $a:7008" guest_opens "$a" 7008
done
kill "$lpid" 2>/dev/null
wait "$lpid" 2>/dev/null
in_sg_map() { lab_exec "$LAB" nft list map inet virt_l3 "sg_vms$1" 2>/dev/null | grep -q "$2 :"; }
check "$V4 is in the security-group map sg_vms4" in_sg_map 4 "$V4"
check "$V6 is in the security-group map sg_vms6" in_sg_map 6 "$V6"

# ---- destroy --------------------------------------------------------------------------
step "destroy"
check "virsh destroy $DOM" lab_virsh "$LAB" destroy "$DOM"
t=$(now)
check "$V4/32 withdrawn upstream (BIRD and kernel)" poll 30 upstream_lacks "$V4/32"
check "$V6/128 withdrawn upstream (BIRD and kernel)" poll 30 upstream_lacks "$V6/128"
echo "  withdrawn upstream $(since "$t") s after virsh destroy returned"
check "the upstream no longer reaches $V4" bash -c '! ip netns exec "$1" ping -c 1 -W 1 "$2" >/dev/null' _ "$UP" "$V4"
check "no proto 52 route left on the hypervisor" nothing_routed
check "no permanent neighbour left on cloudbr0" no_neighbour
check "no tap left on cloudbr0" test -z "$(lab_exec "$LAB" ip -br link show master cloudbr0)"
check "no record left in the state dir (the security group's rules included)" test -z "$(find "$DIR/state" -type f ! -name lock)"
sg_maps_lack_guest() {
  local out
  out=$(lab_exec "$LAB" nft list map inet virt_l3 sg_vms4 && lab_exec "$LAB" nft list map inet virt_l3 sg_vms6) || return 1
  ! grep -q "$V4 :\|$V6 :" <<<"$out"
}
check "no security-group element left for $V4 or $V6 (sg_vms4, sg_vms6)" sg_maps_lack_guest
check "virt-l3 status: clean" lab_exec "$LAB" "$E2E_BIN" status
lab_virsh "$LAB" undefine "$DOM" >/dev/null

echo "real-guest: guest boot (virsh start -> ready) ${BOOT}s; suite $SECONDS s"
e2e_summary
