#!/bin/bash
# benches/start-ir.sh BIN [XML] [EXTRA_CONFIG]: callgrind instructions of one `hook start` (all processes), empty namespace, as bench.sh does.
set -euo pipefail
"$(dirname "$0")/../scripts/deps.sh" bench # hyperfine, valgrind, GNU time, python3: never what the host happens to hold
BIN=$1; FIX=${2:-$(cd "$(dirname "$0")/.." && pwd)/testdata/bench/two-nic-dual-stack.xml}
NS=irns-$$; W=$(mktemp -d /dev/shm/ir.XXXX)
trap 'ip netns del $NS 2>/dev/null; rm -rf $W' EXIT
ip netns add $NS; ip -n $NS link set lo up; ip -n $NS link add cloudbr0 type bridge; ip -n $NS link set cloudbr0 up
printf 'state_dir = "%s"\nrequire_nwfilter = false\nport_isolation = false\n%b\n' "$W/state" "${3:-}" > $W/c.toml
for i in 1 2 3; do
  rm -rf $W/state; ip -n $NS route flush proto 52 2>/dev/null || true; ip -n $NS -6 route flush proto 52 2>/dev/null || true; ip -n $NS neigh flush nud permanent 2>/dev/null || true
  ip netns exec $NS valgrind --tool=callgrind --trace-children=yes --callgrind-out-file="$W/cg.$i.%p" sh -c "$BIN --config $W/c.toml hook i-2-1017-VM start begin - < $FIX" >/dev/null 2>&1
  cat $W/cg.$i.* | awk '/^summary:/ { s += $2 } END { print s }'
done
