#!/usr/bin/env bash
# What attaching the failure tracer and the kernel-kept counts (what `ports --prometheus` attaches) costs `probe`: the same
# `probe --connections N --json` with and without a tracer attached in this namespace, alternating
# (without first on odd rounds, with first on even ones), so both see the same machine.
# Usage: bench/tracer-overhead.sh [N] [ROUNDS]     default 300000 4   (build first: npm run build)
# Per run: rampMs (time to held), rate.median (connects/s, 250 ms windows); then the ratio of the medians,
# and the median of each round's own ratio (its two runs back to back: less exposed to the VM's drift).
# WHAT= (exporter, all, counts, connect, failures) picks what bench/hold-tracer.mjs attaches; default exporter.
# STATS=1 also sets kernel.bpf_stats_enabled for the runs with tracers (put back after each) and prints the
# programs' own run counts and times (bench/prog-stats.mjs): a figure the machine's noise does not blur.
# The tracer is held by a small node process (bench/hold-tracer.mjs) that attaches, waits and detaches.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-300000}
ROUNDS=${2:-4}
holder=""
cleanup() {
  if [ -n "$holder" ]; then kill -TERM "$holder" 2> /dev/null || true; wait "$holder" 2> /dev/null || true; fi
  if [ "${STATS:-0}" = 1 ]; then sysctl -qw kernel.bpf_stats_enabled=0; fi
}
trap cleanup EXIT
inuse() { awk '/^TCP:/ { print $3 }' /proc/net/sockstat; }
BASE=$(inuse)
settle() { while [ "$(inuse)" -gt $((BASE + 16)) ]; do sleep 0.2; done; sleep 2; }
run() { # $1: with|without
  settle
  if [ "$1" = with ]; then
    node bench/hold-tracer.mjs > /tmp/ft-holder.$$ & holder=$!
    until grep -q attached /tmp/ft-holder.$$; do sleep 0.05; done
  fi
  if [ "$1" = with ] && [ "${STATS:-0}" = 1 ]; then sysctl -qw kernel.bpf_stats_enabled=1; fi
  node dist/cli/main.js probe --connections "$N" --json > /tmp/ft-probe.$$
  if [ "$1" = with ] && [ "${STATS:-0}" = 1 ]; then node bench/prog-stats.mjs; sysctl -qw kernel.bpf_stats_enabled=0; fi
  if [ "$1" = with ]; then kill -TERM "$holder"; wait "$holder" || true; holder=""; cat /tmp/ft-holder.$$ | tail -1; fi
  node -e '
    const j = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    console.log(`${process.argv[2].padEnd(8)} held ${j.held} rampMs ${j.rampMs} median ${Math.round(j.rate.median)}/s durationMs ${j.durationMs}`);
  ' /tmp/ft-probe.$$ "$1" | tee -a /tmp/ft-rates.$$
}
: > /tmp/ft-rates.$$
for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) -eq 1 ]; then run without; run with; else run with; run without; fi
done
node -e '
  const lines = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n");
  const med = (a) => { a.sort((x, y) => x - y); const m = a.length >> 1; return a.length % 2 ? a[m] : (a[m - 1] + a[m]) / 2; };
  const of = (k, f) => lines.filter((l) => l.startsWith(k + " ")).map((l) => parseFloat(l.split(" ").filter(Boolean)[f]));
  for (const [what, f] of [["rampMs", 4], ["median rate", 6]]) {
    const w = of("with", f), wo = of("without", f);
    const pairs = w.map((x, i) => x / wo[i]);
    console.log(`${what}: with ${med([...w])}, without ${med([...wo])}, ratio of medians ${(med([...w]) / med([...wo])).toFixed(3)}; per round ${pairs.map((p) => p.toFixed(3)).join(" ")}, median ${med(pairs).toFixed(3)}`);
  }
' /tmp/ft-rates.$$
rm -f /tmp/ft-probe.$$ /tmp/ft-rates.$$ /tmp/ft-holder.$$
