#!/usr/bin/env bash
# HTTP serving side by side: wrk against `spore serve` and `wasmtime serve`, the same hello
# component, the same box, the same connections, one server at a time: the WASI 0.2 app
# (guests/http-hello, wasi:http/proxy) and the WASI 0.3 one (guests/http-hello-p3,
# wasi:http/service; wasmtime with -Wcomponent-model-async -Sp3). Spore makes a fresh instance
# per request for both; so does wasmtime for 0.2, while for 0.3 it reuses an instance for up to
# 128 requests, 16 at once, by default: the 0.3 app is measured against wasmtime both ways
# (its default, and one instance per request like Spore). Prints a markdown table.
# Knobs: DURATION (default 10s), CONNS (default 64), THREADS (wrk threads, default 2), PORT.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
bench/peers.sh >/dev/null
command -v wrk >/dev/null || { sudo=""; [[ $(id -u) -eq 0 ]] || sudo=sudo; $sudo apt-get install -y -qq wrk >/dev/null; }
WASMTIME="${SPORE_PEERS_DIR:-$HOME/.cache/spore/peers}/bin/wasmtime"
guests/build.sh >/dev/null
cargo build --quiet --release --locked --bin spore
SPORE="$CARGO_TARGET_DIR/release/spore"
app=guests/out/http-hello.wasm
app3=guests/out/http-hello-p3.wasm
DURATION="${DURATION:-10s}" CONNS="${CONNS:-64}" THREADS="${THREADS:-2}"
port="${PORT:-48321}"
work="$(mktemp -d)"
pid=""
cleanup() { [[ -n "$pid" ]] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
export SPORE_CACHE_DIR="$work/cache" SPORE_DATA_DIR="$work/data"

# Runs one server command, loads it with wrk, prints "req/s p50 p99".
measure() {
  "$@" >"$work/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 200); do curl -sf "http://127.0.0.1:$port/" >/dev/null 2>&1 && break; sleep 0.05; done
  curl -sf "http://127.0.0.1:$port/" >/dev/null || { cat "$work/server.log"; exit 1; }
  wrk -t"$THREADS" -c"$CONNS" -d2s "http://127.0.0.1:$port/" >/dev/null   # warm-up
  wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "http://127.0.0.1:$port/" >"$work/wrk.txt"
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
  python3 bench/wrk.py "$work/wrk.txt"
}

# Quiet servers: no per-request log line on either side.
spore=$(measure "$SPORE" serve --quiet --addr "127.0.0.1:$port" --concurrency 256 "$app")
wasmtime=$(measure "$WASMTIME" serve -Scli --addr "127.0.0.1:$port" "$app")
spore3=$(measure "$SPORE" serve --quiet --addr "127.0.0.1:$port" --concurrency 256 "$app3")
p3=(-Scli -Wcomponent-model-async -Sp3)
wasmtime3=$(measure "$WASMTIME" serve "${p3[@]}" --addr "127.0.0.1:$port" "$app3")
fresh=(--max-instance-reuse-count 1 --max-instance-concurrent-reuse-count 1)
wasmtime3f=$(measure "$WASMTIME" serve "${p3[@]}" "${fresh[@]}" --addr "127.0.0.1:$port" "$app3")

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -sr)"
echo "peers: $("$WASMTIME" --version), $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2); wrk -t$THREADS -c$CONNS -d$DURATION on the same box"
echo
echo "| server | app | req/s | p50 | p99 | non-2xx | req/s vs wasmtime |"
echo "|---|---|---|---|---|---|---|"
row() { # label app spore-result wasmtime-result
  read -r s_rps s_50 s_99 s_err <<<"$3"
  read -r w_rps w_50 w_99 w_err <<<"$4"
  ratio=$(python3 -c "print(f'{$s_rps/$w_rps:.2f}')")
  echo "| \`spore serve\` | $2 | $s_rps | ${s_50} ms | ${s_99} ms | $s_err | ${ratio}× |"
  echo "| \`wasmtime serve $1\` | $2 | $w_rps | ${w_50} ms | ${w_99} ms | $w_err | 1.00× |"
}
row "-Scli" "WASI 0.2" "$spore" "$wasmtime"
row "${p3[*]} ${fresh[*]}" "WASI 0.3, fresh instances" "$spore3" "$wasmtime3f"
row "${p3[*]}" "WASI 0.3, wasmtime reusing instances" "$spore3" "$wasmtime3"
