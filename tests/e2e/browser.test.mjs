// End-to-end test of @sandrun/wasm in headless Chromium.
//
//   node --test tests/e2e/
//
// Serves pkg/ and a small test page from a node:http server on 127.0.0.1 (random port),
// opens the page in /usr/bin/chromium (playwright-core), and runs real jobs on a local
// devnet from inside the page. The workers listen on other ports than the page, so every
// SDK request is cross-origin (reference workers answer no CORS preflight).
//
// Devnet: if SANDRUN_DEVNET holds the devnet's JSON line, that devnet is used; otherwise
// a devnet is started here (tests/js/support.mjs finds the binary under $CARGO_TARGET_DIR) and
// killed in after(). CHROMIUM overrides the browser path; SANDRUN_E2E_PKG serves another
// built package directory instead of pkg/.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startDevnet as startSharedDevnet, setFault, forwardingProxy, noise, noiseSrc, nodeAdd } from '../js/support.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const PKG = path.resolve(process.env.SANDRUN_E2E_PKG ?? path.join(ROOT, 'pkg'));
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

const MIME = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.wasm': 'application/wasm',
  '.json': 'application/json',
  '.ts': 'text/plain; charset=utf-8',
  '.md': 'text/markdown; charset=utf-8',
};

// The page loads the package exactly as a user would, then exposes it on window.
const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>sandrun e2e</title></head>
<body>
<script type="module">
  try {
    const mod = await import('/pkg/index.browser.js');
    await mod.default();
    window.sdk = mod;
    window.__ready = 'ok';
  } catch (e) {
    window.__ready = 'error: ' + (e && e.stack || e);
  }
</script>
</body></html>`;

let devnet; // { workers: [{url, worker_id}], registry }
let devnetProc; // only when started here
let server;
let pageOrigin;
const served = []; // [path, status, content-type]
let context;
let profileDir;
let page;
const pageErrors = [];
const consoleErrors = [];

async function startDevnet() {
  if (process.env.SANDRUN_DEVNET) return JSON.parse(process.env.SANDRUN_DEVNET);
  devnetProc = await startSharedDevnet(['--workers', '4', '--no-rate-limit', '--fault', '3=wrong-output', '--chain', '--ipfs']);
  return devnetProc;
}

async function stopDevnet() {
  if (devnetProc) await devnetProc.stop();
  devnetProc = undefined;
}

function startServer() {
  server = createServer(async (req, res) => {
    const url = new URL(req.url, 'http://x');
    let pathname = decodeURIComponent(url.pathname);
    const record = (status, type) => served.push([pathname, status, type]);
    if (pathname === '/' || pathname === '/index.html') {
      res.writeHead(200, { 'content-type': MIME['.html'], 'cache-control': 'no-store' });
      res.end(PAGE);
      return record(200, MIME['.html']);
    }
    if (pathname === '/favicon.ico') {
      res.writeHead(204);
      res.end();
      return record(204, '');
    }
    if (pathname.startsWith('/pkg/')) {
      const file = path.resolve(PKG, '.' + pathname.slice(4));
      if (file.startsWith(PKG + path.sep)) {
        try {
          if ((await stat(file)).isFile()) {
            const body = await readFile(file);
            const type = MIME[path.extname(file)] ?? 'application/octet-stream';
            res.writeHead(200, { 'content-type': type, 'content-length': body.length, 'cache-control': 'no-store' });
            res.end(body);
            return record(200, type);
          }
        } catch {}
      }
    }
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found');
    record(404, 'text/plain');
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      pageOrigin = `http://127.0.0.1:${server.address().port}`;
      resolve();
    });
  });
}

/** Runs `fn` in the page; a thrown error comes back as {error: {name, code, message}}. */
async function inPage(fn, arg) {
  return page.evaluate(
    async ({ src, arg }) => {
      const f = (0, eval)('(' + src + ')');
      try {
        return { value: await f(window.sdk, arg) };
      } catch (e) {
        return {
          error: {
            name: e?.name,
            code: e?.code,
            message: String(e?.message ?? e),
            isSandrunError: e instanceof window.sdk.SandrunError,
            isError: e instanceof Error,
          },
        };
      }
    },
    { src: fn.toString(), arg },
  );
}

/** The value returned by `fn` in the page; fails with the page's error otherwise. */
async function okInPage(fn, arg) {
  const r = await inPage(fn, arg);
  if (r.error) assert.fail(`page threw ${r.error.name} [${r.error.code}]: ${r.error.message}`);
  return r.value;
}

