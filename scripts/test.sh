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

step "build"
scripts/build-release.sh --quiet

step "unit and namespace integration tests"
cargo test --release --quiet

# Suites that drive real daemons; each exits non-zero on failure.
for suite in tests/suites/*.sh; do
  [ -e "$suite" ] || continue
  step "suite $(basename "$suite" .sh)"
  bash "$suite"
done
echo
echo "all tests passed"
