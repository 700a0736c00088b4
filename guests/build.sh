#!/usr/bin/env bash
# Builds every test guest from source into guests/out/ (idempotent; cargo caches the work).
# Needs only rustup: the wasm targets are added here if missing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
target="${SPORE_GUESTS_TARGET:-${HOME}/.cache/spore/guests-target}"
out="$here/out"

installed="$(rustup target list --installed)"
for t in wasm32-wasip1 wasm32-wasip2; do
  grep -qx "$t" <<<"$installed" || rustup target add "$t"
done

# Guests are built with their own flags, never the host workspace's.
unset RUSTFLAGS CARGO_ENCODED_RUSTFLAGS CARGO_BUILD_TARGET
cd "$here"
p1=(hello args-env fs exit-code trap spin membomb refdaemon nbody reactor flood hostile periodic gpio uart preinit jsinit)
cargo build --quiet --release --locked --target wasm32-wasip1 --target-dir "$target" $(printf -- '-p %s ' "${p1[@]}")
p2=(hello-p2 hello-p3 http-hello-p3 http-hostile-p3 spin7 spin5 netprobe http-hello http-kv http-config http-fetch http-hostile)
cargo build --quiet --release --locked --target wasm32-wasip2 --target-dir "$target" $(printf -- '-p %s ' "${p2[@]}")

mkdir -p "$out"
for g in "${p1[@]}"; do
  name="${g//-/_}"
  cp -f "$target/wasm32-wasip1/release/$name.wasm" "$out/$g.wasm" 2>/dev/null \
    || cp -f "$target/wasm32-wasip1/release/$g.wasm" "$out/$g.wasm"
done
for g in "${p2[@]}"; do
  name="${g//-/_}"
  cp -f "$target/wasm32-wasip2/release/$name.wasm" "$out/$g.wasm" 2>/dev/null \
    || cp -f "$target/wasm32-wasip2/release/$g.wasm" "$out/$g.wasm"
done
# The hostile guest as a component too: its file calls take WASI p2's path through the host.
cargo build --quiet --release --locked --target wasm32-wasip2 --target-dir "$target" -p hostile
cp -f "$target/wasm32-wasip2/release/hostile.wasm" "$out/hostile-p2.wasm"
# Hand-written text-format guests, assembled by a host tool of this workspace.
cargo build --quiet --release --locked --target-dir "$target" -p wat2wasm
for w in wat/*.wat; do
  "$target/release/wat2wasm" "$w" "$out/$(basename "${w%.wat}").wasm"
done
echo "guests: $(ls "$out" | wc -l) built in $out"
