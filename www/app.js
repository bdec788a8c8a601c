// The Sandrun dApp: the page's side. It draws the UI, holds the wallet and talks to
// sdk-worker.js, where @sandrun/wasm runs (so packing, hashing and signature checks never
// block this thread). No framework: plain DOM.
const $ = (id) => document.getElementById(id);

// --- main-thread watch: every task over 50 ms is recorded and shown (the e2e reads it) ---
window.__longTasks = [];
try {
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) window.__longTasks.push({ start: Math.round(e.startTime), duration: Math.round(e.duration) });
    const max = Math.max(...window.__longTasks.map((t) => t.duration));
    $('mainthread').textContent = `main thread: ${window.__longTasks.length} long task(s), longest ${max} ms`;
  }).observe({ type: 'longtask', buffered: true });
} catch {
  // Browsers without the Long Tasks API (Firefox, Safari): nothing to show.
  $('mainthread').textContent = 'main thread: not measured in this browser';
}

// --- default jobs ---
const DEFAULT_CODE = {
  python3: `# Runs on a Sandrun worker; the page checks the result before showing it.
import hashlib, os
message = "Hello from Sandrun"
print(message)
print("sha256:", hashlib.sha256(message.encode()).hexdigest())
for name in sorted(os.listdir(".")):
    if not name.startswith("_") and name != "main.py":
        print("input:", name, os.path.getsize(name), "bytes")
with open("result.txt", "w") as f:
    f.write(message + "\\n")
`,
  node: `// Runs on a Sandrun worker; the page checks the result before showing it.
const fs = require('fs');
const message = 'Hello from Sandrun';
console.log(message);
console.log('sha256:', require('crypto').createHash('sha256').update(message).digest('hex'));
fs.writeFileSync('result.txt', message + '\\n');
`,
  bash: `# Runs on a Sandrun worker; the page checks the result before showing it.
message="Hello from Sandrun"
echo "$message"
echo -n "$message" | sha256sum
echo "$message" > result.txt
`,
  sh: `# Runs on a Sandrun worker; the page checks the result before showing it.
echo "Hello from Sandrun"
echo "Hello from Sandrun" > result.txt
`,
};

const HINTS = {
  INVALID_ARGUMENT: 'Fix the setting the message names, then run again.',
  NETWORK: 'The worker could not be reached. Is the devnet running (npm run www)? Check the worker URLs under Settings.',
  HTTP_STATUS: 'The worker answered with an error status; the message says which. Check the worker URL and the job.',
  RATE_LIMITED: 'The worker limits jobs per client: wait a little and run again.',
  TIMEOUT: 'The job ran past its timeout: raise Timeout under Resources, or make the job shorter.',
  JOB_FAILED: 'The job itself failed: read stderr in the logs, fix the code, run again.',
  JOB_NOT_FOUND: 'The worker no longer has this job (it was deleted or the worker restarted): run it again.',
  VERIFICATION_FAILED: 'The worker returned a result that does not check out: do not use it. Run with 2-of-3 consensus so honest workers outvote it.',
  CONSENSUS_NOT_REACHED: 'Too few workers agreed: each replica is shown below. Add honest workers to the pool, or change the consensus level.',
  USER_REJECTED: 'You declined the request in your wallet: nothing was paid and nothing was submitted. Run again and approve it, or run unpaid without a wallet.',
  WRONG_CHAIN: 'Your wallet is on another chain: switch it to the chain id under Settings, then run again.',
  PAYMENT_FAILED: 'The payment did not go through; anything locked in the escrow is refundable. Check the wallet balance and the escrow address under Settings.',
  CANCELLED: 'You cancelled the job. Run it again when you like.',
  NO_MATCHING_WORKER: 'No worker matches what the job asks for: lower the requirements or add workers.',
  MALFORMED_RESPONSE: 'The worker answered something that is not the Sandrun wire format: check the worker URL.',
  UNSUPPORTED: 'This job asks for something this version or this configuration cannot do: see the message.',
  PLUGIN_FAILED: 'A plugin failed: see the message.',
  IO: 'A file could not be read or written: see the message.',
  WORKER: 'The SDK could not start in its Web Worker: is the package built (npm run build) and served at /pkg/? Reload after fixing it.',
};

