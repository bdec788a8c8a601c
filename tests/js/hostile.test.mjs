// Bad input and hostile servers: typed errors, nothing written outside the target,
// nothing submitted twice. Servers named "double" below are test doubles for faults
// the devnet cannot produce (malformed JSON, truncated bodies, a worker naming paths
// outside the job); everything else is the real devnet.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { Sandrun, SandrunError } from '@sandrun/wasm';
import { startDevnet, acceptedJobs, rejectsWith, waitFor } from './support.mjs';

let net;
let worker;
const servers = [];

/** A one-off HTTP server on loopback; `routes(req, res)` answers. */
async function serve(routes) {
  const s = http.createServer(routes);
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  servers.push(s);
  return `http://127.0.0.1:${s.address().port}`;
}

before(async () => {
  net = await startDevnet(['--workers', '2', '--no-rate-limit', '--max-body-mb', '1', '--job-ttl', '2']);
  worker = net.workers[0].url;
});
after(async () => {
  for (const s of servers) s.close();
  if (net) await net.stop();
});

function tarball(files, topDir) {
  const dir = mkdtempSync(join(tmpdir(), 'sandrun-repo-'));
  const base = join(dir, topDir);
  for (const [p, content] of Object.entries(files)) {
    mkdirSync(join(base, p, '..'), { recursive: true });
    writeFileSync(join(base, p), content);
  }
  execFileSync('tar', ['czf', join(dir, 'repo.tar.gz'), '-C', dir, topDir]);
  return readFileSync(join(dir, 'repo.tar.gz'));
}

test('repository(url, ref) fetches the archive at the ref and runs it', async () => {
  const tgz = tarball({ 'main.py': 'import lib.util as u\nprint(u.X)\n', 'lib/util.py': 'X = "from the repo"\n', 'lib/__init__.py': '' }, 'ml-training-v2');
  const requested = [];
  const repo = await serve((req, res) => {
    requested.push(req.url);
    if (req.url === '/user/ml-training/archive/v2.tar.gz') {
      res.writeHead(302, { Location: '/files/v2.tar.gz' });
      return res.end();
    }
    if (req.url === '/files/v2.tar.gz') return res.end(tgz);
    res.writeHead(404).end();
  });
  const sandrun = Sandrun.create({ apiEndpoint: worker });
  const r = await sandrun.job().repository(`${repo}/user/ml-training`, 'v2').submit().then((e) => e.wait());
  assert.equal(r.stdout, 'from the repo\n');
  assert.deepEqual(requested, ['/user/ml-training/archive/v2.tar.gz', '/files/v2.tar.gz']);
  await rejectsWith(sandrun.job().repository(`${repo}/nope`, 'main').submit(), 'HTTP_STATUS', SandrunError);
});

test('an archive with a path escaping the job is refused whole, and nothing is submitted', async () => {
  // GNU tar keeps '../' and absolute members with -P; the SDK must refuse them.
  const dir = mkdtempSync(join(tmpdir(), 'sandrun-evil-'));
  mkdirSync(join(dir, 'a'));
  writeFileSync(join(dir, 'a/main.py'), 'print(1)');
  writeFileSync(join(dir, 'evil.txt'), 'evil');
  execFileSync('tar', ['czPf', join(dir, 'evil.tar.gz'), '-C', join(dir, 'a'), 'main.py', '../evil.txt']);
  const evil = readFileSync(join(dir, 'evil.tar.gz'));
  const abs = execFileSync('tar', ['czPf', '-', join(dir, 'a/main.py')]);
  const repo = await serve((req, res) => res.end(req.url.includes('abs') ? abs : evil));
  const before = await acceptedJobs(worker);
  const sandrun = Sandrun.create({ apiEndpoint: worker });
  const e = await rejectsWith(sandrun.job().repository(`${repo}/evil.tar.gz`).submit(), 'IO', SandrunError);
  assert.match(e.message, /refusing archive/);
  await rejectsWith(sandrun.job().repository(`${repo}/abs.tar.gz`).submit(), 'IO', SandrunError);
  assert.equal(await acceptedJobs(worker), before);
});

test('an oversized upload gets the worker\'s 413 as HTTP_STATUS', async () => {
  const big = new Uint8Array(randomBytes(2 * 1024 * 1024));
  const e = await rejectsWith(Sandrun.create({ apiEndpoint: worker }).job().code('print(1)').file('big.bin', big).submit(), 'HTTP_STATUS', SandrunError);
  assert.equal(e.status, 413);
});

