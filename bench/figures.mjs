// Reads a `fourtuple probe --json` result on stdin and prints one line of figures, labelled by argv[2].
let text = '';
process.stdin.on('data', (d) => (text += d));
process.stdin.on('end', () => {
  const j = JSON.parse(text);
  const n = (x) => (x ?? 0).toLocaleString('en-US');
  const m = j.memory;
  console.log(
    `${process.argv[2].padEnd(36)} held ${n(j.held).padStart(9)}  stop ${j.stoppedBy.padEnd(6)} ramp ${(j.rampMs / 1000).toFixed(1).padStart(5)} s  ` +
      `rate median ${n(j.rate.median)}/s peak ${n(j.rate.peak)}/s  p50 ${(j.latency.p50 ?? 0).toFixed(2)} ms p99 ${(j.latency.p99 ?? 0).toFixed(1)} ms  ` +
      `user ${n(m.userBytesPerConnection)} B/conn kernel ${n(m.kernelBytesPerConnection)} B/conn  ` +
      `procs ${j.workers.clients}+${j.workers.sinks}  left ${j.cleanup.left} tw ${j.cleanup.timeWait}  total ${(j.durationMs / 1000).toFixed(1)} s`,
  );
});
