// A hostile trustless gateway (a raw TCP server answering crafted CARs) and hostile
// middleware against the streamed CAR verification (blocks hashed while the body arrives,
// digests kept by byte range): no bytes that do not match their CID are ever returned,
// no part of a failed answer is used, and a lying Content-Length neither reserves memory
// nor traps the wasm instance.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { gzipSync } from 'node:zlib';
import { Sandrun, SandrunError } from '@sandrun/wasm';
import { rejectsWith, root } from './support.mjs';
// The host the package installed (same module instance): its native hash is wrapped below.
import { nodeHost } from '../../pkg/host-node.js';

// --- crafted CARs --------------------------------------------------------------------
const B32 = 'abcdefghijklmnopqrstuvwxyz234567';
function base32(bytes) {
  let bits = 0, v = 0, s = '';
  for (const b of bytes) { v = ((v << 8) | b) & 0xffff; bits += 8; while (bits >= 5) { s += B32[(v >>> (bits - 5)) & 31]; bits -= 5; } }
  return bits ? s + B32[(v << (5 - bits)) & 31] : s;
}
const ascii = (s) => new TextEncoder().encode(s);
const join = (...parts) => { const o = new Uint8Array(parts.reduce((a, p) => a + p.length, 0)); let at = 0; for (const p of parts) { o.set(p, at); at += p.length; } return o; };
const sha = (b) => new Uint8Array(createHash('sha256').update(b).digest());
/** CIDv1 of a raw block (sha2-256), as bytes. */
const rawCid = (data) => join(Uint8Array.of(0x01, 0x55, 0x12, 0x20), sha(data));
const text = (cid) => 'b' + base32(cid);
const varint = (n) => { const o = []; while (n >= 0x80) { o.push((n & 0x7f) | 0x80); n = Math.floor(n / 128); } o.push(n); return Uint8Array.from(o); };
const section = (b) => join(varint(b.length), b);
/** A CAR section holding `data` under `cid` (which need not be its CID). */
const block = (cid, data) => section(join(cid, data));
/** The dag-cbor header `{roots: [root], version: 1}` as a section. */
const header = (root) => {
  const c = join(Uint8Array.of(0), root);
  return section(join(Uint8Array.of(0xa2, 0x65), ascii('roots'), Uint8Array.of(0x81, 0xd8, 0x2a, 0x58, c.length), c, Uint8Array.of(0x67), ascii('version'), Uint8Array.of(1)));
};
const car = (root, ...sections) => join(header(root), ...sections);

const good = ascii('the bytes the CID names\n');
const evil = ascii('the bytes a hostile gateway would rather you had\n');
const cid = rawCid(good);
const url = `ipfs://${text(cid)}`;

// --- a gateway that writes exactly what a test says ----------------------------------
let gw; // { url, close }
/** How the gateway answers: `answer(path, sock)` writes raw HTTP. */
let answer;
const head = (status, headers = {}) => ascii(`HTTP/1.1 ${status} X\r\nConnection: close\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`);
/** A whole answer with a true Content-Length, written `chunk` bytes at a time. */
const serve = (body, { status = 200, chunk = body.length || 1, length = body.length } = {}) => async (path, sock) => {
  sock.write(head(status, { 'Content-Type': 'application/vnd.ipld.car', 'Content-Length': length }));
  for (let at = 0; at < body.length; at += chunk) {
    if (sock.destroyed) return;
    sock.write(body.subarray(at, at + chunk));
    if (chunk < body.length) await new Promise((r) => setImmediate(r));
  }
  sock.end();
};
/** CAR requests get `carAnswer`, raw block requests `raw` (200 with those bytes). */
const route = (carAnswer, raw) => (path, sock) => (path.includes('format=car') ? carAnswer(path, sock) : serve(raw ?? new Uint8Array(0), { status: raw ? 200 : 404 })(path, sock));

