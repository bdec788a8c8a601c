// The Node.js host: node:http (header names sent exactly as given, exact
// Content-Length; Node's fetch lowercases names and streams FormData chunked, which a
// reference Sandrun worker rejects), node:fs, and a small WebSocket client.
import http from 'node:http';
import https from 'node:https';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { makeError, hostFailure } from './errors.js';

function request(method, url, headers, body, timeoutMs) {
  let req;
  const promise = new Promise((resolve, reject) => {
    let u;
    try { u = new URL(url); } catch { return reject(hostFailure('network', `not a URL: ${url}`)); }
    const mod = u.protocol === 'https:' ? https : u.protocol === 'http:' ? http : null;
    if (!mod) return reject(hostFailure('unsupported', `unsupported protocol in ${url}`));
    const h = {};
    for (const [k, v] of headers) h[k] = v;
    if (body.length > 0 || method === 'POST') h['Content-Length'] = String(body.length);
    let res;
    const chunks = [];
    const settle = () => {
      const buf = Buffer.concat(chunks);
      resolve({ status: res.statusCode, headers: Object.entries(res.headers).map(([k, v]) => [k, String(v)]), body: new Uint8Array(buf.buffer, buf.byteOffset, buf.length) });
    };
    req = mod.request(u, { method, headers: h, agent: false }, (r) => {
      res = r;
      res.on('data', (c) => chunks.push(c));
      res.on('error', (e) => reject(hostFailure('network', `${method} ${url}: ${e.message}`)));
      res.on('aborted', () => reject(hostFailure('network', `${method} ${url}: the connection closed mid-body`)));
      res.on('end', () => {
        const buf = Buffer.concat(chunks);
        const declared = Number(res.headers['content-length']);
        if (res.complete === false || (Number.isFinite(declared) && buf.length < declared)) {
          return reject(hostFailure('network', `${method} ${url}: the response body was truncated (${buf.length} of ${declared} bytes)`));
        }
        settle();
      });
    });
    if (timeoutMs > 0) {
      req.setTimeout(timeoutMs, () => req.destroy(Object.assign(new Error(`no answer within ${timeoutMs} ms`), { sandrunTimeout: true })));
    }
    // A reference worker's 413 declares a Content-Length one byte short of its body;
    // the parser then fails on the extra byte after a complete message. Keep the answer.
    req.on('error', (e) => (res?.complete && e.code === 'HPE_INVALID_CONSTANT') ? setImmediate(settle) : reject(hostFailure(e.sandrunTimeout ? 'timeout' : 'network', `${method} ${url}: ${e.code === 'ECONNREFUSED' ? 'connection refused (is the server running?)' : e.message}`)));
    req.end(body.length > 0 ? Buffer.from(body.buffer, body.byteOffset, body.length) : undefined);
  });
  promise.catch(() => {});
  return { promise, cancel: () => req?.destroy() };
}

/** A minimal WebSocket client for `/stream/{id}`: text frames in, text frames out. */
function websocket(url) {
  return new Promise((resolve) => {
    const u = new URL(url.replace(/^ws/, 'http'));
    const mod = u.protocol === 'https:' ? https : http;
    const req = mod.request(u, {
      agent: false,
      headers: { Upgrade: 'websocket', Connection: 'Upgrade', 'Sec-WebSocket-Key': randomBytes(16).toString('base64'), 'Sec-WebSocket-Version': '13' },
    });
    req.on('error', () => resolve(null));
    req.on('response', (res) => { res.resume(); resolve(null); });
    req.on('upgrade', (res, socket, head) => {
      let buf = head && head.length ? Buffer.from(head) : Buffer.alloc(0);
      const frames = [];
      const waiters = [];
      let closed = false;
      const push = (v) => { const w = waiters.shift(); if (w) w(v); else frames.push(v); };
      const end = () => { if (!closed) { closed = true; push(null); while (waiters.length) waiters.shift()(null); } };
      socket.on('data', (d) => {
        buf = Buffer.concat([buf, d]);
        for (;;) {
          if (buf.length < 2) return;
          const op = buf[0] & 0x0f;
          let len = buf[1] & 0x7f, at = 2;
          if (len === 126) { if (buf.length < 4) return; len = buf.readUInt16BE(2); at = 4; }
          else if (len === 127) { if (buf.length < 10) return; len = Number(buf.readBigUInt64BE(2)); at = 10; }
          if (buf.length < at + len) return;
          const payload = buf.subarray(at, at + len);
          buf = buf.subarray(at + len);
          if (op === 1 || op === 0) push(payload.toString('utf8'));
          else if (op === 8) { end(); socket.end(); return; }
        }
      });
      socket.on('close', end);
      socket.on('error', end);
      resolve({
        next: () => new Promise((r) => { if (frames.length) r(frames.shift()); else if (closed) r(null); else waiters.push(r); }),
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

const io = (what, p) => p.catch((e) => { throw hostFailure('io', `${what}: ${e.message}`); });

export const nodeHost = {
  request,
  websocket,
  timer: (ms) => { let id; const promise = new Promise((r) => { id = setTimeout(r, ms); }); return { promise, cancel: () => clearTimeout(id) }; },
  now: () => performance.now(),
  readFile: (p) => io(`cannot read ${p}`, fs.readFile(p).then((b) => new Uint8Array(b.buffer, b.byteOffset, b.length))),
  readDir: (p) => io(`cannot list ${p}`, fs.readdir(p, { withFileTypes: true }).then((es) => es.map((e) => [e.name, e.isDirectory()]))),
  writeFile: (p, bytes) => io(`cannot write ${p}`, fs.mkdir(path.dirname(p), { recursive: true }).then(() => fs.writeFile(p, bytes))),
  sha256: async (bytes) => createHash('sha256').update(bytes).digest('hex'),
  makeError,
};