// --- settings from the devnet (npm run www serves /devnet.json) ---
let devnet;
async function loadSettings() {
  const fallback = 'http://127.0.0.1:7700';
  try {
    const res = await fetch('devnet.json', { cache: 'no-store' });
    if (res.ok) devnet = await res.json();
  } catch {}
  const workers = devnet?.workers?.map((w) => w.url) ?? [fallback, 'http://127.0.0.1:7701', 'http://127.0.0.1:7702'];
  $('worker').value = workers[0];
  $('workers').value = workers.join('\n');
  $('registry').value = devnet?.registry ?? '';
  $('escrow').value = devnet?.chain?.escrow ?? '';
  $('chain-id').value = devnet?.chain?.chainId ?? '';
  $('ipfs-gateway').value = devnet?.ipfs?.gateway ?? '';
  $('ipfs-api').value = devnet?.ipfs?.api ?? '';
  $('settings-source').textContent = devnet
    ? `from the devnet: ${workers.length} workers${devnet.chain ? `, chain ${devnet.chain.chainId}` : ''}${devnet.ipfs ? ', IPFS' : ''}`
    : `no devnet.json here: defaults (${fallback})`;
  if (workers.length < 3) $('consensus').value = 'low';
}

function settings() {
  const paid = !!wallet.account;
  return {
    worker: $('worker').value.trim(),
    workers: $('workers').value.split('\n').map((s) => s.trim()).filter(Boolean),
    registry: $('registry').value.trim(),
    escrow: $('escrow').value.trim(),
    chainId: $('chain-id').value.trim(),
    ipfsGateway: $('ipfs-gateway').value.trim(),
    ipfsApi: $('ipfs-api').value.trim(),
    interpreter: $('interpreter').value,
    entrypoint: $('entrypoint').value.trim(),
    code: $('code').value,
    files: [...$('files').files],
    outputs: $('outputs').value.split(',').map((s) => s.trim()).filter(Boolean),
    memory: $('memory').value,
    timeout: $('timeout').value,
    consensus: $('consensus').value,
    paid,
    amount: $('amount').value.trim(),
  };
}

// --- the code editor: a textarea with line numbers and Tab ---
const code = $('code');
function gutter() {
  const n = code.value.split('\n').length;
  $('gutter').textContent = Array.from({ length: n }, (_, i) => i + 1).join('\n');
}
code.addEventListener('input', gutter);
code.addEventListener('scroll', () => ($('gutter').scrollTop = code.scrollTop));
code.addEventListener('keydown', (e) => {
  if (e.key !== 'Tab' || e.shiftKey) return;
  e.preventDefault();
  code.setRangeText('    ', code.selectionStart, code.selectionEnd, 'end');
  gutter();
});
$('interpreter').addEventListener('change', () => {
  const isDefault = Object.values(DEFAULT_CODE).includes(code.value);
  if (isDefault || !code.value.trim()) code.value = DEFAULT_CODE[$('interpreter').value];
  gutter();
});

