// Packing a job's upload with the host's native gzip (node:zlib), against a real devnet:
// a multi-MiB input reaches the worker intact and the result verifies, a pool packs once
// for all its replicas, the Rust fallback still works, and a broken compressor is refused
// before anything is submitted.
//
// The package is imported by path: in a worktree whose node_modules is a link to another
// checkout, `@sandrun/wasm` would resolve to that checkout's pkg/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Sandrun, SandrunError } from '../../pkg/index.node.js';
import { nodeHost } from '../../pkg/host-node.js';
import { startDevnet, acceptedJobs, rejectsWith } from './support.mjs';

let net;
let sandrun;
before(async () => {
  net = await startDevnet(['--workers', '3', '--no-rate-limit']);
  sandrun = Sandrun.create({ apiEndpoint: net.workers[0].url });
});
after(async () => net && net.stop());

// 6 MiB of text that compresses (as most job inputs do) with a random tail that does not.
const data = (() => {
  const b = Buffer.alloc(6 << 20);
  let off = 0;
  for (let i = 0; off < b.length - 65536; i++) off += b.write(`${i} row of the input ${(i * 2654435761) >>> 0}\n`, off);
  for (let i = off; i < b.length; i++) b[i] = (i * 7919) & 255;
  return new Uint8Array(b.buffer, b.byteOffset, b.length);
})();
const digest = createHash('sha256').update(data).digest('hex');
const CODE = 'import hashlib\nb = open("data.bin", "rb").read()\nprint(len(b), hashlib.sha256(b).hexdigest())\n';

/** Wraps the host's real gzip (a spy that delegates; `replace` swaps in a double). */
function spyGzip(replace) {
  const real = nodeHost.gzip;
  const calls = [];
  nodeHost.gzip = async (bytes, level) => {
    const out = replace ? await replace(bytes, level, real) : await real(bytes, level);
    calls.push({ inBytes: bytes.length, level, outBytes: out?.length ?? null });
    return out;
  };
  return { calls, restore: () => { nodeHost.gzip = real; } };
}

test('a 6 MiB input is gzipped by node:zlib and runs, verified, on the worker', async () => {
  const spy = spyGzip();
  try {
    const job = sandrun.job().code(CODE).file('data.bin', data);
    const est = await job.estimate();
    assert.equal(spy.calls.length, 1, 'estimate() packed through the host');
    assert.ok(spy.calls[0].inBytes > data.length, `the whole tar went to the host: ${spy.calls[0].inBytes}`);
    assert.equal(spy.calls[0].level, 1);
    assert.equal(est.uploadBytes, spy.calls[0].outBytes, 'estimate() counts the bytes the host produced');
    const r = await (await job.submit()).wait();
    assert.equal(spy.calls.length, 2);
    assert.equal(r.status, 'completed', r.stderr);
    assert.equal(r.stdout, `${data.length} ${digest}\n`);
    assert.equal(r.proof.verified, true, JSON.stringify(r.proof.checks));
  } finally {
    spy.restore();
  }
});

