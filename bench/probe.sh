#!/usr/bin/env bash
# Benchmarks of `fourtuple probe` on this host (both ends here, loopback).
# Usage: bench/probe.sh [million|rate|all]   (build first: npm run build)
# Prints one line of figures per run; the results go in bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
CLI="node dist/cli/main.js"

run() {
  local name=$1; shift
  $CLI probe --json "$@" | node bench/figures.mjs "$name"
}

case "${1:-all}" in
  million) run "1,000,000 (79 ports)" --connections 1000000 ;;
  rate)
    run "one destination, 20,000" --to 127.0.0.1:7000 --connections 20000
    run "one destination, 28,000 (99% full)" --to 127.0.0.1:7000 --connections 28000
    run "8 ports, 100,000 (default)" --connections 100000
    run "23 ports, 300,000" --connections 300000
    ;;
  all) "$0" rate; "$0" million ;;
esac
