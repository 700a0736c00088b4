#!/usr/bin/env bash
# Fuzzes the parsers that read untrusted input (fuzz/fuzz_targets: the Sporefile parser, Spin
# manifests, runtime configs, the daemon's create bodies under its policy, image references, OCI
# manifests and indexes, layer extraction), each for SECS seconds (default 300), on libFuzzer
# with rustc's stable coverage instrumentation, and prints a table of executions and crashes. A
# crash leaves its input in fuzz/artifacts/TARGET/ (make it a regression test). Each target's
# corpus grows under FUZZ_CORPUS_DIR (default ~/.cache/spore/fuzz-corpus), seeded from
# fuzz/corpus, so one run goes on where the last stopped.
#   SECS=60 TARGETS="sporefile layer" bench/fuzz.sh
# It exits non-zero when a target crashed; scripts/test runs it for a few seconds per target.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
SECS="${SECS:-300}"
TARGETS="${TARGETS:-sporefile spin_toml runtime_config request reference oci_document layer wire}"
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$HOME/.cache/spore/fuzz-target}"
CORPUS="${FUZZ_CORPUS_DIR:-$HOME/.cache/spore/fuzz-corpus}"
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing"
# With --target, RUSTFLAGS instrument the targets' code only, not build scripts and proc macros.
host="$(rustc -vV | sed -n 's/^host: //p')"
cargo build --quiet --locked --release --bins --target "$host"
echo "| target | seconds | executions | exec/s | corpus | crashes |"
echo "|---|---|---|---|---|---|"
failed=0
for t in $TARGETS; do
  mkdir -p "corpus/$t" "artifacts/$t"
  work="$CORPUS/$t"
  mkdir -p "$work"
  cp -r "corpus/$t/." "$work/" 2>/dev/null || true
  log="$(mktemp)"
  set +e
  "$CARGO_TARGET_DIR/$host/release/$t" -max_total_time="$SECS" -print_final_stats=1 -rss_limit_mb=2048 \
    -artifact_prefix="artifacts/$t/" "$work" >"$log" 2>&1
  rc=$?
  set -e
  if [ $rc -ne 0 ]; then
    failed=1
    echo "$t: libFuzzer exited $rc; its log:" >&2
    tail -n 40 "$log" >&2
  fi
  runs="$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo 0)"
  corpus="$(ls "$work" | wc -l)"
  crashes="$(ls "artifacts/$t" | wc -l)"
  echo "| $t | $SECS | $runs | $((runs / SECS)) | $corpus | $crashes$([ $rc -ne 0 ] && echo " (exit $rc)") |"
  rm -f "$log"
done
echo "machine: $(nproc) cores, $(uname -sr)"
# A crash (or any other failure of a target) fails the run: the test suite runs this as a smoke.
exit $failed