test('from 2 MiB the host deflates one piece per core at once and joins them into one gzip member', async () => {
  const zlib = process.getBuiltinModule('node:zlib');
  const os = process.getBuiltinModule('node:os');
  const realDeflateRaw = zlib.deflateRaw;
  const pieces = [];
  zlib.deflateRaw = (buf, opts, cb) => { pieces.push({ bytes: buf.length, flush: opts.finishFlush }); return realDeflateRaw(buf, opts, cb); };
  let out;
  try { out = await nodeHost.gzip(data, 1); } finally { zlib.deflateRaw = realDeflateRaw; }
  const want = Math.min(os.availableParallelism(), Number(process.env.UV_THREADPOOL_SIZE) || 4, Math.floor(data.length / (1 << 20)));
  assert.equal(pieces.length, want > 1 ? want : 0, `pieces: ${JSON.stringify(pieces)}`);
  if (want > 1) {
    assert.equal(pieces.reduce((a, p) => a + p.bytes, 0), data.length);
    assert.deepEqual(pieces.map((p) => p.flush), [...Array(want - 1).fill(zlib.constants.Z_SYNC_FLUSH), zlib.constants.Z_FINISH], 'only the last piece ends the stream');
  }
  // One member: the body between the 10-byte header and the 8-byte trailer is a single raw
  // deflate stream of the whole input (a second member's header inside it would not
  // inflate), and the trailer holds the whole input's CRC-32 and size.
  assert.deepEqual([...out.subarray(0, 3)], [0x1f, 0x8b, 8]);
  assert.deepEqual(new Uint8Array(zlib.inflateRawSync(out.subarray(10, out.length - 8))), data);
  const trailer = new DataView(out.buffer, out.byteOffset + out.length - 8, 8);
  assert.equal(trailer.getUint32(0, true), zlib.crc32(data));
  assert.equal(trailer.getUint32(4, true), data.length);
  // Pieces cost next to nothing in size against one stream at the same level.
  assert.ok(out.length <= zlib.gzipSync(data, { level: 1 }).length * 1.01, `${out.length} bytes`);
});

test('a 2-of-3 pool packs the job once and every replica unpacks the same files', async () => {
  const pool = await sandrun.pool().nodes(net.workers.map((w) => w.url)).consensus('2-of-3').join();
  const spy = spyGzip();
  try {
    const r = await (await sandrun.job().code(CODE).file('data.bin', data).with(pool).submit()).wait();
    assert.equal(r.status, 'completed', r.stderr);
    assert.equal(r.stdout, `${data.length} ${digest}\n`);
    assert.equal(r.proof.consensus.reached, true);
    const replicas = r.proof.consensus.replicas.length;
    assert.ok(r.proof.consensus.agreeing.length >= 2, JSON.stringify(r.proof.consensus));
    assert.equal(spy.calls.length, 1, `one prepared job, one archive for ${replicas} replicas`);
  } finally {
    spy.restore();
  }
});

test('a host without native gzip (null) falls back to the Rust compressor', async () => {
  const spy = spyGzip(async () => null);
  try {
    const r = await (await sandrun.job().code(CODE).file('data.bin', data).submit()).wait();
    assert.equal(spy.calls.length, 1);
    assert.equal(r.stdout, `${data.length} ${digest}\n`);
    assert.equal(r.proof.verified, true);
  } finally {
    spy.restore();
  }
});

test('small archives stay in wasm; a host without a gzip method at all is fine', async () => {
  const spy = spyGzip();
  try {
    assert.equal((await (await sandrun.job().code('print(7)').submit()).wait()).stdout, '7\n');
    assert.equal(spy.calls.length, 0, 'a tiny job crossed to the host');
  } finally {
    spy.restore();
  }
  const real = nodeHost.gzip;
  delete nodeHost.gzip;
  try {
    assert.equal((await (await sandrun.job().code(CODE).file('data.bin', data).submit()).wait()).stdout, `${data.length} ${digest}\n`);
  } finally {
    nodeHost.gzip = real;
  }
});

// Test doubles for faults node:zlib cannot be made to show: a compressor that loses the
// tail of its input, one that answers something other than gzip, and one that fails
// (with a plain Error: still IO, since nothing went over the network).
test('a broken host compressor fails with IO and submits nothing', async () => {
  const before = await acceptedJobs(net.workers[0].url);
  const doubles = [
    async (bytes, level, real) => real(bytes.subarray(0, bytes.length >> 1), level),
    async (bytes) => bytes.subarray(0, 1000),
    async () => { throw new Error('out of memory'); },
  ];
  for (const d of doubles) {
    const spy = spyGzip(d);
    try {
      const e = await rejectsWith(sandrun.job().code(CODE).file('data.bin', data).submit(), 'IO', SandrunError);
      assert.match(e.message, /cannot compress the job archive/);
    } finally {
      spy.restore();
    }
  }
  assert.deepEqual(await acceptedJobs(net.workers[0].url), before, 'a job was submitted with a broken archive');
});
