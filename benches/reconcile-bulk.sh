#!/usr/bin/env bash
# Bulk reconcile: 10,000 dual-stack VMs (20,000 routes + 30,000 neighbours: each
# NIC's IPv4, IPv6 and IPv6 link-local) in a throwaway namespace, side by side
# with `ip -batch` doing the same additions.
#   benches/reconcile-bulk.sh [N [BIN]]   (default N=10000; needs root)
# BIN: a built virt-l3 (else the release build). ROUNDS (default 3) alternating
# runs of the boot case and of ip -batch; the table gives their medians. Then
# `nwfilter render --all` for the N running domains, one process.
# Prints a markdown table; docs/BENCHMARKS.md records a run.
set -euo pipefail
"$(dirname "$0")/../scripts/deps.sh" bench # hyperfine, valgrind, GNU time, python3: never what the host happens to hold
cd "$(dirname "$0")/.."
N=${1:-10000}
export PATH="$HOME/.cargo/bin:$PATH"
BIN=${2:-}
ROUNDS=${ROUNDS:-3}
if [ -z "$BIN" ]; then
  scripts/build-release.sh --quiet
  BIN=$PWD/target/release/virt-l3
fi
NS=vl3-bulk-$$
# /run is a tmpfs, like the production state_dir (/run/virt-l3).
TMP=$(mktemp -d -p /run vl3-bulk.XXXXXX)
mount -t tmpfs -o size=512m tmpfs "$TMP"
cleanup() { ip netns del "$NS" 2>/dev/null || true; umount "$TMP" 2>/dev/null || true; rmdir "$TMP" 2>/dev/null || true; }
trap cleanup EXIT

ip netns add "$NS"
ip -n "$NS" link add cloudbr0 type bridge
ip -n "$NS" link set cloudbr0 up
mkdir -p "$TMP/qemu"
cat > "$TMP/config.toml" <<CONF
state_dir = "$TMP/state"
libvirt_status_dir = "$TMP/qemu"
port_isolation = false
CONF

# libvirt status files of N running domains, and the equivalent ip -batch script.
python3 - "$N" "$TMP" <<'PY'
import sys
n, tmp = int(sys.argv[1]), sys.argv[2]
batch = open(f"{tmp}/batch", "w")
for i in range(n):
    mac = "52:54:%02x:%02x:%02x:%02x" % ((i >> 24) & 255, (i >> 16) & 255, (i >> 8) & 255, i & 255)
    v4 = "10.%d.%d.%d" % (((i >> 16) & 255) + 64, (i >> 8) & 255, i & 255)
    v6 = "2001:db8:%x::%x" % (i >> 16, (i & 0xffff) + 1)
    uuid = "%08x-0000-4000-8000-%012x" % (i, i)
    filt = "virt-l3-nic-" + mac.replace(":", "")
    open(f"{tmp}/qemu/vm{i}.xml", "w").write(f"""<domstatus state='running' reason='booted' pid='{1000+i}'>
<domain type='kvm' id='{i+1}'><name>vm{i}</name><uuid>{uuid}</uuid>
<metadata><cloudstack:network xmlns:cloudstack="https://download.cloudstack.org/libvirt/network">
<cloudstack:nic mac="{mac}"><cloudstack:address address="{v4}" family="ipv4"/><cloudstack:address address="{v6}" family="ipv6"/></cloudstack:nic>
</cloudstack:network></metadata>
<devices><interface type='bridge'><mac address='{mac}'/><source bridge='cloudbr0'/><target dev='vnet{i}'/><filterref filter='{filt}'/></interface></devices>
</domain></domstatus>
""")
    batch.write(f"route replace {v4}/32 dev cloudbr0 proto 52 metric 100\n")
    batch.write(f"route replace {v6}/128 dev cloudbr0 proto 52 metric 100\n")
    batch.write(f"neigh replace {v4} lladdr {mac} dev cloudbr0 nud permanent\n")
    batch.write(f"neigh replace {v6} lladdr {mac} dev cloudbr0 nud permanent\n")
    # virt-l3 pins each NIC's IPv6 link-local (EUI-64, link_local = "eui64") too.
    b = [int(x, 16) for x in mac.split(":")]
    ll = "fe80::%x:%x:%x:%x" % (((b[0] ^ 2) << 8) | b[1], (b[2] << 8) | 0xff, 0xfe00 | b[3], (b[4] << 8) | b[5])
    batch.write(f"neigh replace {ll} lladdr {mac} dev cloudbr0 nud permanent\n")
