#!/usr/bin/env bash
# The bare-metal runner's figures (issue 15's table), on QEMU's boards, in one run:
#   - the firmware's size per board (text = code and read-only data, data, bss) and the RAM it
#     offers apps;
#   - deploy time of hello and n-body over the UART: as fast as QEMU carries it, and through a
#     line paced at 115200 baud (bench/pace.py);
#   - n-body on wasmi on the board against wasmi in the Linux runner on this machine;
#   - kill of a spinning app (`spore stop`, a whole command with its HELLO), p50/p99;
#   - the timing jitter of a 1 kHz periodic app (guests/periodic).
# QEMU emulates the boards (TCG): their speed is this machine's emulation of them, not silicon's.
# Knobs: BOARD_NBODY_STEPS (default 100000), KILLS (default 10).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
guests/build.sh >/dev/null
for t in riscv64gc-unknown-none-elf thumbv7em-none-eabihf; do
  cargo build --quiet --release --locked --target "$t" -p spore-runner-bare
done
cargo build --quiet --release --locked -p spore-cli
(cd runner && cargo build --quiet --release --locked --target-dir "$CARGO_TARGET_DIR/runner")
spore="$CARGO_TARGET_DIR/release/spore"
steps="${BOARD_NBODY_STEPS:-100000}"
kills="${KILLS:-10}"
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

# Sections of an ELF, summed: text (code, read-only data, vector table), data, bss.
sizes() {
  readelf -SW "$1" | python3 -c '
import re, sys
t = {"text": 0, "data": 0, "bss": 0}
for line in sys.stdin:
    m = re.match(r"\s*\[\s*\d+\]\s+(\S+)\s+\S+\s+[0-9a-f]+\s+[0-9a-f]+\s+([0-9a-f]+)", line)
    if not m:
        continue
    name, size = m.group(1), int(m.group(2), 16)
    for kind, names in (("text", (".text", ".rodata", ".vector_table", ".srodata")), ("data", (".data", ".sdata")), ("bss", (".bss", ".sbss"))):
        if name.startswith(names):
            t[kind] += size
print("%d | %d | %d" % (t["text"], t["data"], t["bss"]))'
}

# Boots a board; sets $pty and records QEMU's PID.
boot() { # $1 = riscv64 | arm
  local log="$work/qemu-$RANDOM.log"
  if [ "$1" = riscv64 ]; then
    qemu-system-riscv64 -machine virt -m 128M -bios none -display none -monitor none -serial pty \
      -kernel "$CARGO_TARGET_DIR/riscv64gc-unknown-none-elf/release/spore-runner-bare" >"$log" 2>&1 &
  else
    qemu-system-arm -machine mps2-an386 -display none -monitor none -serial pty \
      -kernel "$CARGO_TARGET_DIR/thumbv7em-none-eabihf/release/spore-runner-bare" >"$log" 2>&1 &
  fi
  pids+=($!)
  qemu=$!
  for _ in $(seq 100); do grep -q /dev/pts "$log" && break; sleep 0.05; done
  pty="$(grep -o '/dev/pts/[0-9]*' "$log" | head -1)"
  # Held open for the board's life: QEMU looks for a reconnected pty only once a second.
  exec 9<>"$pty"
}
# The CPU time `spore ps -a` shows for an app once it has exited, in seconds.
cpu_of() { # $1 = host, $2 = name
  for _ in $(seq 600); do
    line="$("$spore" --host "$1" ps -a | awk -v n="$2" '$2 == n')"
    case "$line" in *exited*) echo "$line" | awk '{for (i = 1; i <= NF; i++) if ($i ~ /^[0-9.]+s$/) {sub(/s$/, "", $i); print $i}}'; return;; esac
    sleep 0.5
  done
  echo "?"
}
seconds() { # runs "$@", prints its wall time in seconds
  local t0 t1; t0=$(date +%s.%N); "$@" >/dev/null 2>&1; t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc -l | xargs printf "%.2f"
}
percentiles() { sort -n | awk '{a[NR]=$1} END {printf "%.1f ms / %.1f ms", a[int((NR+1)/2)]*1000, a[int(NR*0.99+0.999)]*1000}'; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -sr); $(qemu-system-riscv64 --version | head -1)"
echo
echo "| board | firmware text | data | bss (bytes) | RAM for apps |"
echo "|---|---|---|---|---|"
virt="$CARGO_TARGET_DIR/riscv64gc-unknown-none-elf/release/spore-runner-bare"
mps2="$CARGO_TARGET_DIR/thumbv7em-none-eabihf/release/spore-runner-bare"
# virt: half of the heap between the image's end (__sheap) and 1 MiB of stack below 126 MiB.
sheap=$((0x$(readelf -sW "$virt" | awk '$8 == "__sheap" {print $2}')))
virt_apps=$(( (0x80000000 + (126 << 20) - (1 << 20) - sheap) / 2 ))
echo "| riscv64 virt | $(sizes "$virt") | $virt_apps |"
echo "| mps2-an386 (Cortex-M4F) | $(sizes "$mps2") | $(( (16 << 20) / 2 )) |"
echo