// --- wallet: any injected EIP-1193 provider (window.ethereum, or EIP-6963 announcements) ---
const wallet = { providers: [], provider: undefined, account: undefined, chainId: undefined };
window.addEventListener('eip6963:announceProvider', (e) => {
  const { info, provider } = e.detail ?? {};
  if (!provider?.request || wallet.providers.some((p) => p.provider === provider)) return;
  wallet.providers.push({ name: info?.name ?? 'wallet', provider });
  listWallets();
});
function listWallets() {
  if (window.ethereum?.request && !wallet.providers.some((p) => p.provider === window.ethereum)) {
    wallet.providers.unshift({ name: 'injected wallet (window.ethereum)', provider: window.ethereum });
  }
  const sel = $('wallet-choice');
  sel.replaceChildren(...wallet.providers.map((p, i) => Object.assign(document.createElement('option'), { value: i, textContent: p.name })));
  sel.hidden = wallet.providers.length < 2;
}
async function connect() {
  hideError();
  listWallets();
  const chosen = wallet.providers[Number($('wallet-choice').value) || 0];
  if (!chosen) return showError({ code: 'NO_WALLET', message: 'No EIP-1193 wallet is injected into this page.' }, 'Install or enable a browser wallet, then reload; or run unpaid without one.');
  try {
    const accounts = await chosen.provider.request({ method: 'eth_requestAccounts' });
    const chainId = parseInt(await chosen.provider.request({ method: 'eth_chainId' }), 16);
    Object.assign(wallet, { provider: chosen.provider, account: accounts[0], chainId });
  } catch (e) {
    return showError({ code: e?.code === 4001 ? 'USER_REJECTED' : 'WALLET', message: `The wallet refused to connect: ${e?.message ?? e}` }, e?.code === 4001 ? 'You declined the connection in your wallet. Connect again and approve it, or run unpaid.' : 'Check the wallet, then connect again.');
  }
  chosen.provider.on?.('accountsChanged', (a) => { wallet.account = a[0]; showWallet(); });
  chosen.provider.on?.('chainChanged', (c) => { wallet.chainId = parseInt(c, 16); showWallet(); });
  showWallet();
}
function showWallet() {
  const want = Number($('chain-id').value);
  const paid = !!wallet.account;
  $('wallet-status').textContent = paid
    ? `${wallet.account.slice(0, 6)}…${wallet.account.slice(-4)} on chain ${wallet.chainId}${want && wallet.chainId !== want ? ` (the devnet is chain ${want}: switch)` : ''}`
    : 'no wallet: jobs run unpaid';
  $('connect').textContent = paid ? 'Disconnect' : 'Connect wallet';
  $('amount').disabled = !paid;
  $('payment-note').textContent = paid ? 'locked in the escrow before submit, released to the agreeing workers once the result checks out' : 'connect a wallet to pay through the escrow; without one the job runs unpaid';
}
$('connect').addEventListener('click', () => {
  if (wallet.account) {
    Object.assign(wallet, { provider: undefined, account: undefined, chainId: undefined });
    showWallet();
  } else connect();
});

// --- the SDK worker ---
const sdk = new Worker(new URL('sdk-worker.js', import.meta.url), { type: 'module' });
let ready;
const sdkReady = new Promise((r) => (ready = r));
let current = 0;
let jobId = 0;
sdk.onmessage = async ({ data: m }) => {
  if (m.type === 'ready') return ready();
  if (m.type === 'wallet-request') {
    // The SDK asks the wallet (balance, gas, the escrow transaction): the wallet decides.
    try {
      if (!wallet.provider) throw Object.assign(new Error('no wallet connected'), { code: 4100 });
      sdk.postMessage({ type: 'wallet-answer', rid: m.rid, result: await wallet.provider.request(m.args) });
    } catch (e) {
      sdk.postMessage({ type: 'wallet-answer', rid: m.rid, error: { code: e?.code, message: String(e?.message ?? e), data: plain(e?.data) } });
    }
    return;
  }
  if (m.id !== current && m.id !== 0) return;
  switch (m.type) {
    case 'phase': return phase(m.text);
    case 'estimate': return showEstimate(m.estimate);
    case 'submitted': return log('status', `submitted ${m.job} to ${m.worker}${m.replicas?.length > 1 ? ` (+${m.replicas.length - 1} replicas)` : ''}\n`);
    case 'log': return log(m.chunk.stream, m.chunk.text);
    case 'result': return showResult(m.result, m.receipt);
    case 'receipt-report': return showReceiptReport(m.report);
    case 'error': return failed(m.error);
  }
};
sdk.onerror = (e) => failed({ code: 'WORKER', message: `the SDK worker failed to start: ${e.message ?? e}` });
const plain = (x) => { try { return x === undefined ? undefined : JSON.parse(JSON.stringify(x)); } catch { return undefined; } };