before(async () => {
  devnet = await startDevnet();
  assert.ok(devnet.workers?.length >= 1, 'devnet has workers');
  await startServer();

  const { chromium } = await import('playwright-core');
  profileDir = await mkdtemp(path.join(tmpdir(), 'sandrun-e2e-chromium-'));
  context = await chromium.launchPersistentContext(profileDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--enable-unsafe-webgpu',
    ],
  });
  context.setDefaultTimeout(30_000);
  page = context.pages()[0] ?? (await context.newPage());
  page.on('pageerror', (e) => pageErrors.push(String(e?.stack ?? e)));
  page.on('console', (m) => {
    if (m.type() === 'error') consoleErrors.push(m.text());
  });
  await page.goto(pageOrigin + '/index.html');
  await page.waitForFunction(() => window.__ready !== undefined, null, { timeout: 30_000 });
  const ready = await page.evaluate(() => window.__ready);
  assert.equal(ready, 'ok', `package failed to load in the page: ${ready}`);
});

after(async () => {
  if (consoleErrors.length) console.log(`page console errors (${consoleErrors.length}):\n  ` + consoleErrors.join('\n  '));
  try {
    await context?.close();
  } catch {}
  await stopDevnet();
  if (server) await new Promise((r) => server.close(r));
  for (const d of [profileDir]) if (d) await rm(d, { recursive: true, force: true }).catch(() => {});
});

test('the package loads in the browser: wasm served as application/wasm, page cross-origin to workers', async () => {
  const wasm = served.find(([p]) => p === '/pkg/sandrun_wasm_bg.wasm');
  assert.deepEqual(wasm, ['/pkg/sandrun_wasm_bg.wasm', 200, 'application/wasm']);
  const info = await okInPage((sdk) => ({
    exports: Object.keys(sdk).sort(),
    origin: location.origin,
    secure: window.isSecureContext,
  }));
  for (const name of ['Sandrun', 'SandrunError', 'JobBuilder', 'JobExecution', 'LogStream', 'default'])
    assert.ok(info.exports.includes(name), `export ${name}`);
  assert.equal(info.origin, pageOrigin);
  for (const w of devnet.workers) assert.notEqual(new URL(w.url).origin, pageOrigin);
});

test('python job: stdout, exit code and a verified proof with a signature check', { timeout: 30_000 }, async () => {
  const worker = devnet.workers[0];
  const r = await okInPage(
    async (sdk, { url }) => {
      const s = sdk.Sandrun.create({ apiEndpoint: url });
      const ex = await s.job().code('print("hi")\nprint(6 * 7)').submit();
      const id = ex.id;
      const res = await ex.wait();
      return {
        id,
        worker: ex.worker,
        status: res.status,
        exitCode: res.exitCode,
        stdout: res.stdout,
        stderr: res.stderr,
        jobHash: res.jobHash,
        proof: res.proof && {
          verified: res.proof.verified,
          level: res.proof.level,
          workerId: res.proof.workerId,
          signature: res.proof.signature,
          jobHash: res.proof.jobHash,
          checks: res.proof.checks,
        },
      };
    },
    { url: worker.url },
  );
  assert.match(r.id, /^job_\d+_\d+$/);
  assert.equal(r.status, 'completed');
  assert.equal(r.exitCode, 0);
  assert.equal(r.stdout, 'hi\n42\n');
  assert.ok(r.proof, 'result has a proof');
  assert.equal(r.proof.verified, true, `proof not verified: ${JSON.stringify(r.proof.checks)}`);
  assert.equal(r.proof.workerId, worker.worker_id);
  assert.equal(r.proof.jobHash, r.jobHash);
  const sig = r.proof.checks.find((c) => c.name === 'signature');
  assert.ok(sig, `no signature check in ${JSON.stringify(r.proof.checks)}`);
  assert.equal(sig.ok, true, `signature check failed: ${sig.detail}`);
  assert.ok(r.proof.checks.every((c) => c.ok), JSON.stringify(r.proof.checks));
});

test('spec example: console.log("Hello from GPU!") runs on node', { timeout: 30_000 }, async () => {
  const r = await okInPage(
    async (sdk, { url }) => {
      const s = sdk.Sandrun.create({ apiEndpoint: url });
      const res = await (await s.job().code('console.log("Hello from GPU!")').submit()).wait();
      return { status: res.status, exitCode: res.exitCode, stdout: res.stdout, verified: res.proof?.verified };
    },
    { url: devnet.workers[2].url },
  );
  assert.deepEqual(r, { status: 'completed', exitCode: 0, stdout: 'Hello from GPU!\n', verified: true });
});

