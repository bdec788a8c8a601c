// Plugins and middleware against a real devnet: hooks, order, rewriting, errors,
// short-circuits, the built-in retry, metrics, logging and auth plugins.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net_ from 'node:net';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Sandrun, SandrunError, JobBuilder, retryPlugin, metricsPlugin, loggingPlugin, authPlugin, InMemoryCollector, redact } from '@sandrun/wasm';
import { startDevnet, setFault, acceptedJobs, rejectsWith } from './support.mjs';

let net;
let W;
const closers = [];
before(async () => {
  net = await startDevnet(['--workers', '4', '--no-rate-limit', '--fault', '3=crash']);
  W = net.workers.map((w) => w.url);
});
after(async () => {
  for (const c of closers) await c();
  if (net) await net.stop();
});

/** Parse the requests in a client->server byte stream: method, path, headers. Stops at an
 * upgrade (WebSocket frames follow) or a chunked body (the SDK sends neither). */
function requestParser(server, out) {
  let buf = Buffer.alloc(0);
  let skip = 0;
  let done = false;
  return (chunk) => {
    if (done) return;
    buf = Buffer.concat([buf, chunk]);
    for (;;) {
      if (skip > 0) {
        const n = Math.min(skip, buf.length);
        buf = buf.subarray(n);
        skip -= n;
        if (skip > 0) return;
      }
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const [line, ...lines] = buf.subarray(0, end).toString('latin1').split('\r\n');
      buf = buf.subarray(end + 4);
      const [method, path] = line.split(' ');
      const headers = lines.map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1).trim()]);
      const get = (n) => headers.find(([k]) => k.toLowerCase() === n)?.[1];
      out.push({ server, method, path, headers });
      if (get('upgrade') || /chunked/i.test(get('transfer-encoding') ?? '')) return void (done = true);
      skip = Number(get('content-length') ?? 0);
    }
  };
}

/**
 * A recording forwarding proxy (a real TCP relay, not a double): every byte goes to
 * `target` and back unchanged, and each HTTP request passing through is recorded. Put in
 * front of a devnet worker or registry, it shows what reached that server.
 */
async function recordingProxy(target, server, { host = '127.0.0.1' } = {}) {
  const t = new URL(target);
  const requests = [];
  const proxy = net_.createServer((client) => {
    const upstream = net_.connect(Number(t.port), t.hostname);
    const record = requestParser(server, requests);
    client.on('data', (c) => { record(c); upstream.write(c); });
    client.on('end', () => upstream.end());
    upstream.on('data', (c) => client.write(c));
    upstream.on('end', () => client.end());
    const kill = () => { client.destroy(); upstream.destroy(); };
    client.on('error', kill);
    upstream.on('error', kill);
  });
  await new Promise((r, j) => proxy.once('error', j).listen(0, host, r));
  const close = () => new Promise((r) => proxy.close(r));
  closers.push(close);
  return { url: `http://127.0.0.1:${proxy.address().port}`, port: proxy.address().port, requests, close };
}

/** A local HTTP server (archive host, gateway, redirect target) that records every request. */
async function recordingServer(server, routes) {
  const requests = [];
  const s = http.createServer((req, res) => {
    const headers = [];
    for (let i = 0; i < req.rawHeaders.length; i += 2) headers.push([req.rawHeaders[i], req.rawHeaders[i + 1]]);
    requests.push({ server, method: req.method, path: req.url, headers });
    routes(req, res);
  });
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  const close = () => new Promise((r) => { s.closeAllConnections(); s.close(r); });
  closers.push(close);
  return { url: `http://127.0.0.1:${s.address().port}`, requests, close };
}

function tarball(files, topDir = 'repo-main') {
  const dir = mkdtempSync(join(tmpdir(), 'sandrun-repo-'));
  for (const [p, content] of Object.entries(files)) {
    mkdirSync(join(dir, topDir, p, '..'), { recursive: true });
    writeFileSync(join(dir, topDir, p), content);
  }
  execFileSync('tar', ['czf', join(dir, 'repo.tar.gz'), '-C', dir, topDir]);
  return readFileSync(join(dir, 'repo.tar.gz'));
}

const credentialOf = (r) => r.headers.filter(([k]) => /^(authorization|x-api-key)$/i.test(k)).map(([, v]) => v);

const client = (extra = {}) => Sandrun.create({ apiEndpoint: W[0], registryEndpoint: net.registry, ...extra });

