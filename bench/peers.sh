#!/usr/bin/env bash
# Installs the benchmark peers if absent, cached outside the clone so it happens once per
# machine: hyperfine (Debian) and the wasmtime CLI 48.x (crates.io; 30-70 min cold on 2 cores).
set -euo pipefail
WASMTIME_VERSION="${WASMTIME_VERSION:-48.0.8}"
PEERS="${SPORE_PEERS_DIR:-$HOME/.cache/spore/peers}"

if ! command -v hyperfine >/dev/null; then
  apt-get update -qq && apt-get install -y -qq hyperfine >/dev/null
fi
if ! "$PEERS/bin/wasmtime" --version 2>/dev/null | grep -q "$WASMTIME_VERSION"; then
  echo "installing wasmtime-cli $WASMTIME_VERSION into $PEERS (slow the first time)..." >&2
  CARGO_TARGET_DIR="$PEERS/target" cargo install --quiet --locked wasmtime-cli \
    --version "$WASMTIME_VERSION" --root "$PEERS"
fi
"$PEERS/bin/wasmtime" --version
