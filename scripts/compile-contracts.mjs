#!/usr/bin/env node
// Compiles contracts/SandrunEscrow.sol and contracts/TestToken.sol with the `solc` npm
// package (offline, standard JSON) and writes contracts/artifacts/<Name>.json:
// { contractName, sourceName, abi, bytecode, deployedBytecode, solcVersion, settings }.
//
//   node scripts/compile-contracts.mjs           write the artifacts
//   node scripts/compile-contracts.mjs --check   recompile, exit 1 if the artifacts on
//                                                disk differ (for CI); writes nothing
//
// The output is deterministic: fixed settings, sources keyed by their repo-relative path,
// line endings normalised to \n, keys in a fixed order. The bytecode ends with solc's
// CBOR metadata (IPFS hash of the metadata), so it can be verified on Sourcify/explorers.
//
// Also exports `compile(paths)` for tests that compile test-only contracts.
import { readFileSync, writeFileSync, mkdirSync, existsSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const ARTIFACTS_DIR = join(ROOT, 'contracts', 'artifacts');

/** The contracts that get committed artifacts: [source path, contract name]. */
export const CONTRACTS = [
  ['contracts/SandrunEscrow.sol', 'SandrunEscrow'],
  ['contracts/TestToken.sol', 'TestToken'],
];

/**
 * evmVersion 'cancun': the default hardfork of anvil (>= cancun) runs it, and so do
 * Ethereum mainnet and the major L2s. The escrow uses no cancun-only opcode itself
 * (its reentrancy lock is in plain storage), but solc emits PUSH0/MCOPY for this target.
 */
export const SETTINGS = Object.freeze({
  optimizer: { enabled: true, runs: 200 },
  evmVersion: 'cancun',
  metadata: { bytecodeHash: 'ipfs' },
});

let solcInstance;
function solc() {
  solcInstance ??= require('solc');
  return solcInstance;
}

export function solcVersion() {
  return solc().version();
}

function readSource(relPath) {
  return readFileSync(join(ROOT, relPath), 'utf8').replace(/\r\n?/g, '\n');
}

/**
 * Compiles the given repo-relative .sol paths (imports resolved inside the repo only).
 * Returns { [contractName]: { sourceName, abi, bytecode, deployedBytecode } }; throws
 * with solc's messages on any error.
 */
export function compile(paths) {
  const sources = {};
  for (const p of paths) sources[p] = { content: readSource(p) };
  const input = {
    language: 'Solidity',
    sources,
    settings: {
      ...SETTINGS,
      outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object'] } },
    },
  };
  const findImports = (path) => {
    const abs = resolve(ROOT, path);
    if (!abs.startsWith(ROOT + sep) || !existsSync(abs)) return { error: `import not found in the repository: ${path}` };
    return { contents: readSource(relative(ROOT, abs).split(sep).join('/')) };
  };
  const output = JSON.parse(solc().compile(JSON.stringify(input), { import: findImports }));
  const errors = (output.errors ?? []).filter((e) => e.severity === 'error');
  const warnings = (output.errors ?? []).filter((e) => e.severity !== 'error');
  for (const w of warnings) process.stderr.write(`solc: ${w.formattedMessage ?? w.message}\n`);
  if (errors.length) {
    throw new Error('solc failed:\n' + errors.map((e) => e.formattedMessage ?? e.message).join('\n'));
  }
  const out = {};
  for (const [sourceName, contracts] of Object.entries(output.contracts ?? {})) {
    for (const [name, c] of Object.entries(contracts)) {
      out[name] = {
        sourceName,
        abi: c.abi,
        bytecode: '0x' + c.evm.bytecode.object,
        deployedBytecode: '0x' + c.evm.deployedBytecode.object,
      };
    }
  }
  return out;
}

/** The artifacts as { fileName: text }, byte-for-byte what gets written. */
export function buildArtifacts() {
  const compiled = compile(CONTRACTS.map(([p]) => p));
  const version = solcVersion();
  const files = {};
  for (const [sourceName, name] of CONTRACTS) {
    const c = compiled[name];
    if (!c || c.sourceName !== sourceName) throw new Error(`solc produced no ${name} from ${sourceName}`);
    const artifact = {
      contractName: name,
      sourceName,
      abi: c.abi,
      bytecode: c.bytecode,
      deployedBytecode: c.deployedBytecode,
      solcVersion: version,
      settings: SETTINGS,
    };
    files[`${name}.json`] = JSON.stringify(artifact, null, 2) + '\n';
  }
  return files;
}

function main(argv) {
  const check = argv.includes('--check');
  const files = buildArtifacts();
  if (!check) {
    mkdirSync(ARTIFACTS_DIR, { recursive: true });
    for (const [f, text] of Object.entries(files)) {
      writeFileSync(join(ARTIFACTS_DIR, f), text);
      console.log(`wrote contracts/artifacts/${f}`);
    }
    return 0;
  }
  let stale = 0;
  for (const [f, text] of Object.entries(files)) {
    const path = join(ARTIFACTS_DIR, f);
    const onDisk = existsSync(path) ? readFileSync(path, 'utf8') : null;
    if (onDisk === text) continue;
    stale++;
    let why = 'missing';
    if (onDisk !== null) {
      why = 'differs';
      try {
        const old = JSON.parse(onDisk);
        if (old.solcVersion !== solcVersion()) why += ` (built with solc ${old.solcVersion}, installed is ${solcVersion()})`;
      } catch {
        why += ' (not valid JSON)';
      }
    }
    console.error(`compile-contracts --check: contracts/artifacts/${f} ${why}`);
  }
  if (stale) {
    console.error('run `node scripts/compile-contracts.mjs` and commit contracts/artifacts/');
    return 1;
  }
  console.log(`compile-contracts --check: ${Object.keys(files).length} artifacts up to date (solc ${solcVersion()})`);
  return 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  process.exitCode = main(process.argv.slice(2));
}
