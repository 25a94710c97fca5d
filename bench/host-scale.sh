#!/usr/bin/env bash
# Host-wide predictions against probes at scale, as root and as an unprivileged user (nobody):
#   1. probe -n N for each N given (default 1000000 2000000): what limits predicts beside what the probe holds;
#   2. fs.file-max lowered to what is open now + HEADROOM (default 200000) for one run each, then put back:
#      as nobody the probe stops at fd-host (ENFILE) where the model says; as root (CAP_SYS_ADMIN) the
#      kernel does not hold it there, and the model says that too.
# Prints one line per run. Usage: bench/host-scale.sh [N ...]   (as root; builds first)
set -euo pipefail
cd "$(dirname "$0")/.."
npm run build > /dev/null
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1000000 2000000)
headroom=${HEADROOM:-200000}
nobody=(setpriv --reuid=65534 --regid=65534 --clear-groups)
filemax=$(cat /proc/sys/fs/file-max)
restore() { echo "$filemax" > /proc/sys/fs/file-max; }
trap restore EXIT

# Waits until the sockets of the last run are gone (RST closes, but the kernel frees them in the background).
settle() {
  for _ in $(seq 120); do
    [ "$(ss -Htan | wc -l)" -lt 100 ] && return
    sleep 1
  done
}

# run WHO N [duration]: one probe, one line: who, target, predicted range, held, what bound it.
run() {
  local who=$1 n=$2 dur=${3:-120} prefix=()
  [ "$who" = nobody ] && prefix=("${nobody[@]}")
  settle
  "${prefix[@]}" node dist/cli/main.js probe --json -n "$n" --duration "$dur" > /tmp/ft-host-scale.json 2> /tmp/ft-host-scale.err || true
  node -e '
    const j = JSON.parse(require("fs").readFileSync("/tmp/ft-host-scale.json", "utf8"));
    const [who, n, fm] = process.argv.slice(1);
    const off = j.predicted ? (100 * (j.held - j.predicted) / j.predicted).toFixed(2) : "?";
    const fd = (j.constraints || []).find((c) => c.id === "fd-host");
    console.log(`${who.padEnd(6)} -n ${Number(n).toLocaleString("en-US").padStart(9)}${fm ? ` file-max ${fm}` : ""}: predicted ${j.predicted.toLocaleString("en-US")} (binding ${j.ceiling.binding}), held ${j.held.toLocaleString("en-US")} (${off}%), stopped by ${j.stoppedBy}${j.limit ? ` ${j.limit.id} ${j.limit.errno}` : ""}; fd-host: ${fd ? (fd.limit === null ? "none" : fd.limit.toLocaleString("en-US")) : "?"}, ramp ${(j.rampMs / 1000).toFixed(1)} s`);
  ' "$who" "$n" "${4:-}"
}

for n in "${sizes[@]}"; do
  run root "$n"
  run nobody "$n"
done

# fd-host: a file table with HEADROOM free for this run.
for who in nobody root; do
  settle
  open=$(awk '{print $1}' /proc/sys/fs/file-nr)
  echo $((open + headroom)) > /proc/sys/fs/file-max
  run "$who" $((headroom * 2)) 120 $((open + headroom))
  restore
done
