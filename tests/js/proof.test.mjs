// proof(): checking results and receipts, online and offline.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Sandrun, SandrunError } from '@sandrun/wasm';
import { startDevnet, rejectsWith } from './support.mjs';

let net;
let sandrun;
before(async () => {
  net = await startDevnet(['--workers', '2', '--no-rate-limit', '--fault', '1=anonymous']);
  sandrun = Sandrun.create({ apiEndpoint: net.workers[0].url });
});
after(async () => net && net.stop());

const job = () => sandrun.job().code('open("out.txt","w").write("proof me\\n")\nprint("ok")').outputs(['out.txt']);

test('a result verifies against its job, its files and an allowlist', async () => {
  const j = job();
  const ex = await j.submit();
  const result = await ex.download();
  const report = await sandrun.proof().from(result).job(j).files(result.files).allow([net.workers[0].worker_id]).verify();
  assert.equal(report.valid, true, JSON.stringify(report.checks));
  assert.deepEqual(report.checks.map((c) => c.name), ['signature', 'job_hash', 'exit_code', 'outputs', 'allowlist', 'submitted_job', 'output:_sandrun_stdout.txt', 'output:out.txt']);
  const bad = await sandrun.proof().from(result)
    .job(sandrun.job().code('print("another job")'))
    .files({ 'out.txt': new TextEncoder().encode('forged\n') })
    .allow(['c29tZW9uZSBlbHNl'])
    .verify();
  assert.equal(bad.valid, false);
  assert.deepEqual(bad.checks.filter((c) => !c.ok).map((c) => c.name), ['allowlist', 'submitted_job', 'output:out.txt']);
});

test('a receipt exports as JSON and verifies again offline; tampering fails', async () => {
  const result = await job().submit().then((e) => e.wait());
  const receipt = await sandrun.proof().from(result).toReceipt();
  assert.equal(typeof receipt, 'string');
  const parsed = JSON.parse(receipt);
  assert.equal(parsed.version, 1);
  assert.equal(parsed.workerId, net.workers[0].worker_id);
  // Offline: a client whose endpoint does not even exist.
  const offline = Sandrun.create({ apiEndpoint: 'http://127.0.0.1:9' });
  assert.equal((await offline.proof().from(receipt).verify()).valid, true);
  assert.equal((await offline.proof().from(parsed).verify()).valid, true);
  for (const tamper of [
    { ...parsed, exitCode: 1 },
    { ...parsed, signedString: parsed.signedString.replace('|0|', '|3|') },
    { ...parsed, outputs: { 'out.txt': '0'.repeat(64) } },
    { ...parsed, workerId: net.workers[1].worker_id ?? 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=' },
  ]) {
    const r = await offline.proof().from(JSON.stringify(tamper)).verify();
    assert.equal(r.valid, false, JSON.stringify(tamper));
  }
  assert.throws(() => offline.proof().from('{"version":1}'), (e) => e instanceof SandrunError && e.code === 'INVALID_ARGUMENT');
});

test('no receipt for an unsigned result', async () => {
  const r = await sandrun.configure({ apiEndpoint: net.workers[1].url }).job().code('print(1)').consensus('none').submit().then((e) => e.wait());
  assert.throws(() => sandrun.proof().from(r), (e) => e instanceof SandrunError && e.code === 'VERIFICATION_FAILED');
  await rejectsWith(sandrun.proof().verify(), 'INVALID_ARGUMENT', SandrunError);
});