test('hooks run in registration order with their arguments; async hooks are awaited', async () => {
  const calls = [];
  const plugin = (tag) => ({
    name: `p${tag}`,
    version: '1.0.0',
    onInit: async (config) => { await new Promise((r) => setTimeout(r, 20)); calls.push(`${tag}:init:${config.apiEndpoint === W[0]}`); },
    onBuild: (b) => calls.push(`${tag}:build:${b instanceof JobBuilder}`),
    onSubmit: async (job) => { await new Promise((r) => setTimeout(r, 10)); calls.push(`${tag}:submit:${job.interpreter ?? 'auto'}`); },
    onResult: (r) => { calls.push(`${tag}:result:${r.status}`); },
  });
  const s = client({ defaults: { consensus: 'none' } }).use(plugin('a')).use(plugin('b'));
  await s.job().code('print(1)').submit().then((e) => e.wait());
  await s.job().code('print(2)').submit().then((e) => e.wait());
  assert.deepEqual(calls, [
    'a:build:true', 'b:build:true', 'a:init:true', 'b:init:true', 'a:submit:auto', 'b:submit:auto', 'a:result:completed', 'b:result:completed',
    'a:build:true', 'b:build:true', 'a:submit:auto', 'b:submit:auto', 'a:result:completed', 'b:result:completed',
  ], 'onInit runs once per client configuration');
  calls.length = 0;
  await s.configure({ defaults: { timeout: 30 } }).job().code('print(3)').submit().then((e) => e.wait());
  assert.deepEqual(calls.filter((c) => c.includes('init')), ['a:init:true', 'b:init:true'], 'a new configuration runs onInit again');
});

test('onSubmit rewrites the job, onResult the result', async () => {
  const s = client().use({
    name: 'rewrite', version: '1',
    onSubmit: (job) => ({ ...job, args: [...job.args, 'added'], environment: { ...job.environment, STAGE: 'prod' } }),
    onResult: (r) => ({ ...r, stdout: r.stdout.toUpperCase() }),
  });
  const r = await s.job().code('import os, sys\nprint(sys.argv[1:], os.environ["STAGE"])').args(['given']).submit().then((e) => e.wait());
  assert.equal(r.stdout, "['GIVEN', 'ADDED'] PROD\n");
  assert.equal(r.proof.verified, true, 'the rewritten job is the one verified');
  // A rewrite goes through the builder's checks.
  const bad = client().use({ name: 'bad-rewrite', version: '1', onSubmit: (job) => ({ ...job, timeout: -1 }) });
  const e = await rejectsWith(bad.job().code('print(1)').submit(), 'PLUGIN_FAILED', SandrunError);
  assert.match(e.message, /bad-rewrite/);
});

test('a throwing hook fails with PLUGIN_FAILED naming the plugin; onError may replace errors', async () => {
  const before = await acceptedJobs(W[0]);
  const thrower = client().use({ name: 'thrower', version: '1', onSubmit() { throw new Error('nope'); } });
  const e = await rejectsWith(thrower.job().code('print(1)').submit(), 'PLUGIN_FAILED', SandrunError);
  assert.match(e.message, /plugin "thrower" failed in onSubmit: .*nope/);
  assert.equal(await acceptedJobs(W[0]), before, 'nothing submitted');
  const seen = [];
  const mapper = Sandrun.create({ apiEndpoint: 'http://127.0.0.1:9' }).use({
    name: 'mapper', version: '1',
    onError(error, context) { seen.push([error.code, context.operation]); return new Error(`mapped: ${error.message}`); },
  });
  const e2 = await rejectsWith(mapper.job().code('print(1)').submit(), 'NETWORK', SandrunError);
  assert.match(e2.message, /^mapped: /);
  assert.deepEqual(seen, [['NETWORK', 'submit']]);
  assert.throws(() => client().use({ name: 'x' }), (x) => x.code === 'INVALID_ARGUMENT');
  assert.throws(() => client().use({ name: 'x', version: '1', onSubmit: 3 }), (x) => x.code === 'INVALID_ARGUMENT');
  assert.throws(() => client().with({}), (x) => x.code === 'INVALID_ARGUMENT');
});

