// Every name the spec's TypeScript uses, exactly as the spec writes it, imported from the
// package root and used in the spec's positions. Compiled by `tsc --strict` (npm test).
import { Sandrun, retryPlugin, metricsPlugin, loggingPlugin, authPlugin } from '@sandrun/wasm';
import type {
  SandrunBuilder,
  SandrunClient,
  SandrunConfig,
  JobBuilder,
  Job,
  JobExecution,
  JobStatus,
  JobResult,
  JobEstimate,
  LogStream,
  PoolBuilder,
  Pool,
  Node,
  NodeBuilder,
  ProofBuilder,
  Proof,
  ConsensusResult,
  ConsensusLevel,
  ConsensusStrategy,
  DiscoveryCriteria,
  Capability,
  GPURequirements,
  PaymentInfo,
  AuthConfig,
  AuthProvider,
  Plugin,
  Middleware,
  MiddlewareContext,
  RetryOptions,
  MetricsCollector,
  Logger,
  Web3Provider,
} from '@sandrun/wasm';

// Each builder is a SandrunBuilder<T> whose build() gives the spec's T.
export function builders(sandrun: Sandrun) {
  const client: SandrunClient = sandrun.build();
  const s: SandrunBuilder<SandrunClient> = sandrun;
  const jb: SandrunBuilder<Job> = sandrun.job();
  const pb: SandrunBuilder<Pool> = sandrun.pool();
  const nb: SandrunBuilder<Node> = sandrun.node();
  const job: Job = sandrun.job().code('print(1)').build();
  const pool: Pool = sandrun.pool().consensus('2-of-3').build();
  const node: Node = sandrun.node().build();
  return { client, s, jb, pb, nb, job, pool, node };
}

// Pool.nodes is Node[], Pool.capabilities is Capability[], distribute takes a Job.
export async function pools(pool: Pool, job: Job): Promise<ConsensusResult> {
  const nodes: Node[] = pool.nodes;
  const caps: Capability[] = pool.capabilities;
  const executions: JobExecution[] = await pool.distribute(job);
  const results: JobResult[] = await Promise.all(executions.map((e) => e.wait()));
  const proofs: Proof[] = results.map((r) => r.proof).filter((p): p is Proof => p !== undefined);
  console.log(nodes.length, caps.map((c) => c.label));
  return pool.verify(proofs);
}

// The spec's config and types.
export const config: SandrunConfig = {
  apiEndpoint: 'http://127.0.0.1:7700',
  ipfsGateway: 'http://127.0.0.1:8080',
  authentication: { token: 't' } satisfies AuthConfig,
  defaults: { timeout: 60, retries: 2, consensus: 'low' },
};
export const strategy: ConsensusStrategy = '2-of-3';
export const level: ConsensusLevel = 'high';
export const status: JobStatus = 'cancelled';
export const gpu: GPURequirements = { type: 'cuda', memory: '2GB', count: 1, compute: 8 };
export const criteria: DiscoveryCriteria = { minGPUs: 4, region: 'us-east' };
export function results(r: JobResult, e: JobEstimate, c: PaymentInfo, l: LogStream): string {
  const s: 'completed' | 'failed' | 'cancelled' = r.status;
  // Node resolves the package's Node declarations: output is a Buffer, as the spec types it.
  const output: Buffer | undefined = r.output;
  console.log(output?.toString('utf8'));
  return `${s} ${e.jobHash} ${c.state} ${typeof l}`;
}

// The spec's plugin interface: hooks take the spec's types.
export const plugin: Plugin = {
  name: 'audit',
  version: '1.0.0',
  onInit(config: SandrunConfig) {
    console.log(config.apiEndpoint);
  },
  onBuild<T>(builder: SandrunBuilder<T>) {
    console.log(typeof builder.build);
  },
  onSubmit(job: Job): Job {
    console.log(job.timeout, job.environment);
    return job;
  },
  onResult(result: JobResult): JobResult {
    return result;
  },
  onError(error: Error, context: unknown): Error {
    console.log(context);
    return error;
  },
};
export const middleware: Middleware = {
  execute<T>(next: () => Promise<T>, context: MiddlewareContext): Promise<T> {
    console.log(context.operation);
    return next();
  },
};
export const retry: RetryOptions = { maxAttempts: 3 };
export const provider: AuthProvider = () => ({ token: 'abc' });
export function plugins(collector: MetricsCollector, logger: Logger, wallet: Web3Provider): Plugin[] {
  console.log(wallet);
  return [retryPlugin(retry), metricsPlugin(collector), loggingPlugin(logger), authPlugin(provider)];
}
export type Builders = [JobBuilder, PoolBuilder, NodeBuilder, ProofBuilder];
