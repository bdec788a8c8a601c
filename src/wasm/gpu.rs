//! `sandrun.gpu()`: the local GPU. The core decides (src/gpu.rs); the GPU module itself
//! (wgpu + WGSL, `gpu/`) is loaded by the package's loader (`pkg-template/gpu.js`), which
//! the entries install here with `__setGpuHost`.

use super::convert::{err, to_js};
use crate::gpu::GpuBackend;
use crate::platform::LocalFuture;
use crate::types::GpuProbe;
use crate::Sandrun as CoreSandrun;
use js_sys::{Array, Promise, Uint8Array};
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{future_to_promise, JsFuture};

#[wasm_bindgen]
extern "C" {
    /// The loader (`pkg-template/gpu.js`).
    pub type GpuHost;
    /// `navigator.gpu` exists (nothing loaded yet).
    #[wasm_bindgen(method, catch)]
    fn present(this: &GpuHost) -> Result<bool, JsValue>;
    /// Load the module, open a device, calibrate: a Promise of the probe JSON.
    #[wasm_bindgen(method, catch)]
    fn probe(this: &GpuHost, min_ms: f64) -> Result<Promise, JsValue>;
    /// A Promise of hex digests.
    #[wasm_bindgen(method, catch)]
    fn sha256(this: &GpuHost, inputs: Array) -> Result<Promise, JsValue>;
}

fn gpu_error(v: JsValue) -> crate::Error {
    let msg = v.as_string().or_else(|| js_sys::Reflect::get(&v, &"message".into()).ok().and_then(|m| m.as_string())).unwrap_or_else(|| format!("{v:?}"));
    crate::Error::new(crate::ErrorCode::Unsupported, msg)
}

struct JsGpu(GpuHost);

impl GpuBackend for JsGpu {
    fn present(&self) -> bool {
        self.0.present().unwrap_or(false)
    }
    fn probe(&self) -> LocalFuture<'_, crate::Result<GpuProbe>> {
        Box::pin(async move {
            let v = JsFuture::from(self.0.probe(crate::gpu::CALIBRATION_MS).map_err(gpu_error)?).await.map_err(gpu_error)?;
            serde_wasm_bindgen::from_value(v).map_err(|e| crate::Error::malformed(format!("the GPU module's probe: {e}")))
        })
    }
    fn sha256_many(&self, inputs: Vec<Rc<[u8]>>) -> LocalFuture<'_, crate::Result<Vec<String>>> {
        Box::pin(async move {
            let arr: Array = inputs.iter().map(|b| JsValue::from(Uint8Array::from(&b[..]))).collect();
            let v = JsFuture::from(self.0.sha256(arr).map_err(gpu_error)?).await.map_err(gpu_error)?;
            Ok(Array::from(&v).iter().filter_map(|s| s.as_string()).collect())
        })
    }
}

/// Install the GPU loader (the package entries call this once).
#[wasm_bindgen(js_name = __setGpuHost)]
pub fn set_gpu_host(host: GpuHost) {
    crate::gpu::set_backend(Rc::new(JsGpu(host)));
}

/// The local GPU (`sandrun.gpu()`): WebGPU where the platform has it, the CPU otherwise.
/// Nothing here throws for lack of WebGPU.
#[wasm_bindgen]
pub struct LocalGpu {
    pub(crate) client: CoreSandrun,
}

#[wasm_bindgen]
impl LocalGpu {
    /// Whether WebGPU works here, the adapter's info and limits, and the throughput the
    /// calibration kernels measured; `available: false` (with `reason`) without WebGPU.
    /// Cached per client: the first call loads the GPU module and calibrates.
    #[wasm_bindgen(unchecked_return_type = "Promise<GpuProbe>")]
    pub fn probe(&self) -> Promise {
        let c = self.client.clone();
        future_to_promise(async move { to_js(&crate::gpu::probe(c.gpu_state(), c.platform().as_ref()).await) })
    }
    /// Lowercase hex SHA-256 of each buffer, in order: one GPU dispatch for the batch
    /// where WebGPU works, the CPU otherwise (same digests either way).
    #[wasm_bindgen(unchecked_return_type = "Promise<string[]>")]
    pub fn sha256(&self, #[wasm_bindgen(unchecked_param_type = "Uint8Array[]")] inputs: JsValue) -> Promise {
        let c = self.client.clone();
        future_to_promise(async move {
            if !Array::is_array(&inputs) {
                return Err(err(crate::gpu::bad_inputs()));
            }
            let mut bufs: Vec<Rc<[u8]>> = Vec::new();
            for v in Array::from(&inputs).iter() {
                let a = v.dyn_into::<Uint8Array>().map_err(|_| err(crate::gpu::bad_inputs()))?;
                bufs.push(a.to_vec().into());
            }
            let out = crate::gpu::sha256_api(c.gpu_state(), c.platform().as_ref(), &bufs).await.map_err(err)?;
            Ok(out.into_iter().map(JsValue::from).collect::<Array>().into())
        })
    }
    /// Hash proof checks on the GPU for output batches of at least `bytes` (WebGPU
    /// permitting), instead of the threshold measured by `probe()`; `null` returns to the
    /// measured rule. For this page or process. Returns the previous override.
    #[wasm_bindgen(js_name = proofThreshold)]
    pub fn proof_threshold(&self, bytes: Option<f64>) -> Option<f64> {
        crate::gpu::set_proof_threshold(bytes.filter(|b| b.is_finite() && *b >= 0.0))
    }
    /// The GPU type table `estimate()` compares against (published FP32 TFLOP/s, memory,
    /// compute capability).
    #[wasm_bindgen(unchecked_return_type = "GpuType[]")]
    pub fn types(&self) -> Result<JsValue, JsValue> {
        to_js(&crate::gpu::gpu_types())
    }
}
