// The spec's job examples: compiled by tsc --strict from tests/types, then run on a devnet.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { SandrunError } from '@sandrun/wasm';
import { startDevnet, acceptedJobs, rejectsWith, root } from './support.mjs';

let net;
let examples;
before(async () => {
  net = await startDevnet(['--workers', '1', '--no-rate-limit']);
  process.env.SANDRUN_API = net.workers[0].url;
  const out = join(root, 'tests/types/.out');
  execFileSync(join(root, 'node_modules/.bin/tsc'), ['-p', join(root, 'tests/types'), '--noEmit', 'false', '--outDir', out], { stdio: 'inherit' });
  examples = await import(join(out, 'spec-job-examples.js'));
});
after(async () => net && net.stop());

test('Simple Job Submission: refused whole while payments are not implemented, nothing submitted', async () => {
  const before = await acceptedJobs(net.workers[0].url);
  const e = await rejectsWith(examples.simple(), 'UNSUPPORTED', SandrunError);
  assert.match(e.message, /payment/);
  assert.equal(await acceptedJobs(net.workers[0].url), before);
});

test('Simple Job Submission without payment() runs and prints', async () => {
  const result = await examples.simpleUnpaid();
  assert.equal(result.status, 'completed');
  assert.equal(result.stdout, 'Hello from GPU!\n');
  assert.equal(result.proof.verified, true);
});
