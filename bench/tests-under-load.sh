#!/usr/bin/env bash
# The integration tests N times in a row under load: two test processes at
# once (each with 2 test threads), N/2 rounds each. Prints one line per run
# and exits non-zero if any run failed. Usage: bench/tests-under-load.sh [N=20]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
bin=$(cargo test --test it --no-run 2>&1 | sed -n 's/.*Executable .*(\(.*\))$/\1/p' | tail -1)
[ -x "$bin" ] || { echo "cannot find the integration-test binary" >&2; exit 1; }
logs=$(mktemp -d)
lane() {
  for i in $(seq 1 $((runs / 2))); do
    if "$bin" --test-threads 2 >"$logs/$1-$i.log" 2>&1; then echo "$1/$i ok"; else echo "$1/$i FAILED (log: $logs/$1-$i.log)"; fi
  done
}
lane a >"$logs/a.sum" & lane b >"$logs/b.sum" & wait
cat "$logs/a.sum" "$logs/b.sum"
! grep -q FAILED "$logs/a.sum" "$logs/b.sum"