test('middleware: outermost first, context per operation and attempt, short-circuit', async () => {
  const order = [];
  const tap = (tag) => ({ async execute(next, ctx) { order.push(`${tag}>${ctx.operation}#${ctx.attempt}`); const r = await next(); order.push(`${tag}<${r.status}`); return r; } });
  const s = client({ defaults: { consensus: 'none' } }).with(tap('outer')).with(tap('inner'));
  await s.job().code('print(1)').submit().then((e) => e.wait());
  assert.deepEqual(order.slice(0, 4), ['outer>submit#1', 'inner>submit#1', 'inner<200', 'outer<200']);
  assert.ok(order.includes('outer>logs#1'));
  // Short-circuit: answer a submit without touching the worker.
  const before = await acceptedJobs(W[0]);
  const blocker = client().with({
    async execute(next, ctx) {
      if (ctx.operation !== 'submit') return next();
      return { status: 429, headers: [], body: new TextEncoder().encode('{"error":"Blocked by policy, wait 1 seconds"}') };
    },
  });
  const e = await rejectsWith(blocker.configure({ defaults: { retries: 0 } }).job().code('print(1)').submit(), 'RATE_LIMITED', SandrunError);
  assert.equal(e.retryAfterMs, 1000);
  assert.equal(await acceptedJobs(W[0]), before);
  // Decorate: a middleware may change the answer the SDK sees.
  const decorated = client({ defaults: { consensus: 'none' } }).with({
    async execute(next, ctx) {
      const r = await next();
      if (ctx.operation !== 'logs') return r;
      return { ...r, body: new TextEncoder().encode('{"stdout":"decorated\\n","stderr":""}') };
    },
  });
  assert.equal((await decorated.job().code('print(1)').submit().then((x) => x.wait())).stdout, 'decorated\n');
});

test('retryPlugin honours 429 waits and never submits twice', async () => {
  await setFault(W[1], '429');
  const before = await acceptedJobs(W[1]);
  setTimeout(() => setFault(W[1], null), 700);
  const metrics = metricsPlugin();
  const s = Sandrun.create({ apiEndpoint: W[1], defaults: { retries: 0 } }).use(retryPlugin({ maxAttempts: 8, initialDelayMs: 150, maxDelayMs: 400 })).use(metrics);
  const r = await s.job().code('print("through")').submit().then((e) => e.wait());
  assert.equal(r.stdout, 'through\n');
  assert.equal(await acceptedJobs(W[1]), before + 1);
  const c = metrics.snapshot().counters;
  assert.ok(c['sandrun_requests_total{operation="submit",outcome="429"}'] >= 2, JSON.stringify(c));
  assert.equal(c['sandrun_requests_total{operation="submit",outcome="200"}'], 1);
  assert.throws(() => retryPlugin({ maxAttempts: 0 }), (e) => e.code === 'INVALID_ARGUMENT');
});

test('retries do not compound: the worker sees maxAttempts submits with retryPlugin, 1 + defaults.retries without', async () => {
  const proxy = await recordingProxy(W[1], 'worker');
  const submits = () => proxy.requests.filter((q) => q.method === 'POST' && q.path === '/submit').length;
  await setFault(W[1], '429');
  try {
    const plugin = Sandrun.create({ apiEndpoint: proxy.url }).use(retryPlugin({ maxAttempts: 3, initialDelayMs: 10, maxDelayMs: 20, jitter: false }));
    await rejectsWith(plugin.job().code('print(1)').submit(), 'RATE_LIMITED', SandrunError);
    assert.equal(submits(), 3, 'retryPlugin({ maxAttempts: 3 }): 3 submits in all');
    proxy.requests.length = 0;
    await rejectsWith(Sandrun.create({ apiEndpoint: proxy.url, defaults: { retries: 1 } }).job().code('print(1)').submit(), 'RATE_LIMITED', SandrunError);
    assert.equal(submits(), 2, 'no retry middleware: 1 + defaults.retries');
    proxy.requests.length = 0;
    await rejectsWith(Sandrun.create({ apiEndpoint: proxy.url, defaults: { retries: 0 } }).use(metricsPlugin()).job().code('print(1)').submit(), 'RATE_LIMITED', SandrunError);
    assert.equal(submits(), 1, 'other middleware leaves defaults.retries in force');
  } finally {
    await setFault(W[1], null);
  }
});

test('retryPlugin with a crashing worker: replaced in a pool, no duplicate job anywhere', async () => {
  const before = await Promise.all(W.slice(0, 3).map(acceptedJobs));
  const s = client().use(retryPlugin({ maxAttempts: 3, initialDelayMs: 50 }));
  const pool = await s.pool().nodes([W[3], W[0], W[1], W[2]]).consensus('3-of-3').join();
  const r = await s.job().code('import time\ntime.sleep(0.3)\nprint("ok")').with(pool).submit().then((e) => e.wait());
  assert.equal(r.stdout, 'ok\n');
  const replicas = r.proof.consensus.replicas;
  assert.equal(replicas.find((x) => x.worker === W[3]).outcome, 'failed');
  const afterCounts = await Promise.all(W.slice(0, 3).map(acceptedJobs));
  assert.deepEqual(afterCounts.map((n, i) => n - before[i]), [1, 1, 1], 'each live worker ran the job exactly once');
});

