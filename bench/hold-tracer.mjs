// Attaches what `ports --prometheus` attaches in this namespace — the failure tracer and the kernel-kept
// counts — prints "attached", and holds them until SIGTERM/SIGINT; then prints what they counted and
// detaches. Used by bench/tracer-overhead.sh. WHAT= picks what, to tell the costs apart: exporter (the
// default: what `ports --prometheus` attaches, the failure tracer for connect() and the kept counts), all
// (and the bind() program, as with --bind-failures: it runs at every system call's exit), counts (the kept
// counts alone), connect (the failure tracer for connect() alone), failures (connect() and bind()).
import { failureTracer } from '../dist/kernel/failure-tracer.js';
import { stateCounter } from '../dist/kernel/state-counts.js';

const what = process.env.WHAT ?? 'exporter';
const t = what === 'counts' ? undefined : failureTracer({ bind: what === 'all' || what === 'failures' });
if (t && 'reason' in t) {
  console.error(`cannot attach the failure tracer: ${t.reason}`);
  process.exit(1);
}
const c = what === 'all' || what === 'exporter' || what === 'counts' ? stateCounter(() => []) : undefined;
if (c && 'reason' in c) {
  console.error(`cannot attach the counts: ${c.reason}`);
  process.exit(1);
}
console.log('attached');
const stop = () => {
  const parts = [];
  if (t) {
    const s = t.tracer.read();
    parts.push(`failures counted ${s.counts.reduce((n, x) => n + x.count, 0)}, overflow ${s.overflow}`);
    t.tracer.close();
  }
  if (c) {
    const k = c.counter.read();
    parts.push(`changes followed ${k.destinations.reduce((n, d) => n + d.changes, 0)}, overflow ${k.socketsOverflow}/${k.destinationsOverflow}`);
    c.counter.close();
  }
  console.log(`${what}: ${parts.join('; ')}`);
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
setInterval(() => undefined, 1 << 30);
