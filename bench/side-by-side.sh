#!/usr/bin/env bash
# `fourtuple probe` side by side with the physical-limit reference (bench/reference.c: plain C,
# listeners that never accept, children holding ~19,700 connections each), on this host (loopback).
# Usage: bench/side-by-side.sh [SIZES...]      default 100000 1000000 2000000   (build first: npm run build)
#        bench/side-by-side.sh load18k         `load --connections 18000` against a `sink`, start to held
# Env:   ROUNDS (default 1) rounds per size, reference then probe on odd rounds, probe first on even ones
#        (so neither always pays for the fresh memory of a fresh VM); OUT=DIR keeps every run's output there;
#        HOLD (default 1) seconds both hold at the peak (HOLD_S=, --hold) so the 200 ms memory sampler
#        sees it; HOLD=0 runs `probe --connections N --json` exactly.
# Per run: held; time to held (C: HELD ms, probe: rampMs); median connect rate over the ramp (C: 100 ms
# sample deltas, zero-growth samples excluded; probe: rate.median, 250 ms samples); MemAvailable at the
# start minus its minimum during the run, and Slab's maximum minus its start (/proc/meminfo every 200 ms),
# per held connection (both ends on this host, so two sockets per connection); close time (C: CLOSED ms,
# probe: closeMs). Before each run: TCP inuse back to its value at the script's start, then 3 s.
set -euo pipefail
cd "$(dirname "$0")/.."
CLI="node dist/cli/main.js"
ROUNDS=${ROUNDS:-1}
HOLD=${HOLD:-1}
work=$(mktemp -d)
sampler="" sink=""
cleanup() {
  if [ -n "$sampler" ]; then kill "$sampler" 2> /dev/null || true; fi
  if [ -n "$sink" ]; then kill -TERM "$sink" 2> /dev/null || true; wait "$sink" 2> /dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

inuse() { awk '/^TCP:/ { print $3 }' /proc/net/sockstat; }
slab_kb() { awk '/^Slab:/ { print $2 }' /proc/meminfo; }
BASE_INUSE=$(inuse)
BASE_SLAB=$(slab_kb)
# Both runs' sockets gone (slack 16 for other programs), then the kernel's deferred freeing of a
# million sockets (RCU, kworkers) done: Slab back within 64 MiB of the start, or unchanged for 3 s
# (at most 120 s more), so a run does not pay for the previous one's teardown.
settle() {
  local t=0 last=0 same=0 now
  while [ "$(inuse)" -gt $((BASE_INUSE + 16)) ]; do
    t=$((t + 1))
    if [ $t -gt 1500 ]; then echo "TCP inuse $(inuse) not back to $BASE_INUSE after 300 s" >&2; exit 1; fi
    sleep 0.2
  done
  for _ in $(seq 120); do
    now=$(slab_kb)
    if [ "$now" -le $((BASE_SLAB + 65536)) ]; then break; fi
    if [ $((now - last)) -lt 4096 ] && [ $((last - now)) -lt 4096 ]; then same=$((same + 1)); else same=0; fi
    if [ $same -ge 3 ]; then break; fi
    last=$now
    sleep 1
  done
  sleep 3
}
# "MemAvailable Slab" in bytes, no forks.
mem_now() {
  local k v _ a=0 s=0
  while read -r k v _; do
    case $k in MemAvailable:) a=$v ;; Slab:) s=$v ;; esac
  done < /proc/meminfo
  echo $((a * 1024)) $((s * 1024))
}
start_sampler() {
  mem_now > "$work/mem"
  ( while :; do mem_now; sleep 0.2; done >> "$work/mem" ) &
  sampler=$!
}
stop_sampler() {
  kill "$sampler" 2> /dev/null || true
  wait "$sampler" 2> /dev/null || true
  sampler=""
}

