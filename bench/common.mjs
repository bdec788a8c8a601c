// What every Node benchmark here shares: where the built package is, flags, medians.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
export const pkgDir = path.join(root, 'pkg');
export const entry = path.join(pkgDir, 'index.node.js');
export const wasmPath = path.join(pkgDir, 'sandrun_wasm_bg.wasm');

const args = process.argv.slice(2);
/** `--name value`; `true` for a flag given without a value; else `dflt`. */
export const flag = (name, dflt) => {
  const i = args.indexOf(name);
  if (i < 0) return dflt;
  const v = args[i + 1];
  return v === undefined || v.startsWith('--') ? true : v;
};

export const now = () => performance.now();
export const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

/** Exit with what to run when the package is not built. */
export function needPackage(script) {
  if (!existsSync(entry) || !existsSync(wasmPath)) {
    console.error(`${script}: ${entry} is missing; run \`node scripts/build.mjs\` first`);
    process.exit(1);
  }
}
