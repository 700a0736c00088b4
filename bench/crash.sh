#!/usr/bin/env bash
# The crash campaign (tests/e2e/crash.rs) at full length: clients create, start, stop and remove
# sandboxes through the API while the daemon is SIGKILLed at random instants, KILLS times
# (default 1000), restarting it each time; after every restart the daemon must hold exactly
# what it acknowledged. Prints the table (kills, operations acknowledged, lost, duplicated,
# resurrected, wrong desired state, desired running but not running, corrupt).
#   KILLS=1000 SEED=123 bench/crash.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
guests/build.sh >/dev/null
SPORE_CRASH_KILLS="${KILLS:-1000}" ${SEED:+SPORE_CRASH_SEED="$SEED"} \
  cargo test --quiet --locked -p spore-cli --test e2e crash:: -- --nocapture 2>&1 \
  | grep -E '^\||^crash campaign|^after|lost|duplicated|resurrected|desired|panicked|test result'
echo "machine: $(nproc) cores, $(uname -sr)"
