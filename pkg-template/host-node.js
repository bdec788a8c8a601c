// The Node.js host: node:http (header names sent exactly as given, exact
// Content-Length; Node's fetch lowercases names and streams FormData chunked, which a
// reference Sandrun worker rejects), node:fs, and a small WebSocket client.
import { makeError, hostFailure } from './errors.js';

// The node: modules load on first use, not at import: an ES `import` of node:http,
// node:https and node:crypto (and of node:fs, which reads every export, fs.ReadStream and
// so the streams too) cost a cold start (import + the first Sandrun.create()) more than
// the rest of it (issue 14 row 7), and Sandrun.create() needs none of them.
// process.getBuiltinModule (Node 20.16+ and 22.3+, Bun, Deno 2) loads a builtin
// synchronously from an ES module.
if (typeof globalThis.process?.getBuiltinModule !== 'function') {
  throw new Error(`@sandrun/wasm needs process.getBuiltinModule (Node.js 22.12 or later, as its engines field says; Bun; Deno 2); this runtime (${globalThis.process?.version ?? 'unknown'}) lacks it`);
}
const builtin = (name) => {
  let m;
  return () => (m ??= process.getBuiltinModule(name));
};
const http = builtin('node:http');
const https = builtin('node:https');
const nodeCrypto = builtin('node:crypto');
const nodeFs = builtin('node:fs');
const createHash = (algorithm) => nodeCrypto().createHash(algorithm);
const randomBytes = (size) => nodeCrypto().randomBytes(size);
/** An object whose properties are read from `load()`'s result, loaded on the first read. */
const onFirstUse = (load) => new Proxy({}, { get: (_, key) => load()[key] });
const fs = onFirstUse(() => nodeFs().promises);
const fsConstants = onFirstUse(() => nodeFs().constants);
const path = onFirstUse(builtin('node:path'));

/** setTimeout fires at once past 2^31-1 ms (with a warning): never arm more than that. */
export const MAX_TIMER_MS = 2 ** 31 - 1;
export const clampMs = (ms) => Math.max(0, Math.min(Number(ms) || 0, MAX_TIMER_MS));

/** The largest body this module buffered for a single response, in bytes (a test hook:
 * downloads streamed to disk must keep it far below the file size). */
export const stats = { maxBufferedBytes: 0 };

function open(method, url, headers, body, timeoutMs, onResponse, reject) {
  let u;
  try { u = new URL(url); } catch { reject(hostFailure('network', `not a URL: ${url}`)); return null; }
  const mod = u.protocol === 'https:' ? https() : u.protocol === 'http:' ? http() : null;
  if (!mod) { reject(hostFailure('unsupported', `unsupported protocol in ${url}`)); return null; }
  const h = {};
  for (const [k, v] of headers) h[k] = v;
  if (body.length > 0 || method === 'POST') h['Content-Length'] = String(body.length);
  const req = mod.request(u, { method, headers: h, agent: false }, onResponse);
  // A total deadline, not an idle timeout: a server dripping one byte a second would
  // keep an idle timer from ever firing.
  const deadline = setTimeout(() => kill(req, Object.assign(new Error(`no complete answer within ${timeoutMs} ms`), { sandrunTimeout: true }), method, url), clampMs(timeoutMs));
  req.on('close', () => clearTimeout(deadline));
  return req;
}

/** Destroy `req`, remembering why: whichever event rejects first reports this reason. */
function kill(req, e, method, url) {
  if (!req.sandrunReason) req.sandrunReason = failure(method, url, e);
  req.destroy(e);
}

const failure = (method, url, e) => (e.sandrunKind ? hostFailure(e.sandrunKind, `${method} ${url}: ${e.message}`) : hostFailure(e.sandrunTimeout ? 'timeout' : 'network', `${method} ${url}: ${e.code === 'ECONNREFUSED' ? 'connection refused (is the server running?)' : e.message}`));
const tooLarge = (maxBytes) => Object.assign(new Error(`the answer is larger than ${maxBytes} bytes; stopped reading (a broken or hostile server)`), { sandrunKind: 'too_large' });