test('a job the worker deleted is JOB_NOT_FOUND', async () => {
  const sandrun = Sandrun.create({ apiEndpoint: net.workers[1].url });
  const ex = await sandrun.job().code('print(1)').submit();
  // The devnet runs with --job-ttl 2: wait until the worker has deleted the job.
  await waitFor(`the worker to delete job ${ex.id}`, async () => (await fetch(`${net.workers[1].url}/status/${ex.id}`)).status === 404, { everyMs: 200 });
  await rejectsWith(ex.wait(), 'JOB_NOT_FOUND', SandrunError);
});

test('malformed JSON from a server is MALFORMED_RESPONSE (double)', async () => {
  const url = await serve((req, res) => res.writeHead(200, { 'Content-Type': 'application/json' }).end('{"job_id": 42'));
  await rejectsWith(Sandrun.create({ apiEndpoint: url }).job().code('print(1)').submit(), 'MALFORMED_RESPONSE', SandrunError);
});

test('a truncated response body is NETWORK, never a partial result (double)', async () => {
  const url = await serve((req, res) => {
    res.socket.write('HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"job_id":"job_1_1"');
    res.socket.destroy();
  });
  const e = await rejectsWith(Sandrun.create({ apiEndpoint: url }).job().code('print(1)').submit(), 'NETWORK', SandrunError);
  assert.match(e.message, /closed mid-body|truncated|aborted|socket hang up/);
});

test('downloadTo() refuses output paths outside the target and writes nothing (double)', async () => {
  const evil = 'pwned\n';
  const sha = createHash('sha256').update(evil).digest('hex');
  const status = {
    job_id: 'job_1_1', status: 'completed', queue_position: 0,
    execution_metadata: { cpu_seconds: 0.01, memory_peak_bytes: 0, memory_peak_mb: 0, wall_time_ms: 0, exit_code: 0, environment: '', interpreter: 'python3' },
    job_hash: 'x', output_files: { '../escaped.txt': { size_bytes: evil.length, sha256: sha, type: 'text' }, 'ok.txt': { size_bytes: evil.length, sha256: sha, type: 'text' } },
    worker_metadata: { worker_id: null, signature: null },
  };
  const url = await serve((req, res) => {
    if (req.url === '/submit') return res.end('{"job_id":"job_1_1","status":"queued"}');
    if (req.url.startsWith('/status/')) return res.end(JSON.stringify(status));
    if (req.url.startsWith('/logs/')) return res.end('{"stdout":"","stderr":""}');
    if (req.url.startsWith('/download/')) return res.end(evil);
    res.writeHead(404).end('{"error":"Not found"}');
  });
  const parent = mkdtempSync(join(tmpdir(), 'sandrun-target-'));
  const target = join(parent, 'out');
  const ex = await Sandrun.create({ apiEndpoint: url }).job().code('print(1)').consensus('none').submit();
  const e = await rejectsWith(ex.downloadTo(target), 'IO', SandrunError);
  assert.match(e.message, /refusing/);
  assert.deepEqual(readdirSync(parent), [], 'nothing written, not even ok.txt');
  assert.ok(!existsSync(join(parent, 'escaped.txt')));
});

test('a hostile job.json in a repository passes the builder checks: bad args or interpreter are refused before anything is sent', async () => {
  const before = await acceptedJobs(worker);
  for (const [spec, what] of [
    [{ entrypoint: 'main.py', args: ['a"b'] }, /job\.json.*argument/],
    [{ entrypoint: 'main.py', interpreter: 'perl' }, /job\.json.*interpreter/],
    [{ entrypoint: '../escape.py' }, /job\.json/],
  ]) {
    const tgz = tarball({ 'main.py': 'print(1)\n', 'job.json': JSON.stringify(spec) }, 'repo');
    const url = await serve((req, res) => res.end(tgz));
    const e = await rejectsWith(Sandrun.create({ apiEndpoint: worker }).job().repository(`${url}/repo.tar.gz`).submit(), 'INVALID_ARGUMENT', SandrunError);
    assert.match(e.message, what);
  }
  assert.equal(await acceptedJobs(worker), before, 'nothing was submitted');
});
