// End to end: the dApp in www/, as a person uses it, in headless Chromium (playwright-core
// driving Debian's /usr/bin/chromium), against a real devnet with anvil.
//
//   node --test tests/e2e/www.test.mjs
//
// The page is served by scripts/www.mjs's serveWww() (the same server `npm run www` runs).
// A wallet is injected before the page loads, the way an extension does it: an EIP-1193
// provider whose requests go to anvil (its unlocked dev accounts sign), and which rejects
// what the test tells it to with code 4001, as a user clicking "Reject" would.
// Every run records the page's main-thread long tasks (PerformanceObserver 'longtask'):
// none may exceed 50 ms while a verified 2-of-3 job runs or a 4 MiB job is packed.
// Screenshots go to tests/.artifacts/www/ (git-ignored).
//
// SANDRUN_E2E_PKG serves another built package directory instead of pkg/; CHROMIUM
// overrides the browser path.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startDevnet, setFault, acceptedJobs } from '../js/support.mjs';
import { serveWww } from '../../scripts/www.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const PKG = path.resolve(process.env.SANDRUN_E2E_PKG ?? path.join(ROOT, 'pkg'));
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const SHOTS = path.join(ROOT, 'tests/.artifacts/www');
const LONG_TASK_MS = 50;

let devnet;
let www;
let context;
let page;
let profile;
const consoleErrors = [];
const pageErrors = [];

// Runs in the page before its own scripts: what a wallet extension injects.
function injectWallet(rpc) {
  window.__walletCalls = [];
  window.__walletReject = null;
  let id = 0;
  const listeners = {};
  window.ethereum = {
    isTestWallet: true,
    on(event, fn) {
      (listeners[event] ??= []).push(fn);
    },
    removeListener() {},
    async request({ method, params }) {
      window.__walletCalls.push(method);
      if (window.__walletReject === method) throw Object.assign(new Error('User rejected the request.'), { code: 4001 });
      const m = method === 'eth_requestAccounts' ? 'eth_accounts' : method;
      const res = await fetch(rpc, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ jsonrpc: '2.0', id: ++id, method: m, params: params ?? [] }) });
      const j = await res.json();
      if (j.error) throw Object.assign(new Error(j.error.message), { code: j.error.code, data: j.error.data });
      return m === 'eth_accounts' ? j.result.slice(0, 1) : j.result;
    },
  };
}

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  devnet = await startDevnet(['--workers', '4', '--no-rate-limit', '--chain']);
  www = await serveWww({ devnet, pkgDir: PKG });
  const { chromium } = await import('playwright-core');
  profile = mkdtempSync(path.join(tmpdir(), 'sandrun-www-chromium-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1360, height: 1000 },
    acceptDownloads: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  context.setDefaultTimeout(60_000);
  await context.addInitScript(injectWallet, devnet.chain.rpc);
  page = context.pages()[0] ?? (await context.newPage());
  page.on('pageerror', (e) => pageErrors.push(String(e?.stack ?? e)));
  page.on('console', (m) => m.type() === 'error' && consoleErrors.push(`${m.text()} @ ${m.location()?.url}`));
  await page.goto(www.url);
  await page.waitForSelector('body[data-ready="true"]');
});

