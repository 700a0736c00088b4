#!/usr/bin/env bash
# The containerd shim side by side with runc, in one containerd 1.6 (Debian's) with its CRI
# plugin, on this machine:
#   1. `ctr run --rm` end to end: Spore's hello image (io.containerd.spore.v1) vs a busybox
#      `echo` (io.containerd.runc.v2);
#   2. PODS pods one after another through the CRI, as a kubelet starts them (pod sandbox,
#      container started, exited, log read): total and per-pod p50/p99, Spore vs runc.
# Needs root (containerd). Prints markdown tables for bench/RESULTS.md.
# Knobs: PODS (default 100), CTR_RUNS (default 30).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
scripts/setup
guests/build.sh >/dev/null
cargo build --quiet --release --locked -p containerd-shim-spore --bin containerd-shim-spore-v1 --example k8s_bench
"$CARGO_TARGET_DIR/release/examples/k8s_bench" "$CARGO_TARGET_DIR/release/containerd-shim-spore-v1" \
  "${PODS:-100}" "${CTR_RUNS:-30}"
