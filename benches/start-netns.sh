#!/usr/bin/env bash
# The hook's start against the proposal's `ip` script (issue 17), both entered
# the same way: through `ip netns exec NS ...`, one run per process.
#
#   benches/start-netns.sh BIN [OUT_DIR] [--quick]   (needs root; hyperfine, GNU time)
#
# - "ip script": 8 plain `ip` commands (4 `ip route add`, 4 `ip neigh add ...
#   nud permanent`) for testdata/bench/two-nic-dual-stack.xml's entries, written
#   out once beforehand (no XML parsing at run time), run by `sh`: the
#   proposal's script;
# - "virt-l3 start": `virt-l3 hook i-2-1017-VM start begin -` with the fixture
#   on stdin, with its defaults: port isolation (the taps vnet14 and vnet15
#   exist, on the bridge), the nftables tables, and 2 more neighbours than the
#   script (each NIC's IPv6 link-local); validation, record and claims;
# - "ip netns exec true": the cost of entering; "net" figures subtract its median.
# State directory on tmpfs (/dev/shm), as /run/virt-l3 is on a hypervisor; the
# binary copied to /var/tmp, a disk file system like the /usr/bin that holds
# virt-l3 and `ip` on a hypervisor (run from tmpfs, a start costs 11 more page
# faults and 0.1-0.3 ms more here: docs/BENCHMARKS.md).
# hyperfine's --prepare removes the fixture's routes, neighbours, record and
# claims before every run of both. In two namespaces: one empty, one holding
# COUNT (default 10,000; --quick 1,000) other VMs' routes, neighbours, records
# and claims (benches/populate.py, as scripts/bench.sh). Prints medians, net
# figures, the ratio and virt-l3's peak RSS (GNU time %M, highest of 5); writes
# start-netns.md and the hyperfine JSON into OUT_DIR (default: a temporary
# directory, removed). KEEP=1 keeps the namespaces and files (debugging).
# Not part of the test suite: nothing asserts a time.
set -euo pipefail
"$(dirname "$0")/../scripts/deps.sh" bench # hyperfine, valgrind, GNU time, python3: never what the host happens to hold
cd "$(dirname "$0")/.."
ROOT=$PWD
[ $# -ge 1 ] || { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2; }
BIN=$(realpath "$1")
OUT=${2:-}
[ "${2:-}" = --quick ] && OUT=''
quick=0
for a in "$@"; do [ "$a" = --quick ] && quick=1; done
if [ "$quick" = 1 ]; then d_count=1000 d_runs=10 d_warmup=2; else d_count=10000 d_runs=40 d_warmup=5; fi
COUNT=${COUNT:-$d_count} RUNS=${RUNS:-$d_runs} WARMUP=${WARMUP:-$d_warmup}
[ "$(id -u)" = 0 ] || { echo "start-netns: needs root (network namespaces)" >&2; exit 1; }
FIX=$ROOT/testdata/bench/two-nic-dual-stack.xml
W=$(mktemp -d /dev/shm/virt-l3-start.XXXXXX)
OUT=${OUT:-$W/out}
mkdir -p "$OUT"
B=$(mktemp -d /var/tmp/virt-l3-start-bin.XXXXXX)
cp "$BIN" "$B/virt-l3" # a concurrent build must not swap it mid-run
BIN=$B/virt-l3
[ "$(stat -f -c %T "$B")" = "$(stat -f -c %T /usr/bin)" ] ||
  echo "start-netns: note: /var/tmp and /usr/bin are on different file system types" >&2
NS_EMPTY=vl3start-empty-$$
NS_FULL=vl3start-full-$$
cleanup() {
  ip netns del "$NS_EMPTY" 2>/dev/null || true
  ip netns del "$NS_FULL" 2>/dev/null || true
  rm -rf "$W" "$B"
}
[ -n "${KEEP:-}" ] || trap cleanup EXIT
trap 'exit 130' INT TERM

for c in empty full; do
  ns=vl3start-$c-$$
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip -n "$ns" link add cloudbr0 type bridge
  ip -n "$ns" link set cloudbr0 up
  for tap in vnet14 vnet15; do
    ip -n "$ns" tuntap add dev "$tap" mode tap
    ip -n "$ns" link set "$tap" master cloudbr0 up
  done
  mkdir -p -m 0700 "$W/state-$c"
  printf 'state_dir = "%s"\nrequire_nwfilter = false\n' "$W/state-$c" >"$W/$c.toml"
done

# The ip script and the reset, from the plan (once, before timing).
PLAN=$("$BIN" --config "$W/empty.toml" plan --json <"$FIX")
{
  echo '#!/bin/sh'
  echo 'set -e'
  jq -r '.route_protocol as $p |
    (.routes[] | "ip route add \(.destination) dev \(.bridge) proto \($p) metric \(.metric)"),
    (.neighbours[] | select(.address | startswith("fe80:") | not)
      | "ip neigh add \(.address) lladdr \(.mac) dev \(.bridge) nud permanent")' <<<"$PLAN"
} >"$W/ip-script.sh"
[ "$(grep -c '^ip ' "$W/ip-script.sh")" = 8 ] || { echo "start-netns: expected 8 ip commands" >&2; cat "$W/ip-script.sh" >&2; exit 1; }
# Neighbours flushed, not deleted: the script leaves no link-local neighbours,
# and a failed deletion ends `ip -batch` even with -force.
jq -r '.route_protocol as $p |
  (.routes[] | "route del \(.destination) dev \(.bridge) proto \($p)"),
  (.neighbours[] | "neigh flush to \(.address) dev \(.bridge) nud permanent")' <<<"$PLAN" >"$W/del.batch"
{
  echo '#!/bin/sh'
  echo "ip -force -batch $W/del.batch 2>/dev/null"
  jq -r '"rm -f \"$1/domains/\(.uuid).json\"",
    (.neighbours[] | "rm -f \"$1/owners/\(.address)\" \"$1/macs/\(.mac)\"")' <<<"$PLAN"
  echo 'exit 0'
} >"$W/reset.sh"
chmod +x "$W/ip-script.sh" "$W/reset.sh"

echo "populating $NS_FULL with $COUNT other VMs" >&2
/usr/bin/python3 "$ROOT/benches/populate.py" --count "$COUNT" --batch "$W/others.batch" --state "$W/state-full"
ip -n "$NS_FULL" -batch "$W/others.batch"

# Both leave the same routes and neighbours (virt-l3's neighbours carry proto 52).
view() {
  { ip -n "$1" -4 route show proto 52; ip -n "$1" -6 route show proto 52
    ip -n "$1" neigh show nud permanent | sed 's/ proto 52//'; } | grep -F -e 198.51.100.1 -e 2001:db8:100:: | sort
}
ip netns exec "$NS_EMPTY" "$W/reset.sh" "$W/state-empty"
ip netns exec "$NS_EMPTY" sh "$W/ip-script.sh"
view "$NS_EMPTY" >"$W/view-ip"
ip netns exec "$NS_EMPTY" "$W/reset.sh" "$W/state-empty"
ip netns exec "$NS_EMPTY" "$BIN" --config "$W/empty.toml" hook i-2-1017-VM start begin - <"$FIX"
view "$NS_EMPTY" >"$W/view-vl3"
cmp -s "$W/view-ip" "$W/view-vl3" || { echo "start-netns: the two install different entries" >&2; diff "$W/view-ip" "$W/view-vl3" >&2; exit 1; }
[ "$(wc -l <"$W/view-ip")" = 8 ] || { echo "start-netns: expected 8 entries" >&2; exit 1; }

hyper() { # CASE
  local ns=vl3start-$1-$$
  hyperfine --warmup "$WARMUP" --runs "$RUNS" --style basic --export-json "$OUT/start-netns-$1.json" \
    --prepare "ip netns exec $ns $W/reset.sh $W/state-$1" \
    --command-name "ip netns exec true" "ip netns exec $ns true" \
    --command-name "ip script" "ip netns exec $ns sh $W/ip-script.sh" \
    --command-name "virt-l3 start" "ip netns exec $ns $BIN --config $W/$1.toml hook i-2-1017-VM start begin - < $FIX" >&2
}
# The same three, interleaved round by round (benches/interleave.py): the ratio
# is taken from these paired figures, which a drifting machine disturbs less.
paired() { # CASE
  local ns=vl3start-$1-$$
  python3 "$ROOT/benches/interleave.py" --rounds "$RUNS" --warmup "$WARMUP" \
    --prepare "ip netns exec $ns $W/reset.sh $W/state-$1" --out "$OUT/start-netns-$1-paired.json" \
    "ip netns exec true=ip netns exec $ns true" \
    "ip script=ip netns exec $ns sh $W/ip-script.sh" \
    "virt-l3 start=ip netns exec $ns $BIN --config $W/$1.toml hook i-2-1017-VM start begin - < $FIX"
}
# One --prepare for all three: `true` is reset before each run too (untimed).
hyper empty
hyper full
paired empty
paired full
maxrss() { # CASE -> KiB, highest of 5
  local ns=vl3start-$1-$$ best=0 k
  for _ in 1 2 3 4 5; do
    ip netns exec "$ns" "$W/reset.sh" "$W/state-$1"
    k=$(ip netns exec "$ns" /usr/bin/time -f '%M' "$BIN" --config "$W/$1.toml" hook i-2-1017-VM start begin - <"$FIX" 2>&1 >/dev/null | tail -1)
    [ "$k" -gt "$best" ] && best=$k
  done
  echo "$best"
}
rss_empty=$(maxrss empty)
rss_full=$(maxrss full)

python3 - "$OUT" "$COUNT" "$rss_empty" "$rss_full" <<'PY' | tee "$OUT/start-netns.md"
import json, statistics, sys
out, count, rss_e, rss_f = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
med = {}
for case in ("empty", "full"):
    for r in json.load(open(f"{out}/start-netns-{case}.json"))["results"]:
        med[(case, r["command"])] = statistics.median(r["times"]) * 1000
print(f"| through `ip netns exec` (ms, median) | empty host | host with {count:,} other VMs |")
print("|---|---:|---:|")
for c in ("ip netns exec true", "ip script", "virt-l3 start"):
    print(f"| {c} | {med[('empty', c)]:.2f} | {med[('full', c)]:.2f} |")
net = {k: med[k] - med[(k[0], "ip netns exec true")] for k in med}
for c in ("ip script", "virt-l3 start"):
    print(f"| {c}, net | {net[('empty', c)]:.2f} | {net[('full', c)]:.2f} |")
print(f"| ip script / virt-l3 start, net | {net[('empty', 'ip script')] / net[('empty', 'virt-l3 start')]:.1f}x "
      f"| {net[('full', 'ip script')] / net[('full', 'virt-l3 start')]:.1f}x |")
print(f"| virt-l3 start peak RSS (GNU time %M, highest of 5) | {rss_e / 1024:.1f} MiB | {rss_f / 1024:.1f} MiB |")
print()
print("hyperfine runs each command's rounds as one block (the table above); interleaved,")
print("round by round, net = the median of each round's difference from `ip netns exec true`:")
print()
print(f"| interleaved (ms, median) | empty host | host with {count:,} other VMs |")
print("|---|---:|---:|")
pnet = {}
pmed = {}
for case in ("empty", "full"):
    t = json.load(open(f"{out}/start-netns-{case}-paired.json"))
    for c in t:
        pmed[(case, c)] = statistics.median(t[c]) * 1000
    for c in ("ip script", "virt-l3 start"):
        pnet[(case, c)] = statistics.median(
            a - b for a, b in zip(t[c], t["ip netns exec true"])) * 1000
for c in ("ip netns exec true", "ip script", "virt-l3 start"):
    print(f"| {c} | {pmed[('empty', c)]:.2f} | {pmed[('full', c)]:.2f} |")
for c in ("ip script", "virt-l3 start"):
    print(f"| {c}, net (paired) | {pnet[('empty', c)]:.2f} | {pnet[('full', c)]:.2f} |")
print(f"| ip script / virt-l3 start, net (paired) | {pnet[('empty', 'ip script')] / pnet[('empty', 'virt-l3 start')]:.1f}x "
      f"| {pnet[('full', 'ip script')] / pnet[('full', 'virt-l3 start')]:.1f}x |")
print()
print(f"virt-l3 start, net, on the host with {count:,} other VMs: "
      f"{net[('full', 'virt-l3 start')] / net[('empty', 'virt-l3 start')]:.2f}x the empty host's "
      f"(hyperfine), {pnet[('full', 'virt-l3 start')] / pnet[('empty', 'virt-l3 start')]:.2f}x (interleaved)")
PY
