// The spec's Complex Multi-Node Workflow, verbatim, compiled with `tsc --strict` against
// the generated .d.ts, plus the same chain runnable here (run by
// tests/js/spec-examples.test.mjs): a local repository archive instead of GitHub (no
// network here) and a real dataset CID on the devnet's IPFS node instead of 'ipfs://...'.
import { Sandrun, retryPlugin, metricsPlugin, localWallet } from '@sandrun/wasm';
import type { Pool, JobExecution, ConsensusResult, DiscoveryCriteria } from '@sandrun/wasm';

const chain = process.env.SANDRUN_CHAIN ? JSON.parse(process.env.SANDRUN_CHAIN) as { rpc: string; chainId: number; escrow: string; accounts: { privateKey: string }[] } : undefined;
const ipfs = process.env.SANDRUN_IPFS ? JSON.parse(process.env.SANDRUN_IPFS) as { api: string; gateway: string } : undefined;
const sandrun = Sandrun.create({
  apiEndpoint: process.env.SANDRUN_API ?? 'http://127.0.0.1:7700',
  registryEndpoint: process.env.SANDRUN_REGISTRY ?? 'http://127.0.0.1:7703',
  ...(ipfs ? { ipfsGateway: ipfs.gateway, ipfsApi: ipfs.api } : {}),
  ...(chain ? { escrow: { address: chain.escrow, chainId: chain.chainId }, web3Provider: localWallet(chain.accounts[0].privateKey, chain.rpc) } : {}),
});

// Complex Multi-Node Workflow (spec)
export async function complexWorkflow(): Promise<JobExecution> {
  const pool = await sandrun
    .pool()
    .discover({ minGPUs: 4, region: 'us-east' })
    .consensus('2-of-3')
    .use(retryPlugin({ maxAttempts: 3 }))
    .use(metricsPlugin())
    .join()

  const execution = await sandrun
    .job()
    .repository('https://github.com/user/ml-training')
    .gpu({ type: 'a100', count: 4, memory: '40GB' })
    .environment({ DATASET_URL: 'ipfs://...' })
    .payment('5.0', 'ETH')
    .consensus('high')
    .with(pool)
    .submit()
  return execution;
}

/** The spec's chain but for the repository URL (no network here) and the dataset (a real
 * `ipfs://CID`); `pay` adds its `.payment('5.0', 'ETH')`. Returns the pool's metrics
 * plugin too. */
export async function complexWorkflowHere(repositoryUrl: string, datasetUrl: string, pay = false): Promise<{ pool: Pool; execution: JobExecution; metrics: ReturnType<typeof metricsPlugin> }> {
  const metrics = metricsPlugin();
  const criteria: DiscoveryCriteria = { minGPUs: 4, region: 'us-east' };
  const pool = await sandrun
    .pool()
    .discover(criteria)
    .consensus('2-of-3')
    .use(retryPlugin({ maxAttempts: 3 }))
    .use(metrics)
    .join()

  const job = sandrun
    .job()
    .repository(repositoryUrl)
    .gpu({ type: 'a100', count: 4, memory: '40GB' })
    .environment({ DATASET_URL: datasetUrl })
  const execution = await (pay ? job.payment('5.0', 'ETH') : job)
    .consensus('high')
    .with(pool)
    .submit()
  return { pool, execution, metrics };
}

export async function verifyAll(pool: Pool, execution: JobExecution): Promise<ConsensusResult> {
  const result = await execution.wait();
  return pool.verify(result.proof ? [result.proof] : []);
}
