#!/usr/bin/env bash
# Builds the fuzz targets on stable Rust (libFuzzer through libfuzzer-sys, with the
# sanitizer-coverage flags cargo-fuzz passes, minus AddressSanitizer, which needs nightly) and
# runs one of them:
#
#   server/fuzz/run.sh TARGET [SECONDS] [libFuzzer flags…]     # default 600 s
#   server/fuzz/run.sh --build                                  # build every target only
#
# The corpus grows in server/fuzz/corpus/TARGET (not committed), crashes land in
# server/fuzz/artifacts/TARGET; seeds/TARGET holds the committed seed inputs. A crash is
# replayed with `target/x86_64-unknown-linux-gnu/release/TARGET FILE` and then becomes a case
# in server/tests/fuzz_regressions.rs.
set -euo pipefail
cd "$(dirname "$0")"
triple=$(rustc -vV | sed -n 's/^host: //p')
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
if [ "${1:-}" = "--build" ]; then
  exec cargo build --release --target "$triple" --bins
fi
target=${1:?usage: run.sh TARGET [SECONDS] [libFuzzer flags…]}
secs=${2:-600}
shift $(( $# >= 2 ? 2 : 1 ))
cargo build --release --target "$triple" --bin "$target"
mkdir -p "corpus/$target" "artifacts/$target"
dirs=("corpus/$target")
[ -d "seeds/$target" ] && dirs+=("seeds/$target")
exec "$CARGO_TARGET_DIR/$triple/release/$target" -max_total_time="$secs" -print_final_stats=1 \
  -artifact_prefix="artifacts/$target/" "$@" "${dirs[@]}"