after(async () => {
  await context?.close().catch(() => {});
  await www?.close();
  await devnet?.stop();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

const run = () => page.getByRole('button', { name: 'Run', exact: true });
const shot = (name) => page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
const longTasks = () => page.evaluate(() => window.__longTasks.slice());
const resetLongTasks = () => page.evaluate(() => (window.__longTasks.length = 0));

/** Clicks Run and waits for the outcome: 'verified' in the verdict, or an error card. */
async function clickRun() {
  await resetLongTasks();
  await run().click();
  await page.waitForFunction(() => !document.getElementById('run').disabled && (document.getElementById('verdict').textContent !== '' || !document.getElementById('error').hidden), null, { timeout: 120_000 });
  return page.evaluate(() => ({
    verdict: document.getElementById('verdict').textContent,
    error: document.getElementById('error').hidden ? null : { code: document.getElementById('error-code').textContent, message: document.getElementById('error-message').textContent, todo: document.getElementById('error-todo').textContent },
    logs: document.getElementById('logs').textContent,
    rows: [...document.querySelectorAll('#replicas tbody tr')].map((tr) => ({
      worker: tr.cells[0].textContent,
      dissent: tr.classList.contains('dissent'),
      badges: [...tr.querySelectorAll('.badge')].map((b) => `${b.classList.contains('ok') ? 'ok' : b.classList.contains('bad') ? 'bad' : '?'} ${b.textContent.slice(2)}`),
    })),
    cost: document.getElementById('cost-card').hidden ? null : document.getElementById('cost').textContent,
    txs: [...document.querySelectorAll('#cost .txs li')].map((li) => li.textContent),
  }));
}

function assertNoLongTask(tasks, what) {
  const long = tasks.filter((t) => t.duration > LONG_TASK_MS);
  assert.deepEqual(long, [], `main-thread tasks over ${LONG_TASK_MS} ms during ${what}: ${JSON.stringify(long)}`);
}

test('first visit, no wallet: one click on Run runs the default job unpaid, 2-of-3, and shows verified', { timeout: 180_000 }, async () => {
  assert.equal(await page.locator('body').textContent().then((t) => /verified/i.test(t)), false, 'the word is not on the page before a result verified');
  assert.equal(await page.inputValue('#worker'), devnet.workers[0].url, 'settings prefilled from the devnet');
  assert.equal(await page.inputValue('#consensus'), '2-of-3');
  const r = await clickRun();
  assert.equal(r.error, null, JSON.stringify(r.error));
  assert.match(r.verdict, /^✓ verified 3 of 3 agreed \(2 needed\)$/);
  assert.match(r.logs, /Hello from Sandrun\nsha256: [0-9a-f]{64}\n/);
  assert.equal(r.rows.length, 3);
  for (const row of r.rows) assert.deepEqual(row.badges, ['ok signature', 'ok job hash', 'ok outputs', 'ok stdout', 'ok in quorum'], JSON.stringify(row));
  assert.match(r.cost, /nothing: no wallet connected/);
  assertNoLongTask(await longTasks(), 'a verified 2-of-3 job');

  // The output downloads with the checked bytes.
  const [download] = await Promise.all([page.waitForEvent('download'), page.locator('#output-files a', { hasText: 'result.txt' }).click()]);
  assert.equal(readFileSync(await download.path(), 'utf8'), 'Hello from Sandrun\n');

  // The receipt checks out offline, and an edited one does not.
  await page.click('#check-receipt');
  await page.waitForFunction(() => /receipt (valid|invalid)/.test(document.getElementById('receipt-status').textContent));
  assert.match(await page.textContent('#receipt-status'), /receipt valid offline/);
  const receipt = JSON.parse(await page.inputValue('#receipt'));
  await page.fill('#receipt', JSON.stringify({ ...receipt, exitCode: 3 }));
  await page.click('#check-receipt');
  await page.waitForFunction(() => /receipt invalid/.test(document.getElementById('receipt-status').textContent));
  await page.fill('#receipt', JSON.stringify(receipt, null, 1));
  await shot('1-unpaid-2-of-3');
});

test('a paid 2-of-3 job through the injected wallet: verified, released to the agreeing workers, tx hashes shown', { timeout: 180_000 }, async () => {
  const { createPublicClient, http, parseEther } = await import('viem');
  const pub = createPublicClient({ transport: http(devnet.chain.rpc) });
  const payer = devnet.chain.accounts[0].address;
  const payouts = devnet.workers.slice(0, 3).map((w) => w.payout);
  const before = await Promise.all([payer, ...payouts].map((address) => pub.getBalance({ address })));
  await page.click('#connect');
  await page.waitForFunction(() => /^0x[0-9a-f]{4}…[0-9a-f]{4} on chain \d+$/i.test(document.getElementById('wallet-status').textContent));
  assert.equal(await page.isDisabled('#amount'), false);
  await page.fill('#amount', '0.03');
  const r = await clickRun();
  assert.equal(r.error, null, JSON.stringify(r.error));
  assert.match(r.verdict, /^✓ verified/);
  for (const row of r.rows) assert.deepEqual(row.badges, ['ok signature', 'ok job hash', 'ok outputs', 'ok stdout', 'ok in quorum']);
  assert.match(r.cost, /0\.03 ETH/);
  assert.match(r.cost, /released/);
  assert.ok(r.txs.length >= 2 && r.txs.every((h) => /^0x[0-9a-f]{64}$/.test(h)), JSON.stringify(r.txs));
  assertNoLongTask(await longTasks(), 'a paid, verified 2-of-3 job');
  await page.evaluate(() => document.getElementById('verification-card').scrollIntoView());
  await shot('2-paid-2-of-3');

  // On chain, to the wei: the payer paid the amount plus the gas of the shown transactions,
  // and the agreeing workers' payout addresses received the amount between them.
  let gas = 0n;
  for (const hash of r.txs) {
    const rc = await pub.getTransactionReceipt({ hash });
    assert.equal(rc.status, 'success');
    if (rc.from.toLowerCase() === payer.toLowerCase()) gas += rc.gasUsed * rc.effectiveGasPrice;
  }
  const afterBalances = await Promise.all([payer, ...payouts].map((address) => pub.getBalance({ address })));
  assert.equal(afterBalances[0], before[0] - parseEther('0.03') - gas);
  const received = afterBalances.slice(1).reduce((a, b, i) => a + (b - before[i + 1]), 0n);
  assert.equal(received, parseEther('0.03'));
});

test('a rejected wallet request: USER_REJECTED with what to do, nothing paid or submitted', { timeout: 120_000 }, async () => {
  const accepted = await Promise.all(devnet.workers.map((w) => acceptedJobs(w.url)));
  await page.evaluate(() => (window.__walletReject = 'eth_sendTransaction'));
  try {
    const r = await clickRun();
    assert.equal(r.error?.code, 'USER_REJECTED', JSON.stringify(r));
    assert.match(r.error.todo, /declined the request in your wallet: nothing was paid and nothing was submitted/);
    assert.deepEqual(await Promise.all(devnet.workers.map((w) => acceptedJobs(w.url))), accepted, 'no worker got a job');
    await shot('3-wallet-rejected');
  } finally {
    await page.evaluate(() => (window.__walletReject = null));
  }
  await page.click('#connect'); // disconnect: the next jobs run unpaid
  assert.match(await page.textContent('#wallet-status'), /no wallet/);
});

test('a tampered worker is shown as such: outvoted in 2-of-3, refused alone', { timeout: 180_000 }, async () => {
  const liar = devnet.workers[1].url;
  await setFault(liar, 'wrong-output');
  try {
    const r = await clickRun();
    assert.equal(r.error, null, JSON.stringify(r.error));
    assert.match(r.verdict, /^✓ verified .*1 dissented/);
    const bad = r.rows.find((row) => row.worker === liar);
    assert.ok(bad, JSON.stringify(r.rows));
    assert.equal(bad.dissent, true);
    assert.ok(bad.badges.includes('bad outputs'), JSON.stringify(bad));
    assert.ok(bad.badges.includes('bad tampered or different'), JSON.stringify(bad));
    assert.deepEqual(bad.badges.filter((b) => b.startsWith('ok')), ['ok signature', 'ok job hash'], 'it signed its lie: the signature and job hash hold, the outputs do not');
    assert.ok(r.rows.filter((row) => !row.dissent).length >= 2, 'two honest workers agreed');
    await page.evaluate(() => document.getElementById('verification-card').scrollIntoView());
    await shot('4-tampered-outvoted');

    // Alone ('low'), its result is refused.
    await page.locator('#settings summary').click();
    await page.fill('#worker', liar);
    await page.selectOption('#consensus', 'low');
    const alone = await clickRun();
    assert.equal(alone.error?.code, 'VERIFICATION_FAILED', JSON.stringify(alone));
    assert.match(alone.error.todo, /do not use it/);
    assert.equal(alone.rows.length, 1);
    assert.ok(alone.rows[0].badges.includes('bad outputs') && alone.rows[0].badges.includes('bad tampered'), JSON.stringify(alone.rows));
    await shot('5-tampered-refused');
  } finally {
    await setFault(liar, null);
    await page.evaluate((url) => {
      document.getElementById('worker').value = url;
      document.getElementById('settings').open = false;
    }, devnet.workers[0].url);
  }
});

test('a 4 MiB job is packed off the main thread: no task over 50 ms', { timeout: 180_000 }, async () => {
  const data = Buffer.alloc(4 << 20);
  for (let i = 0; i < data.length; i += 4) data.writeUInt32LE((i * 2654435761) >>> 0, i); // incompressible enough
  await page.setInputFiles('#files', { name: 'data.bin', mimeType: 'application/octet-stream', buffer: data });
  await page.selectOption('#consensus', 'low');
  const r = await clickRun();
  assert.equal(r.error, null, JSON.stringify(r.error));
  assert.match(r.verdict, /^✓ verified/);
  assert.match(r.logs, /input: data\.bin 4194304 bytes/);
  assert.match(await page.textContent('#estimate-list'), /upload4\.\d MiB to each worker/);
  assertNoLongTask(await longTasks(), 'a 4 MiB job (packing, upload, checks)');
  await shot('6-4mib-job');
  await page.setInputFiles('#files', []);
});

test('the watch works: the same 4 MiB packing on the main thread is a long task', { timeout: 120_000 }, async (t) => {
  // Without this, a Chromium that reported no long tasks at all would pass the checks above.
  await resetLongTasks();
  const packed = await page.evaluate(async (longMs) => {
    const sdk = await import('/pkg/index.browser.js');
    await sdk.default();
    const data = new Uint8Array(4 << 20);
    for (let i = 0; i < data.length; i += 65536) crypto.getRandomValues(data.subarray(i, i + 65536));
    const e = await sdk.Sandrun.create({ apiEndpoint: 'http://127.0.0.1:1' }).job().code('print(1)').file('data.bin', data).estimate();
    // Wait for the observer to deliver the long task (bounded; if none comes, the check
    // below fails saying so).
    const until = Date.now() + 10_000;
    while (!window.__longTasks.some((t) => t.duration > longMs) && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    return e.uploadBytes;
  }, LONG_TASK_MS);
  assert.ok(packed > 4 << 20, `packed ${packed} bytes`);
  const long = (await longTasks()).filter((t) => t.duration > LONG_TASK_MS);
  assert.ok(long.length >= 1, 'packing 4 MiB on the main thread shows as a long task');
  t.diagnostic(`4 MiB packed on the main thread: longest task ${Math.max(...long.map((t) => t.duration))} ms (in the page's worker: none over ${LONG_TASK_MS} ms)`);
});

test('no console errors, no uncaught errors', () => {
  assert.deepEqual(pageErrors, []);
  assert.deepEqual(consoleErrors, []);
});