echo "| what | riscv64 virt | mps2-an386 |"
echo "|---|---|---|"
declare -A row
for board in riscv64 arm; do
  boot "$board"
  host="serial://$pty?baud=115200"
  row[hello_fast_$board]=$(seconds "$spore" --host "$host" deploy --name h guests/out/hello.wasm)
  row[nbody_fast_$board]=$(seconds "$spore" --host "$host" deploy --name n guests/out/nbody.wasm 1)
  "$spore" --host "$host" rm h n >/dev/null
  # n-body's own CPU time on the board (the module is there already).
  "$spore" --host "$host" deploy --name nb guests/out/nbody.wasm "$steps" >/dev/null
  row[nbody_run_$board]=$(cpu_of "$host" nb)
  row[jitter_$board]=$("$spore" --host "$host" run guests/out/periodic.wasm 1000 1000 | sed 's/.*wakes: late //')
  for _ in $(seq "$kills"); do
    "$spore" --host "$host" deploy --name s guests/out/spin.wasm >/dev/null
    sleep 0.2
    seconds "$spore" --host "$host" stop s
    echo
    "$spore" --host "$host" rm s >/dev/null
  done >"$work/kills"
  row[kill_$board]=$(percentiles <"$work/kills")
  kill "$qemu"
  # A fresh board behind a line paced at 115200 baud.
  boot "$board"
  python3 bench/pace.py "$pty" 115200 >"$work/paced" &
  pids+=($!)
  pacer=$!
  for _ in $(seq 100); do [ -s "$work/paced" ] && break; sleep 0.05; done
  paced="serial://$(head -1 "$work/paced")?baud=115200"
  row[hello_paced_$board]=$(seconds "$spore" --host "$paced" deploy --name h guests/out/hello.wasm)
  row[nbody_paced_$board]=$(seconds "$spore" --host "$paced" deploy --name n guests/out/nbody.wasm 1)
  kill "$pacer" "$qemu"
done
echo "| deploy hello ($(stat -c %s guests/out/hello.wasm) B), as fast as QEMU carries it | ${row[hello_fast_riscv64]} s | ${row[hello_fast_arm]} s |"
echo "| deploy n-body ($(stat -c %s guests/out/nbody.wasm) B), as fast as QEMU carries it | ${row[nbody_fast_riscv64]} s | ${row[nbody_fast_arm]} s |"
echo "| deploy hello at 115200 baud | ${row[hello_paced_riscv64]} s | ${row[hello_paced_arm]} s |"
echo "| deploy n-body at 115200 baud | ${row[nbody_paced_riscv64]} s | ${row[nbody_paced_arm]} s |"

# The same n-body on wasmi in the Linux runner, here.
dir="$work/linux"; mkdir -p "$dir"
"$CARGO_TARGET_DIR/runner/release/spore-runner" --socket "$dir/r.sock" --data-dir "$dir/data" --backend wasmi >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -S "$dir/r.sock" ] && break; sleep 0.05; done
linux="runner+unix://$dir/r.sock"
"$spore" --host "$linux" deploy --name nb guests/out/nbody.wasm "$steps" >/dev/null
linux_nbody=$(cpu_of "$linux" nb)
ratio() { echo "$1 / $linux_nbody" | bc -l | xargs printf "%.0f"; }
echo "| n-body $steps steps on wasmi, the app's CPU time (Linux runner here: $linux_nbody s) | ${row[nbody_run_riscv64]} s ($(ratio "${row[nbody_run_riscv64]}")×) | ${row[nbody_run_arm]} s ($(ratio "${row[nbody_run_arm]}")×) |"
echo "| \`spore stop\` of a spinning app, p50 / p99 ($kills) | ${row[kill_riscv64]} | ${row[kill_arm]} |"
echo "| 1 kHz periodic app (1000 wakes): lateness | ${row[jitter_riscv64]} | ${row[jitter_arm]} |"