test('metricsPlugin figures match the operations performed', async () => {
  const collector = new InMemoryCollector();
  const s = client({ defaults: { consensus: 'none' } }).use(metricsPlugin(collector));
  await s.job().code('print(1)').submit().then((e) => e.wait());
  const { counters, histograms } = collector.snapshot();
  assert.equal(counters['sandrun_requests_total{operation="submit",outcome="200"}'], 1);
  assert.equal(counters['sandrun_requests_total{operation="status",outcome="200"}'], 1, 'one /status after the stream saw the end');
  assert.equal(counters['sandrun_requests_total{operation="logs",outcome="200"}'], 1);
  assert.equal(counters['sandrun_jobs_total{event="submitted"}'], 1);
  assert.equal(counters['sandrun_jobs_total{event="completed"}'], 1);
  const total = Object.entries(counters).filter(([k]) => k.startsWith('sandrun_requests_total')).reduce((a, [, v]) => a + v, 0);
  const observed = Object.values(histograms).reduce((a, h) => a + h.count, 0);
  assert.equal(observed, total, 'every operation is timed');
  assert.ok(histograms['sandrun_request_ms{operation="submit"}'].sum > 0);
});

test('authPlugin: credentials reach exactly the covered origins; the worker, archive host, look-alike paths and a redirect target get none', async () => {
  const token = `tok-${randomBytes(12).toString('hex')}`;
  const tgz = tarball({ 'main.py': 'print("from the archive")\n' });
  const worker = await recordingProxy(W[0], 'worker');
  // Dual-stack when it can, so that `LOCALHOST` reaches it however the name resolves.
  const registry = await recordingProxy(net.registry, 'registry', { host: '::' }).catch(() => recordingProxy(net.registry, 'registry'));
  const target = await recordingServer('redirect-target', (req, res) => res.end(tgz));
  // The gateway is covered; it redirects to another origin, which must not be.
  const gateway = await recordingServer('gateway', (req, res) => res.writeHead(302, { Location: `${target.url}/files/repo.tar.gz` }).end());
  const archive = await recordingServer('archive', (req, res) => (req.url.endsWith('.tar.gz') ? res.end(tgz) : res.writeHead(404).end()));
  const servers = [worker, registry, gateway, target, archive];
  const s = Sandrun.create({
    apiEndpoint: worker.url,
    // Case of host, trailing slash: the same origin after normalisation.
    registryEndpoint: `http://LOCALHOST:${registry.port}/`,
    ipfsGateway: `${gateway.url}/ipfs`,
    defaults: { consensus: 'low' },
  }).use(authPlugin(async () => ({ token })));
  // The registry: estimate() reads its /nodes.
  await s.job().code('print(1)').estimate();
  // The worker, and archives from a host whose paths look like registry calls.
  for (const path of ['/claim/x/repo.tar.gz', '/register/repo.tar.gz']) {
    const r = await s.job().repository(`${archive.url}${path}`).submit().then((e) => e.wait());
    assert.equal(r.stdout, 'from the archive\n');
  }
  // An archive on the gateway's origin, redirected to another origin.
  const r = await s.job().repository(`${gateway.url}/ipfs/repo.tar.gz`).submit().then((e) => e.wait());
  assert.equal(r.stdout, 'from the archive\n');

  for (const srv of servers) assert.ok(srv.requests.length > 0, `no request reached ${srv.requests[0]?.server ?? srv.url}`);
  assert.ok(worker.requests.some((q) => q.method === 'POST' && q.path === '/submit'), 'the worker list holds the submits');
  const all = servers.flatMap((x) => x.requests);
  const withCredentials = new Set(all.filter((q) => credentialOf(q).length > 0).map((q) => q.server));
  assert.deepEqual([...withCredentials].sort(), ['gateway', 'registry'], JSON.stringify(all.map((q) => [q.server, q.path, credentialOf(q)])));
  for (const q of [...registry.requests, ...gateway.requests]) assert.deepEqual(credentialOf(q), [`Bearer ${token}`], `${q.server} ${q.path}`);
  for (const q of [...worker.requests, ...archive.requests, ...target.requests]) {
    assert.deepEqual(credentialOf(q), [], `${q.server} ${q.method} ${q.path} got credentials`);
    assert.ok(!JSON.stringify(q).includes(token), `${q.server} ${q.path} saw the token`);
  }

  // Listed origins replace the default; the apiEndpoint is never covered, even listed.
  for (const srv of servers) srv.requests.length = 0;
  const listed = Sandrun.create({ apiEndpoint: worker.url, registryEndpoint: registry.url, defaults: { consensus: 'low' } })
    .use(authPlugin(() => ({ apiKey: token }), { origins: [`${archive.url.toUpperCase()}/some/path`, worker.url] }));
  await listed.job().code('print(1)').estimate();
  await listed.job().repository(`${archive.url}/claim/repo.tar.gz`).submit().then((e) => e.wait());
  assert.ok(worker.requests.length > 0 && registry.requests.length > 0 && archive.requests.length > 0);
  for (const q of archive.requests) assert.deepEqual(credentialOf(q), [token]);
  for (const q of [...worker.requests, ...registry.requests]) assert.deepEqual(credentialOf(q), [], `${q.server} ${q.path}`);
  assert.throws(() => authPlugin(() => ({ token }), { origins: ['http://user:pw@registry.example.com'] }), (e) => e.code === 'INVALID_ARGUMENT');
  assert.throws(() => authPlugin(() => ({ token }), { origins: ['registry.example.com'] }), (e) => e.code === 'INVALID_ARGUMENT');
  assert.throws(() => authPlugin(() => ({ token }), { origin: [] }), (e) => e.code === 'INVALID_ARGUMENT');
});

