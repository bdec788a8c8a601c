// A browser app bundled by webpack: import by name, init, run a job.
import init, { Sandrun, SandrunError } from '@sandrun/wasm';

async function main() {
  const worker = new URLSearchParams(location.search).get('worker') ?? 'http://127.0.0.1:7700';
  try {
    await init();
    const r = await (await Sandrun.create({ apiEndpoint: worker }).job().code('print(6 * 7)').submit()).wait();
    window.__result = { stdout: r.stdout, verified: r.proof?.verified };
  } catch (e) {
    window.__result = { error: e instanceof SandrunError ? `${e.code}: ${e.message}` : String(e) };
  }
  document.getElementById('out').textContent = JSON.stringify(window.__result);
}
main();
