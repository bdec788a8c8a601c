// The GPU loader: `sandrun.gpu()` and big proof checks reach the GPU module
// (gpu/sandrun_gpu_bg.wasm: wgpu + the WGSL kernels) through this object. The module
// is fetched on first use and only where WebGPU exists, so users who never touch a GPU
// never download it.

/** `navigator.gpu` exists (checked before wgpu looks: its WebGPU backend traps without it). */
function present() {
  const nav = globalThis.navigator;
  return typeof nav === 'object' && nav !== null && typeof nav.gpu === 'object' && nav.gpu !== null;
}

/**
 * @param {() => Promise<any>} loadModule resolves with the initialized GPU module
 *   (`gpu/sandrun_gpu.js`); each entry loads it its own way (fetch, or a file in Node).
 */
export function gpuHost(loadModule) {
  let opened;
  const open = () =>
    (opened ??= (async () => {
      const m = await loadModule();
      // wgpu finds navigator.gpu through globalThis.Window (pages) or WorkerGlobalScope
      // (workers); Node with the npm `webgpu` package has neither, so name one while the
      // device opens (wgpu reads it only when its instance is created).
      const shim = typeof globalThis.Window === 'undefined' && typeof globalThis.WorkerGlobalScope === 'undefined';
      if (shim) globalThis.Window = function Window() {};
      try {
        return await m.Gpu.open();
      } finally {
        if (shim) delete globalThis.Window;
      }
    })());
  return {
    present,
    async probe(minMs) {
      const gpu = await open();
      const probe = await gpu.probe(minMs);
      // wgpu passes on only the description; the browser's GPUAdapterInfo has more.
      try {
        const info = (await globalThis.navigator.gpu.requestAdapter({ powerPreference: 'high-performance' }))?.info;
        if (info && probe.adapter) {
          probe.adapter.vendor ||= info.vendor ?? '';
          probe.adapter.architecture ||= info.architecture ?? '';
          probe.adapter.name ||= info.description || info.device || '';
          const text = `${info.vendor} ${info.architecture} ${info.description} ${info.device}`.toLowerCase();
          if (/swiftshader|llvmpipe|lavapipe/.test(text) || info.isFallbackAdapter) probe.adapter.software = true;
        }
      } catch {
        // adapter details are a nicety
      }
      return probe;
    },
    async sha256(inputs) {
      return (await open()).sha256(inputs);
    },
  };
}
