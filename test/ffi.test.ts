// Raw syscalls against real loopback peers: the kernel is the oracle, not a mock.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:net';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as ffi from '../dist/kernel/ffi.js';

const open = new Set<number>();
const servers: Server[] = [];

/** Tracks an fd so `after` closes it even when an assertion fails midway. */
function track(fd: number): number {
  assert.ok(fd >= 0, `expected an fd, got ${fd} (${ffi.errnoName(fd)})`);
  open.add(fd);
  return fd;
}

/** RST-close, so the tests leave no TIME_WAIT behind. */
function drop(fd: number): void {
  if (!open.delete(fd)) return;
  ffi.setLinger0(fd);
  ffi.close(fd);
}

after(async () => {
  for (const fd of [...open]) drop(fd);
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
});

/** Polls one fd until `events` (or an error) shows up; returns revents, 0 on timeout. */
function waitFor(fd: number, events: number, timeoutMs = 2000): number {
  const set = new ffi.PollSet(1);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    set.set(0, fd, events);
    const left = deadline - Date.now();
    if (left <= 0) return 0;
    const r = set.poll(1, left);
    if (r > 0) return set.revents(0);
    if (r < 0 && r !== -ffi.EINTR) throw new Error(`poll: ${ffi.errnoName(r)}`);
  }
}

async function nodeListener(): Promise<number> {
  const server = createServer((s) => s.on('error', () => {}));
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  assert.ok(addr !== null && typeof addr === 'object');
  return addr.port;
}

function rawListener(): { fd: number; port: number } {
  const fd = track(ffi.socket(4, true));
  assert.equal(ffi.setReuseAddr(fd, true), 0);
  assert.equal(ffi.bind(fd, ffi.sockaddr('127.0.0.1', 0)), 0);
  assert.equal(ffi.listen(fd, 128), 0);
  const name = ffi.getsockname(fd);
  assert.ok(typeof name === 'object');
  return { fd, port: name.port };
}

/** Nonblocking connect, completed through poll; returns the client fd. */
function connectRaw(port: number, fd = track(ffi.socket(4, true))): number {
  const r = ffi.connect(fd, ffi.sockaddr('127.0.0.1', port));
  assert.ok(r === 0 || r === -ffi.EINPROGRESS, `connect: ${ffi.errnoName(r)}`);
  assert.ok(waitFor(fd, ffi.POLLOUT) & ffi.POLLOUT);
  return fd;
}

function timeWaitLines(): string[] {
  return execFileSync('ss', ['-Htan', 'state', 'time-wait'], { encoding: 'utf8' }).split('\n');
}

test('ffi loads here (koffi + libc)', () => {
  assert.equal(ffi.ffiUnavailableReason(), undefined);
  assert.equal(ffi.ffiAvailable(), true);
});

