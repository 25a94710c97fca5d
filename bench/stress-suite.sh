#!/usr/bin/env bash
# The test suite beside two CPU-burning processes, as on a busy CI machine: it must pass every run.
# Usage: bench/stress-suite.sh [RUNS=3]   (builds first; prints one line per run)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
npm run build > /dev/null
burners=()
cleanup() { for p in "${burners[@]}"; do kill "$p" 2> /dev/null || true; done; }
trap cleanup EXIT
for _ in 1 2; do
  sh -c 'while :; do :; done' &
  burners+=($!)
done
passed=0
for i in $(seq "$runs"); do
  start=$(date +%s)
  if node --test --test-concurrency=1 dist-test/ > "/tmp/ft-stress-$i.log" 2>&1; then r=pass; passed=$((passed + 1)); else r=FAIL; fi
  summary=$(grep -E '^# (pass|fail)' "/tmp/ft-stress-$i.log" | tr '\n' ' ')
  echo "run $i: $r in $(( $(date +%s) - start )) s: $summary$(grep -E '^not ok' "/tmp/ft-stress-$i.log" | head -5 | tr '\n' ';')"
done
echo "$passed of $runs runs passed beside 2 busy processes (logs: /tmp/ft-stress-*.log)"
[ "$passed" -eq "$runs" ]
