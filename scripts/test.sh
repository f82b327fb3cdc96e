#!/usr/bin/env bash
# The full test suite: what CI runs (.ci/run) and what the README's second command runs.
# Needs root on Debian 12 (network namespaces, libvirtd, BIRD, FRR); installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
scripts/deps.sh test
step() { printf '\n=== %s ===\n' "$*"; }

step "format and lints"
cargo fmt --all -- --check
cargo clippy --all-targets --quiet -- -D warnings
python3 scripts/import-cycles.py

step "unit and namespace integration tests"
cargo test --release --quiet

# After `cargo test --release`, which links target/release/virt-l3 as a plain
# (dynamic) build: the suites below run the binary that ships.
step "build"
scripts/build-release.sh --quiet
if readelf -lW target/release/virt-l3 | grep -q INTERP; then
  echo "test: target/release/virt-l3 is not the static release build" >&2
  exit 1
fi

# Suites that drive real daemons; each exits non-zero on failure.
for suite in tests/suites/*.sh; do
  [ -e "$suite" ] || continue
  step "suite $(basename "$suite" .sh)"
  bash "$suite"
done
# Variants of a suite under other settings (each asserts what the suite asserts), kept
# short: the real-guest migration without virt-l3's nwfilter, and with FRR on the
# hypervisors instead of BIRD, one round (two migrations) each.
variants=(
  "real-guest-migration REAL_MIGRATION_NWFILTER=off REAL_MIGRATION_ROUNDS=1"
  "real-guest-migration REAL_MIGRATION_DAEMON=frr REAL_MIGRATION_ROUNDS=1"
)
for v in "${variants[@]}"; do
  read -r suite settings <<<"$v"
  step "suite $suite ($settings)"
  # shellcheck disable=SC2086 # settings: VAR=VALUE words
  env $settings bash "tests/suites/$suite.sh"
done
echo
echo "all tests passed"
