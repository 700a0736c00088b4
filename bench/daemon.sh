#!/usr/bin/env bash
# Daemon benchmarks, recorded in bench/RESULTS.md:
#   (a) density: live idle reference-daemon sandboxes (a line every 10 s) at each of STEPS,
#       the daemon's RSS/PSS per sandbox and its map count, for each guest in GUESTS — beside
#       the process-per-sandbox peer (PEERS `wasmtime run` processes, PSS per process);
#   (b) starts per second through the API, one by one and as one batch, with
#   (c) create->running latency inside the daemon (launch to guest code entered), p50/p99.
# Knobs: STEPS (1000,10000,100000), GUESTS (refdaemon-lean refdaemon), STARTS (10000), SKIP_STARTS,
#        CONC (4), PEERS (200), POOL_MEMORY (2M), STACK (128K).
# Needs root for sysctl vm.max_map_count when STEPS is large.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
guests/build.sh >/dev/null
cargo build --quiet --release --locked -p spore-cli -p spore-loadgen
SPORE="$CARGO_TARGET_DIR/release/spore"
LOADGEN="$CARGO_TARGET_DIR/release/spore-loadgen"
WASMTIME="${SPORE_PEERS_DIR:-$HOME/.cache/spore/peers}/bin/wasmtime"
GUESTS="${GUESTS:-refdaemon-lean refdaemon}"
STEPS="${STEPS:-1000,10000,100000}"
MAX="${STEPS##*,}"
STARTS="${STARTS:-10000}"

work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

need_maps=$((MAX * 7 + 65536))
if [ "$(sysctl -n vm.max_map_count)" -lt "$need_maps" ]; then
  sysctl -qw vm.max_map_count="$need_maps" || echo "note: could not raise vm.max_map_count to $need_maps" >&2
fi
ulimit -n "$(ulimit -Hn)"

start_daemon() { # $1 = capacity
  rm -rf "$work/data" "$work/s.sock"
  cat > "$work/daemon.toml" <<TOML
[pool]
sandboxes = $1
max_memory = "${POOL_MEMORY:-2M}"
stack = "${STACK:-128K}"
TOML
  "$SPORE" daemon --socket "$work/s.sock" --data-dir "$work/data" --config "$work/daemon.toml" >"$work/daemon.log" 2>&1 &
  DAEMON=$!
  pids+=("$DAEMON")
  for _ in $(seq 500); do [ -S "$work/s.sock" ] && return; sleep 0.02; done
  cat "$work/daemon.log" >&2; exit 1
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -sr); vm.max_map_count=$(sysctl -n vm.max_map_count)"
echo "pool slot ${POOL_MEMORY:-2M}, fiber stack ${STACK:-128K}; guests print a line every 10 s"
for g in $GUESTS; do
  GUEST="guests/out/$g.wasm"
  echo
  echo "### (a) density: $g ($(stat -c %s "$GUEST") bytes)"
  echo
  echo "| live sandboxes | daemon RSS | daemon PSS | RSS / sandbox | PSS / sandbox | maps | creates |"
  echo "|---|---|---|---|---|---|---|"
  start_daemon "$MAX"
  "$LOADGEN" density "$work/s.sock" "$DAEMON" "$GUEST" 10 "$STEPS" || true
  kill -9 "$DAEMON"; wait "$DAEMON" 2>/dev/null || true

  if [ -x "$WASMTIME" ]; then
    n="${PEERS:-200}"
    peer=()
    for _ in $(seq "$n"); do "$WASMTIME" run "$GUEST" 10 >/dev/null & peer+=($!); pids+=($!); done
    sleep 3
    pss=0; rss=0
    for p in "${peer[@]}"; do
      pss=$((pss + $(awk '/^Pss:/{print $2}' /proc/$p/smaps_rollup)))
      rss=$((rss + $(awk '/^VmRSS:/{print $2}' /proc/$p/status)))
    done
    echo
    echo "peer, a process per sandbox: $n × \`wasmtime run $g.wasm 10\` ($("$WASMTIME" --version)): PSS $((pss / n)) KiB, RSS $((rss / n)) KiB per sandbox"
    kill -9 "${peer[@]}" 2>/dev/null || true
    wait "${peer[@]}" 2>/dev/null || true
  fi
done

[ -n "${SKIP_STARTS:-}" ] && exit 0
GUEST="guests/out/${GUESTS%% *}.wasm"
echo
echo "### (b) starts per second through the API and (c) create->running latency ($STARTS sandboxes each way, $(basename "$GUEST"))"
echo
echo "| how | sandboxes | until all running | creates acknowledged | running | latency p50 | latency p99 |"
echo "|---|---|---|---|---|---|---|"
start_daemon $((2 * STARTS))
"$LOADGEN" starts "$work/s.sock" "$GUEST" 10 "$STARTS" "${CONC:-4}"
