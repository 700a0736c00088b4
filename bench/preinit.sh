#!/usr/bin/env bash
# Pre-initialisation (issue 17), on this machine, in one run: start of an image whose
# entrypoint was pre-initialised at build time (`INIT`) vs the same image built plainly, whole
# `spore run` processes with warm compile caches (hyperfine); the build time `INIT` adds; and
# the entrypoint's size before and after. Guest: guests/preinit (a sieve of 5 000 000 and an
# image file read at init). Prints markdown tables.
# Knobs: RUNS (default 100), BUILDS (build-time runs, default 5).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
command -v hyperfine >/dev/null || apt-get install -y -qq hyperfine >/dev/null
guests/build.sh >/dev/null
cargo build --quiet --release --locked --bin spore
SPORE="$CARGO_TARGET_DIR/release/spore"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export SPORE_DATA_DIR="$work/data" SPORE_CACHE_DIR="$work/cache"
ctx="$work/ctx"
mkdir -p "$ctx"
cp guests/out/preinit.wasm "$ctx/app.wasm"
echo "Hello from the image" >"$ctx/greeting.txt"
printf 'FROM scratch\nCOPY app.wasm /app.wasm\nCOPY greeting.txt /greeting.txt\nENTRYPOINT ["/app.wasm"]\n' >"$ctx/Sporefile.plain"
sed 's/^ENTRYPOINT/INIT\nENTRYPOINT/' "$ctx/Sporefile.plain" >"$ctx/Sporefile"

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -sr)"
echo

hyperfine --style none -N --warmup 1 --runs "${BUILDS:-5}" --export-json "$work/build.json" \
  -n "spore build (plain)" "$SPORE build -f $ctx/Sporefile.plain -t plain $ctx" \
  -n "spore build (INIT)" "$SPORE build -t pre $ctx" >/dev/null 2>&1
"$SPORE" run plain >/dev/null
"$SPORE" run pre >/dev/null
hyperfine --style none -N --warmup 10 --runs "${RUNS:-100}" --export-json "$work/start.json" \
  -n "spore run (plain image)" "$SPORE run plain" \
  -n "spore run (pre-initialised image)" "$SPORE run pre" >/dev/null

python3 - "$work" <<'PY'
import json, sys, os, glob
work = sys.argv[1]
def table(path, ref_name):
    r = json.load(open(os.path.join(work, path)))["results"]
    ref = next(x for x in r if x["command"] == ref_name)
    print("| what | mean ± σ | min | runs | vs plain |")
    print("|---|---|---|---|---|")
    for x in r:
        print(f"| {x['command']} | {x['mean']*1e3:.1f} ms ± {x['stddev']*1e3:.1f} | {x['min']*1e3:.1f} ms | {len(x['times'])} | {x['mean']/ref['mean']:.3f}× |")
    print()
table("build.json", "spore build (plain)")
table("start.json", "spore run (plain image)")
before = os.path.getsize(os.path.join(work, "ctx/app.wasm"))
after = max(os.path.getsize(p) for p in glob.glob(os.path.join(work, "data/store/rootfs/*/app.wasm")))
print("| entrypoint | bytes |")
print("|---|---|")
print(f"| as built by cargo | {before} |")
print(f"| pre-initialised (its memory written out as data) | {after} |")
PY