test('output file: download() returns the exact bytes, checked against the signed sha256', { timeout: 30_000 }, async () => {
  // All 256 byte values (not valid UTF-8) plus a text file.
  const code = [
    'open("out.bin", "wb").write(bytes(range(256)) * 3)',
    'open("note.txt", "w").write("héllo\\n")',
    'print("wrote")',
  ].join('\n');
  const r = await okInPage(
    async (sdk, { url, code }) => {
      const s = sdk.Sandrun.create({ apiEndpoint: url });
      const ex = await s.job().code(code).outputs(['out.bin', 'note.txt']).submit();
      const res = await ex.download();
      return {
        status: res.status,
        stdout: res.stdout,
        verified: res.proof?.verified,
        checks: res.proof?.checks,
        files: res.files.map((f) => ({
          path: f.path,
          size: f.size,
          sha256: f.sha256,
          isU8: f.bytes instanceof Uint8Array,
          bytes: f.bytes ? Array.from(f.bytes) : null,
        })),
      };
    },
    { url: devnet.workers[0].url, code },
  );
  assert.equal(r.status, 'completed');
  assert.equal(r.stdout, 'wrote\n');
  assert.equal(r.verified, true, JSON.stringify(r.checks));
  const byPath = Object.fromEntries(r.files.map((f) => [f.path, f]));
  assert.deepEqual(Object.keys(byPath).sort(), ['_sandrun_stdout.txt', 'note.txt', 'out.bin']);

  const { createHash } = await import('node:crypto');
  const expectBin = Buffer.from([...Array(3)].flatMap(() => [...Array(256).keys()]));
  const expectTxt = Buffer.from('héllo\n', 'utf8');
  for (const [p, expect] of [['out.bin', expectBin], ['note.txt', expectTxt]]) {
    const f = byPath[p];
    assert.equal(f.isU8, true, `${p}: bytes is a Uint8Array`);
    assert.deepEqual(Buffer.from(f.bytes), expect, `${p}: bytes`);
    assert.equal(f.size, expect.length, `${p}: size`);
    assert.equal(f.sha256, createHash('sha256').update(expect).digest('hex'), `${p}: sha256`);
    const check = r.checks.find((c) => c.name === `output:${p}`);
    assert.ok(check?.ok, `${p}: output check ${JSON.stringify(check)}`);
  }
});

test('log stream yields the job stdout', { timeout: 30_000 }, async () => {
  const code = 'import time\nfor i in range(3):\n    print("line", i, flush=True)\n    time.sleep(0.2)\n';
  const r = await okInPage(
    async (sdk, { url, code }) => {
      const s = sdk.Sandrun.create({ apiEndpoint: url });
      const ex = await s.job().code(code).submit();
      const chunks = [];
      for await (const c of await ex.logs()) chunks.push({ stream: c.stream, text: c.text });
      const res = await ex.wait();
      return { chunks, stdout: res.stdout, status: res.status };
    },
    { url: devnet.workers[1 % devnet.workers.length].url, code },
  );
  assert.equal(r.status, 'completed');
  assert.equal(r.stdout, 'line 0\nline 1\nline 2\n');
  for (const c of r.chunks) {
    assert.ok(['stdout', 'stderr', 'status'].includes(c.stream), `chunk stream ${c.stream}`);
    assert.equal(typeof c.text, 'string');
  }
  const out = r.chunks.filter((c) => c.stream === 'stdout').map((c) => c.text).join('');
  assert.equal(out, 'line 0\nline 1\nline 2\n', `stdout chunks: ${JSON.stringify(r.chunks)}`);
});

test('errors: bad argument is INVALID_ARGUMENT, unreachable endpoint is NETWORK', { timeout: 30_000 }, async () => {
  const bad = await inPage((sdk, { url }) => {
    sdk.Sandrun.create({ apiEndpoint: url }).job().memory(-1);
    return 'no error';
  }, { url: devnet.workers[0].url });
  assert.ok(bad.error, `memory(-1) did not throw (returned ${JSON.stringify(bad.value)})`);
  assert.equal(bad.error.isSandrunError, true, JSON.stringify(bad.error));
  assert.equal(bad.error.name, 'SandrunError');
  assert.equal(bad.error.code, 'INVALID_ARGUMENT', bad.error.message);

  // Port 9 (Chromium refuses it as an unsafe port), then a port nothing listens on.
  const closed = createServer();
  await new Promise((r) => closed.listen(0, '127.0.0.1', r));
  const closedPort = closed.address().port;
  await new Promise((r) => closed.close(r));
  for (const endpoint of ['http://127.0.0.1:9', `http://127.0.0.1:${closedPort}`]) {
    const net = await inPage(async (sdk, { endpoint }) => {
      const s = sdk.Sandrun.create({ apiEndpoint: endpoint });
      const ex = await s.job().code('print(1)').submit();
      return `submitted ${ex.id}`;
    }, { endpoint });
    assert.ok(net.error, `${endpoint}: submit resolved: ${JSON.stringify(net.value)}`);
    assert.equal(net.error.isSandrunError, true, `${endpoint}: ${JSON.stringify(net.error)}`);
    assert.equal(net.error.code, 'NETWORK', `${endpoint}: ${net.error.message}`);
  }
});

