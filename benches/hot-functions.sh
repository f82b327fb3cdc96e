#!/usr/bin/env bash
# Writes scripts/hot-functions.txt: the functions a VM's hook steps run, in the
# order they are first met, for scripts/link-hot-first.sh to lay them out
# together at the start of .text (fewer code page faults per hook process).
#
#   benches/hot-functions.sh            (needs root: a network namespace; valgrind)
#
# Builds the release binary (scripts/build-release.sh) and a copy of it with its
# symbols, then runs one VM's lifecycle through the
# hook under callgrind in a throwaway namespace (cloudbr0 with the fixture's two
# taps, state on tmpfs): start, prepare, started, stopped, release of
# testdata/bench/two-nic-dual-stack.xml, each its own process as libvirt runs
# them. Names are written demangled (see link-hot-first.sh).
# Run it again when the hook's path changes much; a stale list only costs speed.
# Relinks target/release/virt-l3 with the new list at the end.
set -euo pipefail
"$(dirname "$0")/../scripts/deps.sh" bench
cd "$(dirname "$0")/.."
ROOT=$PWD
[ "$(id -u)" = 0 ] || { echo "hot-functions: needs root (network namespace)" >&2; exit 1; }
FIX=$ROOT/testdata/bench/two-nic-dual-stack.xml
W=$(mktemp -d /dev/shm/virt-l3-hot.XXXXXX)
# The shipped build, linked once more with its symbols (link-hot-first.sh): its
# names, hashes included, are those the next release build links.
touch src/main.rs # relink even when nothing changed
LINK_HOT_FIRST_UNSTRIPPED=$W/virt-l3 scripts/build-release.sh --quiet
BIN=$W/virt-l3
NS=vl3hot-$$
cleanup() { ip netns del "$NS" 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
ip netns add "$NS"
ip -n "$NS" link set lo up
ip -n "$NS" link add cloudbr0 type bridge
ip -n "$NS" link set cloudbr0 up
for tap in vnet14 vnet15; do
  ip -n "$NS" tuntap add dev "$tap" mode tap
  ip -n "$NS" link set "$tap" master cloudbr0 up
done
mkdir -m 0700 "$W/state"
printf 'state_dir = "%s"\nrequire_nwfilter = false\n' "$W/state" >"$W/config.toml"
# start first: its functions lead the list (the step that delays a VM start most), then the rest.
steps=("start begin" "prepare begin" "started begin" "stopped end" "release end")
i=0
for step in "${steps[@]}"; do
  # shellcheck disable=SC2086 # "OP SUBOP"
  ip netns exec "$NS" valgrind -q --tool=callgrind --demangle=no --callgrind-out-file="$W/cg.$i" \
    "$BIN" --config "$W/config.toml" hook i-2-1017-VM $step - <"$FIX"
  i=$((i + 1))
done
# The key of a name: demangled, without the crate hashes of v0 names (`core[1f..]::`);
# legacy names keep their `::h0123..` (link-hot-first.sh says why and matches them).
KEY='s/\[[0-9a-f]+\]//g'
# Function names in the order callgrind first names them (fn= and cfn= lines define
# each name once per file), step by step; no duplicates.
{
  echo "# The functions a VM's hook steps run (start, prepare, started, stopped, release),"
  echo "# first met first. Written by benches/hot-functions.sh on $(date -u +%F); read by"
  echo "# scripts/link-hot-first.sh. Rust names demangled, v0 crate hashes dropped."
  for ((j = 0; j < i; j++)); do
    sed -n -E 's/^c?fn=\([0-9]+\) (.+)$/\1/p' "$W/cg.$j"
  done | grep -v -E '^(0x[0-9a-f]+|\(below main\).*)$' | c++filt | sed -E "$KEY" | awk '!seen[$0]++' >"$W/names"
  # glibc picks its string functions by CPU at start-up (__memmove_avx512_...,
  # __strlen_evex...); under valgrind it picked the variants valgrind's CPU has.
  # Every variant of each one used, right after it, so that the shipped order
  # fits any CPU.
  variant='^__([a-z0-9]+)_(sse2|ssse3|sse4|sse42|avx|avx2|evex|avx512)'
  nm --defined-only /usr/lib/x86_64-linux-gnu/libc.a 2>/dev/null | awk '$2 ~ /^[Tt]$/ { print $3 }' |
    grep -E "$variant" | sort -u >"$W/variants" || true
  awk -v variants="$W/variants" '
    BEGIN {
      while ((getline v < variants) > 0) {
        base = v; sub(/^__/, "", base); sub(/_(sse2|ssse3|sse4|sse42|avx|avx2|evex|avx512).*$/, "", base)
        of[base] = (base in of) ? of[base] "\n" v : v
      }
    }
    !printed[$0]++ { print }
    /^__[a-z0-9]+_(sse2|ssse3|sse4|sse42|avx|avx2|evex|avx512)/ {
      base = $0; sub(/^__/, "", base); sub(/_(sse2|ssse3|sse4|sse42|avx|avx2|evex|avx512).*$/, "", base)
      if (base in of && !done[base]++) {
        n = split(of[base], vs, "\n")
        for (i = 1; i <= n; i++) if (!printed[vs[i]]++) print vs[i]
      }
    }' "$W/names"
} >"$ROOT/scripts/hot-functions.txt"
echo "hot-functions: $(grep -vc '^#' "$ROOT/scripts/hot-functions.txt") functions in scripts/hot-functions.txt" >&2
# Cargo does not see the list (a linker input it is not told of): relink, so that
# target/release/virt-l3 is laid out by the list just written.
touch src/main.rs
scripts/build-release.sh --quiet
