#!/usr/bin/env bash
# How long `fourtuple probe` takes to leave nothing behind after SIGINT, at N
# connections held (both ends on this host, so 2N sockets).
# Usage: bench/sigint.sh N [N ...]   (build first: npm run build)
# For each N: holds N (--hold 120, so the signal comes during the hold),
# waits until the kernel counts 2N TCP sockets in use and 3 s more, sends
# SIGINT, then prints the seconds until the probe has exited (every worker
# reaped) and the kernel's count of TCP sockets in use is back where it was,
# with the report's held / left / TIME_WAIT.
set -euo pipefail
cd "$(dirname "$0")/.."
inuse() { awk '/^TCP:/ { print $3 }' /proc/net/sockstat; }

for n in "$@"; do
  base=$(inuse)
  out=$(mktemp)
  node dist/cli/main.js probe --connections "$n" --hold 120 --json > "$out" &
  pid=$!
  start=$(date +%s%N)
  until [ "$(inuse)" -ge $((2 * n)) ]; do
    if ! kill -0 "$pid" 2> /dev/null; then echo "N=$n: the probe ended before holding $n" >&2; exit 1; fi
    if [ $(( ($(date +%s%N) - start) / 1000000000 )) -gt 300 ]; then kill -INT "$pid"; wait "$pid" || true; echo "N=$n: not held within 300 s" >&2; exit 1; fi
    sleep 0.2
  done
  sleep 3
  signalled=$(date +%s%N)
  kill -INT "$pid"
  exited=""
  while :; do
    now=$(date +%s%N)
    if [ -z "$exited" ] && ! kill -0 "$pid" 2> /dev/null; then exited=$now; fi
    if [ -n "$exited" ] && [ "$(inuse)" -le $((base + 16)) ]; then break; fi
    sleep 0.02
  done
  wait "$pid"
  node -e '
    const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    const [n, ex, clean] = process.argv.slice(2).map(Number);
    console.log(`N=${n.toLocaleString("en-US")}: signal -> exit ${(ex / 1e9).toFixed(2)} s, -> table back ${(clean / 1e9).toFixed(2)} s; held ${r.held}, left ${r.cleanup.left}, TIME_WAIT ${r.cleanup.timeWait}, stopped by ${r.stoppedBy}`);
  ' "$out" "$n" $((exited - signalled)) $((now - signalled))
  rm -f "$out"
done
