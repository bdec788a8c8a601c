// The spec's examples: compiled by tsc --strict from tests/types, then run on a devnet
// whose five workers advertise 4 a100 GPUs in us-east (so the pool example's discovery
// finds them; the GPUs are simulated: jobs run on the CPU).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Sandrun, SandrunError } from '@sandrun/wasm';
import { startDevnet, acceptedJobs, rejectsWith, root } from './support.mjs';

let net;
let jobs;
let pools;
let repo;
let dataset;
const GPU = JSON.stringify({ gpu: { type: 'nvidia-a100', memory: 40, count: 4 }, region: 'us-east' });

before(async () => {
  const caps = [0, 1, 2, 3, 4].flatMap((i) => ['--capabilities', `${i}=${GPU}`]);
  net = await startDevnet(['--workers', '5', '--no-rate-limit', '--chain', '--ipfs', ...caps]);
  process.env.SANDRUN_API = net.workers[0].url;
  process.env.SANDRUN_IPFS = JSON.stringify(net.ipfs);
  // The spec's DATASET_URL: 'ipfs://...', with a real dataset added to the devnet's IPFS node.
  const cid = await Sandrun.create({ ipfsApi: net.ipfs.api, ipfsGateway: net.ipfs.gateway }).ipfs().add(new TextEncoder().encode('rows: 3\n'));
  dataset = `ipfs://${cid}`;
  process.env.SANDRUN_REGISTRY = net.registry;
  process.env.SANDRUN_CHAIN = JSON.stringify(net.chain);
  const out = join(root, 'tests/types/.out');
  execFileSync(join(root, 'node_modules/.bin/tsc'), ['-p', join(root, 'tests/types'), '--noEmit', 'false', '--outDir', out], { stdio: 'inherit' });
  jobs = await import(join(out, 'spec-job-examples.js'));
  pools = await import(join(out, 'spec-pool-example.js'));
  // The "repository": a local archive server standing in for GitHub (no network here).
  const dir = mkdtempSync(join(tmpdir(), 'sandrun-ml-'));
  mkdirSync(join(dir, 'ml-training-main'));
  // DATASET_URL arrives rewritten to the verified local copy of the ipfs:// dataset.
  writeFileSync(join(dir, 'ml-training-main/main.py'), 'import os\nprint("trained on", open(os.environ["DATASET_URL"]).read().strip())\n');
  execFileSync('tar', ['czf', join(dir, 'a.tgz'), '-C', dir, 'ml-training-main']);
  const tgz = readFileSync(join(dir, 'a.tgz'));
  repo = http.createServer((req, res) => (req.url === '/user/ml-training/archive/main.tar.gz' ? res.end(tgz) : res.writeHead(404).end()));
  await new Promise((r) => repo.listen(0, '127.0.0.1', r));
});
after(async () => {
  repo?.close();
  if (net) await net.stop();
});

const jobsEverywhere = () => Promise.all(net.workers.map((w) => acceptedJobs(w.url))).then((a) => a.reduce((x, y) => x + y, 0));

test('Simple Job Submission, verbatim: paid, run, verified, released', async () => {
  const result = await jobs.simple();
  assert.equal(result.status, 'completed');
  assert.equal(result.stdout, 'Hello from GPU!\n');
  assert.equal(result.proof.verified, true);
  assert.equal(result.cost.state, 'released');
  assert.equal(result.cost.amount, '0.1');
});

test('Simple Job Submission without payment() runs and prints', async () => {
  const result = await jobs.simpleUnpaid();
  assert.equal(result.status, 'completed');
  assert.equal(result.stdout, 'Hello from GPU!\n');
  assert.equal(result.proof.verified, true);
});

test('Complex Multi-Node Workflow: verbatim (GitHub is out of reach here) fails at the repository fetch with nothing paid or submitted', async () => {
  const before = await jobsEverywhere();
  await rejectsWith(pools.complexWorkflow(), 'NETWORK', SandrunError);
  assert.equal(await jobsEverywhere(), before);
});

test('Complex Multi-Node Workflow with a local repository: paid 5 ETH, 3-of-5, released to the agreeing workers', async () => {
  const { execution } = await pools.complexWorkflowHere(`http://127.0.0.1:${repo.address().port}/user/ml-training`, dataset, true);
  const result = await execution.wait();
  assert.equal(result.stdout, 'trained on rows: 3\n');
  assert.equal(result.cost.state, 'released');
  assert.ok(result.proof.consensus.agreeing.length >= 3);
});

test('Complex Multi-Node Workflow with a local repository and no payment: 3-of-5 over the discovered pool', async () => {
  const before = await jobsEverywhere();
  const { pool, execution, metrics } = await pools.complexWorkflowHere(`http://127.0.0.1:${repo.address().port}/user/ml-training`, dataset);
  assert.equal(pool.nodes.length, 5);
  assert.ok(pool.capabilities.some((c) => c.label === 'gpu:nvidia-a100'));
  const result = await execution.wait();
  // The agreed proof re-verifies offline; one proof alone cannot make the pool's 2-of-3.
  const c = await pools.verifyAll(pool, execution);
  assert.deepEqual([c.agreeing.length, c.dissenting.length, c.reached], [1, 0, false]);
  assert.equal(result.stdout, 'trained on rows: 3\n');
  assert.equal(result.proof.level, '3-of-5');
  assert.ok(result.proof.consensus.agreeing.length >= 3);
  // Lazy replication: three agreeing replicas are a majority of five, so two never start.
  assert.equal(await jobsEverywhere(), before + 3, 'one replica per worker, none twice, none more than the quorum needed');
  const submits = metrics.snapshot().counters['sandrun_requests_total{operation="submit",outcome="200"}'];
  assert.equal(submits, 3, 'the pool\'s plugins saw every replica');
});