before(async () => {
  const srv = net.createServer((sock) => {
    let got = '';
    sock.on('error', () => {});
    sock.on('data', (d) => {
      got += d;
      if (sock.answered || !got.includes('\r\n\r\n')) return;
      sock.answered = true;
      Promise.resolve(answer(got.split(' ')[1], sock)).catch(() => sock.destroy());
    });
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  gw = { url: `http://127.0.0.1:${srv.address().port}`, close: () => new Promise((r) => { srv.close(r); srv.unref(); }) };
});
after(() => gw.close());

const ipfs = () => Sandrun.create({ ipfsGateway: gw.url }).ipfs();
async function refused(code, carAnswer, raw, client = ipfs()) {
  answer = route(carAnswer, raw);
  return rejectsWith(client.cat(url), code, SandrunError);
}

test('the crafted gateway is a working one: an honest CAR in 1-byte chunks (every section straddles chunks) is read', async () => {
  for (const chunk of [1, 3, 7, 1 << 20]) {
    answer = route(serve(car(cid, block(cid, good)), { chunk }));
    assert.deepEqual(await ipfs().cat(url), good, `chunks of ${chunk} B`);
  }
  // gzip: the body fetch hands over is far longer than the Content-Length declared.
  const zeros = new Uint8Array(1 << 20);
  const zcid = rawCid(zeros);
  const packed = gzipSync(car(zcid, block(zcid, zeros)));
  answer = route(async (p, sock) => { sock.write(head(200, { 'Content-Encoding': 'gzip', 'Content-Length': packed.length })); sock.end(packed); });
  assert.deepEqual(await ipfs().cat(`ipfs://${text(zcid)}`), zeros);
});

test('wrong bytes are refused however they are placed in the CAR', async () => {
  const bad = block(cid, evil);
  for (const chunk of [1, 5, 1 << 20]) {
    const e = await refused('VERIFICATION_FAILED', serve(car(cid, bad), { chunk }));
    assert.equal(e.details.cid, text(cid));
  }
  // The same CID twice: a good copy does not excuse a bad one, before or after it.
  await refused('VERIFICATION_FAILED', serve(car(cid, block(cid, good), bad)));
  await refused('VERIFICATION_FAILED', serve(car(cid, bad, block(cid, good))));
  await refused('VERIFICATION_FAILED', serve(car(cid, bad, block(cid, good)), { chunk: 1 }));
  // The good bytes under another CID next to the bad ones: the digest of one range is
  // never lent to another.
  await refused('VERIFICATION_FAILED', serve(car(cid, block(rawCid(evil), good), bad)));
});

test('a CAR that does not parse is refused whole, the blocks hashed before it notwithstanding', async () => {
  const ok = car(cid, block(cid, good));
  for (const [what, body] of [
    ['trailing garbage', join(ok, ascii('garbage'))],
    ['a partial section at the end', join(ok, varint(100), cid)],
    ['a section length that never ends', join(ok, new Uint8Array(12).fill(0x80))],
    ['a zero-length section', join(ok, Uint8Array.of(0))],
    ['no header (the first section is the block)', block(cid, good)],
    ['an empty body', new Uint8Array(0)],
    ['a section over the 4 MiB a section may have', join(ok, varint(5 << 20), new Uint8Array(64))],
  ]) {
    answer = route(serve(body, { chunk: 3 }));
    await rejectsWith(ipfs().cat(url), 'MALFORMED_RESPONSE', SandrunError).catch((e) => assert.fail(`${what}: ${e.message}`));
  }
  // A block the SDK cannot check (sha2-512): skipped while streaming, refused after.
  const sha512 = join(Uint8Array.of(0x01, 0x55, 0x13, 0x40), new Uint8Array(64));
  await refused('UNSUPPORTED', serve(car(cid, block(cid, good), block(sha512, evil)), { chunk: 2 }));
});

test('a body cut short, a body longer than declared, a non-200 success: nothing of them is used', async () => {
  const whole = car(cid, block(cid, good));
  // Content-Length larger than the body, then the connection closes.
  await refused('NETWORK', async (p, sock) => { sock.write(head(200, { 'Content-Length': whole.length + 10 })); sock.write(whole); sock.end(); });
  // Content-Length smaller than the body: the body ends inside the block's section.
  await refused('MALFORMED_RESPONSE', async (p, sock) => { sock.write(head(200, { 'Content-Length': whole.length - 3 })); sock.write(whole); sock.end(); });
  // No Content-Length, the connection closes inside the block's section.
  await refused('MALFORMED_RESPONSE', async (p, sock) => { sock.write(head(200)); sock.write(whole.subarray(0, whole.length - 3)); sock.end(); });
  // Content-Length ending right after the header: no block in the CAR, so the block is
  // fetched raw, and the raw answer is checked on its own (here: the evil bytes).
  const h = header(cid).length;
  await refused('VERIFICATION_FAILED', async (p, sock) => { sock.write(head(200, { 'Content-Length': h })); sock.write(whole); sock.end(); }, evil);
  // A 206 carrying a good CAR is still not a CAR answer.
  await refused('HTTP_STATUS', serve(whole, { status: 206 }));
});

test('a raw block fetched after the CAR never borrows a digest the CAR\'s bytes had', async () => {
  // The CAR holds only another block, whose bytes are the evil ones (verified, under their
  // own CID); the wanted block is missing, and the raw answer is those same evil bytes.
  const other = rawCid(evil);
  await refused('VERIFICATION_FAILED', serve(car(cid, block(other, evil)), { chunk: 2 }), evil);
  // A gateway without CAR support (406): every block raw, checked.
  await refused('VERIFICATION_FAILED', serve(car(cid, block(cid, good)), { status: 406 }), evil);
  answer = route(serve(car(cid, block(cid, evil)), { status: 406 }), good);
  assert.deepEqual(await ipfs().cat(url), good, 'the raw good block is read');
});

test('middleware that truncates, swaps or relabels the answer: what it returns is what is checked', async () => {
  const mw = (f) => Sandrun.create({ ipfsGateway: gw.url }).with({ name: 'hostile', async execute(next, ctx) { const r = await next(); return ctx.url.includes('format=car') ? f(r) : r; } }).ipfs();
  const honest = serve(car(cid, block(cid, good)), { chunk: 4 });
  await refused('MALFORMED_RESPONSE', honest, undefined, mw((r) => ({ ...r, body: r.body.subarray(0, r.body.length - 2) })));
  await refused('VERIFICATION_FAILED', honest, undefined, mw((r) => ({ ...r, body: car(cid, block(cid, evil)) })));
  // A failed answer relabelled 200 with evil bytes.
  await refused('VERIFICATION_FAILED', serve(ascii('nope'), { status: 500 }), undefined, mw((r) => ({ ...r, status: 200, body: car(cid, block(cid, evil)) })));
  // An honest CAR relabelled 406: the blocks are fetched raw and checked (evil: refused).
  await refused('VERIFICATION_FAILED', honest, evil, mw((r) => ({ ...r, status: 406 })));
});

test('a never-ending body stops at the fetch\'s cap with MALFORMED_RESPONSE', async () => {
  const forever = (unit) => async (p, sock) => {
    sock.write(head(200));
    sock.write(header(cid));
    const many = join(...Array(2000).fill(unit));
    while (!sock.destroyed) await new Promise((r) => sock.write(many, r));
  };
  const client = ipfs();
  for (const unit of [block(cid, good), Uint8Array.of(0x80)]) {
    answer = route(forever(unit));
    await rejectsWith(client.cat(url, { maxBytes: 1024 }), 'MALFORMED_RESPONSE', SandrunError);
  }
});

test('a host hash that breaks while the body streams: a wrong digest fails closed, a missing one is replaced by sha2', async () => {
  const original = nodeHost.sha256Into;
  let streaming = false, during = 0;
  const withHost = async (wrap, f) => {
    nodeHost.sha256Into = (b, out) => (streaming ? (during++, wrap(original, b, out)) : original(b, out));
    try { await f(); } finally { nodeHost.sha256Into = original; }
  };
  // 1-byte chunks, and another (valid) block after the wanted one: the wanted block is
  // hashed while the answer is still open, when the host misbehaves (until the socket closes).
  const streamed = (data) => async (p, sock) => {
    streaming = sock;
    sock.on('close', () => { if (streaming === sock) streaming = false; });
    await serve(car(cid, block(cid, data), block(rawCid(evil), evil)), { chunk: 1 })(p, sock);
  };
  const flip = (h, b, out) => { h(b, out); out[0] = out[0] === 48 ? 49 : 48; };
  await withHost(flip, () => refused('VERIFICATION_FAILED', streamed(good)));
  assert.ok(during > 0, `the host hashed while the body streamed (flip: ${during})`);
  for (const broken of [() => { throw new Error('broke'); }, (h, b, out) => out.set(ascii('zz'))]) {
    during = 0;
    await withHost(broken, async () => {
      answer = route(streamed(good));
      assert.deepEqual(await ipfs().cat(url), good);
      await refused('VERIFICATION_FAILED', streamed(evil));
    });
    assert.ok(during > 0, `the host hashed while the body streamed (${broken}: ${during})`);
  }
});

/** Run `src` (an ES module body with `Sandrun`, `SandrunError`, `mem()`: wasm memory
 * bytes, `gateway`) in a fresh Node process, so its wasm memory is its own and a trap
 * does not take the test runner down; resolves with what it printed last as JSON. */
function child(src) {
  const prelude = `import { Sandrun, SandrunError } from '@sandrun/wasm'; import { initSync } from './pkg/sandrun_wasm.js'; const mem = () => initSync().memory.buffer.byteLength; const gateway = ${JSON.stringify(gw.url)};\n`;
  return new Promise((resolve) => {
    const p = spawn(process.execPath, ['--input-type=module', '-e', prelude + src], { cwd: root });
    let out = '', err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    p.on('close', (status) => resolve({ status, out: out.trim().split('\n').at(-1), err }));
  });
}

test('a Content-Length far beyond the body reserves no memory for it, and one past what wasm can hold fails typed (no trap)', async () => {
  const whole = car(cid, block(cid, good));
  const lying = (declared) => route(async (path, sock) => {
    sock.write(head(200, { 'Content-Length': declared }));
    sock.write(whole.subarray(0, 10));
    setTimeout(() => sock.destroy(), 20);
  });
  answer = lying(130_000_000);
  // About 130 MB declared (under the default cap), 10 bytes sent.
  const small = await child(`const before = mem(); let code; try { await Sandrun.create({ ipfsGateway: gateway }).ipfs().cat('${url}'); } catch (e) { code = e.code; } console.log(JSON.stringify({ code, grew: mem() - before }));`);
  assert.equal(small.status, 0, small.err);
  const r = JSON.parse(small.out);
  assert.equal(r.code, 'NETWORK');
  assert.ok(r.grew < 16 << 20, `wasm memory grew by ${r.grew} bytes for a 10-byte body`);
  // 2.2 GB declared under a cap the caller raised: more than wasm32 can hold in one buffer.
  answer = lying(2_200_000_000);
  const big = await child(`let code; try { await Sandrun.create({ ipfsGateway: gateway }).ipfs().cat('${url}', { maxBytes: 2_500_000_000 }); } catch (e) { code = e.code ?? String(e); } console.log(JSON.stringify({ code }));`);
  assert.equal(big.status, 0, `the process died: ${big.err.slice(0, 300)}`);
  assert.ok(['NETWORK', 'MALFORMED_RESPONSE'].includes(JSON.parse(big.out).code), big.out);
});
