// Attaches the failure tracer in this namespace, prints "attached", and holds it until SIGTERM/SIGINT;
// then prints what it counted and detaches. Used by bench/tracer-overhead.sh.
import { failureTracer } from '../dist/kernel/failure-tracer.js';

const t = failureTracer();
if ('reason' in t) {
  console.error(`cannot attach: ${t.reason}`);
  process.exit(1);
}
console.log('attached');
const stop = () => {
  const s = t.tracer.read();
  console.log(`tracer counted ${s.counts.reduce((n, c) => n + c.count, 0)} failure(s), overflow ${s.overflow}`);
  t.tracer.close();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
setInterval(() => undefined, 1 << 30);