function request(method, url, headers, body, timeoutMs, maxBytes) {
  let req;
  const promise = new Promise((resolve, rejectRaw) => {
    const reject = (x) => rejectRaw(req?.sandrunReason ?? x);
    let res;
    const chunks = [];
    let size = 0;
    const settle = () => {
      const buf = Buffer.concat(chunks);
      resolve({ status: res.statusCode, headers: Object.entries(res.headers).map(([k, v]) => [k, String(v)]), body: new Uint8Array(buf.buffer, buf.byteOffset, buf.length) });
    };
    req = open(method, url, headers, body, timeoutMs, (r) => {
      res = r;
      const declared = Number(res.headers['content-length']);
      if (Number.isFinite(declared) && declared > maxBytes) return kill(req, tooLarge(maxBytes), method, url);
      res.on('data', (c) => {
        size += c.length;
        if (size > maxBytes) return kill(req, tooLarge(maxBytes), method, url);
        chunks.push(c);
        if (size > stats.maxBufferedBytes) stats.maxBufferedBytes = size;
      });
      res.on('error', (e) => reject(failure(method, url, e)));
      res.on('aborted', () => reject(hostFailure('network', `${method} ${url}: the connection closed mid-body`)));
      res.on('end', () => {
        const declared = Number(res.headers['content-length']);
        if (res.complete === false || (Number.isFinite(declared) && size < declared)) {
          return reject(hostFailure('network', `${method} ${url}: the response body was truncated (${size} of ${declared} bytes)`));
        }
        settle();
      });
    }, reject);
    if (!req) return;
    // A reference worker's 413 declares a Content-Length one byte short of its body;
    // the parser then fails on the extra byte after a complete message. Keep the answer.
    req.on('error', (e) => (res?.complete && e.code === 'HPE_INVALID_CONSTANT') ? setImmediate(settle) : reject(failure(method, url, e)));
    req.end(body.length > 0 ? Buffer.from(body.buffer, body.byteOffset, body.length) : undefined);
  });
  promise.catch(() => {});
  return { promise, cancel: () => req?.destroy() };
}

/**
 * Like `request`, but a 2xx body streams into a new file at `target` (null: hashed and
 * dropped), hashed on the way: never held whole in memory. The file is created with
 * O_EXCL|O_NOFOLLOW (an existing file or symlink there fails), and removed on any
 * failure: over `maxBytes`, the deadline, a truncated body, a cancel.
 */
function requestToFile(method, url, headers, body, timeoutMs, maxBytes, target) {
  let req;
  let fh = null;
  let cancelled = false;
  const cleanup = async () => {
    if (fh) { const f = fh; fh = null; await f.close().catch(() => {}); await fs.unlink(target).catch(() => {}); }
  };
  const promise = (async () => {
    if (target !== null && target !== undefined) {
      try {
        fh = await fs.open(target, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | (fsConstants.O_NOFOLLOW ?? 0), 0o644);
      } catch (e) {
        throw hostFailure(e.code === 'EEXIST' ? 'exists' : 'io', `cannot create ${target}: ${e.message}`);
      }
    }
    try {
      return await new Promise((resolve, rejectRaw) => {
        const reject = (x) => rejectRaw(req?.sandrunReason ?? x);
        if (cancelled) return reject(hostFailure('network', `${method} ${url}: cancelled`));
        req = open(method, url, headers, body, timeoutMs, (res) => {
          const ok = res.statusCode >= 200 && res.statusCode < 300;
          const declared = Number(res.headers['content-length']);
          if (Number.isFinite(declared) && declared > maxBytes) return kill(req, tooLarge(maxBytes), method, url);
          const hash = createHash('sha256');
          const errorChunks = [];
          let size = 0;
          let writing = Promise.resolve();
          res.on('data', (c) => {
            size += c.length;
            if (size > maxBytes) return kill(req, tooLarge(maxBytes), method, url);
            if (!ok) { if (size <= 65536) errorChunks.push(c); return; }
            hash.update(c);
            if (fh) {
              // Backpressure: at most one chunk in flight to the disk.
              res.pause();
              const f = fh;
              writing = writing.then(() => f.write(c)).then(() => res.resume(), (e) => kill(req, Object.assign(e, { sandrunKind: 'io' }), method, url));
            }
            if (c.length > stats.maxBufferedBytes) stats.maxBufferedBytes = c.length;
          });
          res.on('error', (e) => reject(failure(method, url, e)));
          res.on('aborted', () => reject(hostFailure('network', `${method} ${url}: the connection closed mid-body`)));
          res.on('end', async () => {
            if (res.complete === false || (Number.isFinite(declared) && size < declared)) {
              return reject(hostFailure('network', `${method} ${url}: the response body was truncated (${size} of ${declared} bytes)`));
            }
            try {
              await writing;
              if (fh && ok) await fh.sync().catch(() => {});
            } catch (e) { return reject(hostFailure('io', `cannot write ${target}: ${e.message}`)); }
            const eb = Buffer.concat(errorChunks);
            resolve({ status: res.statusCode, headers: Object.entries(res.headers).map(([k, v]) => [k, String(v)]), size, sha256: ok ? hash.digest('hex') : '', errorBody: new Uint8Array(eb.buffer, eb.byteOffset, eb.length) });
          });
        }, reject);
        if (!req) return;
        req.on('error', (e) => reject(failure(method, url, e)));
        req.end(body.length > 0 ? Buffer.from(body.buffer, body.byteOffset, body.length) : undefined);
      });
    } catch (e) {
      await cleanup();
      throw e;
    } finally {
      if (fh) { await fh.close().catch(() => {}); fh = null; }
    }
  })();
  promise.catch(() => {});
  return { promise, cancel: () => { cancelled = true; req?.destroy(); } };
}