test('verification in the browser: a tampered output is refused, a receipt verifies offline', { timeout: 30_000 }, async () => {
  const r = await okInPage(
    async (sdk, { good, wrong }) => {
      const code = 'open("out.txt","w").write("x")';
      let refused;
      try {
        await (await sdk.Sandrun.create({ apiEndpoint: wrong }).job().code(code).submit()).wait();
      } catch (e) {
        refused = e.code;
      }
      const s = sdk.Sandrun.create({ apiEndpoint: good });
      const result = await (await s.job().code(code).submit()).wait();
      const receipt = await s.proof().from(result).toReceipt();
      const offline = sdk.Sandrun.create({ apiEndpoint: 'http://127.0.0.1:1' });
      const ok = await offline.proof().from(receipt).verify();
      const tampered = await offline.proof().from(JSON.stringify({ ...JSON.parse(receipt), exitCode: 7 })).verify();
      return { refused, valid: ok.valid, tamperedValid: tampered.valid };
    },
    { good: devnet.workers[0].url, wrong: devnet.workers[3].url },
  );
  assert.deepEqual(r, { refused: 'VERIFICATION_FAILED', valid: true, tamperedValid: false });
});

test('a 2-of-3 job in the browser: the agreed result, the wrong-output worker named', { timeout: 60_000 }, async () => {
  const w = devnet.workers;
  const r = await okInPage(
    async (sdk, { urls }) => {
      const s = sdk.Sandrun.create({ apiEndpoint: urls[0] });
      const pool = await s.pool().nodes(urls).consensus('2-of-3').join();
      const res = await (await s.job().code('open("out.txt","w").write("42")\nprint("agreed")').with(pool).submit()).wait();
      return { stdout: res.stdout, reached: res.proof.consensus.reached, agreeing: res.proof.consensus.agreeing.length, dissenting: res.proof.consensus.dissenting };
    },
    // The wrong worker is among the two replicas lazy replication starts first, so its
    // failed check starts the third.
    { urls: [w[0].url, w[3].url, w[1].url] },
  );
  assert.deepEqual(r, { stdout: 'agreed\n', reached: true, agreeing: 2, dissenting: [w[3].worker_id] });
});

test('trust in the browser: a relay is a dissent, not a vote; a stdout lie is refused', { timeout: 60_000 }, async () => {
  const w = devnet.workers;
  // Worker 2 relays worker 0's signed results (devnet fault, switched on for this test).
  await setFault(w[2].url, 'relay');
  try {
    const r = await okInPage(
      async (sdk, { urls }) => {
        const s = sdk.Sandrun.create({ apiEndpoint: urls[0] });
        const pool = await s.pool().nodes(urls).consensus('2-of-2').join();
        try {
          await (await s.job().code('print("relayed")').with(pool).submit()).wait();
          return { code: 'resolved' };
        } catch (e) {
          return { code: e.code, relay: e.details.replicas.find((x) => x.worker === urls[1]).detail };
        }
      },
      { urls: [w[0].url, w[2].url] },
    );
    assert.equal(r.code, 'CONSENSUS_NOT_REACHED');
    assert.match(r.relay, /presented key/);
  } finally {
    await setFault(w[2].url, null);
  }
  await setFault(w[1].url, 'stdout-lie');
  try {
    const r = await okInPage(
      async (sdk, { url }) => {
        try {
          await (await sdk.Sandrun.create({ apiEndpoint: url }).job().code('print("truth 42")').submit()).wait();
          return { code: 'resolved' };
        } catch (e) {
          return { code: e.code, stdout: e.details.proof.checks.find((c) => c.name === 'stdout') };
        }
      },
      { url: w[1].url },
    );
    assert.equal(r.code, 'VERIFICATION_FAILED');
    assert.equal(r.stdout.ok, false);
  } finally {
    await setFault(w[1].url, null);
  }
});

