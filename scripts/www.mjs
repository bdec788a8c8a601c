// npm run www (after scripts/www.sh has set up and built): start a devnet (workers, registry,
// --chain, and --ipfs where the devnet has it) and serve the dApp in www/ with the built
// package on loopback. Prints the page's URL on a line of its own; Ctrl-C stops all.
//
//   node scripts/www.mjs [--port N]      (default 8700; a free port if that one is taken)
//
// Also a module: tests/e2e/www.test.mjs imports serveWww() to serve the same page.
import { createServer } from 'node:http';
import { execFileSync } from 'node:child_process';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const MIME = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.wasm': 'application/wasm',
  '.json': 'application/json',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
  '.ts': 'text/plain; charset=utf-8',
};

/** What the page may know of the devnet: endpoints, never keys (anvil's dev keys stay here). */
export function publicDevnet(devnet) {
  const { workers, registry, chain, ipfs } = devnet;
  return {
    workers: workers.map(({ url, worker_id, payout }) => ({ url, worker_id, payout })),
    registry,
    chain: chain && { rpc: chain.rpc, chainId: chain.chainId, escrow: chain.escrow, token: chain.token },
    ipfs,
  };
}

/**
 * Serves www/ at /, the built package at /pkg/ and the devnet's endpoints at /devnet.json,
 * on 127.0.0.1. Resolves with { url, server, close() }.
 */
export async function serveWww({ devnet, port = 0, wwwDir = path.join(root, 'www'), pkgDir = path.join(root, 'pkg') } = {}) {
  const config = devnet ? JSON.stringify(publicDevnet(devnet)) : undefined;
  const server = createServer(async (req, res) => {
    const pathname = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    const headers = { 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' };
    if (pathname === '/devnet.json' && config) {
      res.writeHead(200, { ...headers, 'content-type': MIME['.json'] });
      return res.end(config);
    }
    const [base, rel] = pathname.startsWith('/pkg/') ? [pkgDir, pathname.slice(4)] : [wwwDir, pathname === '/' ? '/index.html' : pathname];
    const file = path.resolve(base, '.' + rel);
    try {
      if (!file.startsWith(base + path.sep) || !(await stat(file)).isFile()) throw new Error('not a file');
      const body = await readFile(file);
      res.writeHead(200, { ...headers, 'content-type': MIME[path.extname(file)] ?? 'application/octet-stream', 'content-length': body.length });
      res.end(body);
    } catch {
      res.writeHead(404, { ...headers, 'content-type': 'text/plain' });
      res.end('not found');
    }
  });
  await new Promise((resolve, reject) => {
    server.once('error', (e) => {
      if (e.code === 'EADDRINUSE' && port !== 0) server.listen(0, '127.0.0.1', resolve);
      else reject(e);
    });
    server.listen(port, '127.0.0.1', resolve);
  });
  const url = `http://127.0.0.1:${server.address().port}/`;
  return { url, server, close: () => new Promise((r) => server.close(r)) };
}

/** The devnet's flags for the page: a chain always, IPFS where this devnet build has it. */
export function devnetFlags(bin) {
  const flags = ['--workers', '3', '--no-rate-limit', '--chain'];
  try {
    if (/--ipfs\b/.test(execFileSync(bin, ['--help'], { encoding: 'utf8' }))) flags.push('--ipfs');
  } catch {}
  return flags;
}

async function main() {
  const { startDevnet, devnetBin } = await import('../tests/js/support.mjs');
  const arg = process.argv.indexOf('--port');
  const port = arg > 0 ? Number(process.argv[arg + 1]) : Number(process.env.WWW_PORT ?? 8700);
  const flags = devnetFlags(devnetBin());
  const devnet = await startDevnet(flags);
  const www = await serveWww({ devnet, port });
  const stop = async () => {
    await www.close();
    await devnet.stop();
    process.exit(0);
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  const w = devnet.workers.map((x) => new URL(x.url).port);
  console.log(`devnet: ${w.length} workers on 127.0.0.1:${w.join(',')}, registry ${devnet.registry}, chain ${devnet.chain?.rpc ?? 'off'} (id ${devnet.chain?.chainId ?? '-'})${devnet.ipfs ? `, IPFS gateway ${devnet.ipfs.gateway}` : ''}`);
  console.log('dApp (open it in a browser with a wallet, or without one to run unpaid; Ctrl-C stops all):');
  console.log(www.url);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((e) => {
    console.error(e?.stack ?? e);
    process.exit(1);
  });
}