/** A minimal WebSocket client for `/stream/{id}`: text frames in, text frames out. */
function websocket(url, upgradeTimeoutMs = 10_000, maxFrameBytes = 16 * 1024 * 1024) {
  return new Promise((resolve) => {
    const u = new URL(url.replace(/^ws/, 'http'));
    const mod = u.protocol === 'https:' ? https() : http();
    const req = mod.request(u, {
      agent: false,
      headers: { Upgrade: 'websocket', Connection: 'Upgrade', 'Sec-WebSocket-Key': randomBytes(16).toString('base64'), 'Sec-WebSocket-Version': '13' },
    });
    // An upgrade that never comes: no socket, and the SDK polls /status instead.
    const upgradeTimer = setTimeout(() => { req.destroy(); resolve(null); }, clampMs(upgradeTimeoutMs));
    req.on('error', () => { clearTimeout(upgradeTimer); resolve(null); });
    req.on('response', (res) => { clearTimeout(upgradeTimer); res.resume(); resolve(null); });
    req.on('upgrade', (res, socket, head) => {
      clearTimeout(upgradeTimer);
      let buf = head && head.length ? Buffer.from(head) : Buffer.alloc(0);
      const frames = [];
      const waiters = [];
      let closed = false;
      // Frames waiting for next(): bounded like one frame, or the socket is dropped.
      let queued = 0;
      const push = (v) => {
        const w = waiters.shift();
        if (w) return w(v);
        frames.push(v);
        if (v !== null) { queued += v.length; if (queued > maxFrameBytes) { socket.destroy(); end(); } }
      };
      const take = () => { const v = frames.shift(); if (v) queued -= v.length; return v; };
      const end = () => { if (!closed) { closed = true; push(null); while (waiters.length) waiters.shift()(null); } };
      // Frames that came in the same packet as the 101 answer are in `head`: parsed at once,
      // not when the next packet comes (a job that ended as its socket connected sends
      // everything up to [DONE] at once, then waits for the client: nothing more comes).
      const parse = () => {
        for (;;) {
          if (buf.length < 2) return;
          const op = buf[0] & 0x0f;
          let len = buf[1] & 0x7f, at = 2;
          if (len === 126) { if (buf.length < 4) return; len = buf.readUInt16BE(2); at = 4; }
          else if (len === 127) { if (buf.length < 10) return; len = Number(buf.readBigUInt64BE(2)); at = 10; }
          // A frame over the cap is never buffered: drop the socket at its header.
          if (len > maxFrameBytes) { buf = Buffer.alloc(0); socket.destroy(); end(); return; }
          if (buf.length < at + len) return;
          const payload = buf.subarray(at, at + len);
          buf = buf.subarray(at + len);
          if (op === 1 || op === 0) push(payload.toString('utf8'));
          else if (op === 8) { end(); socket.end(); return; }
        }
      };
      socket.on('data', (d) => { buf = Buffer.concat([buf, d]); parse(); });
      parse();
      socket.on('close', end);
      socket.on('error', end);
      resolve({
        next: () => new Promise((r) => { if (frames.length) r(take()); else if (closed) r(null); else waiters.push(r); }),
        send: (text) => {
          if (closed) return;
          const data = Buffer.from(text, 'utf8');
          const mask = randomBytes(4);
          const head = data.length < 126 ? Buffer.from([0x81, 0x80 | data.length]) : Buffer.from([0x81, 0x80 | 126, data.length >> 8, data.length & 255]);
          const body = Buffer.from(data.map((b, i) => b ^ mask[i % 4]));
          socket.write(Buffer.concat([head, mask, body]));
        },
        close: () => { socket.destroy(); end(); },
      });
    });
    req.end();
  });
}