test('bounds in the browser: an endless answer is cut at the size cap; one silent node cannot hang join()', { timeout: 60_000 }, async () => {
  // A hostile worker (a test double: the devnet's workers do not misbehave this way) that
  // accepts a job, then answers /status with an endless body; and one that never answers.
  const open = [];
  const hostile = createServer((req, res) => {
    const cors = { 'Access-Control-Allow-Origin': '*' };
    if (req.method === 'POST' && req.url === '/submit') {
      req.resume();
      return req.on('end', () => res.writeHead(200, { ...cors, 'Content-Type': 'application/json' }).end('{"job_id":"job_1_1","status":"queued"}'));
    }
    if (req.url.startsWith('/status/')) {
      res.writeHead(200, { ...cors, 'Content-Type': 'application/json' });
      const chunk = Buffer.alloc(1 << 20, 0x20);
      let sent = 0;
      const more = () => {
        while (sent < 64 && res.write(chunk)) sent++;
        if (sent < 64) res.once('drain', more);
        else res.end();
      };
      return more();
    }
    if (req.url === '/health' && req.headers.host.endsWith(`:${silentPort}`)) return open.push(res);
    res.writeHead(404, cors).end('{"error":"Not found"}');
  });
  hostile.on('upgrade', (req, socket) => socket.destroy());
  await new Promise((r) => hostile.listen(0, '127.0.0.1', r));
  const silent = createServer((req, res) => open.push(res));
  await new Promise((r) => silent.listen(0, '127.0.0.1', r));
  const silentPort = silent.address().port;
  try {
    const capped = await inPage(
      async (sdk, { url }) => {
        const ex = await sdk.Sandrun.create({ apiEndpoint: url }).job().code('print(1)').consensus('none').submit();
        return await ex.wait();
      },
      { url: `http://127.0.0.1:${hostile.address().port}` },
    );
    assert.ok(capped.error, 'an endless /status was accepted');
    assert.equal(capped.error.code, 'MALFORMED_RESPONSE', capped.error.message);
    assert.match(capped.error.message, /larger than/);
    const started = Date.now();
    const joined = await okInPage(
      async (sdk, { good, silent }) => {
        const pool = await sdk.Sandrun.create({ apiEndpoint: good }).pool().nodes([good, silent]).join();
        return { nodes: pool.nodes.map((n) => n.endpoint), excluded: pool.excluded };
      },
      { good: devnet.workers[0].url, silent: `http://127.0.0.1:${silentPort}` },
    );
    assert.deepEqual(joined.nodes, [devnet.workers[0].url]);
    assert.equal(joined.excluded[0].endpoint, `http://127.0.0.1:${silentPort}`);
    assert.ok(Date.now() - started < 30_000, 'join() waited on the silent node past its deadline');
  } finally {
    for (const r of open) r.destroy();
    hostile.close();
    silent.close();
  }
});

test('credentials in the browser: the registry gets them, a redirect to another origin and the workers do not', { timeout: 60_000 }, async () => {
  // A registry double (the devnet's registry has no auth and no redirects) that answers
  // CORS preflights, records every request, and redirects /nodes once to another origin.
  const log = [];
  const other = createServer((req, res) => {
    log.push({ server: 'other', url: req.url, auth: req.headers.authorization ?? null });
    res.writeHead(200, { 'Access-Control-Allow-Origin': '*' }).end('{"nodes":[]}');
  });
  await new Promise((r) => other.listen(0, '127.0.0.1', r));
  const registry = createServer((req, res) => {
    const cors = { 'Access-Control-Allow-Origin': '*', 'Access-Control-Allow-Headers': 'authorization, x-api-key, content-type', 'Access-Control-Allow-Methods': 'GET, POST' };
    if (req.method === 'OPTIONS') return res.writeHead(204, cors).end();
    log.push({ server: 'registry', url: req.url, auth: req.headers.authorization ?? null });
    if (req.url === '/nodes') return res.writeHead(302, { ...cors, Location: `http://127.0.0.1:${other.address().port}/nodes` }).end();
    res.writeHead(404, cors).end('{"error":"Not found"}');
  });
  await new Promise((r) => registry.listen(0, '127.0.0.1', r));
  const workerLog = [];
  const worker = await forwardingProxy(devnet.workers[0].url, { log: workerLog });
  try {
    const r = await inPage(
      async (sdk, { worker, registry }) => {
        const s = sdk.Sandrun.create({ apiEndpoint: worker, registryEndpoint: registry, authentication: { token: 'browser-secret' } });
        const job = await (await s.job().code('print(1)').submit()).wait();
        await s.pool().discover({}).join();
        return job.stdout;
      },
      { worker: worker.url, registry: `http://127.0.0.1:${registry.address().port}` },
    );
    assert.ok(r.error, 'join() followed a redirect that carried credentials');
    assert.ok(workerLog.some((x) => x.method === 'POST' && x.url === '/submit'), 'the worker was asked');
    assert.ok(workerLog.every((x) => x.headers.authorization === undefined), 'a worker got the registry token');
    const toRegistry = log.filter((x) => x.server === 'registry');
    assert.ok(toRegistry.length >= 1, 'the registry was asked');
    assert.ok(toRegistry.every((x) => x.auth === 'Bearer browser-secret'), JSON.stringify(toRegistry));
    assert.deepEqual(log.filter((x) => x.server === 'other'), [], 'the redirect target got a request (and maybe the token)');
  } finally {
    registry.close();
    other.close();
    worker.close();
  }
});