// --- actions ---
async function start(kind) {
  hideError();
  const s = settings();
  current = ++jobId;
  await sdkReady;
  if (kind === 'run') {
    clearResult();
    busy(true);
    phase('starting');
  }
  sdk.postMessage({ type: kind, id: current, settings: s });
}
$('run').addEventListener('click', () => start('run'));
$('estimate').addEventListener('click', () => start('estimate'));
$('cancel').addEventListener('click', () => sdk.postMessage({ type: 'cancel', id: current }));

function busy(on) {
  $('run').disabled = on;
  $('estimate').disabled = on;
  $('cancel').disabled = !on;
}
function phase(text) {
  $('phase').textContent = text;
}

function clearResult() {
  $('logs').textContent = '';
  for (const id of ['verification-card', 'outputs-card', 'cost-card', 'receipt-card']) $(id).hidden = true;
  $('replicas').tBodies[0].replaceChildren();
  $('checks').replaceChildren();
  $('output-files').replaceChildren();
  $('cost').replaceChildren();
  $('verdict').textContent = '';
  $('receipt-status').textContent = '';
  for (const a of document.querySelectorAll('#output-files a')) URL.revokeObjectURL(a.href);
}

// Logs arrive in small chunks; one text node append per animation frame keeps this cheap.
let pendingLog = '';
function log(stream, text) {
  pendingLog += stream === 'stderr' ? text.replace(/^/gm, '! ') : stream === 'status' ? `· ${text.trimEnd()}\n` : text;
  requestAnimationFrame(() => {
    if (!pendingLog) return;
    $('logs').append(pendingLog);
    pendingLog = '';
    $('logs').scrollTop = $('logs').scrollHeight;
  });
}

function dl(target, rows) {
  target.replaceChildren();
  for (const [k, v] of rows) {
    if (v === undefined || v === null || v === '') continue;
    target.append(Object.assign(document.createElement('dt'), { textContent: k }));
    const dd = document.createElement('dd');
    if (v instanceof Node) dd.append(v);
    else dd.textContent = String(v);
    target.append(dd);
  }
}

function showEstimate(e) {
  $('estimate-card').hidden = false;
  dl($('estimate-list'), [
    ['workers', e.workers],
    ['upload', `${bytes(e.uploadBytes)} to each worker`],
    ['runs', `${e.interpreter} ${e.entrypoint}, at most ${e.maxSeconds} s`],
    ['job hash', e.jobHash],
    ['payment', e.maxCost === '0' ? 'none (unpaid)' : `${e.maxCost} ${e.token} locked in the escrow`],
    ['worker prices', e.workerCost ? `${eth(e.workerCost.low)}–${eth(e.workerCost.high)} ETH if it runs the whole timeout` : undefined],
    ['gas', e.gasCost ? `${e.gasCost} ETH at ${e.gasPriceWei} wei/gas` : undefined],
  ]);
}