# CPU ticks (1/100 s): the VM's init (pid 1, which lists every process's /proc/PID/fd), then the host's
# user, system, softirq and steal, so a row says what else the run's CPU went to.
cpu_now() {
  local a b
  read -r a b < <(awk '{ print $14, $15 }' /proc/1/stat)
  echo $((a + b)) $(awk '/^cpu / { print $2 + $3, $4, $8, $9 }' /proc/stat)
}

# Reads one run's output and the memory samples; prints a table row and appends raw figures to $work/runs.
ROW_JS='
const fs = require("fs");
const [tool, size, out, mem, runs, cpuFile] = process.argv.slice(1);
const text = fs.readFileSync(out, "utf8");
const m = fs.readFileSync(mem, "utf8").trim().split("\n").map((l) => l.split(" ").map(Number));
const [a0, s0] = m[0];
const minAvail = Math.min(...m.map((x) => x[0])), maxSlab = Math.max(...m.map((x) => x[1]));
let held = 0, ramp = null, rate = null, close = null;
if (tool === "reference") {
  const lines = text.split("\n");
  const samples = lines.filter((l) => /^\d+ \d+$/.test(l)).map((l) => l.split(" ").map(Number));
  const h = lines.find((l) => l.startsWith("HELD ")), g = lines.find((l) => l.startsWith("GAVEUP "));
  const c = lines.find((l) => l.startsWith("CLOSED "));
  if (h) [held, ramp] = h.split(" ").slice(1).map(Number);
  else if (g) held = Number(g.split(" ")[1]);
  if (c) close = Number(c.split(" ")[1]);
  const errs = lines.filter((l) => l.startsWith("ERR "));
  if (errs.length) process.stderr.write(`reference ${size}: failed attempts, retried: ${errs.map((l) => l.slice(4)).join(", ")}\n`);
  const rates = [];
  for (let i = 1; i < samples.length; i++) {
    const [t1, n1] = samples[i], [t0, n0] = samples[i - 1];
    if (n1 > n0 && t1 > t0) rates.push(((n1 - n0) * 1000) / (t1 - t0));
  }
  rates.sort((x, y) => x - y);
  const k = rates.length;
  if (k) rate = k % 2 ? rates[(k - 1) / 2] : (rates[k / 2 - 1] + rates[k / 2]) / 2;
} else {
  try {
    const j = JSON.parse(text);
    held = j.held; ramp = j.held >= Number(size) ? j.rampMs : null; rate = j.rate.median; close = j.closeMs;
  } catch (e) { process.stderr.write(`probe: no JSON result (${e.message})\n`); }
}
const memB = held ? (a0 - minAvail) / held : null, slabB = held ? (maxSlab - s0) / held : null;
const n = (x) => (x == null ? "-" : Math.round(x).toLocaleString("en-US"));
const s = (x) => (x == null ? "-" : (x / 1000).toFixed(2));
let cpu = "-";
if (cpuFile) {
  const v = fs.readFileSync(cpuFile, "utf8").trim().split(/\s+/).map(Number);
  const d = v.slice(5).map((x, i) => (x - v[i]) / 100);
  cpu = `init ${d[0].toFixed(1)}, user ${d[1].toFixed(1)}, sys ${d[2].toFixed(1)}, softirq ${d[3].toFixed(1)}, steal ${d[4].toFixed(1)}`;
}
console.log(`| ${n(Number(size))} | ${tool} | ${n(held)} | ${s(ramp)} | ${n(rate)} | ${n(memB)} | ${n(slabB)} | ${s(close)} | ${cpu} |`);
fs.appendFileSync(runs, [size, tool, held, ramp, rate, memB, slabB, close].map((x) => (x == null ? "" : x)).join("\t") + "\n");
'
# probe/reference for one size, on the medians over its rounds.
RATIO_JS='
const [size, runs] = process.argv.slice(1);
const rows = require("fs").readFileSync(runs, "utf8").split("\n").map((l) => l.split("\t")).filter((r) => r[0] === size);
const med = (tool, i) => {
  const v = rows.filter((r) => r[1] === tool && r[i] !== "" && r[i] !== undefined).map((r) => Number(r[i])).sort((x, y) => x - y);
  return v.length ? (v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2) : null;
};
const r = (i) => { const p = med("probe", i), c = med("reference", i); return p != null && c ? (p / c).toFixed(2) : "-"; };
console.log(`\n${Number(size).toLocaleString("en-US")}: probe/reference: rate ${r(4)}, time to held ${r(3)}, close ${r(7)}\n`);
'

