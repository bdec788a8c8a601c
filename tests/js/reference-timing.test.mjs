// Against a devnet in --reference-timing mode: the reference worker's 1 s queue poll and
// its global lock, which blocks /status, /logs and WebSocket connects while a job runs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Sandrun } from '@sandrun/wasm';
import { startDevnet } from './support.mjs';

let net;
before(async () => { net = await startDevnet(['--workers', '1', '--no-rate-limit', '--reference-timing']); });
after(async () => net && net.stop());

test('wait(), logs() and download() work while /status blocks during the run', async () => {
  const sandrun = Sandrun.create({ apiEndpoint: net.workers[0].url });
  const job = sandrun.job().code('import time\nprint("start", flush=True)\ntime.sleep(1.5)\nopen("r.txt","w").write("done")\nprint("end")').memory(256);
  const [a, b] = await Promise.all([job.submit(), job.submit()]);
  const t0 = performance.now();
  const [ra, rb] = await Promise.all([a.wait(), b.wait()]);
  assert.ok(performance.now() - t0 > 2500, 'one job at a time: the second waited for the first');
  for (const r of [ra, rb]) {
    assert.equal(r.stdout, 'start\nend\n');
    assert.equal(r.proof.verified, true);
  }
  const chunks = [];
  for await (const c of await a.logs()) chunks.push(c);
  assert.equal(chunks.filter((c) => c.stream === 'stdout').map((c) => c.text).join(''), 'start\nend\n');
  const d = await b.download();
  assert.equal(new TextDecoder().decode(d.files.find((f) => f.path === 'r.txt').bytes), 'done');
});
