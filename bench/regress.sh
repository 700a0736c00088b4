#!/usr/bin/env bash
# The hot paths of this tree side by side with an earlier commit's, on this machine, in one run:
# what a change costs. Both are release builds of the same workspace (the earlier one from a
# git worktree sharing the target dir, its binaries copied aside).
#   1. `spore run hello.wasm` start-up (warm compile cache), whole process, hyperfine;
#   2. `spore serve` req/s on the hello component (wrk, as bench/serve.sh), each twice, alternating;
#   3. the daemon: RSS per idle sandbox and creates/s at DENSITY sandboxes (refdaemon-lean), and
#      create->running latency p50/p99 for STARTS one-by-one creates (bench/loadgen, as
#      bench/daemon.sh).
# Knobs: BASE (commit, default the parent of the first commit of this issue's work), RUNS (300),
#        DURATION (10s), DENSITY (10000), STARTS (5000).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
command -v hyperfine >/dev/null || apt-get install -y -qq hyperfine >/dev/null
command -v wrk >/dev/null || apt-get install -y -qq wrk >/dev/null
BASE="${BASE:-304a9a2}"
base_sha=$(git rev-parse --short "$BASE")
head_sha=$(git rev-parse --short HEAD)
bins="$HOME/.cache/spore/regress"
guests/build.sh >/dev/null

build() { # $1 = source dir, $2 = out dir
  # The target dir is shared with the other tree's build, and cargo's freshness is by mtime
  # of paths relative to the workspace: this tree's older files would pass as built when the
  # other tree was built last, and its binaries be copied as this one's. Touched, the
  # workspace's own crates are built again from this tree (dependencies stay shared).
  find "$1/crates" "$1/bench/loadgen" -name '*.rs' -exec touch {} +
  (cd "$1" && cargo build --quiet --release --locked -p spore-cli -p spore-loadgen)
  mkdir -p "$2"
  cp "$CARGO_TARGET_DIR/release/spore" "$CARGO_TARGET_DIR/release/spore-loadgen" "$2/"
}
build . "$bins/head"
if [ ! -x "$bins/$base_sha/spore" ]; then
  tree="$(mktemp -d)/base"
  git worktree add --quiet --detach "$tree" "$BASE"
  build "$tree" "$bins/$base_sha"
  git worktree remove --force "$tree"
fi
cmp -s "$bins/head/spore" "$bins/$base_sha/spore" && { echo "the two builds are the same binary" >&2; exit 1; }
OLD="$bins/$base_sha/spore" NEW="$bins/head/spore" LOADGEN="$bins/head/spore-loadgen"

work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
hello=guests/out/hello.wasm

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -sr)"
echo "base: $base_sha ($(git log -1 --format=%s "$BASE" | cut -c1-60)…), head: $head_sha"
echo

# 1. start-up
SPORE_CACHE_DIR="$work/c-old" "$OLD" compile "$hello" >/dev/null
SPORE_CACHE_DIR="$work/c-new" "$NEW" compile "$hello" >/dev/null
hyperfine --style none -N --warmup 20 --runs "${RUNS:-300}" --export-json "$work/start.json" \
  -n "spore run hello.wasm @ $base_sha" "env SPORE_CACHE_DIR=$work/c-old $OLD run $hello" \
  -n "spore run hello.wasm @ $head_sha" "env SPORE_CACHE_DIR=$work/c-new $NEW run $hello" >/dev/null
python3 - "$work/start.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
print("| command | mean ± σ | min | runs | vs base |")
print("|---|---|---|---|---|")
for x in r:
    print(f"| `{x['command']}` | {x['mean']*1e3:.2f} ms ± {x['stddev']*1e3:.2f} ms | {x['min']*1e3:.2f} ms | {len(x['times'])} | {x['mean']/r[0]['mean']:.3f}× |")
PY
echo

# 2. serve
port=48331
serve_rps() { # $1 = binary
  SPORE_CACHE_DIR="$work/c-serve" SPORE_DATA_DIR="$work/d-serve" \
    "$1" serve --quiet --addr "127.0.0.1:$port" --concurrency 256 guests/out/http-hello.wasm >"$work/serve.log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 200); do curl -sf "http://127.0.0.1:$port/" >/dev/null 2>&1 && break; sleep 0.05; done
  wrk -t2 -c64 -d2s "http://127.0.0.1:$port/" >/dev/null
  wrk -t2 -c64 -d"${DURATION:-10s}" --latency "http://127.0.0.1:$port/" >"$work/wrk.txt"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  python3 bench/wrk.py "$work/wrk.txt"
}
echo "| \`spore serve\` (wrk -t2 -c64 -d${DURATION:-10s}, http-hello) | req/s | p50 | p99 | non-2xx |"
echo "|---|---|---|---|---|"
for round in 1 2; do
  for which in old new; do
    bin=$OLD; sha=$base_sha
    [ "$which" = new ] && bin=$NEW && sha=$head_sha
    read -r rps p50 p99 errors <<<"$(serve_rps "$bin")"
    echo "| @ $sha (round $round) | $rps | $p50 ms | $p99 ms | $errors |"
  done
done
echo

# 3. daemon
ulimit -n "$(ulimit -Hn)"
daemon() { # $1 = binary, $2 = capacity
  rm -rf "$work/data" "$work/s.sock"
  printf '[pool]\nsandboxes = %s\nmax_memory = "2M"\nstack = "128K"\n' "$2" >"$work/daemon.toml"
  "$1" daemon --socket "$work/s.sock" --data-dir "$work/data" --config "$work/daemon.toml" >"$work/daemon.log" 2>&1 &
  DAEMON=$!
  pids+=("$DAEMON")
  for _ in $(seq 500); do [ -S "$work/s.sock" ] && return; sleep 0.02; done
  cat "$work/daemon.log" >&2; exit 1
}
D="${DENSITY:-10000}" S="${STARTS:-5000}"
for which in old new; do
  bin=$OLD; sha=$base_sha
  [ "$which" = new ] && bin=$NEW && sha=$head_sha
  echo "daemon @ $sha — density (refdaemon-lean):"
  echo
  echo "| live sandboxes | daemon RSS | daemon PSS | RSS / sandbox | PSS / sandbox | maps | creates |"
  echo "|---|---|---|---|---|---|---|"
  daemon "$bin" "$D"
  "$LOADGEN" density "$work/s.sock" "$DAEMON" guests/out/refdaemon-lean.wasm 10 "1000,$D" || true
  kill -9 "$DAEMON"; wait "$DAEMON" 2>/dev/null || true
  echo
  echo "daemon @ $sha — starts:"
  echo
  echo "| how | sandboxes | until all running | creates acknowledged | running | latency p50 | latency p99 |"
  echo "|---|---|---|---|---|---|---|"
  daemon "$bin" $((2 * S))
  "$LOADGEN" starts "$work/s.sock" guests/out/refdaemon-lean.wasm 10 "$S" 4
  kill -9 "$DAEMON"; wait "$DAEMON" 2>/dev/null || true
  echo
done
