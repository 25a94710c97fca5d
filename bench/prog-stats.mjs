// Run counts and run times of fourtuple's BPF programs now loaded on this host (names ft_*), from
// bpf_prog_info: they are counted only while kernel.bpf_stats_enabled is 1 (tracer-overhead.sh sets it
// for the run and puts it back). Prints one JSON object: { name: { runs, ns } }.
import * as ffi from '../dist/kernel/ffi.js';

const BPF_PROG_GET_NEXT_ID = 11;
const BPF_PROG_GET_FD_BY_ID = 13;
const BPF_OBJ_GET_INFO_BY_FD = 15;
const out = {};
const attr = Buffer.alloc(16);
const info = Buffer.alloc(256);
let id = 0;
for (;;) {
  attr.fill(0);
  attr.writeUInt32LE(id, 0);
  if (ffi.bpf(BPF_PROG_GET_NEXT_ID, attr) < 0) break;
  id = attr.readUInt32LE(4);
  const byId = Buffer.alloc(16);
  byId.writeUInt32LE(id, 0);
  const fd = ffi.bpf(BPF_PROG_GET_FD_BY_ID, byId);
  if (fd < 0) continue;
  info.fill(0);
  const get = Buffer.alloc(16);
  get.writeUInt32LE(fd, 0);
  get.writeUInt32LE(info.length, 4);
  get.writeBigUInt64LE(ffi.addressOf(info), 8);
  if (ffi.bpf(BPF_OBJ_GET_INFO_BY_FD, get) === 0) {
    const name = info.toString('latin1', 64, 80).replace(/\0.*$/s, '');
    // struct bpf_prog_info: run_time_ns at 192, run_cnt at 200.
    if (name.startsWith('ft_')) out[name] = { runs: Number(info.readBigUInt64LE(200)), ns: Number(info.readBigUInt64LE(192)) };
  }
  ffi.close(fd);
}
console.log(JSON.stringify(out));
