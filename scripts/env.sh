# Shared by the scripts: one target dir outside the clone, so every checkout (and CI, which
# runs in a fresh clone) reuses the same compiled wasmtime.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/spore/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
