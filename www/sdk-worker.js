// The SDK's thread. The page never runs the wasm itself: packing the job (tar.gz),
// hashing, signature checks and consensus all run here, in a module Web Worker, so
// the page's main thread stays free (no task over 50 ms, checked by tests/e2e/www.test.mjs).
// The wallet stays on the page: its EIP-1193 `request()` is forwarded there (a wallet
// extension injects its provider into the page, and signing stays in the wallet).
//
// Messages in:  {type: 'estimate' | 'run', id, settings}, {type: 'cancel', id},
//               {type: 'verifyReceipt', id, receipt}, {type: 'wallet-answer', rid, result | error}
// Messages out: {type: 'ready'}, {type: 'phase', id, text}, {type: 'estimate', id, estimate},
//               {type: 'submitted', id, job, worker, replicas}, {type: 'log', id, chunk},
//               {type: 'result', id, result, receipt}, {type: 'receipt-report', id, report},
//               {type: 'error', id, error}, {type: 'wallet-request', rid, args}
import init, { Sandrun, SandrunError } from '../pkg/index.browser.js';

const post = (msg, transfer) => self.postMessage(msg, transfer ?? []);

/** The page's wallet, as an EIP-1193 provider inside the worker. */
let nextRid = 1;
const pending = new Map();
const walletProxy = {
  request(args) {
    const rid = nextRid++;
    return new Promise((resolve, reject) => {
      pending.set(rid, { resolve, reject });
      post({ type: 'wallet-request', rid, args: JSON.parse(JSON.stringify(args)) });
    });
  },
};

/** An error as plain data (the page shows code, message and what to do). */
function plainError(e) {
  let details;
  try {
    details = e?.details === undefined ? undefined : structuredClone(e.details);
  } catch {
    details = JSON.parse(JSON.stringify(e.details, (_, v) => (typeof v === 'bigint' ? String(v) : v instanceof Map ? Object.fromEntries(v) : v)));
  }
  return {
    name: e?.name ?? 'Error',
    code: e instanceof SandrunError ? e.code : e?.code ?? 'UNEXPECTED',
    message: String(e?.message ?? e),
    status: e?.status,
    details,
  };
}

function client(settings) {
  const config = { apiEndpoint: settings.worker };
  if (settings.registry) config.registryEndpoint = settings.registry;
  if (settings.ipfsGateway) config.ipfsGateway = settings.ipfsGateway;
  if (settings.ipfsApi) config.ipfsApi = settings.ipfsApi;
  if (settings.paid) {
    config.escrow = { address: settings.escrow, chainId: Number(settings.chainId) };
    config.web3Provider = walletProxy;
  }
  return Sandrun.create(config);
}

/** The job the settings describe (every builder call checks its argument at once). */
async function jobFor(s, settings) {
  let job = s.job().interpreter(settings.interpreter).code(settings.code);
  if (settings.entrypoint) job = job.entrypoint(settings.entrypoint);
  for (const f of settings.files ?? []) job = job.file(f.name, new Uint8Array(await f.arrayBuffer()));
  if (settings.outputs?.length) job = job.outputs(settings.outputs);
  if (settings.memory) job = job.memory(Number(settings.memory));
  if (settings.timeout) job = job.timeout(Number(settings.timeout));
  job = job.consensus(settings.consensus);
  if (settings.paid) job = job.payment(String(settings.amount), 'ETH');
  if (replicaCount(settings.consensus) > 1) {
    // The pool is the workers listed in the settings, in order (the later ones are spares).
    // Eager replication: this page shows every worker's verdict, so all n run; the SDK's
    // default (lazy) would stop at the first k that agree.
    const pool = await s.pool().nodes(settings.workers).consensus(settings.consensus).replication('eager').join();
    job = job.with(pool);
  }
  return job;
}

function replicaCount(level) {
  const m = /^(\d+)-of-(\d+)$/.exec(level);
  if (m) return Number(m[2]);
  return level === 'medium' ? 3 : level === 'high' ? 5 : 1;
}

const executions = new Map();

async function estimate(id, settings) {
  const s = client(settings);
  const job = await jobFor(s, settings);
  post({ type: 'estimate', id, estimate: await job.estimate() });
  return { s, job };
}

async function run(id, settings) {
  post({ type: 'phase', id, text: 'packing and estimating' });
  const { s, job } = await estimate(id, settings);
  post({ type: 'phase', id, text: settings.paid ? 'waiting for the wallet (escrow payment)' : 'submitting' });
  const ex = await job.submit();
  executions.set(id, ex);
  post({ type: 'submitted', id, job: ex.id, worker: ex.worker, replicas: ex.replicas });
  post({ type: 'phase', id, text: 'running' });
  for await (const chunk of await ex.logs()) post({ type: 'log', id, chunk: { stream: chunk.stream, text: chunk.text } });
  post({ type: 'phase', id, text: 'checking the result' });
  const result = await ex.download();
  let receipt;
  if (result.proof?.verified && result.proof.signature) receipt = await s.proof().from(result).toReceipt();
  const transfer = new Set(result.files.map((f) => f.bytes?.buffer).filter(Boolean));
  post({ type: 'result', id, result, receipt }, [...transfer]);
}

async function verifyReceipt(id, receipt) {
  // Offline: a receipt carries everything its check needs; the endpoint is never called.
  const report = await Sandrun.create({ apiEndpoint: 'http://127.0.0.1:1' }).proof().from(receipt).verify();
  post({ type: 'receipt-report', id, report: { valid: report.valid, checks: report.checks } });
}

const ready = init().then(
  () => post({ type: 'ready' }),
  (e) => post({ type: 'error', id: 0, error: plainError(e) }),
);

self.onmessage = async ({ data }) => {
  if (data.type === 'wallet-answer') {
    const p = pending.get(data.rid);
    pending.delete(data.rid);
    if (!p) return;
    if (data.error) p.reject(Object.assign(new Error(data.error.message), { code: data.error.code, data: data.error.data }));
    else p.resolve(data.result);
    return;
  }
  await ready;
  try {
    if (data.type === 'estimate') await estimate(data.id, data.settings);
    else if (data.type === 'run') await run(data.id, data.settings);
    else if (data.type === 'verifyReceipt') await verifyReceipt(data.id, data.receipt);
    else if (data.type === 'cancel') await executions.get(data.id)?.cancel();
  } catch (e) {
    post({ type: 'error', id: data.id, error: plainError(e) });
  } finally {
    if (data.type === 'run') executions.delete(data.id);
  }
};