// SHA-256 on the verification path (src/platform/js.rs `sha256`): synchronous (no
// Promise: at 1 KiB the round trip alone cost more than hashing), over a view of wasm
// memory, the lowercase hex digest written into `out` (64 bytes of wasm memory) rather than
// returned: taking a returned string into wasm cost more than the rest of the boundary at
// 1 KiB. Hex, not a Buffer: one-shot crypto.hash (Node >= 20.12) answers hex about twice as
// fast as it allocates a 32-byte Buffer; encodeInto copies the 64 ASCII digits. The SDK
// checks what was written (64 lowercase hex digits, else sha2 in wasm). Loaded on first use.
let nodeSha256;
const hexOut = new TextEncoder();
function sha256Into(bytes, out) {
  if (!nodeSha256) {
    const c = nodeCrypto();
    nodeSha256 = typeof c.hash === 'function' ? (b) => c.hash('sha256', b, 'hex') : (b) => c.createHash('sha256').update(b).digest('hex');
  }
  hexOut.encodeInto(nodeSha256(bytes), out);
}

const io = (what, p) => p.catch((e) => { throw hostFailure('io', `${what}: ${e.message}`); });

// node:zlib is loaded on the first archive to compress, like the modules above.
const nodeZlib = builtin('node:zlib');
const nodeOs = builtin('node:os');
/** Inputs from this size are cut in pieces compressed at once (one per pool thread). */
const GZIP_PIECE_MIN = 1 << 20;

/**
 * Gzip `bytes` (the host's to keep) at `level` with node:zlib, on libuv's threadpool, so
 * the event loop stays free. From 2 MiB the input is cut into pieces deflated at once on
 * the pool's threads (as many as the machine has cores, at most the pool's size) and
 * joined into one gzip member, as pigz does: every piece but the last ends with a sync
 * flush (byte-aligned, not final), so the raw deflate streams concatenate into one valid
 * stream, framed by one gzip header and a trailer with the CRC-32 and size of the whole
 * input (RFC 1952). One member, not several: a decoder that reads only the first member
 * (flate2's GzDecoder, which the devnet's worker uses) gets everything. Each piece starts
 * without the previous 32 KiB as its dictionary: at 1 MiB or more per piece that costs
 * well under 1% of the size.
 */
