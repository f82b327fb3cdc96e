#!/usr/bin/env bash
# Scale (issue 17): virt-l3's reads and bulk paths against the size of the host.
#   benches/scale.sh BIN OUT_DIR [--quick]      (needs root; called by scripts/bench.sh)
#
#  1. `virt-l3 status`, `virt-l3 reconcile` (the sweep: a kernel-filtered dump)
#     and `virt-l3 reconcile --records-only` (the read of a reconcile `watch`
#     triggers: one lookup per recorded entry) for one routed dual-stack VM, on an
#     empty namespace and on one holding V4 foreign IPv4 and V6 foreign IPv6
#     routes (proto bgp, installed with `ip -batch`), beside `ip route show proto
#     52` and `ip -6 route show proto 52` on the same table. Alternating rounds.
#  2. Boot adoption of N domains (no records, empty kernel) against `ip -batch`
#     of the same 4N entries (benches/reconcile-bulk.sh does the setup).
#  3. `virt-l3 nwfilter render --all` for the same N running domains, one process.
# Writes OUT_DIR/scale.md. Full: V4=1,000,000, V6=200,000, N=10,000, 5 rounds;
# --quick: V4=20,000, V6=4,000, N=1,000, 2 rounds.
set -euo pipefail
"$(dirname "$0")/../scripts/deps.sh" bench # hyperfine, valgrind, GNU time, python3: never what the host happens to hold
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=$1 OUT=$2
V4=1000000 V6=200000 N=10000 ROUNDS=5 RUNS=10
if [ "${3:-}" = --quick ]; then V4=20000 V6=4000 N=1000 ROUNDS=2 RUNS=5; fi
W=$(mktemp -d /dev/shm/vl3-scale.XXXXXX)
NSE=vl3scale-empty-$$ NSF=vl3scale-full-$$
cleanup() { ip netns del "$NSE" 2>/dev/null || true; ip netns del "$NSF" 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
FIX=$ROOT/testdata/bench/two-nic-dual-stack.xml
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b - a) * 1000 }'; }
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

for ns in "$NSE" "$NSF"; do
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip -n "$ns" link add cloudbr0 type bridge
  ip -n "$ns" link set cloudbr0 up
  mkdir -p -m 0700 "$W/state-$ns" "$W/qemu-$ns"
  printf 'state_dir = "%s"\nlibvirt_status_dir = "%s"\nrequire_nwfilter = false\nport_isolation = false\nreconcile_grace_seconds = 0\n' \
    "$W/state-$ns" "$W/qemu-$ns" >"$W/$ns.toml"
  { echo "<domstatus state='running' reason='booted' pid='1'>"; cat "$FIX"; echo "</domstatus>"; } >"$W/qemu-$ns/i-2-1017-VM.xml"
  ip netns exec "$ns" "$BIN" --config "$W/$ns.toml" hook i-2-1017-VM start begin - <"$FIX"
done
echo "scale: installing $V4 IPv4 + $V6 IPv6 foreign routes (proto bgp) in $NSF" >&2
t0=$EPOCHREALTIME
python3 - "$V4" "$V6" >"$W/foreign.batch" <<'PY'
import sys
v4, v6 = int(sys.argv[1]), int(sys.argv[2])
out = sys.stdout
for i in range(v4):
    out.write("route add %d.%d.%d.0/24 dev cloudbr0 proto bgp\n" % (100 + (i >> 16), (i >> 8) & 255, i & 255))
for i in range(v6):
    out.write("route add 2a00:%x:%x::/48 dev cloudbr0 proto bgp\n" % (i >> 16, i & 0xffff))
PY
ip -n "$NSF" -batch "$W/foreign.batch"
echo "scale: installed in $(ms "$t0" "$EPOCHREALTIME") ms: $(ip -n "$NSF" route show proto bgp | wc -l) + $(ip -n "$NSF" -6 route show proto bgp | wc -l) routes" >&2

declare -A CMD=(
  [status]="$BIN --config CFG status"
  [reconcile]="$BIN --config CFG reconcile"
  ["reconcile --records-only"]="$BIN --config CFG reconcile --records-only"
  ["ip route show proto 52"]="ip route show proto 52"
  ["ip -6 route show proto 52"]="ip -6 route show proto 52"
)
NAMES=(status reconcile "reconcile --records-only" "ip route show proto 52" "ip -6 route show proto 52")
for r in $(seq "$ROUNDS"); do
  for ns in "$NSE" "$NSF"; do
    for n in "${NAMES[@]}"; do
      c=${CMD[$n]//CFG/$W/$ns.toml}
      for _ in $(seq "$RUNS"); do
        t0=$EPOCHREALTIME
        ip netns exec "$ns" $c >/dev/null
        t1=$EPOCHREALTIME
        echo "$(ms "$t0" "$t1")" >>"$W/t-$ns-${n// /_}"
      done
    done
  done
done
# Everything must still be healthy and untouched.
ip netns exec "$NSF" "$BIN" --config "$W/$NSF.toml" reconcile --dry-run | grep -q "nothing to do" ||
  { echo "scale: the full namespace is not in order" >&2; exit 1; }
{
  echo "| command (wall ms, median of $((ROUNDS * RUNS)), through ip netns exec) | empty table | $V4 + $V6 foreign routes | ratio |"
  echo "|---|---:|---:|---:|"
  for n in "${NAMES[@]}"; do
    e=$(median <"$W/t-$NSE-${n// /_}") f=$(median <"$W/t-$NSF-${n// /_}")
    echo "| \`$n\` | $e | $f | $(awk -v a="$e" -v b="$f" 'BEGIN { printf "%.2f×", b / a }') |"
  done
} >"$OUT/scale.md"
ip netns del "$NSF"
cat "$OUT/scale.md" >&2

echo "scale: boot adoption of $N domains against ip -batch" >&2
benches/reconcile-bulk.sh "$N" "$BIN" >"$W/bulk.md"
cat "$W/bulk.md" >&2
{ echo; cat "$W/bulk.md"; } >>"$OUT/scale.md"
