#!/bin/sh
# Builds the shipped binary, target/release/virt-l3: the release profile with the
# C runtime linked in (static-pie, `-C target-feature=+crt-static`). libvirt runs
# the hook at every step of every VM; a static binary maps no shared objects and
# resolves no symbols at exec (benches/start-ir.sh: 1.51 M -> 1.25 M
# instructions per start, docs/BENCHMARKS.md). virt-l3 uses no NSS function
# (no user or host name lookups), which static glibc could not serve.
# `cargo rustc` passes the flag to the binary alone: build scripts and proc
# macros stay dynamic, so no --target is needed and the path stays the same.
# Usage: scripts/build-release.sh [cargo options, e.g. --quiet]
set -eu
cd "$(dirname "$0")/.."
# The hook's code first in .text (scripts/link-hot-first.sh, docs/BENCHMARKS.md).
exec cargo rustc --release --locked --bin virt-l3 "$@" -- -C target-feature=+crt-static \
  -C linker="$PWD/scripts/link-hot-first.sh"
