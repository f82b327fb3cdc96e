#!/usr/bin/env bash
# The linker of the shipped binary (scripts/build-release.sh passes it to rustc
# as `-C linker`): `cc` as rustc would run it, plus an order for the code that a
# hook step runs, so that code sits together at the start of .text.
#
# Why: libvirt runs the hook as a new process at every step of every VM, and a
# process pays one page fault per 64 KiB window of code it touches (the
# kernel's fault-around). Laid out by the linker alone, the ~1 MB of functions a
# `start` runs are spread over the 5 MB of .text: 59 code faults per start, about
# 4 µs each on a KVM guest. docs/BENCHMARKS.md has the figures.
#
# The order: scripts/hot-functions.txt, the functions a VM's hook steps run
# (start, prepare, started, stopped, release), first met first, written by
# benches/hot-functions.sh. Names are kept there demangled, without the crate
# hashes of std's v0 names (`core[c1f1a4ba060b9bfa]::` -> `core::`); the
# legacy names of virt-l3 and its dependencies keep their `::h<16 hex>` hash,
# the one thing that tells a generic function's instances apart. Both hashes
# change with the toolchain and the dependencies' versions: a name whose hash
# no longer exists is matched by name alone when at most 4 symbols have it. Names without `::` or `<` are C
# functions (glibc's, from libc.a, not among the objects) and are passed as they
# are. A name that no longer exists is skipped: a stale list costs speed, never
# correctness (lld moves whole sections, it does not change code).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
hot=$here/hot-functions.txt
order=$(mktemp "${TMPDIR:-/tmp}/virt-l3-order.XXXXXX")
list=$(mktemp "${TMPDIR:-/tmp}/virt-l3-symbols.XXXXXX")
trap 'rm -f "$order" "$list"' EXIT
objects=
for a in "$@"; do
  case $a in *.o) objects="$objects $a" ;; esac
done
write_order() {
  # shellcheck disable=SC2086 # the object paths (rustc's temporary files) have no blanks
  nm --defined-only -P $objects 2>/dev/null | awk '$2 ~ /^[tTwW]$/ { print $1 }' >"$list"
  # full key: demangled, crate hashes dropped; short key: the symbol hash dropped too.
  c++filt <"$list" | sed -E 's/\[[0-9a-f]+\]//g' | paste -d '\t' - "$list" |
    awk -F '\t' -v hot="$hot" '
      function add(map, key, name) { map[key] = (key in map) ? map[key] "\n" name : name }
      BEGIN {
        # "::h" and 16 hex digits at the end; spelled out: mawk (Debian 12) has no {16}.
        hash = "::h"
        for (i = 0; i < 16; i++) hash = hash "[0-9a-f]"
        hash = hash "$"
      }
      {
        add(full, $1, $2)
        short_key = $1
        if (sub(hash, "", short_key)) { add(short, short_key, $2); count[short_key]++ }
      }
      END {
        while ((getline line < hot) > 0) {
          if (line == "" || line ~ /^#/) continue
          if (line in full) { print full[line]; continue }
          if (line ~ /::|</) {
            # A Rust function whose hash changed (another toolchain or dependency
            # version): its other instances by name, unless the name is generic
            # enough to pull in many (drop_in_place, from_iter...).
            sub(hash, "", line)
            if ((line in short) && count[line] <= 4) print short[line]
            continue
          }
          print line
        }
      }' >"$order"
}
# The order is an optimisation: without nm, c++filt or the list, link as rustc would.
if [ -z "$objects" ] || [ ! -s "$hot" ] || ! write_order; then
  : >"$order"
fi
flags=()
[ -s "$order" ] && flags=(-Wl,--symbol-ordering-file="$order" -Wl,--no-warn-symbol-ordering)
# For benches/hot-functions.sh: LINK_HOT_FIRST_KEEP=FILE keeps a copy of the order,
# LINK_HOT_FIRST_UNSTRIPPED=FILE links the same inputs again, with the same order,
# keeping the symbols (so that its names, hashes included, are the shipped build's).
[ -z "${LINK_HOT_FIRST_KEEP:-}" ] || cp "$order" "$LINK_HOT_FIRST_KEEP"
if [ -n "${LINK_HOT_FIRST_UNSTRIPPED:-}" ]; then
  args=() next_is_output=0
  for a in "$@"; do
    if [ "$next_is_output" = 1 ]; then a=$LINK_HOT_FIRST_UNSTRIPPED next_is_output=0; fi
    case $a in
      -Wl,--strip-all | -Wl,--strip-debug | -s) continue ;;
      -o) next_is_output=1 ;;
    esac
    args+=("$a")
  done
  cc "${args[@]}" "${flags[@]}"
fi
cc "$@" "${flags[@]}"