test('a large output is checked with WebCrypto in the browser', { timeout: 30_000 }, async () => {
  const r = await okInPage(
    async (sdk, { url }) => {
      const s = sdk.Sandrun.create({ apiEndpoint: url });
      const res = await (await s.job().code('open("big.bin","wb").write(bytes(range(256)) * 2048)').outputs(['big.bin']).submit()).download();
      const f = res.files.find((x) => x.path === 'big.bin');
      const digest = [...new Uint8Array(await crypto.subtle.digest('SHA-256', f.bytes))].map((b) => b.toString(16).padStart(2, '0')).join('');
      return { size: f.size, same: digest === f.sha256, ok: res.proof.checks.find((c) => c.name === 'output:big.bin').ok };
    },
    { url: devnet.workers[1].url },
  );
  assert.deepEqual(r, { size: 524288, same: true, ok: true });
});

test('a 3 MiB input is packed in wasm in the browser (not CompressionStream, measured slower) and verified on the worker', { timeout: 60_000 }, async () => {
  const r = await okInPage(
    async (sdk, { url }) => {
      // A spy: the page's real CompressionStream, counted.
      const Real = globalThis.CompressionStream;
      let made = 0;
      globalThis.CompressionStream = class extends Real { constructor(f) { super(f); made += 1; } };
      try {
        const data = new Uint8Array(3 << 20);
        for (let i = 0; i < data.length; i++) data[i] = (i % 1000) < 900 ? 97 + (i % 26) : (i * 7919) & 255;
        const hex = [...new Uint8Array(await crypto.subtle.digest('SHA-256', data))].map((b) => b.toString(16).padStart(2, '0')).join('');
        const code = 'import hashlib\nb = open("data.bin", "rb").read()\nprint(len(b), hashlib.sha256(b).hexdigest())\n';
        const s = sdk.Sandrun.create({ apiEndpoint: url });
        const job = s.job().code(code).file('data.bin', data);
        const est = await job.estimate();
        const res = await (await job.submit()).wait();
        return { made, hex, stdout: res.stdout, verified: res.proof.verified, uploadBytes: est.uploadBytes };
      } finally {
        globalThis.CompressionStream = Real;
      }
    },
    { url: devnet.workers[0].url },
  );
  assert.equal(r.made, 0, 'the browser host has no gzip: CompressionStream is slower than the level-1 deflate in wasm');
  assert.equal(r.stdout, `${3 << 20} ${r.hex}\n`);
  assert.equal(r.verified, true);
  assert.ok(r.uploadBytes < 3 << 20, `compressed: ${r.uploadBytes} bytes`);
});

