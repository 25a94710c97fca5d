// What a fresh page of memory costs on this machine: touches every page of
// N GiB of newly allocated memory, frees it, and does it again right away and
// after a pause. On a VM that returns freed memory to its host (free page
// reporting), the first touch of a page pays for the host backing it again,
// and so does every slab page the kernel takes for a socket.
// Usage: node --expose-gc bench/first-touch.mjs [GiB=4] [pauseSeconds=10]
const gib = Number(process.argv[2] ?? 4);
const pause = Number(process.argv[3] ?? 10);
if (typeof globalThis.gc !== 'function') {
  console.error('run with node --expose-gc');
  process.exit(2);
}
const PAGE = 4096;

function round(label) {
  const chunks = [];
  const t0 = performance.now();
  for (let g = 0; g < gib; g++) {
    const a = new Uint8Array(new ArrayBuffer(2 ** 30));
    for (let i = 0; i < a.length; i += PAGE) a[i] = 1;
    chunks.push(a);
  }
  const ms = performance.now() - t0;
  const pages = (gib * 2 ** 30) / PAGE;
  console.log(`${label.padEnd(28)} ${(ms / 1000).toFixed(2)} s  ${((ms * 1000) / pages).toFixed(2)} µs per 4 KiB page`);
  chunks.length = 0;
  globalThis.gc();
}

round('first touch');
round('again at once');
await new Promise((r) => setTimeout(r, pause * 1000));
round(`again after ${pause} s`);