test('sockaddr and parseSockaddr round-trip IPv4 and IPv6', () => {
  const v4 = ffi.sockaddr('127.0.0.1', 7000);
  assert.equal(v4.length, 16);
  assert.deepEqual([...v4.subarray(0, 8)], [2, 0, 0x1b, 0x58, 127, 0, 0, 1]);
  assert.deepEqual(ffi.parseSockaddr(v4), { address: '127.0.0.1', port: 7000, family: 4 });
  for (const [input, canonical] of [
    ['::1', '::1'],
    ['::', '::'],
    ['2001:DB8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    ['1:0:0:2:0:0:0:3', '1:0:0:2::3'],
    ['::ffff:10.1.2.3', '::ffff:10.1.2.3'],
  ] as const) {
    const buf = ffi.sockaddr(input, 65535);
    assert.equal(buf.length, 28);
    assert.deepEqual(ffi.parseSockaddr(buf), { address: canonical, port: 65535, family: 6 });
  }
  const reused = ffi.sockaddr('127.0.0.2', 1);
  ffi.setSockaddrPort(reused, 4242);
  assert.equal(ffi.parseSockaddr(reused).port, 4242);
  assert.throws(() => ffi.sockaddr('127.0.0', 1), { code: 'FT_INVALID_ARGUMENT' });
  assert.throws(() => ffi.sockaddr('127.0.0.1', 65536), { code: 'FT_INVALID_ARGUMENT' });
});

test('errno helpers and negative-errno returns', () => {
  assert.equal(ffi.errnoName(99), 'EADDRNOTAVAIL');
  assert.equal(ffi.errnoName(-ffi.EAGAIN), 'EAGAIN');
  assert.equal(ffi.errnoName(ffi.ECONNREFUSED), 'ECONNREFUSED');
  assert.equal(ffi.close(-1), -9); // EBADF, returned, not thrown
  assert.equal(ffi.socketError(-1), -9);
  assert.equal(ffi.getsockname(-1), -9);
});

test('nonblocking connect to a node listener completes via poll', async () => {
  const port = await nodeListener();
  const fd = connectRaw(port);
  assert.equal(ffi.socketError(fd), 0);
  const local = ffi.getsockname(fd);
  const peer = ffi.getpeername(fd);
  assert.ok(typeof local === 'object' && typeof peer === 'object');
  const [lo, hi] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
  assert.ok(local.port >= lo && local.port <= hi, `source port ${local.port} outside ${lo}-${hi}`);
  assert.deepEqual(peer, { address: '127.0.0.1', port, family: 4 });
  drop(fd);
});

test('accept4 on a raw listener returns a nonblocking fd, then -EAGAIN', () => {
  const l = rawListener();
  assert.equal(ffi.accept4(l.fd), -ffi.EAGAIN);
  const c = connectRaw(l.port);
  assert.ok(waitFor(l.fd, ffi.POLLIN) & ffi.POLLIN);
  const a = track(ffi.accept4(l.fd));
  const peer = ffi.getpeername(a);
  const local = ffi.getsockname(c);
  assert.deepEqual(peer, local);
  assert.equal(ffi.accept4(l.fd), -ffi.EAGAIN);
  const d = track(ffi.dup(a));
  assert.notEqual(d, a);
  drop(d);
  drop(a);
  drop(c);
  drop(l.fd);
});

test('setLinger0 then close leaves no TIME_WAIT for the 4-tuple', () => {
  const l = rawListener();
  const c = connectRaw(l.port);
  assert.ok(waitFor(l.fd, ffi.POLLIN) & ffi.POLLIN);
  const a = track(ffi.accept4(l.fd));
  const local = ffi.getsockname(c);
  assert.ok(typeof local === 'object');
  assert.equal(ffi.setLinger0(c), 0);
  open.delete(c);
  assert.equal(ffi.close(c), 0); // client closes first: with FIN it would own the TIME_WAIT
  assert.ok(waitFor(a, ffi.POLLIN) & (ffi.POLLIN | ffi.POLLHUP | ffi.POLLERR));
  assert.equal(ffi.socketError(a), ffi.ECONNRESET); // the peer saw RST, not FIN
  drop(a);
  drop(l.fd);
  const needle = new RegExp(`127\\.0\\.0\\.1:${local.port}\\s+127\\.0\\.0\\.1:${l.port}\\b|127\\.0\\.0\\.1:${l.port}\\s+127\\.0\\.0\\.1:${local.port}\\b`);
  assert.deepEqual(timeWaitLines().filter((line) => needle.test(line)), []);
});

test('IP_BIND_ADDRESS_NO_PORT: bind(127.0.0.1:0) keeps port 0 until connect', () => {
  const l = rawListener();
  const fd = track(ffi.socket(4, true));
  assert.equal(ffi.setBindAddressNoPort(fd), 0);
  assert.equal(ffi.bind(fd, ffi.sockaddr('127.0.0.1', 0)), 0);
  assert.deepEqual(ffi.getsockname(fd), { address: '127.0.0.1', port: 0, family: 4 });
  connectRaw(l.port, fd);
  assert.equal(ffi.socketError(fd), 0);
  const local = ffi.getsockname(fd);
  assert.ok(typeof local === 'object' && local.port > 0);
  drop(fd);
  drop(l.fd);
});

test('connect to a closed port reports ECONNREFUSED through socketError', () => {
  // A bound, non-listening socket reserves a port nobody can listen on during the test.
  const hold = track(ffi.socket(4, true));
  assert.equal(ffi.bind(hold, ffi.sockaddr('127.0.0.1', 0)), 0);
  const name = ffi.getsockname(hold);
  assert.ok(typeof name === 'object');
  const fd = track(ffi.socket(4, true));
  const r = ffi.connect(fd, ffi.sockaddr('127.0.0.1', name.port));
  if (r === -ffi.EINPROGRESS) {
    assert.ok(waitFor(fd, ffi.POLLOUT) & (ffi.POLLERR | ffi.POLLHUP));
    assert.equal(ffi.socketError(fd), ffi.ECONNREFUSED);
    assert.equal(ffi.socketError(fd), 0); // SO_ERROR is cleared once read
  } else {
    assert.equal(r, -ffi.ECONNREFUSED);
  }
  drop(fd);
  drop(hold);
});

test('IPv6 loopback connect, when ::1 exists', (t) => {
  const l = ffi.socket(6, true);
  if (l < 0) return t.skip(`no AF_INET6: ${ffi.errnoName(l)}`);
  track(l);
  assert.equal(ffi.setIpv6Only(l), 0);
  if (ffi.bind(l, ffi.sockaddr('::1', 0)) !== 0) return t.skip('::1 not configured');
  assert.equal(ffi.listen(l, 16), 0);
  const name = ffi.getsockname(l);
  assert.ok(typeof name === 'object' && name.family === 6 && name.address === '::1');
  const c = track(ffi.socket(6, true));
  const r = ffi.connect(c, ffi.sockaddr('::1', name.port));
  assert.ok(r === 0 || r === -ffi.EINPROGRESS);
  assert.ok(waitFor(c, ffi.POLLOUT) & ffi.POLLOUT);
  assert.equal(ffi.socketError(c), 0);
  drop(c);
  drop(l);
});

test('PollSet slots hold fd and events without byte math', () => {
  const set = new ffi.PollSet(3);
  assert.equal(set.buffer.length, 24);
  assert.equal(set.fd(2), -1);
  set.set(1, 42, ffi.POLLIN | ffi.POLLOUT);
  assert.equal(set.fd(1), 42);
  assert.equal(set.buffer.readInt16LE(12), ffi.POLLIN | ffi.POLLOUT);
  assert.equal(set.revents(1), 0);
  assert.equal(ffi.poll(set.buffer, 4, 0), -22); // count beyond the buffer is refused, not passed to the kernel
});

test('getNofileLimit / setNofileLimit round-trip', () => {
  const before = ffi.getNofileLimit();
  assert.ok(before.soft <= before.hard);
  const lower = Math.max(64, Math.min(before.soft, 4096) - 1);
  try {
    assert.equal(ffi.setNofileLimit(lower, before.hard), 0);
    assert.deepEqual(ffi.getNofileLimit(), { soft: lower, hard: before.hard });
    assert.ok(ffi.setNofileLimit(before.hard + 1, before.hard) < 0); // soft above hard: EINVAL
  } finally {
    assert.equal(ffi.setNofileLimit(before.soft, before.hard), 0);
  }
  assert.deepEqual(ffi.getNofileLimit(), before);
});

test('FOURTUPLE_NO_FFI=1 turns the raw path off cleanly', () => {
  const url = new URL('../dist/kernel/ffi.js', import.meta.url).href;
  const script = `
    const f = await import(${JSON.stringify(url)});
    let code;
    try { f.socket(4, true); } catch (e) { code = e.code; }
    console.log(JSON.stringify({ ok: f.ffiAvailable(), why: f.ffiUnavailableReason(), code, name: f.errnoName(99) }));
  `;
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], {
    env: { ...process.env, FOURTUPLE_NO_FFI: '1' },
    cwd: fileURLToPath(new URL('.', import.meta.url)),
    encoding: 'utf8',
  });
  assert.deepEqual(JSON.parse(out), {
    ok: false,
    why: 'disabled by FOURTUPLE_NO_FFI=1',
    code: 'FT_FFI_UNAVAILABLE',
    name: 'EADDRNOTAVAIL',
  });
});
