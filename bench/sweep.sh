#!/usr/bin/env bash
# The differential sweep's soak: N seeded configurations (default 1,000), each in a fresh
# network namespace, limits --json against what probe holds. Prints every disagreement
# with the configuration that reproduces it (seed and settings), then a summary line.
# Usage: bench/sweep.sh [N=1000] [JOBS=2]   (builds first; as root)
set -euo pipefail
cd "$(dirname "$0")/.."
npm run build > /dev/null
exec node dist-test/support/sweep.js --soak "${1:-1000}" --jobs "${2:-2}"