async function gzip(bytes, level) {
  let zlib;
  try { zlib = nodeZlib(); } catch (e) { throw hostFailure('io', `node:zlib: ${e.message}`); }
  const fail = (e) => hostFailure('io', `node:zlib: ${e.message}`);
  const n = gzipPieces(bytes.length, zlib);
  if (n < 2) {
    return new Promise((resolve, reject) => {
      // Output chunks of 64 KiB rather than 16 KiB: fewer round trips to the threadpool.
      zlib.gzip(bytes, { level, chunkSize: 64 << 10 }, (e, out) => (e ? reject(fail(e)) : resolve(new Uint8Array(out.buffer, out.byteOffset, out.length))));
    });
  }
  const size = Math.ceil(bytes.length / n);
  const deflated = [];
  for (let at = 0; at < bytes.length; at += size) {
    const last = at + size >= bytes.length;
    const finishFlush = last ? zlib.constants.Z_FINISH : zlib.constants.Z_SYNC_FLUSH;
    deflated.push(new Promise((resolve, reject) => {
      zlib.deflateRaw(bytes.subarray(at, at + size), { level, finishFlush, chunkSize: 64 << 10 }, (e, out) => (e ? reject(fail(e)) : resolve(out)));
    }));
  }
  // The checksum is computed here while the pool's threads compress.
  const crc = zlib.crc32(bytes);
  const pieces = await Promise.all(deflated);
  const out = new Uint8Array(10 + pieces.reduce((a, p) => a + p.length, 0) + 8);
  // Header: magic, deflate, no flags, no mtime, no extra flags, OS unknown.
  out.set([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
  let o = 10;
  for (const p of pieces) { out.set(p, o); o += p.length; }
  const trailer = new DataView(out.buffer, o, 8);
  trailer.setUint32(0, crc, true);
  trailer.setUint32(4, bytes.length >>> 0, true);
  return out;
}

/** How many pieces to compress `len` bytes in at once: 1 below 2 MiB, or where node:zlib
 * has no crc32 (Node before 20.15 and 22.2). */
function gzipPieces(len, zlib) {
  if (typeof zlib.crc32 !== 'function' || len < 2 * GZIP_PIECE_MIN) return 1;
  const os = nodeOs();
  const cores = typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
  const pool = Number(process.env.UV_THREADPOOL_SIZE) || 4;
  return Math.max(1, Math.min(cores, pool, Math.floor(len / GZIP_PIECE_MIN)));
}

export const nodeHost = {
  request,
  websocket,
  requestToFile,
  timer: (ms) => { let id; const promise = new Promise((r) => { id = setTimeout(r, clampMs(ms)); }); return { promise, cancel: () => clearTimeout(id) }; },
  now: () => performance.now(),
  lstat: (p) => fs.lstat(p).then(
    (s) => (s.isSymbolicLink() ? 'symlink' : s.isDirectory() ? 'dir' : s.isFile() ? 'file' : 'other'),
    (e) => { if (e.code === 'ENOENT') return 'missing'; throw hostFailure('io', `cannot inspect ${p}: ${e.message}`); },
  ),
  makeDir: (p) => fs.mkdir(p).catch(async (e) => {
    if (e.code === 'EEXIST' && (await fs.lstat(p)).isDirectory()) return;
    throw hostFailure('io', `cannot create directory ${p}: ${e.message}`);
  }),
  writeNewFile: (p, bytes) => io(`cannot write ${p}`, fs.writeFile(p, bytes, { flag: fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | (fsConstants.O_NOFOLLOW ?? 0), mode: 0o644 })),
  // Without replace: link() fails atomically if anything is at `to` (no check-then-write
  // race); with it, rename() replaces a file, or a symlink itself, never its target.
  commitFile: async (from, to, replace) => {
    if (replace) return io(`cannot move ${from} to ${to}`, fs.rename(from, to));
    try {
      await fs.link(from, to);
    } catch (e) {
      if (e.code === 'EEXIST') throw Object.assign(hostFailure('exists', `refusing to overwrite ${to}: it exists (pass { overwrite: true } to replace files)`), { details: { path: to } });
      // Filesystems without hard links: check, then rename (a narrow race remains).
      if (['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'EXDEV', 'ENOSYS'].includes(e.code)) {
        const there = await fs.lstat(to).then(() => true, () => false);
        if (there) throw Object.assign(hostFailure('exists', `refusing to overwrite ${to}: it exists (pass { overwrite: true } to replace files)`), { details: { path: to } });
        return io(`cannot move ${from} to ${to}`, fs.rename(from, to));
      }
      throw hostFailure('io', `cannot write ${to}: ${e.message}`);
    }
    await fs.unlink(from).catch(() => {});
  },
  removeFile: (p) => fs.unlink(p).catch((e) => { if (e.code !== 'ENOENT') throw hostFailure('io', `cannot remove ${p}: ${e.message}`); }),
  readFile: (p) => io(`cannot read ${p}`, fs.readFile(p).then((b) => new Uint8Array(b.buffer, b.byteOffset, b.length))),
  readDir: (p) => io(`cannot list ${p}`, fs.readdir(p, { withFileTypes: true }).then((es) => es.map((e) => [e.name, e.isDirectory()]))),
  writeFile: (p, bytes) => io(`cannot write ${p}`, fs.mkdir(path.dirname(p), { recursive: true }).then(() => fs.writeFile(p, bytes))),
  sha256Into,
  gzip,
  makeError,
};
