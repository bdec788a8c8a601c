// The spec's Node Registration example, verbatim, compiled with `tsc --strict` against
// the generated .d.ts of the built package (and run by tests/js/node.test.mjs).
// `endpoint()` is not needed: a node serves from the client's `apiEndpoint` unless told
// otherwise; `register()` needs `registryEndpoint`.
import { Sandrun } from '@sandrun/wasm';
import type { Node, NodeBuilder, NodeStats, NodeCapabilities, NodePricing, ListenOptions } from '@sandrun/wasm';

const sandrun = Sandrun.create({
  apiEndpoint: process.env.SANDRUN_API ?? 'http://127.0.0.1:7700',
  registryEndpoint: process.env.SANDRUN_REGISTRY ?? 'http://127.0.0.1:7703',
});

// Node Registration (spec)
export async function nodeRegistration(): Promise<Node> {
  const node = await sandrun
    .node()
    .capabilities({
      gpu: { type: 'rtx4090', memory: '24GB', count: 2 },
      cpu: { cores: 16, memory: '64GB' },
      storage: '1TB'
    })
    .region('us-west-2')
    .pricing({ gpu: '0.5/hour', cpu: '0.1/hour' })
    .register()

  await node.startListening()
  return node;
}

// Every NodeBuilder and Node member, with its types.
export async function everyMethod(): Promise<void> {
  const caps: NodeCapabilities = { gpu: { type: 'a100', memory: 40, count: 1 }, cpu: { cores: 8 }, storage: 500 };
  const pricing: NodePricing = { cpu: 0.1 };
  const builder: NodeBuilder = sandrun
    .node()
    .capabilities(caps)
    .region('eu-west')
    .pricing(pricing)
    .payout('0x52908400098527886E0F7030069857D2E4169EE7', { chainId: 31337, signature: process.env.SANDRUN_PAYOUT_SIGNATURE ?? '' })
    .endpoint('http://127.0.0.1:7701')
    .interpreters(['python3', 'node', 'bash', 'sh']);
  const node: Node = await builder.register();
  const id: string = node.id;
  const endpoint: string = node.endpoint;
  const workerId: string | undefined = node.workerId; // a registered node always has one; a pool member may not
  const registered: Record<string, unknown> = node.capabilities;
  const options: ListenOptions = { heartbeatInterval: 10_000, pollInterval: 1_000 };
  await node.startListening(options);
  const stats: NodeStats = node.stats;
  const counts: number[] = [stats.claimed, stats.completed, stats.failed, stats.heartbeats, stats.polls, stats.errors];
  const last: string | undefined | null = stats.lastError;
  const running: boolean = stats.running;
  await node.stop();
  console.log(id, endpoint, workerId, registered, counts, last, running);
}
