#!/usr/bin/env bash
# Spore side by side with its peers, on this machine, in one run:
#   1. start-up: `spore run hello.wasm` (warm compile cache) vs `wasmtime run hello.wasm` and
#      `wasmtime run --allow-precompiled hello.cwasm`, whole process, via hyperfine;
#   2. compute: n-body under spore vs wasmtime vs the same Rust source compiled natively.
# Prints a markdown table (paste it into bench/RESULTS.md with the machine line).
# Knobs: RUNS (start-up runs, default 300), NBODY_STEPS (default 20000000), NBODY_RUNS (5).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
bench/peers.sh >/dev/null
WASMTIME="${SPORE_PEERS_DIR:-$HOME/.cache/spore/peers}/bin/wasmtime"
guests_target="${SPORE_GUESTS_TARGET:-$HOME/.cache/spore/guests-target}"

guests/build.sh >/dev/null
cargo build --quiet --release --locked --bin spore
SPORE="$CARGO_TARGET_DIR/release/spore"
(cd guests && cargo build --quiet --release --locked -p nbody --target-dir "$guests_target")
NATIVE_NBODY="$guests_target/release/nbody"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export SPORE_CACHE_DIR="$work/spore-cache"
hello=guests/out/hello.wasm
nbody=guests/out/nbody.wasm
N="${NBODY_STEPS:-20000000}"

# Warm every cache either tool has, so start-up measures starting, not compiling.
"$SPORE" compile "$hello" "$nbody" >/dev/null
"$WASMTIME" compile "$hello" -o "$work/hello.cwasm"
"$WASMTIME" run "$hello" >/dev/null
"$WASMTIME" run "$nbody" 1 >/dev/null

hyperfine --style none -N --warmup 20 --runs "${RUNS:-300}" --export-json "$work/start.json" \
  -n "spore run hello.wasm" "$SPORE run $hello" \
  -n "wasmtime run hello.wasm" "$WASMTIME run $hello" \
  -n "wasmtime run --allow-precompiled hello.cwasm" "$WASMTIME run --allow-precompiled $work/hello.cwasm" >/dev/null

hyperfine --style none -N --warmup 1 --runs "${NBODY_RUNS:-5}" --export-json "$work/nbody.json" \
  -n "spore run nbody.wasm $N" "$SPORE run $nbody $N" \
  -n "wasmtime run nbody.wasm $N" "$WASMTIME run $nbody $N" \
  -n "native nbody $N" "$NATIVE_NBODY $N" >/dev/null

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -sr)"
echo "peers: $("$WASMTIME" --version), $(hyperfine --version), rustc $(rustc --version | cut -d' ' -f2)"
echo
python3 bench/table.py "$work/start.json" "wasmtime run hello.wasm" "$work/nbody.json" "wasmtime run nbody.wasm $N"
