//! `sandrun-gpu`: the WebGPU side of `@sandrun/wasm`, in its own wasm module.
//!
//! wgpu is large, and most users of the SDK never touch a GPU, so it does not live in
//! the core module: the package's loaders fetch `gpu/sandrun_gpu_bg.wasm` on the first
//! `sandrun.gpu()` call (or the first proof check big enough to use it), and only where
//! `navigator.gpu` exists (wgpu's WebGPU backend traps without it).
//!
//! What is here:
//! - [`cpu`]: the CPU path of every kernel (the reference the kernels are tested against).
//! - [`SHA256_WGSL`]: batch SHA-256, one invocation per message, padding in the kernel.
//! - [`pack`]: how a batch is laid out for the kernel and split to fit the device's limits.
//! - [`GpuContext`]: a wgpu device with the pipelines; `sha256_many`, `probe` (adapter
//!   info, limits and calibration: SHA-256 MB/s, dispatch overhead, FP32 GFLOP/s).
//! - on wasm32, `web`: the `#[wasm_bindgen]` exports the package's loader calls.
//!
//! Natively the same code runs on Vulkan (lavapipe, SwiftShader or a real GPU): that is
//! how `cargo test -p sandrun-gpu` checks the kernels bit-exact against [`cpu`].

pub mod cpu;
mod device;
pub mod pack;
mod probe;
#[cfg(target_arch = "wasm32")]
mod web;

pub use device::GpuContext;
pub use probe::{AdapterSummary, GpuLimits, GpuProbe, Throughput};

/// The batch SHA-256 kernel's template (entry point `sha256_main`); [`sha256_wgsl`]
/// fills in the unrolled rounds.
pub const SHA256_WGSL_TEMPLATE: &str = include_str!("sha256.wgsl");

/// SHA-256 round constants (FIPS 180-4, 4.2.2).
const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
    0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
    0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

/// The batch SHA-256 kernel (entry point `sha256_main`): the template with its 64 rounds
/// unrolled, the message schedule kept as a rolling 16-word window.
pub fn sha256_wgsl() -> String {
    let mut r = String::new();
    for j in 0..64usize {
        let w = if j < 16 {
            format!("w[{j}] = word(off, len, base + {}u, last);", j * 4)
        } else {
            let (a, b, c, d) = ((j - 15) & 15, (j - 2) & 15, (j - 16) & 15, (j - 7) & 15);
            format!(
                "w[{i}] = w[{c}] + (rotr(w[{a}], 7u) ^ rotr(w[{a}], 18u) ^ (w[{a}] >> 3u)) + w[{d}] + (rotr(w[{b}], 17u) ^ rotr(w[{b}], 19u) ^ (w[{b}] >> 10u));",
                i = j & 15
            )
        };
        r.push_str(&format!(
            "        {w}\n        {{ let t1 = hh + (rotr(e, 6u) ^ rotr(e, 11u) ^ rotr(e, 25u)) + ((e & f) ^ (~e & g)) + 0x{k:08x}u + w[{i}]; let t2 = (rotr(a, 2u) ^ rotr(a, 13u) ^ rotr(a, 22u)) + ((a & bb) ^ (a & c) ^ (bb & c)); hh = g; g = f; f = e; e = d + t1; d = c; c = bb; bb = a; a = t1 + t2; }}\n",
            k = K[j],
            i = j & 15
        ));
    }
    SHA256_WGSL_TEMPLATE.replace("        // ROUNDS (the 64 rounds, unrolled by `sha256_wgsl()` in lib.rs)\n", &r)
}
/// The calibration kernel (entry point `fma_main`: FP32 fused multiply-adds).
pub const CALIBRATE_WGSL: &str = include_str!("calibrate.wgsl");

/// Milliseconds from an arbitrary origin, for calibration timings.
pub fn now_ms() -> f64 {
    #[cfg(target_arch = "wasm32")]
    {
        let perf = js_sys::Reflect::get(&js_sys::global(), &"performance".into()).ok();
        if let Some(p) = perf.filter(|p| p.is_object()) {
            if let Ok(f) = js_sys::Reflect::get(&p, &"now".into()) {
                if let Ok(f) = f.dyn_into::<js_sys::Function>() {
                    if let Some(v) = f.call0(&p).ok().and_then(|v| v.as_f64()) {
                        return v;
                    }
                }
            }
        }
        js_sys::Date::now()
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        use std::sync::OnceLock;
        static START: OnceLock<std::time::Instant> = OnceLock::new();
        START.get_or_init(std::time::Instant::now).elapsed().as_secs_f64() * 1000.0
    }
}

#[cfg(target_arch = "wasm32")]
use wasm_bindgen::JsCast;