const eth = (x) => String(Number(Number(x).toPrecision(3)));
const bytes = (n) => (n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} bytes`);

function badge(ok, text, title) {
  const b = document.createElement('span');
  b.className = `badge ${ok === true ? 'ok' : ok === false ? 'bad' : 'unknown'}`;
  b.textContent = `${ok === true ? '✓' : ok === false ? '✗' : '–'} ${text}`;
  if (title) b.title = title;
  return b;
}

/** Which checks a dissenting replica failed: its detail lists them, "(name: why; name: why)". */
function failedChecks(detail) {
  const m = /do not trust it \((.*)\)$/s.exec(detail ?? '');
  if (!m) return null;
  const failed = {};
  for (const part of m[1].split(/; (?=(?:job_hash|signature|stdout|output:[^:]+):)/)) {
    const name = /^(job_hash|signature|stdout|output:[^:]+):/.exec(part)?.[1];
    if (name) failed[name.startsWith('output:') ? 'outputs' : name] = part;
  }
  return failed;
}

function replicaRow(rep, checks) {
  const tr = document.createElement('tr');
  const who = document.createElement('td');
  who.textContent = rep.worker;
  who.title = rep.workerId ?? 'anonymous worker';
  tr.append(who);
  const cells = [];
  if (checks) {
    // The returned result: its own checks.
    const by = (pred) => checks.filter(pred);
    const all = (list) => (list.length ? list.every((c) => c.ok) : undefined);
    const tip = (list) => list.map((c) => `${c.name}: ${c.detail}`).join('\n');
    const sig = by((c) => c.name === 'signature'), hash = by((c) => c.name === 'job_hash');
    const outs = by((c) => c.name.startsWith('output:')), out = by((c) => c.name === 'stdout');
    cells.push(badge(all(sig), 'signature', tip(sig)), badge(all(hash), 'job hash', tip(hash)), badge(all(outs), 'outputs', tip(outs)), badge(all(out), 'stdout', tip(out)));
  } else if (rep.outcome === 'agreed') {
    // An agreeing replica counted toward the quorum: every check passed and its job hash
    // and output hashes equal the agreed ones.
    for (const n of ['signature', 'job hash', 'outputs', 'stdout']) cells.push(badge(true, n, rep.detail));
  } else {
    const f = failedChecks(rep.detail);
    for (const [key, n] of [['signature', 'signature'], ['job_hash', 'job hash'], ['outputs', 'outputs'], ['stdout', 'stdout']]) {
      cells.push(f ? badge(!f[key], n, f[key] ?? rep.detail) : badge(undefined, n, rep.detail));
    }
  }
  const quorum = { agreed: [true, 'in quorum'], dissented: [false, 'tampered or different'], failed: [false, 'failed'], unfinished: [undefined, 'unfinished'] }[rep.outcome] ?? [undefined, rep.outcome];
  cells.push(badge(quorum[0], quorum[1], rep.detail));
  for (const c of cells) {
    const td = document.createElement('td');
    td.append(c);
    tr.append(td);
  }
  if (rep.outcome !== 'agreed') tr.className = 'dissent';
  return tr;
}

function showReplicas(replicas, resultWorker, checks) {
  const body = $('replicas').tBodies[0];
  body.replaceChildren(...replicas.map((r) => replicaRow(r, r.worker === resultWorker ? checks : undefined)));
  $('verification-card').hidden = false;
}

function showChecks(checks) {
  $('checks').replaceChildren(...checks.map((c) => {
    const li = document.createElement('li');
    li.append(badge(c.ok, c.name), ` ${c.detail}`);
    return li;
  }));
}

function showResult(r, receipt) {
  busy(false);
  phase(`${r.status}, exit ${r.exitCode}, ${Math.round(r.executionTime)} ms`);
  const proof = r.proof;
  const ok = !!proof?.verified;
  $('verdict').replaceChildren(badge(ok, ok ? 'verified' : proof ? 'checks failed' : 'not checked (consensus none)'));
  const replicas = proof?.consensus?.replicas ?? [{ worker: r.worker, workerId: proof?.workerId, outcome: ok ? 'agreed' : 'unfinished', detail: ok ? 'single worker' : '' }];
  showReplicas(replicas, r.worker, proof?.checks ?? []);
  if (proof?.consensus) {
    const c = proof.consensus;
    $('verdict').append(` ${c.agreeing.length} of ${c.of} agreed (${c.required} needed)${c.dissenting.length ? `, ${c.dissenting.length} dissented` : ''}`);
  }
  showChecks(proof?.checks ?? []);

  const list = $('output-files');
  list.replaceChildren(...r.files.map((f) => {
    const li = document.createElement('li');
    const check = proof?.checks?.find((c) => c.name === `output:${f.path}`);
    const a = document.createElement('a');
    a.textContent = f.path;
    if (f.bytes) {
      a.href = URL.createObjectURL(new Blob([f.bytes]));
      a.download = f.path.split('/').pop();
    }
    li.append(a, ` ${bytes(f.size)} `, badge(check?.ok, 'sha256', check?.detail));
    li.append(Object.assign(document.createElement('code'), { textContent: ` ${f.sha256}` }));
    return li;
  }));
  $('outputs-card').hidden = r.files.length === 0;

  const cost = r.cost;
  if (cost && cost.state !== 'none') {
    const txs = document.createElement('ol');
    txs.className = 'txs';
    for (const h of cost.transactions) txs.append(Object.assign(document.createElement('li'), { textContent: h }));
    dl($('cost'), [
      ['paid', `${cost.amount} ${cost.token}`],
      ['state', cost.state],
      ['gas used', cost.gasUsed],
      ['transactions', txs],
      ['credited', cost.credited?.length ? cost.credited.join(', ') : undefined],
    ]);
  } else {
    dl($('cost'), [['paid', 'nothing: no wallet connected (unpaid job)']]);
  }
  $('cost-card').hidden = false;

  if (receipt) {
    $('receipt-card').hidden = false;
    $('receipt').value = JSON.stringify(JSON.parse(receipt), null, 1);
    $('receipt').scrollTop = 0;
  }
}

function failed(e) {
  busy(false);
  phase('');
  const what = HINTS[e.code] ?? 'See the message.';
  showError(e, what);
  const replicas = e.details?.replicas;
  if (Array.isArray(replicas) && replicas.length) {
    showReplicas(replicas, undefined, undefined);
    $('verdict').replaceChildren(badge(false, 'no quorum'));
  } else if (e.details?.proof?.checks) {
    const p = e.details.proof;
    showReplicas([{ worker: e.details.worker ?? $('worker').value, workerId: p.workerId, outcome: 'dissented', detail: e.message }], e.details.worker ?? $('worker').value, p.checks);
    const tr = $('replicas').tBodies[0].rows[0];
    tr.className = 'dissent';
    tr.lastChild.replaceChildren(badge(false, 'tampered', e.message));
    $('verdict').replaceChildren(badge(false, 'checks failed'));
    showChecks(p.checks);
  }
}

function showError(e, what) {
  $('error').hidden = false;
  $('error-code').textContent = e.code;
  $('error-message').textContent = e.message;
  $('error-todo').textContent = what;
}
function hideError() {
  $('error').hidden = true;
}

// --- receipt: copy, and check again offline (in the worker, with no network) ---
$('copy-receipt').addEventListener('click', async () => {
  try {
    await navigator.clipboard.writeText($('receipt').value);
    $('receipt-status').textContent = 'copied';
  } catch {
    $('receipt').select();
    $('receipt-status').textContent = 'selected: press Ctrl+C';
  }
});
$('check-receipt').addEventListener('click', async () => {
  await sdkReady;
  $('receipt-status').textContent = 'checking…';
  current = ++jobId;
  let text = $('receipt').value;
  try {
    text = JSON.stringify(JSON.parse(text));
  } catch {}
  sdk.postMessage({ type: 'verifyReceipt', id: current, receipt: text });
});
function showReceiptReport(report) {
  const bad = report.checks.filter((c) => !c.ok);
  $('receipt-status').replaceChildren(report.valid ? badge(true, 'receipt valid offline') : badge(false, `receipt invalid: ${bad.map((c) => c.name).join(', ')}`, bad.map((c) => c.detail).join('\n')));
}

// --- start ---
code.value = DEFAULT_CODE.python3;
gutter();
listWallets();
window.dispatchEvent(new Event('eip6963:requestProvider'));
await loadSettings();
showWallet();
document.body.dataset.ready = 'true';