PY

now() { date +%s.%N; }
flush() {
  ip -n "$NS" route flush proto 52 2>/dev/null || true
  ip -n "$NS" -6 route flush proto 52 2>/dev/null || true
  ip -n "$NS" neigh flush dev cloudbr0 nud permanent 2>/dev/null || true
}
count() { echo $(( $(ip -n "$NS" route show proto 52 | wc -l) + $(ip -n "$NS" -6 route show proto 52 | wc -l) + $(ip -n "$NS" neigh show dev cloudbr0 nud permanent | wc -l) )); }
want=$((5 * N))

# ip -batch from empty (each command waits for its acknowledgement)
flush
t0=$(now); ip -n "$NS" -batch "$TMP/batch"; t1=$(now)
ipbatch_empty=$(echo "$t1 - $t0" | bc)
[ "$(count)" = "$want" ] || { echo "ip -batch installed $(count) of $want" >&2; exit 1; }
t0=$(now); ip -n "$NS" -batch "$TMP/batch"; t1=$(now)
ipbatch_present=$(echo "$t1 - $t0" | bc)

# virt-l3 reconcile from empty (no records, as after a reboot: adopts every
# domain), alternating with ip -batch from empty; medians.
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
: >"$TMP/boot.t"; : >"$TMP/batch.t"
for _ in $(seq "$ROUNDS"); do
  # A reboot: no entries, no records, and no nftables tables (the boot
  # reconcile installs them and accepts every domain's tap again).
  flush; rm -rf "$TMP/state"
  for fam in inet bridge netdev; do ip netns exec "$NS" nft delete table "$fam" virt_l3 2>/dev/null || true; done
  t0=$(now); ip netns exec "$NS" "$BIN" --config "$TMP/config.toml" reconcile --json > "$TMP/r1.json"; t1=$(now)
  echo "$t1 - $t0" | bc >>"$TMP/boot.t"
  [ "$(count)" = "$want" ] || { echo "reconcile installed $(count) of $want" >&2; exit 1; }
  flush
  t0=$(now); ip -n "$NS" -batch "$TMP/batch"; t1=$(now)
  echo "$t1 - $t0" | bc >>"$TMP/batch.t"
done
vl3_empty=$(median <"$TMP/boot.t")
ipbatch_empty=$(median <"$TMP/batch.t")
flush
# kernel flushed, records present (ip route flush on a running host)
flush
t0=$(now); ip netns exec "$NS" "$BIN" --config "$TMP/config.toml" reconcile --json > "$TMP/r2.json"; t1=$(now)
vl3_records=$(echo "$t1 - $t0" | bc)
[ "$(count)" = "$want" ] || { echo "reconcile installed $(count) of $want" >&2; exit 1; }
# everything present: nothing to do
t0=$(now); ip netns exec "$NS" "$BIN" --config "$TMP/config.toml" reconcile > "$TMP/r3.txt"; t1=$(now)
vl3_present=$(echo "$t1 - $t0" | bc)
grep -q "nothing to do" "$TMP/r3.txt" || { echo "second reconcile was not a no-op" >&2; cat "$TMP/r3.txt" >&2; exit 1; }

ratio() { echo "scale=2; $1 / $2" | bc; }
echo "| case ($N VMs, $want entries) | ip -batch (s) | virt-l3 reconcile (s) | ip -batch / virt-l3 |"
echo "|---|---|---|---|"
echo "| kernel empty, no records (boot) | $ipbatch_empty | $vl3_empty | $(ratio "$ipbatch_empty" "$vl3_empty") |"
echo "| kernel empty, records present (flush) | $ipbatch_empty | $vl3_records | $(ratio "$ipbatch_empty" "$vl3_records") |"
echo "| everything present | $ipbatch_present | $vl3_present | $(ratio "$ipbatch_present" "$vl3_present") |"
echo
echo "boot case: virt-l3 $(tr '\n' ' ' <"$TMP/boot.t")s; ip -batch $(tr '\n' ' ' <"$TMP/batch.t")s ($ROUNDS alternating rounds)"
t0=$(now); "$BIN" --config "$TMP/config.toml" nwfilter render --all --out-dir "$TMP/filters" > "$TMP/render.txt"; t1=$(now)
echo
echo "nwfilter render --all, $N running domains, one process: $(echo "$t1 - $t0" | bc) s, $(wc -l <"$TMP/render.txt") files"
