// Packaging: the published tarball, as users get it, in the tools they already use.
//
//   node --test tests/pack/
//
// `npm pack` of the built pkg/ is linted (publint, arethetypeswrong: nothing reported) and
// installed with `npm install <tarball>` into four projects copied from this folder:
//   esm/      Node ESM in TypeScript (NodeNext), compiled by tsc, runs a job
//   cjs/      CommonJS in TypeScript (a .cts file: require('@sandrun/wasm')), compiled, runs a job
//   vite/     a Vite production build (TypeScript entry), run in Chromium against the devnet
//   webpack/  a webpack 5 production build, run in Chromium against the devnet
// Neither bundler is configured for the wasm. Every project type-checks under `strict`
// with `skipLibCheck: false`; the Vite one as a browser project (`lib: ["ES2022",
// "DOM"]`, no @types/node), with TypeScript 5.9 (this folder) and 7 (the repo's).
//
// The tools live in tests/pack/node_modules (scripts/setup.sh runs `npm ci` here once);
// the projects are built under tests/pack/.work/ (git-ignored, recreated each run).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, rmSync, readFileSync, writeFileSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { createServer } from 'node:http';
import path, { join } from 'node:path';
import { startDevnet, root } from '../js/support.mjs';

const here = join(root, 'tests/pack');
const bin = (name) => join(here, 'node_modules/.bin', name);
const work = join(here, '.work');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
// SANDRUN_PACK_PKG packs another built package directory instead of pkg/.
const PKG = path.resolve(process.env.SANDRUN_PACK_PKG ?? join(root, 'pkg'));

/** Runs a command; resolves with its output, rejects with both streams in the message. */
function sh(cmd, args, opts = {}) {
  return new Promise((resolve, reject) => {
    const { NODE_TEST_CONTEXT, ...env } = process.env;
    execFile(cmd, args, { encoding: 'utf8', timeout: 180_000, maxBuffer: 32 << 20, ...opts, env: { ...env, ...opts.env } }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${cmd} ${args.join(' ')} (in ${opts.cwd ?? '.'}) failed: ${error.message}\n${stdout}\n${stderr}`));
      else resolve({ stdout, stderr });
    });
  });
}

let net;
let tarball;
let browser;
const projects = {};

before(async () => {
  for (const tool of ['publint', 'attw', 'vite', 'webpack', 'tsc']) {
    assert.ok(existsSync(bin(tool)), `${tool} is not installed: run \`bash scripts/setup.sh --browser\` (npm ci in tests/pack)`);
  }
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  net = await startDevnet(['--workers', '1', '--no-rate-limit']);
  await sh('npm', ['pack', PKG, '--pack-destination', work, '--silent']);
  tarball = join(work, readdirSync(work).find((f) => f.endsWith('.tgz')));
  // One install per project, in parallel (the tarball has no dependencies: seconds).
  await Promise.all(
    ['esm', 'cjs', 'vite', 'webpack'].map(async (name) => {
      const dir = join(work, name);
      cpSync(join(here, name), dir, { recursive: true, filter: (src) => !/[/\\](node_modules|dist|out)$/.test(src) });
      await sh('npm', ['install', tarball, '--no-audit', '--no-fund', '--no-save', '--loglevel=error'], { cwd: dir });
      projects[name] = dir;
    }),
  );
});

after(async () => {
  await browser?.close().catch(() => {});
  await net?.stop();
});

test('the tarball holds every file the exports map, main and types name, and the wasm', async () => {
  const { stdout } = await sh('tar', ['tzf', tarball]);
  const files = new Set(stdout.split('\n').filter(Boolean));
  const manifest = JSON.parse(readFileSync(join(PKG, 'package.json'), 'utf8'));
  const named = new Set([manifest.main, manifest.types]);
  const walk = (v) => (typeof v === 'string' ? named.add(v) : Object.values(v).forEach(walk));
  walk(manifest.exports);
  for (const f of [...named, './index.cjs', './sandrun_wasm_bg.wasm', './README.md']) {
    assert.ok(files.has(`package/${f.replace(/^\.\//, '')}`), `${f} is in the tarball`);
  }
  assert.ok([...files].some((f) => f.endsWith('.d.cts')), 'CommonJS declarations are packed');
});

test('publint reports nothing', async () => {
  const { stdout } = await sh(bin('publint'), ['run', '--strict', PKG]);
  assert.match(stdout, /All good!/, stdout);
});

test('arethetypeswrong reports nothing (ESM, CommonJS, bundlers, node10; every subpath)', async () => {
  // Exits non-zero on any problem; --format json lists them.
  const r = await sh(bin('attw'), [tarball, '--format', 'json']).catch((e) => ({ failed: e.message }));
  if (r.failed) {
    const json = r.failed.slice(r.failed.indexOf('{'));
    let problems;
    try {
      problems = JSON.parse(json.slice(0, json.lastIndexOf('}') + 1)).analysis.problems;
    } catch {
      problems = r.failed;
    }
    assert.fail(`attw: ${JSON.stringify(problems, null, 1)}`);
  }
  const analysis = JSON.parse(r.stdout).analysis;
  assert.deepEqual(analysis.problems, []);
});

test('types: strict, skipLibCheck false, in each project (TypeScript 5.9 and 7)', async () => {
  const ts7 = join(root, 'node_modules/.bin/tsc');
  for (const name of ['esm', 'cjs', 'vite']) {
    for (const tsc of [bin('tsc'), ts7]) {
      if (!existsSync(tsc)) continue;
      await sh(tsc, ['-p', projects[name], '--noEmit']);
    }
  }
});

