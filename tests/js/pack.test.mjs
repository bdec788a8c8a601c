// `npm pack` of the built package installs into a fresh Node ESM project and runs a job.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDevnet, root } from './support.mjs';

let net;
before(async () => { net = await startDevnet(['--workers', '1', '--no-rate-limit']); });
after(async () => net && net.stop());

test('npm pack -> npm install in a fresh ESM project -> import by name -> run a job', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sandrun-pack-'));
  execFileSync('npm', ['pack', join(root, 'pkg'), '--pack-destination', dir, '--silent'], { stdio: 'pipe' });
  const tarball = readdirSync(dir).find((f) => f.endsWith('.tgz'));
  assert.match(tarball, /^sandrun-wasm-\d+\.\d+\.\d+\.tgz$/);
  const files = execFileSync('tar', ['tzf', join(dir, tarball)], { encoding: 'utf8' }).split('\n').filter(Boolean).sort();
  for (const f of ['package/index.node.js', 'package/index.browser.js', 'package/index.d.ts', 'package/sandrun_wasm_bg.wasm', 'package/README.md']) {
    assert.ok(files.includes(f), `${f} is in the tarball: ${files}`);
  }
  const app = join(dir, 'app');
  execFileSync('mkdir', [app]);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
  execFileSync('npm', ['install', join(dir, tarball), '--no-audit', '--no-fund', '--silent'], { cwd: app, stdio: 'pipe' });
  writeFileSync(join(app, 'main.js'), `
    import { Sandrun } from '@sandrun/wasm';
    const r = await Sandrun.create({ apiEndpoint: process.argv[2] }).job().code('print(6 * 7)').submit().then((e) => e.wait());
    console.log(JSON.stringify({ stdout: r.stdout, verified: r.proof.verified }));
  `);
  const out = execFileSync('node', ['main.js', net.workers[0].url], { cwd: app, encoding: 'utf8' });
  assert.deepEqual(JSON.parse(out), { stdout: '42\n', verified: true });
});
