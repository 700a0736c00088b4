#!/usr/bin/env bash
# Pre-initialisation and bundles (issue 17), on this machine, in one run, whole processes
# (hyperfine), warm compile caches:
#  1. guests/preinit (a sieve of 5 000 000 and an image file read at init): `spore run` of its
#     image built plainly vs with `INIT`; the build time `INIT` adds; the entrypoint's size.
#  2. guests/jsinit (boa, a JavaScript engine from crates.io, running the image's /app.js at
#     init): the same, and the goal of >= 10x faster pre-initialised.
#  3. bundles (`spore bundle`, release runner): `./hello` vs `spore run hello.wasm` vs
#     `wasmtime run hello.wasm` (goal: bundle <= 0.33x wasmtime); the JS bundle's start; sizes.
# Prints markdown tables. Knobs: RUNS (default 100), BUILDS (build-time runs, default 5).
# Peer: wasmtime-cli from bench/peers.sh (built once per machine, 30-70 min cold).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
bench/peers.sh >/dev/null
WASMTIME="${SPORE_PEERS_DIR:-$HOME/.cache/spore/peers}/bin/wasmtime"
guests/build.sh >/dev/null
cargo build --quiet --release --locked --bin spore
SPORE="$CARGO_TARGET_DIR/release/spore"
# The shipping runner (runner/: runtime only, size-optimised), as release builds put beside spore.
(cd runner && cargo build --quiet --release --locked --target-dir "$CARGO_TARGET_DIR/runner")
RUNTIME="$CARGO_TARGET_DIR/runner/release/spore-runner"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export SPORE_DATA_DIR="$work/data" SPORE_CACHE_DIR="$work/cache" SPORE_STORE="$work/store"
RUNS="${RUNS:-100}"
BUILDS="${BUILDS:-5}"

# An image context in $work/NAME: FILE.wasm as /app.wasm plus EXTRA files; Sporefile.plain
# and Sporefile (the same with INIT).
context() {
  local name="$1" wasm="$2"
  shift 2
  mkdir -p "$work/$name"
  cp "$wasm" "$work/$name/app.wasm"
  local copies=""
  for extra in "$@"; do
    cp "$extra" "$work/$name/"
    copies+="COPY $(basename "$extra") /$(basename "$extra")\n"
  done
  printf "FROM scratch\nCOPY app.wasm /app.wasm\n${copies}ENTRYPOINT [\"/app.wasm\"]\n" >"$work/$name/Sporefile.plain"
  sed 's/^ENTRYPOINT/INIT\nENTRYPOINT/' "$work/$name/Sporefile.plain" >"$work/$name/Sporefile"
}

echo "Hello from the image" >"$work/greeting.txt"
context preinit guests/out/preinit.wasm "$work/greeting.txt"
context js guests/out/jsinit.wasm guests/jsinit/app.js
context hello guests/out/hello.wasm

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -sr)"
echo "peer: $("$WASMTIME" --version)"
echo

for g in preinit js; do
  hyperfine --style none -N --warmup 1 --runs "$BUILDS" --export-json "$work/build-$g.json" \
    -n "spore build $g (plain)" "$SPORE build -f $work/$g/Sporefile.plain -t $g-plain $work/$g" \
    -n "spore build $g (INIT)" "$SPORE build -t $g-pre $work/$g" >/dev/null 2>&1
  "$SPORE" run "$g-plain" >/dev/null
  "$SPORE" run "$g-pre" >/dev/null
  hyperfine --style none -N --warmup 10 --runs "$RUNS" --export-json "$work/start-$g.json" \
    -n "spore run $g (plain image)" "$SPORE run $g-plain" \
    -n "spore run $g (pre-initialised image)" "$SPORE run $g-pre" >/dev/null
done

"$SPORE" build -f "$work/hello/Sporefile.plain" -t hello "$work/hello" >/dev/null
bundle_time() { /usr/bin/time -f %e "$SPORE" bundle --runtime "$RUNTIME" "$@" 2>&1 >/dev/null | tail -1; }
hello_secs=$(bundle_time hello -o "$work/hello.bundle")
js_secs=$(bundle_time js-pre -o "$work/js.bundle")
"$SPORE" run "$work/hello/app.wasm" >/dev/null
"$WASMTIME" run "$work/hello/app.wasm" >/dev/null
hyperfine --style none -N --warmup 20 --runs "$((RUNS * 3))" --export-json "$work/hello.json" \
  -n "wasmtime run hello.wasm" "$WASMTIME run $work/hello/app.wasm" \
  -n "spore run hello.wasm" "$SPORE run $work/hello/app.wasm" \
  -n "./hello (bundle)" "$work/hello.bundle" >/dev/null
hyperfine --style none -N --warmup 10 --runs "$RUNS" --export-json "$work/js-bundle.json" \
  -n "spore run js (pre-initialised image)" "$SPORE run js-pre" \
  -n "./js (bundle of the pre-initialised image)" "$work/js.bundle" >/dev/null

python3 - "$work" "$RUNTIME" "$hello_secs" "$js_secs" <<'PY'
import json, sys, os
work, runtime, hello_secs, js_secs = sys.argv[1:]
def table(path, ref_name, label):
    r = json.load(open(os.path.join(work, path)))["results"]
    ref = next(x for x in r if x["command"] == ref_name)
    print(f"| what | mean ± σ | min | runs | {label} |")
    print("|---|---|---|---|---|")
    for x in r:
        print(f"| {x['command']} | {x['mean']*1e3:.2f} ms ± {x['stddev']*1e3:.2f} | {x['min']*1e3:.2f} ms | {len(x['times'])} | {x['mean']/ref['mean']:.3f}× |")
    print()
for g in ("preinit", "js"):
    table(f"build-{g}.json", f"spore build {g} (plain)", "vs plain")
    table(f"start-{g}.json", f"spore run {g} (plain image)", "vs plain")
    ref = json.load(open(os.path.join(work, f"start-{g}.json")))["results"]
    print(f"{g}: pre-initialised start is {ref[0]['mean']/ref[1]['mean']:.2f}x faster\n")
table("hello.json", "wasmtime run hello.wasm", "vs wasmtime")
table("js-bundle.json", "spore run js (pre-initialised image)", "vs spore run")
size = lambda p: os.path.getsize(p)
print("| file | bytes |")
print("|---|---|")
print(f"| runtime (runner/ release build, no compiler) | {size(runtime)} |")
for g, name in (("preinit", "preinit"), ("js", "jsinit")):
    print(f"| {name}.wasm as built by cargo | {size(os.path.join(work, g, 'app.wasm'))} |")
print(f"| hello bundle (built in {hello_secs} s) | {size(os.path.join(work, 'hello.bundle'))} |")
print(f"| JS bundle, pre-initialised (built in {js_secs} s) | {size(os.path.join(work, 'js.bundle'))} |")
PY
echo
echo "pre-initialised entrypoints in the store (bytes):"
for f in "$work"/store/rootfs/*/app.wasm; do stat -c %s "$f"; done | sort -n | uniq | tr '\n' ' '
echo