if [ "${1:-}" = load18k ]; then
  out="$work/load.json"
  $CLI sink --listen 127.0.0.1:7100-7103 --duration 30 > "$work/sink.out" 2>&1 &
  sink=$!
  for _ in $(seq 100); do
    if [ -n "$(ss -Hltn 'sport = :7100')" ]; then break; fi
    sleep 0.1
  done
  if [ -z "$(ss -Hltn 'sport = :7100')" ]; then echo "the sink did not listen on 127.0.0.1:7100 within 10 s" >&2; exit 1; fi
  t0=$(date +%s%N)
  $CLI load --to 127.0.0.1:7100-7103 --connections 18000 --json > "$out" || true
  t1=$(date +%s%N)
  kill -TERM "$sink" 2> /dev/null || true
  wait "$sink" 2> /dev/null || true
  sink=""
  echo "| connections | tool | held | start to held s (startupMs + rampMs) | wall time to exit s | rampMs s | close s |"
  echo "|---|---|---|---|---|---|---|"
  node -e '
    const [f, wall] = process.argv.slice(1);
    let j = {};
    try { j = JSON.parse(require("fs").readFileSync(f, "utf8")); } catch (e) { process.stderr.write(`load: no JSON result (${e.message})\n`); }
    const s = (x) => (typeof x === "number" ? (x / 1000).toFixed(2) : "-");
    const held = typeof j.startupMs === "number" ? j.startupMs + j.rampMs : null;
    console.log(`| 18,000 | load -> sink | ${(j.held ?? 0).toLocaleString("en-US")} | ${s(held)} | ${s(Number(wall) / 1e6)} | ${s(j.rampMs)} | ${s(j.closeMs)} |`);
  ' "$out" $((t1 - t0))
  exit 0
fi

gcc -O2 -o "$work/reference" bench/reference.c
somax=$(cat /proc/sys/net/core/somaxconn)
[ $# -gt 0 ] || set -- 100000 1000000 2000000
echo "| size | tool | held | time to held s | median rate /s | MemAvailable Δ B/conn | slab Δ B/conn | close s | CPU s over the run |"
echo "|---|---|---|---|---|---|---|---|---|"
for n in "$@"; do
  listeners=$(((n + somax - 1) / somax))
  for round in $(seq "$ROUNDS"); do
    order="reference probe"
    if [ $((round % 2)) -eq 0 ]; then order="probe reference"; fi
    for tool in $order; do
      settle
      start_sampler
      cpu_before=$(cpu_now)
      if [ "$tool" = reference ]; then
        HOLD_S=$HOLD "$work/reference" "$n" "$listeners" > "$work/ref.out" || echo "reference: exit $?" >&2
        out="$work/ref.out"
      else
        $CLI probe --connections "$n" --hold "$HOLD" --json > "$work/probe.json" || echo "probe: exit $?" >&2
        out="$work/probe.json"
      fi
      stop_sampler
      echo "$cpu_before $(cpu_now)" > "$work/cpu"
      node -e "$ROW_JS" "$tool" "$n" "$out" "$work/mem" "$work/runs" "$work/cpu"
      if [ -n "${OUT:-}" ]; then mkdir -p "$OUT"; cp "$out" "$OUT/$n-$round-$tool.${out##*.}"; fi
    done
  done
  node -e "$RATIO_JS" "$n" "$work/runs"
done