test('authPlugin refreshes its credential after a 401 (registry double: the devnet has no auth)', async () => {
  const secret = `sekret-${randomBytes(8).toString('hex')}`;
  const seen = [];
  const registry = await recordingServer('registry-double', (req, res) => {
    seen.push(req.headers.authorization);
    if (req.headers.authorization !== `Bearer ${secret}-2`) return res.writeHead(401, { 'Content-Type': 'application/json' }).end('{"error":"bad token"}');
    res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ nodes: [] }));
  });
  let n = 0;
  const s = Sandrun.create({ apiEndpoint: W[0], registryEndpoint: registry.url }).use(authPlugin(async () => ({ token: `${secret}-${++n}` })));
  await rejectsWith(s.pool().discover().join(), 'NO_MATCHING_WORKER', SandrunError);
  assert.deepEqual(seen, [`Bearer ${secret}-1`, `Bearer ${secret}-2`]);
});

test('loggingPlugin logs environment names, never values, and redacts secret shapes everywhere', async () => {
  const hex = (n) => randomBytes(n).toString('hex');
  const secrets = {
    privateKey: `0x${hex(32)}`,
    githubToken: `ghp_${hex(12)}`,
    dbPassword: `pw-${hex(8)}`,
    mnemonic: 'quokka zephyr xylem wombat vortex umbra tundra sphinx quasar pylon oxbow nimbus',
    plainValue: `plain-${hex(8)}`,
    openaiKey: `sk-${hex(12)}`,
    awsSecret: `aws-${hex(10)}`,
    authToken: `auth-${hex(10)}`,
    configToken: `cfg-${hex(10)}`,
    infuraKey: hex(16),
    queryKey: `q-${hex(8)}`,
    argSecret: `arg-${hex(8)}`,
  };
  const lines = [];
  const capture = Object.fromEntries(['debug', 'info', 'warn', 'error'].map((l) => [l, (...a) => lines.push(`${l} ${a.map((x) => (typeof x === 'string' ? x : JSON.stringify(x))).join(' ')}`)]));
  const tgz = tarball({ 'main.py': 'print("ok")\n' });
  const archive = await recordingServer('archive', (req, res) => (new URL(req.url, 'http://x').pathname.endsWith('.tar.gz') ? res.end(tgz) : res.writeHead(404).end()));
  const s = Sandrun.create({ apiEndpoint: W[0], registryEndpoint: net.registry, authentication: { token: secrets.configToken }, defaults: { consensus: 'low' } })
    .use(authPlugin(async () => ({ token: secrets.authToken })))
    .use(loggingPlugin(capture, { level: 'debug' }));
  await s.job().code('print(1)').estimate(); // a registry request with the Authorization header
  const env = {
    PRIVATE_KEY: secrets.privateKey,
    GITHUB_TOKEN: secrets.githubToken,
    DB_PASSWORD: secrets.dbPassword,
    MNEMONIC: secrets.mnemonic,
    PLAIN_VALUE: secrets.plainValue,
    OPENAI_API_KEY: secrets.openaiKey,
    AWS_SECRET: secrets.awsSecret,
  };
  const r = await s.job().code('import os\nprint(len(os.environ["PLAIN_VALUE"]))').environment(env).args([`--api-key=${secrets.argSecret}`, `OTHER_TOKEN=${secrets.argSecret}`]).submit().then((e) => e.wait());
  assert.equal(r.stdout, `${secrets.plainValue.length}\n`, 'the job still got its values');
  // A key in a URL path (Infura style), and one in a query string of a failing fetch.
  await s.job().repository(`${archive.url}/v3/${secrets.infuraKey}/repo.tar.gz`).submit().then((e) => e.wait());
  await rejectsWith(s.job().repository(`${archive.url}/x?api_key=${secrets.queryKey}`).submit(), 'HTTP_STATUS', SandrunError);
  assert.ok(archive.requests.some((q) => q.path.includes(secrets.infuraKey)), 'the real URL was used');

  const text = lines.join('\n');
  assert.ok(lines.length > 10, text);
  for (const [name, value] of Object.entries(secrets)) {
    assert.ok(!text.includes(value), `${name} (${value}) appears in the log:\n${text}`);
    if (name === 'mnemonic') for (const w of value.split(' ').slice(0, 3)) assert.ok(!text.includes(w), `a mnemonic word (${w}) appears in the log`);
  }
  for (const name of Object.keys(env)) assert.ok(text.includes(name), `the variable name ${name} is logged`);
  assert.match(text, /\/v3\/\[redacted\]/);
  assert.match(text, /api_key=\[redacted\]/);
  // Headers a middleware sets (authPlugin) are redacted wherever they are logged.
  const headers = JSON.stringify(redact({ headers: { Authorization: `Bearer ${secrets.authToken}`, 'X-API-Key': secrets.authToken }, line: `Authorization: Bearer ${secrets.authToken}` }));
  assert.ok(!headers.includes(secrets.authToken), headers);
});