test('a paid job in the browser through an injected EIP-1193 provider; a rejection pays and submits nothing', { timeout: 60_000 }, async () => {
  const { createPublicClient, http: viemHttp, parseEther } = await import('viem');
  const chain = devnet.chain;
  const pub = createPublicClient({ transport: viemHttp(chain.rpc) });
  const payer = chain.accounts[0].address;
  const [p0, w0] = [await pub.getBalance({ address: payer }), await pub.getBalance({ address: devnet.workers[0].payout })];
  const r = await okInPage(
    async (sdk, { url, registry, chain }) => {
      // What a wallet extension injects: an EIP-1193 provider (here backed by anvil's
      // unlocked dev accounts, so anvil signs).
      const provider = {
        async request({ method, params }) {
          if (window.__rejectNext && method === 'eth_sendTransaction') throw Object.assign(new Error('User rejected the request.'), { code: 4001 });
          const m = method === 'eth_requestAccounts' ? 'eth_accounts' : method;
          const res = await fetch(chain.rpc, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: m, params: params ?? [] }) });
          const j = await res.json();
          if (j.error) throw Object.assign(new Error(j.error.message), { code: j.error.code });
          return j.result;
        },
      };
      window.ethereum = provider;
      const s = sdk.Sandrun.create({ apiEndpoint: url, registryEndpoint: registry, escrow: { address: chain.escrow, chainId: chain.chainId }, web3Provider: window.ethereum });
      const res = await (await s.job().code('print("paid from a browser")').payment('0.25', 'ETH').submit()).wait();
      window.__rejectNext = true;
      let rejected;
      try {
        await s.job().code('print(1)').payment('0.25').submit();
      } catch (e) {
        rejected = e.code;
      }
      window.__rejectNext = false;
      return { stdout: res.stdout, state: res.cost.state, txs: res.cost.transactions, rejected };
    },
    { url: devnet.workers[0].url, registry: devnet.registry, chain },
  );
  assert.equal(r.stdout, 'paid from a browser\n');
  assert.equal(r.state, 'released');
  assert.equal(r.rejected, 'USER_REJECTED');
  let gas = 0n;
  for (const h of r.txs) {
    const rc = await pub.getTransactionReceipt({ hash: h });
    gas += rc.gasUsed * rc.effectiveGasPrice;
  }
  assert.equal(await pub.getBalance({ address: payer }), p0 - parseEther('0.25') - gas, 'payer: amount + gas, to the wei');
  assert.equal(await pub.getBalance({ address: devnet.workers[0].payout }), w0 + parseEther('0.25'));
});

test('WebGPU in Chromium (SwiftShader): gpu() loads the GPU module on first use; kernels bit-exact with WebCrypto; without navigator.gpu nothing throws', { timeout: 120_000 }, async () => {
  assert.ok(!served.some(([p]) => p.startsWith('/pkg/gpu/')), 'the GPU module is not fetched before the first gpu() call');
  // A browser without WebGPU (navigator.gpu hidden): available false, CPU digests, no trap.
  const none = await okInPage(async (sdk) => {
    Object.defineProperty(navigator, 'gpu', { value: undefined, configurable: true });
    try {
      const g = sdk.Sandrun.create({}).gpu();
      const p = await g.probe();
      const d = await g.sha256([new TextEncoder().encode('abc')]);
      return { available: p.available, reason: p.reason, d };
    } finally {
      delete navigator.gpu;
    }
  });
  assert.equal(none.available, false);
  assert.match(none.reason, /navigator\.gpu/);
  assert.deepEqual(none.d, ['ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad']);
  assert.ok(!served.some(([p]) => p.startsWith('/pkg/gpu/')), 'still not fetched without WebGPU');

  const r = await okInPage(async (sdk) => {
    const hex = (buf) => [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, '0')).join('');
    const rand = (n) => crypto.getRandomValues(new Uint8Array(n));
    const enc = new TextEncoder();
    const inputs = [enc.encode(''), enc.encode('abc'), enc.encode('abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq'), new Uint8Array(1_000_000).fill(97)];
    for (let n = 0; n <= 200; n++) inputs.push(rand(n));
    for (const n of [255, 256, 4095, 4096, 4097, 65_535]) inputs.push(rand(n));
    for (let i = 0; i < 100; i++) inputs.push(rand(Math.floor(Math.random() * 3000)));
    const g = sdk.Sandrun.create({}).gpu();
    const p = await g.probe();
    const got = await g.sha256(inputs);
    const want = await Promise.all(inputs.map(async (b) => hex(await crypto.subtle.digest('SHA-256', b))));
    const bad = got.findIndex((h, i) => h !== want[i]);
    return { p, n: inputs.length, bad, badLen: bad >= 0 ? inputs[bad].length : null, same: got.length === want.length && bad < 0 };
  });
  assert.equal(r.p.available, true, `WebGPU in headless Chromium: ${r.p.reason}`);
  assert.equal(r.p.adapter.backend, 'webgpu');
  assert.equal(r.p.adapter.software, true, `SwiftShader expected, got ${JSON.stringify(r.p.adapter)}`);
  assert.ok(r.p.throughput.sha256Mbps > 0 && r.p.throughput.fp32Gflops > 0);
  assert.equal(r.same, true, `digest ${r.bad} (${r.badLen} bytes) differs from WebCrypto`);
  assert.equal(r.n, 311);
  const wasm = served.find(([p]) => p === '/pkg/gpu/sandrun_gpu_bg.wasm');
  assert.deepEqual(wasm, ['/pkg/gpu/sandrun_gpu_bg.wasm', 200, 'application/wasm']);
});

