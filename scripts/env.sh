# Shared by the scripts: one target dir outside the clone, so every checkout (and CI, which
# runs in a fresh clone) reuses the same compiled wasmtime.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/spore/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# Cross-built edge runners link with Debian's cross toolchain (scripts/setup installs it).
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER="${CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER:-aarch64-linux-gnu-gcc}"
export CARGO_TARGET_RISCV64GC_UNKNOWN_LINUX_GNU_LINKER="${CARGO_TARGET_RISCV64GC_UNKNOWN_LINUX_GNU_LINKER:-riscv64-linux-gnu-gcc}"
