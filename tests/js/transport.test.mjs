// Which transport carries which request (docs/decisions.md, "Host seam"), against a real
// devnet. Requests to Sandrun workers go through the hand-written host (node:http in
// Node): the reference worker reads `Content-Type`/`Content-Length` case-sensitively,
// and Node's fetch lowercases names, so the same multipart job sent with fetch is
// refused. Every other request (registry, chain RPC, IPFS) goes through gloo-net's
// fetch, under middleware, with the hosts' deadline, size cap and typed errors.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import { Sandrun, SandrunError, localWallet } from '@sandrun/wasm';
import { startDevnet, rejectsWith, acceptedJobs } from './support.mjs';

let net;
let W;

before(async () => {
  net = await startDevnet(['--workers', '1', '--no-rate-limit', '--chain']);
  W = net.workers[0].url;
});
after(async () => net && net.stop());

/**
 * A recording forwarder in front of `target` (a real worker, registry or chain node):
 * each request is logged with its header names exactly as they arrived (`rawHeaders`)
 * and its body, then forwarded with those names unchanged. `answer(req, res)` may answer
 * instead (returns true), for servers that misbehave on purpose.
 */
async function recorder(target, answer) {
  const log = [];
  const t = target && new URL(target);
  const sockets = new Set();
  const s = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const names = req.rawHeaders.filter((_, i) => i % 2 === 0);
      log.push({ method: req.method, url: req.url, names, raw: req.rawHeaders, body });
      if (answer?.(req, res)) return;
      const headers = [];
      for (let i = 0; i < req.rawHeaders.length; i += 2) {
        if (req.rawHeaders[i].toLowerCase() === 'host') headers.push('Host', t.host);
        else headers.push(req.rawHeaders[i], req.rawHeaders[i + 1]);
      }
      const up = http.request({ host: t.hostname, port: t.port, path: req.url, method: req.method, headers, agent: false }, (ur) => {
        const out = [];
        ur.on('data', (c) => out.push(c));
        ur.on('end', () => res.writeHead(ur.statusCode, ur.rawHeaders).end(Buffer.concat(out)));
      });
      up.on('error', () => res.destroy());
      up.end(body);
    });
  });
  s.on('connection', (c) => { sockets.add(c); c.on('close', () => sockets.delete(c)); });
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${s.address().port}`, log, close: () => { for (const c of sockets) c.destroy(); s.close(); } };
}

/** The parts of a multipart body: `{ name, filename, type, data }`. */
function parseMultipart(body, boundary) {
  const parts = [];
  const sep = Buffer.from(`--${boundary}`);
  let at = body.indexOf(sep);
  for (;;) {
    const start = at + sep.length;
    if (body.subarray(start, start + 2).toString() === '--') break;
    const next = body.indexOf(sep, start);
    const part = body.subarray(start + 2, next - 2); // after CRLF, before CRLF
    const headEnd = part.indexOf('\r\n\r\n');
    const head = part.subarray(0, headEnd).toString();
    parts.push({
      name: /name="([^"]*)"/.exec(head)[1],
      filename: /filename="([^"]*)"/.exec(head)?.[1],
      type: /content-type:\s*([^\r\n]*)/i.exec(head)?.[1],
      data: part.subarray(headEnd + 4),
    });
    at = next;
  }
  return parts;
}

test('a multipart job: accepted from the SDK, refused from Node\'s fetch: why the worker path stays hand-written', async () => {
  const rec = await recorder(W);
  try {
    const before = await acceptedJobs(W);
    // About 1 MiB of archive: more than arrives with the request head in one read.
    const filler = randomBytes(768 * 1024).toString('base64');
    const code = `x = "${filler}"\nprint(len(x))\n`;
    const ex = await Sandrun.create({ apiEndpoint: rec.url, defaults: { consensus: 'none' } }).job().code(code).submit();
    assert.equal((await ex.wait()).stdout, `${filler.length}\n`);
    assert.equal(await acceptedJobs(W), before + 1, 'the SDK\'s submit was accepted');
    const submit = rec.log.find((r) => r.method === 'POST' && r.url === '/submit');
    assert.ok(submit.body.length > 512 * 1024, `a large body (${submit.body.length} bytes)`);
    // The host sends the names as spelled, with an exact length: what the worker reads.
    assert.ok(submit.names.includes('Content-Type') && submit.names.includes('Content-Length'), submit.names.join(','));
    assert.ok(!submit.names.includes('sec-fetch-mode'), 'not sent by fetch');
    const ct = submit.raw[submit.raw.indexOf('Content-Type') + 1];
    const boundary = /boundary=(.*)$/.exec(ct)[1];

    // 1. The same bytes and Content-Type through Node's fetch, set on a Headers object as
    //    gloo-net does: fetch writes its own `content-length` in lowercase, the worker
    //    finds no `Content-Length`, reads only what came with the head, and refuses.
    const same = await fetch(`${W}/submit`, { method: 'POST', headers: new Headers({ 'Content-Type': ct }), body: submit.body });
    assert.equal(same.status, 400);
    assert.deepEqual(await same.json(), { error: 'No files uploaded' });
    // 2. The same job as fetch's own FormData (the idiomatic way): refused too, since
    //    fetch writes the multipart `content-type` itself, in lowercase.
    const form = new FormData();
    for (const p of parseMultipart(submit.body, boundary)) {
      if (p.filename) form.append(p.name, new Blob([p.data], { type: p.type }), p.filename);
      else form.append(p.name, p.data.toString());
    }
    assert.equal(form.getAll('files').length, 1, 'the job archive part was found');
    const viaForm = await fetch(`${W}/submit`, { method: 'POST', body: form });
    assert.equal(viaForm.status, 400);
    assert.deepEqual(await viaForm.json(), { error: 'No files uploaded' });
    // What fetch put on the wire in both cases: the names it writes itself, lowercased.
    const seen = await recorder(null, (req, res) => { res.writeHead(400).end(); return true; });
    try {
      await fetch(`${seen.url}/submit`, { method: 'POST', headers: new Headers({ 'Content-Type': ct }), body: submit.body });
      await fetch(`${seen.url}/submit`, { method: 'POST', body: form });
      const [a, b] = seen.log.map((r) => r.names);
      assert.ok(a.includes('content-length') && !a.includes('Content-Length'), a.join(','));
      assert.ok(b.includes('content-type') && !b.includes('Content-Type'), b.join(','));
    } finally {
      seen.close();
    }
    assert.equal(await acceptedJobs(W), before + 1, 'neither fetch submit was accepted');
  } finally {
    rec.close();
  }
});

test('registry requests go through fetch (gloo-net), under middleware', async () => {
  const rec = await recorder(net.registry);
  try {
    const seen = [];
    const s = Sandrun.create({ apiEndpoint: W, registryEndpoint: rec.url }).with({
      async execute(next, ctx) { seen.push(`${ctx.service}:${ctx.operation}`); return next(); },
    });
    const pool = await s.pool().discover().join();
    assert.equal(pool.nodes.length, 1);
    const nodes = rec.log.find((r) => r.url === '/nodes');
    assert.ok(nodes, 'the registry was asked for /nodes');
    // Only fetch sends these (undici): node:http sends exactly the names it is given.
    assert.ok(nodes.names.includes('sec-fetch-mode') && nodes.names.includes('user-agent'), nodes.names.join(','));
    assert.ok(nodes.names.every((n) => n === n.toLowerCase()), nodes.names.join(','));
    assert.ok(seen.includes('registry:registry.nodes'), seen.join(','));
    // The worker's /health (pool join) still went through the host: no fetch headers.
    const rw = await recorder(W);
    try {
      await Sandrun.create({ apiEndpoint: rw.url }).pool().nodes([rw.url]).join();
      const health = rw.log.find((r) => r.url === '/health');
      assert.ok(health && !health.names.includes('sec-fetch-mode'), health?.names.join(','));
    } finally {
      rw.close();
    }
  } finally {
    rec.close();
  }
});

test('chain JSON-RPC goes through fetch (gloo-net): fetch\'s names on the wire, no added credentials', async () => {
  const rec = await recorder(net.chain.rpc);
  try {
    const key = `0x${'1'.repeat(64)}`;
    const id = await localWallet(key, rec.url).request({ method: 'eth_chainId' });
    assert.match(String(id), /^0x[0-9a-f]+$/);
    const call = rec.log.find((r) => r.method === 'POST');
    // fetch's own names (undici): node:http would send `Content-Type`, `Content-Length`
    // and nothing else.
    assert.ok(call.names.includes('sec-fetch-mode') && call.names.includes('content-length'), call.names.join(','));
    assert.ok(!call.names.some((n) => /^(cookie|authorization)$/i.test(n)), call.names.join(','));
  } finally {
    rec.close();
  }
});

test('the fetch path keeps the size cap (declared and streamed) and types its errors', async () => {
  const big = 16 * 1024 * 1024 + 1;
  const declared = await recorder(null, (req, res) => {
    res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': String(big) });
    res.write('{"nodes":['); // then nothing: the declared length alone must fail it
    return true;
  });
  const endless = await recorder(null, (req, res) => {
    res.writeHead(200, { 'Content-Type': 'application/json' }); // chunked, no length
    const chunk = Buffer.alloc(1024 * 1024, 0x20);
    let sent = 0;
    const pump = () => { while (sent < 64 && res.write(chunk)) sent += 1; if (sent < 64) res.once('drain', pump); else res.end(); };
    pump();
    return true;
  });
  try {
    for (const r of [declared, endless]) {
      const e = await rejectsWith(Sandrun.create({ apiEndpoint: W, registryEndpoint: r.url }).pool().discover().join(), 'MALFORMED_RESPONSE', SandrunError);
      assert.match(e.message, /GET http:\/\/127\.0\.0\.1:\d+\/nodes: the answer is larger than 16777216 bytes/);
    }
    const closed = await recorder(null, () => true);
    const port = new URL(closed.url).port;
    closed.close();
    const e = await rejectsWith(Sandrun.create({ apiEndpoint: W, registryEndpoint: `http://127.0.0.1:${port}` }).pool().discover().join(), 'NETWORK', SandrunError);
    assert.match(e.message, new RegExp(`GET http://127\\.0\\.0\\.1:${port}/nodes: `));
  } finally {
    declared.close();
    endless.close();
  }
});

test('the fetch path keeps a total deadline: a registry that drips its answer is cut off (30 s)', { timeout: 60_000 }, async () => {
  const drip = await recorder(null, (req, res) => {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    // Bytes keep coming (no idle timeout fires), for at most 50 s so the test cannot hang.
    let n = 0;
    const t = setInterval(() => (++n > 100 ? res.destroy() : res.write(' ')), 500);
    res.on('close', () => clearInterval(t));
    return true;
  });
  try {
    const t0 = performance.now();
    const e = await rejectsWith(Sandrun.create({ apiEndpoint: W, registryEndpoint: drip.url }).pool().discover().join(), 'TIMEOUT', SandrunError);
    assert.match(e.message, /GET http:\/\/127\.0\.0\.1:\d+\/nodes: no answer within 30000 ms/);
    assert.ok(performance.now() - t0 < 45_000, 'cut off at the deadline');
  } finally {
    drip.close();
  }
});