// The same bytes in the page and here: xorshift, no period (every 256 KiB chunk differs).

test('IPFS in the browser: a 5 MiB file and a directory round trip with the node\'s CIDs; a job reads an ipfs:// dataset and publishes', { timeout: 60_000 }, async () => {
  const r = await okInPage(
    async (sdk, { url, ipfs, noiseSrc }) => {
      const noise = (0, eval)(noiseSrc);
      const s = sdk.Sandrun.create({ apiEndpoint: url, ipfsGateway: ipfs.gateway, ipfsApi: ipfs.api });
      const fs = s.ipfs();
      const big = noise(5 * 1024 * 1024 + 17, 21);
      const cid = await fs.add(big);
      const back = await fs.cat(`ipfs://${cid}`);
      const root = await fs.add({ 'a.txt': new TextEncoder().encode('hello'), 'data/b.bin': noise(300_000, 22) });
      const got = await fs.get(root);
      const listed = await fs.ls(root);
      const res = await (await s.job().code('import os\nd = open(os.environ["DATASET_URL"], "rb").read()\nopen("n.txt", "w").write(str(len(d)))\nprint(len(d))').environment({ DATASET_URL: `ipfs://${root}/data/b.bin` }).outputs(['n.txt']).publish().submit()).download();
      return {
        cid, same: back.length === big.length && back.every((b, i) => b === big[i]), root,
        got: Object.fromEntries(Object.entries(got).map(([k, v]) => [k, v.length])), listed: listed.map((e) => `${e.name}:${e.type}`),
        stdout: res.stdout, published: res.ipfs.files.map((f) => [f.path, f.cid]), text: new TextDecoder().decode(await fs.cat(`ipfs://${res.ipfs.root}/n.txt`)),
      };
    },
    { url: devnet.workers[0].url, ipfs: devnet.ipfs, noiseSrc },
  );
  assert.equal(r.cid, (await nodeAdd(devnet.ipfs.api, { data: noise(5 * 1024 * 1024 + 17, 21) }, 'cid-version=0')).at(-1).Hash);
  assert.equal(r.same, true);
  const own = await nodeAdd(devnet.ipfs.api, { 'a.txt': new TextEncoder().encode('hello'), 'data/b.bin': noise(300_000, 22) }, 'cid-version=0&wrap-with-directory=true');
  assert.equal(r.root, own.find((l) => l.Name === '').Hash);
  assert.deepEqual(r.got, { 'a.txt': 5, 'data/b.bin': 300_000 });
  assert.deepEqual(r.listed, ['a.txt:file', 'data:directory']);
  assert.equal(r.stdout, '300000\n');
  assert.deepEqual(r.published, [['n.txt', (await nodeAdd(devnet.ipfs.api, { 'n.txt': new TextEncoder().encode('300000') }, 'cid-version=0')).at(-1).Hash]]);
  assert.equal(r.text, '300000');
});

test('IPFS in the browser: a gateway that serves wrong bytes is refused with nothing used', { timeout: 60_000 }, async () => {
  const bad = await startSharedDevnet(['--workers', '1', '--no-rate-limit', '--ipfs-fault', 'tamper']);
  try {
    const r = await inPage(
      async (sdk, { url, ipfs, noiseSrc }) => {
        const s = sdk.Sandrun.create({ apiEndpoint: url, ipfsGateway: ipfs.gateway, ipfsApi: ipfs.api });
        const cid = await s.ipfs().add((0, eval)(noiseSrc)(1_000_000, 5));
        const out = {};
        for (const [name, f] of [['cat', () => s.ipfs().cat(cid)], ['submit', () => s.job().code('print(1)').environment({ D: `ipfs://${cid}` }).submit()]]) {
          try {
            await f();
            out[name] = 'resolved';
          } catch (e) {
            out[name] = `${e instanceof sdk.SandrunError}:${e.code}`;
          }
        }
        return out;
      },
      { url: bad.workers[0].url, ipfs: bad.ipfs, noiseSrc },
    );
    assert.deepEqual(r.value, { cat: 'true:VERIFICATION_FAILED', submit: 'true:VERIFICATION_FAILED' });
    const accepted = await fetch(`${bad.workers[0].url}/_devnet/jobs`).then((x) => x.json());
    assert.equal(accepted.accepted, 0, 'a job was submitted with unverified data');
  } finally {
    await bad.stop();
  }
});

test('no uncaught errors in the page', () => {
  assert.deepEqual(pageErrors, []);
});
