// The spec's job examples, verbatim where the spec gives code, compiled with
// `tsc --strict` against the generated .d.ts of the built package.
import { Sandrun, SandrunError, localWallet } from '@sandrun/wasm';
import type { SandrunConfig, GPURequirements, JobResult, ConsensusLevel, JobEstimate, LogChunk } from '@sandrun/wasm';

// With a devnet started with --chain, the tests pass the chain's escrow and a funded key.
const chain = process.env.SANDRUN_CHAIN ? JSON.parse(process.env.SANDRUN_CHAIN) as { rpc: string; chainId: number; escrow: string; accounts: { privateKey: string }[] } : undefined;
const config: SandrunConfig = {
  apiEndpoint: process.env.SANDRUN_API ?? 'http://127.0.0.1:7700',
  registryEndpoint: process.env.SANDRUN_REGISTRY,
  ipfsGateway: 'http://127.0.0.1:8080',
  defaults: { timeout: 60, retries: 2, consensus: 'low' },
  ...(chain ? { escrow: { address: chain.escrow, chainId: chain.chainId }, web3Provider: localWallet(chain.accounts[0].privateKey, chain.rpc) } : {}),
};
const sandrun = Sandrun.create(config);

// Simple Job Submission (spec)
export async function simple(): Promise<JobResult> {
  const result = await sandrun
    .job()
    .code('console.log("Hello from GPU!")')
    .gpu({ type: 'cuda', memory: '2GB' })
    .payment('0.1', 'ETH')
    .submit()
    .then(execution => execution.wait())
  return result;
}

// Every JobBuilder and JobExecution method of the spec, with its types.
export async function everyMethod(): Promise<void> {
  const gpu: GPURequirements = { type: 'a100', count: 4, memory: '40GB', compute: 8.0 };
  const level: ConsensusLevel = 'high';
  const k: ConsensusLevel = '4-of-7';
  const job = sandrun
    .job()
    .code(new Uint8Array([112, 114, 105, 110, 116, 40, 49, 41]))
    .code(new Blob(['print(1)']))
    .script('train.py')
    .repository('https://github.com/user/ml-training', 'main')
    .gpu(gpu)
    .memory(512)
    .timeout(60)
    .environment({ DATASET_URL: 'ipfs://...' })
    .args(['--epochs', '3'])
    .payment('5.0', 'ETH')
    .consensus(level)
    .consensus(k);
  const estimate: JobEstimate = await job.estimate();
  const execution = await job.submit();
  const id: string = execution.id;
  const status: 'queued' | 'running' | 'completed' | 'failed' | 'cancelled' = execution.status;
  const result: JobResult = await execution.wait();
  const bytes: Uint8Array | undefined = result.output;
  const lines: string[] = result.logs;
  const ms: number = result.executionTime;
  const paid: string = result.cost.amount;
  const verified: boolean | undefined = result.proof?.verified;
  for await (const chunk of await execution.logs()) {
    const c: LogChunk = chunk;
    console.log(c.stream, c.text);
  }
  await execution.cancel();
  const downloaded: JobResult = await execution.download();
  const first: Uint8Array | undefined = downloaded.files[0]?.bytes;
  await execution.downloadTo('./out');
  console.log(estimate.jobHash, id, status, bytes, lines, ms, paid, verified, first);
}

export function errors(e: unknown): string {
  if (e instanceof SandrunError) {
    switch (e.code) {
      case 'RATE_LIMITED': return `retry in ${e.retryAfterMs ?? 1000} ms`;
      case 'VERIFICATION_FAILED': return 'do not trust it';
      default: return e.message;
    }
  }
  return String(e);
}

// Mistakes the types catch (never called: these would also throw INVALID_ARGUMENT).
export function typeErrors(): void {
  // @ts-expect-error: consensus levels are typed
  sandrun.job().consensus('most');
  // @ts-expect-error: unknown config keys are a type error too
  Sandrun.create({ apiEndpont: 'http://x' });
  // @ts-expect-error: args are a list
  sandrun.job().args('--epochs 3');
}

// The same chain without payment(), which needs the payments issue to run.
export async function simpleUnpaid(): Promise<JobResult> {
  return sandrun
    .job()
    .code('console.log("Hello from GPU!")')
    .gpu({ type: 'cuda', memory: '2GB' })
    .submit()
    .then(execution => execution.wait())
}

// Optional arguments stay optional in the types.
export function optionalArguments(): void {
  const local = Sandrun.create();
  local.pool().discover();
  local.job().repository('https://github.com/user/repo');
  local.job().payment('1');
}
