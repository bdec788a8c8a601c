//! The module's JS face, called only by the package's loader (`gpu.js`), never by users.
//! Nothing here may trap: `Gpu.open()` checks for `navigator.gpu` before wgpu looks
//! (wgpu's WebGPU backend hits `unreachable` without it) and every failure rejects.

use crate::GpuContext;
use js_sys::{Array, Promise, Reflect, Uint8Array};
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

/// `globalThis.navigator.gpu`, if it is an object.
fn navigator_gpu() -> Option<JsValue> {
    let nav = Reflect::get(&js_sys::global(), &"navigator".into()).ok().filter(|n| n.is_object())?;
    Reflect::get(&nav, &"gpu".into()).ok().filter(|g| g.is_object())
}

/// An open WebGPU device with the kernels.
#[wasm_bindgen]
pub struct Gpu {
    ctx: Rc<GpuContext>,
}

#[wasm_bindgen]
impl Gpu {
    /// Resolves with a device, or rejects with a message (no WebGPU, no adapter, a
    /// refused device or kernel).
    pub fn open() -> Promise {
        future_to_promise(async move {
            if navigator_gpu().is_none() {
                return Err(JsValue::from_str("WebGPU is not available here (no navigator.gpu)"));
            }
            let ctx = GpuContext::open().await.map_err(|e| JsValue::from_str(&e))?;
            Ok(Gpu { ctx: Rc::new(ctx) }.into())
        })
    }

    /// Adapter info, limits and calibration (each measurement runs at least `minMs`).
    pub fn probe(&self, #[wasm_bindgen(js_name = minMs)] min_ms: f64) -> Promise {
        let ctx = self.ctx.clone();
        future_to_promise(async move {
            let p = ctx.probe(min_ms).await;
            p.serialize(&serde_wasm_bindgen::Serializer::json_compatible()).map_err(|e| JsValue::from_str(&e.to_string()))
        })
    }

    /// Lowercase hex SHA-256 of each `Uint8Array`, in one dispatch where the limits allow.
    pub fn sha256(&self, inputs: Array) -> Promise {
        let ctx = self.ctx.clone();
        future_to_promise(async move {
            let mut bufs: Vec<Vec<u8>> = Vec::with_capacity(inputs.length() as usize);
            for v in inputs.iter() {
                let a = v.dyn_into::<Uint8Array>().map_err(|_| JsValue::from_str("sha256() takes an array of Uint8Array"))?;
                bufs.push(a.to_vec());
            }
            let out = ctx.sha256_many(&bufs).await.map_err(|e| JsValue::from_str(&e))?;
            Ok(out.into_iter().map(JsValue::from).collect::<Array>().into())
        })
    }
}

/// The CPU path (the reference the kernels are checked against in the browser tests).
#[wasm_bindgen(js_name = sha256Cpu)]
pub fn sha256_cpu(inputs: Array) -> Result<Array, JsValue> {
    let mut out = Array::new();
    for v in inputs.iter() {
        let a = v.dyn_into::<Uint8Array>().map_err(|_| JsValue::from_str("sha256Cpu() takes an array of Uint8Array"))?;
        out.push(&JsValue::from(crate::cpu::sha256_hex(&a.to_vec())));
    }
    Ok(std::mem::take(&mut out))
}

use serde::Serialize;