test('Node ESM: compiled TypeScript imports the package by name and runs a verified job', async () => {
  await sh(bin('tsc'), ['-p', projects.esm]);
  const { stdout } = await sh(process.execPath, ['out/main.js', net.workers[0].url], { cwd: projects.esm });
  assert.deepEqual(JSON.parse(stdout), { stdout: '42\n', verified: true, code: 'INVALID_ARGUMENT' });
});

test("CommonJS: require('@sandrun/wasm') works and is the same module as import(); an old Node gets a clear error", async () => {
  await sh(bin('tsc'), ['-p', projects.cjs]);
  const main = readFileSync(join(projects.cjs, 'out/main.cjs'), 'utf8');
  assert.match(main, /require\("@sandrun\/wasm"\)/, 'tsc compiled the import to require()');
  const { stdout } = await sh(process.execPath, ['out/main.cjs', net.workers[0].url], { cwd: projects.cjs });
  assert.deepEqual(JSON.parse(stdout), { stdout: '42\n', verified: true, code: 'INVALID_ARGUMENT', sameModule: true });
  // A Node without require(esm) (before 20.19 / 22.12) is simulated with the flag that turns it off.
  const old = await sh(process.execPath, ['--no-experimental-require-module', 'out/main.cjs', net.workers[0].url], { cwd: projects.cjs }).then(
    () => 'ran',
    (e) => e.message,
  );
  assert.match(old, /@sandrun\/wasm is an ES module and this Node\.js \(v[\d.]+\) cannot require\(\) one\. Use `const \{ Sandrun \} = await import\('@sandrun\/wasm'\)`/);
});

test('TypeDoc: the API docs build from the published .d.ts, warnings as errors', { timeout: 120_000 }, async () => {
  // typedoc.json at the root is what `npm run docs` uses, on the package directory packed above.
  const pkgDir = PKG;
  const tsconfig = join(work, 'typedoc.tsconfig.json');
  const base = JSON.parse(readFileSync(join(here, 'typedoc.tsconfig.json'), 'utf8'));
  writeFileSync(tsconfig, JSON.stringify({ ...base, files: [join(pkgDir, 'index.d.ts')] }));
  const out = join(work, 'api');
  const options = join(work, 'typedoc.json');
  writeFileSync(options, JSON.stringify({ extends: [join(root, 'typedoc.json')], entryPoints: [join(pkgDir, 'index.d.ts')], tsconfig, out }));
  await sh(bin('typedoc'), ['--options', options], { cwd: root });
  for (const page of ['index.html', 'classes/Sandrun.html', 'classes/JobBuilder.html', 'classes/SandrunError.html', 'interfaces/JobResult.html']) {
    assert.ok(existsSync(join(out, page)), `${page} generated`);
  }
});

/** Serves `dir` on 127.0.0.1 (random port) with the MIME types a static host sends. */
async function serve(dir) {
  const types = { '.html': 'text/html', '.js': 'text/javascript', '.wasm': 'application/wasm', '.css': 'text/css' };
  const server = createServer(async (req, res) => {
    const p = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    if (p === '/favicon.ico') return res.writeHead(204).end();
    const file = path.resolve(dir, '.' + (p === '/' ? '/index.html' : p));
    try {
      if (!file.startsWith(dir + path.sep) || !(await stat(file)).isFile()) throw new Error();
      res.writeHead(200, { 'content-type': types[path.extname(file)] ?? 'application/octet-stream' });
      res.end(await readFile(file));
    } catch {
      res.writeHead(404).end();
    }
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { server, origin: `http://127.0.0.1:${server.address().port}` };
}

/** Opens the built app in Chromium; resolves with window.__result and what the page complained about. */
async function runInChromium(dist) {
  if (!browser) {
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu'] });
  }
  const { server, origin } = await serve(dist);
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => m.type() === 'error' && errors.push(`${m.text()} (${m.location()?.url})`));
  const wasm = [];
  page.on('response', (r) => r.url().endsWith('.wasm') && wasm.push([new URL(r.url()).pathname, r.status(), r.headers()['content-type']]));
  try {
    await page.goto(`${origin}/?worker=${encodeURIComponent(net.workers[0].url)}`);
    await page.waitForFunction(() => window.__result !== undefined, null, { timeout: 60_000 });
    return { result: await page.evaluate(() => window.__result), errors, wasm };
  } finally {
    await page.close();
    await new Promise((r) => server.close(r));
  }
}

test('Vite: a production build finds the wasm by itself and runs a verified job in Chromium', { timeout: 240_000 }, async () => {
  await sh(bin('vite'), ['build', '--logLevel', 'warn'], { cwd: projects.vite });
  const dist = join(projects.vite, 'dist');
  const r = await runInChromium(dist);
  assert.deepEqual(r.result, { stdout: '42\n', verified: true });
  assert.deepEqual(r.errors, []);
  assert.equal(r.wasm.length, 1, JSON.stringify(r.wasm));
  assert.match(r.wasm[0][0], /^\/assets\/sandrun_wasm_bg-.+\.wasm$/);
  assert.deepEqual(r.wasm[0].slice(1), [200, 'application/wasm']);
});

test('webpack: a production build finds the wasm by itself and runs a verified job in Chromium', { timeout: 240_000 }, async () => {
  await sh(process.execPath, [bin('webpack'), '--config', 'webpack.config.js', '--no-stats'], { cwd: projects.webpack });
  const dist = join(projects.webpack, 'dist');
  cpSync(join(projects.webpack, 'index.html'), join(dist, 'index.html'));
  const r = await runInChromium(dist);
  assert.deepEqual(r.result, { stdout: '42\n', verified: true });
  assert.deepEqual(r.errors, []);
  assert.equal(r.wasm.length, 1, JSON.stringify(r.wasm));
  assert.deepEqual(r.wasm[0].slice(1), [200, 'application/wasm']);
});
