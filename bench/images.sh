#!/usr/bin/env bash
# Images side by side with skopeo, against one real registry (Debian's docker-registry,
# distribution 2.8) on 127.0.0.1, in one run:
#   1. what a hello app's image weighs (compat and artifact formats);
#   2. push to an empty registry, and push again (every blob already there): `spore push` vs
#      `skopeo copy oci:LAYOUT docker://…` of the very same image;
#   3. pull into an empty store: `spore pull` vs `skopeo copy docker://… oci:DIR`.
# Whole processes, via hyperfine. Prints markdown tables for bench/RESULTS.md.
# Knobs: RUNS (default 50).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
scripts/setup
guests/build.sh >/dev/null
cargo build --quiet --release --locked --bin spore
SPORE="$CARGO_TARGET_DIR/release/spore"
RUNS="${RUNS:-50}"

work="$(mktemp -d)"
reg_pid=""
cleanup() { [[ -n "$reg_pid" ]] && kill "$reg_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
addr="127.0.0.1:$port"
cat >"$work/registry.yml" <<EOF
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: $addr
  secret: spore-bench
EOF
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
reg_pid=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done

export SPORE_STORE="$work/store" SPORE_CACHE_DIR="$work/cache" SPORE_AUTH_FILE="$work/auth.json"
mkdir -p "$work/ctx"
cp guests/out/hello.wasm "$work/ctx/"
printf 'FROM scratch\nCOPY hello.wasm /hello.wasm\nENTRYPOINT ["/hello.wasm"]\n' >"$work/ctx/Sporefile"
image="$addr/bench/hello:v1"
"$SPORE" build -t "$image" "$work/ctx" >/dev/null
"$SPORE" build --format artifact -t "$addr/bench/hello:artifact" "$work/ctx" >/dev/null
"$SPORE" save "$image" -o "$work/layout" >/dev/null

size_of() { "$SPORE" inspect --type image "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Size"])'; }
wasm_size=$(stat -c %s guests/out/hello.wasm)
compat_size=$(size_of "$image")
artifact_size=$(size_of "$addr/bench/hello:artifact")

empty_registry="rm -rf $work/registry"
hyperfine --style none -N --warmup 3 --runs "$RUNS" --export-json "$work/push.json" \
  --prepare "$empty_registry" \
  -n "spore push (empty registry)" "$SPORE push $image" \
  -n "skopeo copy oci: → docker:// (empty registry)" \
  "skopeo copy -q --dest-tls-verify=false oci:$work/layout docker://$image" >/dev/null
"$SPORE" push "$image" >/dev/null 2>&1
hyperfine --style none -N --warmup 3 --runs "$RUNS" --export-json "$work/repush.json" \
  -n "spore push (blobs already there)" "$SPORE push $image" \
  -n "skopeo copy oci: → docker:// (blobs already there)" \
  "skopeo copy -q --dest-tls-verify=false oci:$work/layout docker://$image" >/dev/null
hyperfine --style none -N --warmup 3 --runs "$RUNS" --export-json "$work/pull.json" \
  --prepare "rm -rf $work/pulled $work/oci-pulled" \
  -n "spore pull (empty store)" "env SPORE_STORE=$work/pulled $SPORE pull $image" \
  -n "skopeo copy docker:// → oci: (empty dir)" \
  "skopeo copy -q --src-tls-verify=false docker://$image oci:$work/oci-pulled:v1" >/dev/null

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -sr)"
echo "peers: $(skopeo --version), $(docker-registry --version | cut -d' ' -f2-), $(hyperfine --version)"
echo
echo "| hello app | bytes |"
echo "|---|---|"
echo "| hello.wasm (Rust, wasm32-wasip1, release) | $wasm_size |"
echo "| compat image (manifest + config + tar.gz layer) | $compat_size |"
echo "| CNCF artifact image (manifest + config + wasm layer) | $artifact_size |"
echo
python3 bench/table.py "$work/push.json" "skopeo copy oci: → docker:// (empty registry)" \
  "$work/repush.json" "skopeo copy oci: → docker:// (blobs already there)" \
  "$work/pull.json" "skopeo copy docker:// → oci: (empty dir)"
