#!/usr/bin/env bash
# With N connections held by `probe` on this host (default 1,000,000), side by side:
#  - an exporter scrape that walks the table (`ports --prometheus --reconcile 0`) against one that reads
#    the kernel-kept counts (default), SCRAPES each, alternating; curl's time_total per scrape, medians;
#    then the kept exporter's drift and reconciliation figures, and its maps' memory (fdinfo memlock); both
#    exporters watch --to 127.0.0.1:1024-9000 (the probe's destinations), not the scrapes' own connections;
#  - a scan of the table without and with attribution (`ports --json` against `ports --by cgroup --json`),
#    SCANS each, alternating, their scanMs; then `ports --pids --json` once: what naming the processes costs.
# Usage: bench/production.sh [N] [SCRAPES] [SCANS]   default 1000000 10 5   (build first: npm run build)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
SCRAPES=${2:-10}
SCANS=${3:-5}
CLI="node dist/cli/main.js"
probe="" scan="" kept=""
work=$(mktemp -d)
cleanup() {
  for p in $scan $kept; do kill -TERM "$p" 2> /dev/null || true; wait "$p" 2> /dev/null || true; done
  if [ -n "$probe" ]; then kill -INT "$probe" 2> /dev/null || true; wait "$probe" 2> /dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
inuse() { awk '/^TCP:/ { print $3 }' /proc/net/sockstat; }
base=$(inuse)
$CLI probe --connections "$N" --hold 600 --json > "$work/probe.json" &
probe=$!
# Held: both ends of every connection in the table.
until [ "$(inuse)" -ge $((base + 2 * N)) ]; do sleep 0.5; done
sleep 2
echo "held: TCP inuse $(inuse)"
$CLI ports --prometheus 127.0.0.1:9471 --reconcile 0 --to 127.0.0.1:1024-9000 > "$work/scan.out" &
scan=$!
t0=$(date +%s%N)
$CLI ports --prometheus 127.0.0.1:9472 --to 127.0.0.1:1024-9000 > "$work/kept.out" &
kept=$!
until curl -sf -o /dev/null 127.0.0.1:9471/metrics && curl -sf -o /dev/null 127.0.0.1:9472/metrics; do sleep 0.2; done
echo "kept exporter ready in $(( ($(date +%s%N) - t0) / 1000000 )) ms (first scan, seed, first reconciliation): $(head -1 "$work/kept.out")"
for i in $(seq 1 "$SCRAPES"); do
  for e in 9471 9472; do
    curl -s -o "$work/m.$e" -w "$e %{time_total}\n" 127.0.0.1:$e/metrics >> "$work/scrapes"
  done
done
node -e '
  const lines = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n").map((l) => l.split(" "));
  const med = (a) => { a.sort((x, y) => x - y); const m = a.length >> 1; return a.length % 2 ? a[m] : (a[m - 1] + a[m]) / 2; };
  for (const [port, what] of [["9471", "scan per scrape"], ["9472", "kept counts    "]]) {
    const t = lines.filter((l) => l[0] === port).map((l) => Number(l[1]) * 1000);
    console.log(`${what}: scrape median ${med([...t]).toFixed(1)} ms, min ${Math.min(...t).toFixed(1)}, max ${Math.max(...t).toFixed(1)} (${t.length} scrapes)`);
  }
' "$work/scrapes"
grep -E '^fourtuple_(kept_counts|scan_duration|destinations )' "$work/m.9472" | grep -v '^#'
used() { grep '^fourtuple_destination_ports_used{' "$1" | sort; }
if diff <(used "$work/m.9471") <(used "$work/m.9472") > /dev/null; then echo "ports_used series: identical in both exporters ($(used "$work/m.9471" | wc -l) series)"; else echo "ports_used series DIFFER:"; diff <(used "$work/m.9471") <(used "$work/m.9472") | head || true; fi
mem=0
for f in /proc/$kept/fdinfo/*; do
  if grep -q '^map_type' "$f" 2> /dev/null; then mem=$((mem + $(awk '/^memlock/ { print $2 }' "$f"))); fi
done
echo "kept exporter's BPF maps (fdinfo memlock, both tracers): $((mem / 1048576)) MiB"
kill -TERM "$scan" "$kept"; wait "$scan" "$kept" || true; scan="" kept=""
for i in $(seq 1 "$SCANS"); do
  $CLI ports --json | node -e 'let s="";process.stdin.on("data",(d)=>(s+=d)).on("end",()=>console.log("plain", JSON.parse(s).scanMs))' >> "$work/scans"
  $CLI ports --by cgroup --json | node -e 'let s="";process.stdin.on("data",(d)=>(s+=d)).on("end",()=>console.log("cgroup", JSON.parse(s).scanMs))' >> "$work/scans"
done
node -e '
  const lines = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n").map((l) => l.split(" "));
  const med = (a) => { a.sort((x, y) => x - y); const m = a.length >> 1; return a.length % 2 ? a[m] : (a[m - 1] + a[m]) / 2; };
  const of = (k) => med(lines.filter((l) => l[0] === k).map((l) => Number(l[1])));
  const p = of("plain"), c = of("cgroup");
  console.log(`scan of the table: plain median ${p.toFixed(0)} ms, --by cgroup median ${c.toFixed(0)} ms: attribution adds ${((c / p - 1) * 100).toFixed(1)}%`);
' "$work/scans"
$CLI ports --pids --json | node -e 'let s="";process.stdin.on("data",(d)=>(s+=d)).on("end",()=>{const j=JSON.parse(s);console.log(`--pids: scan ${Math.round(j.scanMs)} ms, of which /proc: ${j.owners.pids.ms} ms for ${j.owners.pids.descriptors} descriptors of ${j.owners.pids.processes} processes`)})'
kill -INT "$probe"; wait "$probe" || true; probe=""
echo "probe: $(node -e 'const j=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8"));console.log(`held ${j.held}, stoppedBy ${j.stoppedBy}`)' "$work/probe.json")"