test('use, with and configure return new builders and leave the old ones unchanged', async () => {
  const s = client();
  const ran = [];
  const p = { name: 'p', version: '1', onSubmit: () => { ran.push('p'); } };
  const m = { execute: (next) => { ran.push('m'); return next(); } };
  assert.equal(s.use(p).constructor, s.constructor);
  assert.equal(s.with(m).constructor, s.constructor);
  const job = s.job().code('print(1)');
  for (const b of [job, s.pool(), s.proof(), s.node()]) {
    for (const next of [b.use(p), b.with(m), b.configure({ defaults: { timeout: 5 } })]) {
      assert.equal(next.constructor, b.constructor);
    }
  }
  // The original job still runs without the plugin's rewrite, and neither s nor job
  // picked up p or m from the builders derived above.
  const rewritten = job.use({ name: 'r', version: '1', onSubmit: (j) => ({ ...j, args: ['x'] }) });
  assert.equal((await job.submit().then((e) => e.wait())).stdout, '1\n');
  assert.equal((await s.job().code('print(2)').submit().then((e) => e.wait())).stdout, '2\n');
  assert.deepEqual(ran, [], 'p or m ran for a builder they were never added to');
  assert.equal((await rewritten.code('import sys; print(sys.argv[1:])').submit().then((e) => e.wait())).stdout, "['x']\n");
  // The derived ones do carry them (so the check above can see them).
  assert.equal((await s.use(p).with(m).job().code('print(3)').submit().then((e) => e.wait())).stdout, '3\n');
  assert.deepEqual([...new Set(ran)].sort(), ['m', 'p']);
});

test('operations started while onInit runs wait for it; onInit runs once', async () => {
  let inits = 0;
  let ready = false;
  const s = client({ defaults: { consensus: 'none' } }).use({
    name: 'slow-init', version: '1',
    async onInit() { inits++; await new Promise((r) => setTimeout(r, 200)); ready = true; },
    onSubmit() { assert.equal(ready, true, 'onSubmit after onInit finished'); },
  });
  const rs = await Promise.all([0, 1, 2].map((i) => s.job().code(`print(${i})`).submit().then((e) => e.wait())));
  assert.deepEqual(rs.map((r) => r.stdout), ['0\n', '1\n', '2\n']);
  assert.equal(inits, 1);
});
