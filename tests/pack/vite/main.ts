// A browser app built by Vite, in TypeScript: no plugin and no configuration for the wasm.
import init, { Sandrun, SandrunError } from '@sandrun/wasm';

declare global {
  interface Window {
    __result?: { stdout?: string; verified?: boolean; error?: string };
  }
}

// init() takes a compiled module where the DOM lib types one.
export const compiled: (m: WebAssembly.Module) => Promise<void> = (m) => init(m);

async function main(): Promise<void> {
  const worker = new URLSearchParams(location.search).get('worker') ?? 'http://127.0.0.1:7700';
  try {
    await init();
    const r = await (await Sandrun.create({ apiEndpoint: worker }).job().code('print(6 * 7)').submit()).wait();
    window.__result = { stdout: r.stdout, verified: r.proof?.verified };
  } catch (e) {
    window.__result = { error: e instanceof SandrunError ? `${e.code}: ${e.message}` : String(e) };
  }
  document.getElementById('out')!.textContent = JSON.stringify(window.__result);
}
void main();
