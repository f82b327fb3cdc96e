#!/usr/bin/env bash
# Fuzzing (issue 8), bounded: builds the cargo-fuzz targets in fuzz/, replays every
# regression input of testdata/fuzz/<target>/, then fuzzes each target for
# FUZZ_SECONDS (default 20). Any crash or failed property fails the suite; the
# input is left in fuzz/artifacts/<target>/ (turn it into a regression: docs/FUZZING.md).
#
# The targets' properties are in fuzz/src/lib.rs. cargo-fuzz needs nightly features:
# RUSTC_BOOTSTRAP=1 lets the machine's stable toolchain provide them.
# Usage: tests/suites/fuzz.sh   (FUZZ_SECONDS=600 for a long run, FUZZ_TARGETS="plan config" for some)
set -euo pipefail
shopt -s nullglob
cd "$(dirname "$0")/../.."
export PATH="$HOME/.cargo/bin:$PATH"
scripts/deps.sh fuzz
seconds=${FUZZ_SECONDS:-20}
read -r -a targets <<<"${FUZZ_TARGETS:-domain_xml plan nwfilter config}"
export RUSTC_BOOTSTRAP=1
t0=$SECONDS
# -s none: the code under test is safe Rust, a sanitizer would find nothing a
# panic does not; -a: debug assertions and overflow checks on.
mkdir -p fuzz/artifacts
(cd fuzz && cargo fuzz build -s none -a) >fuzz/artifacts/build.log 2>&1 ||
  { tail -n 40 fuzz/artifacts/build.log; echo "fuzz: building the targets failed" >&2; exit 1; }
echo "fuzz: targets built in $((SECONDS - t0)) s"
bin=fuzz/target/$(rustc -vV | sed -n 's/^host: //p')/release
for t in "${targets[@]}"; do
  case $t in
    config) seeds=(fuzz/seeds/config); opts=() ;;
    *) seeds=(testdata/domains testdata/bench); opts=(-dict=fuzz/dict/domain.dict) ;;
  esac
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  regressions=(testdata/fuzz/"$t"/*)
  if [ ${#regressions[@]} -gt 0 ]; then
    "$bin/$t" "${regressions[@]}" >"fuzz/artifacts/$t.replay.log" 2>&1 ||
      { tail -n 40 "fuzz/artifacts/$t.replay.log"; echo "fuzz: $t fails on a regression input" >&2; exit 1; }
  fi
  log=fuzz/artifacts/$t.log
  if ! "$bin/$t" "${opts[@]}" -max_len=16384 -max_total_time="$seconds" -print_final_stats=1 \
      -artifact_prefix="fuzz/artifacts/$t/" "fuzz/corpus/$t" "${seeds[@]}" >"$log" 2>&1; then
    grep -a -A 12 -m1 'panicked' "$log" || tail -n 30 "$log"
    echo "fuzz: target $t crashed; input in fuzz/artifacts/$t/ (log $log)" >&2
    exit 1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  cov=$(grep -a -o 'cov: [0-9]*' "$log" | tail -n1)
  echo "fuzz: $t ok: ${#regressions[@]} regression input(s) replayed, $runs runs in ${seconds} s, $cov, corpus $(find "fuzz/corpus/$t" -type f | wc -l) files"
done
echo "fuzz: all targets passed in $((SECONDS - t0)) s"
