// Attaches what `ports --prometheus` attaches in this namespace — the failure tracer and the kernel-kept
// counts — prints "attached", and holds them until SIGTERM/SIGINT; then prints what they counted and
// detaches. Used by bench/tracer-overhead.sh.
import { failureTracer } from '../dist/kernel/failure-tracer.js';
import { stateCounter } from '../dist/kernel/state-counts.js';

const t = failureTracer();
if ('reason' in t) {
  console.error(`cannot attach the failure tracer: ${t.reason}`);
  process.exit(1);
}
const c = stateCounter([]);
if ('reason' in c) {
  console.error(`cannot attach the counts: ${c.reason}`);
  process.exit(1);
}
console.log('attached');
const stop = () => {
  const s = t.tracer.read();
  const k = c.counter.read();
  console.log(`failures counted ${s.counts.reduce((n, x) => n + x.count, 0)}, overflow ${s.overflow}; changes followed ${k.transitions}, overflow ${k.socketsOverflow}/${k.destinationsOverflow}`);
  t.tracer.close();
  c.counter.close();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
setInterval(() => undefined, 1 << 30);
