#!/usr/bin/env bash
# The edge runner's figures (issue 14's table), on this machine, in one run:
#   - the shipping runner's size (runner/, release: opt-level z) and the `fast` profile's;
#   - cold start on native, Pulley and wasmi (in process: bytes in memory → `_start` returned);
#   - upload throughput over a Unix socket and TCP; kill latency (KILL sent → EXIT read);
#   - n-body on each engine at the runner against the same Rust source compiled natively;
#   - the runner's memory, idle and per app held;
#   - then bench/boards.sh: the bare-metal runner on QEMU's boards.
# Prints a markdown table (paste it into bench/RESULTS.md with the machine line).
# Knobs: NBODY_STEPS (default 5000000).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
guests_target="${SPORE_GUESTS_TARGET:-$HOME/.cache/spore/guests-target}"
guests/build.sh >/dev/null
(cd guests && cargo build --quiet --release --locked -p nbody --target-dir "$guests_target")

runner_target="$CARGO_TARGET_DIR/runner"
# In runner/, so its .cargo/config.toml (packed relocations) applies as in the shipping build.
runner() { (cd runner && cargo build --quiet --locked "$@"); }
runner --release --target-dir "$runner_target"
runner --profile fast --target-dir "$runner_target"
# One engine each: the size of each feature.
for f in wasmtime wasmi; do
  runner --release --target-dir "$runner_target-$f" --no-default-features --features "$f"
done
# The foreign machines the tests run runners on (scripts/setup installs their toolchains).
for t in aarch64-unknown-linux-gnu riscv64gc-unknown-linux-gnu; do
  runner --release --target-dir "$runner_target" --target "$t"
done
# With spore, so wasmtime is built with the features the release build of spore already has.
cargo build --quiet --release --locked -p spore-cli -p spore-edge-bench

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -sr)"
echo "rustc $(rustc --version | cut -d' ' -f2); runner: release profile (opt-level z, panic=abort, stripped)"
echo
echo "| runner build | bytes |"
echo "|---|---|"
echo "| native + Pulley + wasmi (release) | $(stat -c %s "$runner_target/release/spore-runner") |"
echo "| native + Pulley + wasmi, \`fast\` profile (interpreters at opt-level 3) | $(stat -c %s "$runner_target/fast/spore-runner") |"
echo "| wasmtime only: native + Pulley | $(stat -c %s "$runner_target-wasmtime/release/spore-runner") |"
echo "| wasmi only | $(stat -c %s "$runner_target-wasmi/release/spore-runner") |"
for t in aarch64-unknown-linux-gnu riscv64gc-unknown-linux-gnu; do
  echo "| native + Pulley + wasmi (release) for $t | $(stat -c %s "$runner_target/$t/release/spore-runner") |"
done
echo
"$CARGO_TARGET_DIR/release/spore-edge-bench" "$runner_target/release/spore-runner" guests/out/nbody.wasm \
  "$guests_target/release/nbody" "${NBODY_STEPS:-5000000}"

# The bare-metal runner on QEMU's boards (issue 15's figures).
echo
bench/boards.sh
