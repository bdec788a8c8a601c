//! The GPU on the user's machine, as the core sees it: no wgpu here.
//!
//! wgpu and the WGSL kernels live in their own wasm module (`gpu/`, crate
//! `sandrun-gpu`), which the package's loader fetches on the first `sandrun.gpu()` call
//! or the first proof check big enough to use it, and only where `navigator.gpu`
//! exists. The loader installs a [`GpuBackend`] here; without one (plain Node, old
//! browsers, native builds) every operation runs on the CPU and `probe()` says
//! `available: false`.
//!
//! Also here: the documented table of GPU types ([`GPU_TYPES`]), the local estimate
//! ([`local_estimate`]) and the rule that decides when a proof check hashes on the GPU
//! ([`proof_threshold_bytes`], [`use_gpu_for`]).

use crate::error::{Error, ErrorCode, Result};
use crate::platform::{LocalFuture, Platform};
use crate::types::{GPURequirements, GpuProbe, GpuThroughput, GpuType, LocalGpuEstimate};
use std::cell::RefCell;
use std::rc::Rc;

/// What the package's GPU loader provides (see `pkg-template/gpu.js`).
pub trait GpuBackend {
    /// Whether WebGPU exists here (`navigator.gpu`), checked without loading anything.
    fn present(&self) -> bool;
    /// Load the GPU module, open a device and run the calibration kernels.
    fn probe(&self) -> LocalFuture<'_, Result<GpuProbe>>;
    /// Lowercase hex SHA-256 of each input on the GPU.
    fn sha256_many(&self, inputs: Vec<Rc<[u8]>>) -> LocalFuture<'_, Result<Vec<String>>>;
}

thread_local! {
    static BACKEND: RefCell<Option<Rc<dyn GpuBackend>>> = const { RefCell::new(None) };
    /// The last probe any client ran: proof checks, which have no client at hand, use it.
    static LAST_PROBE: RefCell<Option<GpuProbe>> = const { RefCell::new(None) };
    /// `gpu().proofThreshold(bytes)`: overrides the measured threshold (and the floors).
    static THRESHOLD: std::cell::Cell<Option<f64>> = const { std::cell::Cell::new(None) };
}

/// Override when proof checks hash on the GPU: batches of at least `bytes` (any number of
/// files), WebGPU permitting; `None` returns to the measured rule. Returns the old value.
pub fn set_proof_threshold(bytes: Option<f64>) -> Option<f64> {
    THRESHOLD.with(|t| t.replace(bytes))
}

/// Install the GPU loader (the package entries do this once).
pub fn set_backend(b: Rc<dyn GpuBackend>) {
    BACKEND.with(|s| *s.borrow_mut() = Some(b));
}

fn backend() -> Option<Rc<dyn GpuBackend>> {
    BACKEND.with(|s| s.borrow().clone())
}

/// A client's GPU state: its cached probe.
#[derive(Default)]
pub struct GpuState {
    probe: RefCell<Option<GpuProbe>>,
}

/// Smallest batch a proof check ever considers hashing on the GPU (below it the GPU
/// module is not even loaded): 4 MiB.
pub const MIN_GPU_PROOF_BYTES: f64 = 4.0 * 1024.0 * 1024.0;
/// Fewest files a proof check hashes on the GPU: one invocation hashes one file, so a
/// batch of fewer files than a workgroup (64) leaves the GPU mostly idle.
pub const MIN_GPU_PROOF_FILES: usize = 64;

/// How long each calibration measurement runs at least, ms.
pub const CALIBRATION_MS: f64 = 50.0;

fn unavailable(reason: &str) -> GpuProbe {
    GpuProbe { available: false, reason: Some(reason.into()), ..Default::default() }
}

/// The probe for `state`'s client: cached after the first call.
pub async fn probe(state: &GpuState, platform: &dyn Platform) -> GpuProbe {
    if let Some(p) = state.probe.borrow().clone() {
        return p;
    }
    let p = fresh_probe(platform).await;
    *state.probe.borrow_mut() = Some(p.clone());
    p
}

async fn fresh_probe(platform: &dyn Platform) -> GpuProbe {
    let p = match backend() {
        None => unavailable("no WebGPU here: this build or host has no GPU loader"),
        Some(b) if !b.present() => unavailable("no WebGPU here (navigator.gpu is missing): in Node, install the npm package `webgpu` and set navigator.gpu (see the README)"),
        Some(b) => match b.probe().await {
            Ok(mut p) => {
                if let Some(t) = p.throughput.as_mut() {
                    let cpu = cpu_sha256_mbps(platform).await;
                    t.cpu_sha256_mbps = Some(cpu);
                    t.proof_threshold_bytes = proof_threshold_bytes(t, cpu);
                }
                p
            }
            Err(e) => unavailable(&format!("WebGPU is present but did not work: {}", e.message)),
        },
    };
    LAST_PROBE.with(|s| *s.borrow_mut() = Some(p.clone()));
    p
}

/// The platform's SHA-256 (WebCrypto / node:crypto: what proof checks use on the CPU)
/// on 64 x 4 KiB, MB/s.
async fn cpu_sha256_mbps(platform: &dyn Platform) -> f64 {
    let buf: Vec<u8> = (0..4096u32).map(|i| (i * 7) as u8).collect();
    let t0 = platform.now_ms();
    let mut n = 0usize;
    while n < 64 || platform.now_ms() - t0 < 20.0 {
        let _ = platform.sha256_hex(&buf).await;
        n += 1;
        if n >= 100_000 {
            break;
        }
    }
    let ms = (platform.now_ms() - t0).max(0.001);
    (n * buf.len()) as f64 / 1e6 / (ms / 1000.0)
}

/// The batch size (bytes) above which the GPU hashes faster than the CPU, from measured
/// figures: the GPU pays a fixed `dispatchMs` and then runs at `sha256Mbps`, the CPU at
/// `cpu_mbps`. `None` when the GPU is not faster per byte (then it never pays). Never
/// below [`MIN_GPU_PROOF_BYTES`].
pub fn proof_threshold_bytes(t: &GpuThroughput, cpu_mbps: f64) -> Option<f64> {
    let (g, c) = (t.sha256_mbps * 1e6 / 1000.0, cpu_mbps * 1e6 / 1000.0); // bytes per ms
    if !(g.is_finite() && c.is_finite()) || g <= c || c <= 0.0 {
        return None;
    }
    // dispatch + b/g < b/c  <=>  b > dispatch / (1/c - 1/g)
    let b = t.dispatch_ms.max(0.0) / (1.0 / c - 1.0 / g);
    Some(b.max(MIN_GPU_PROOF_BYTES).ceil())
}

/// Whether a proof check of `files` files, `bytes` in all, hashes on the GPU given
/// `probe`: WebGPU works, the batch is over the measured threshold and has enough files.
pub fn use_gpu_for(probe: &GpuProbe, files: usize, bytes: f64) -> bool {
    let threshold = probe.throughput.as_ref().and_then(|t| t.proof_threshold_bytes);
    probe.available && files >= MIN_GPU_PROOF_FILES && threshold.is_some_and(|t| bytes >= t)
}

/// How a batch was hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashEngine {
    Cpu,
    Gpu,
}

/// SHA-256 of each input on the GPU when `gpu` says so and it works, else with the
/// platform's hash. A GPU failure falls back to the CPU (the check still happens).
pub async fn sha256_many(platform: &dyn Platform, inputs: &[Rc<[u8]>], gpu: bool) -> (Vec<String>, HashEngine) {
    if gpu {
        if let Some(b) = backend().filter(|b| b.present()) {
            if let Ok(h) = b.sha256_many(inputs.to_vec()).await {
                if h.len() == inputs.len() {
                    return (h, HashEngine::Gpu);
                }
            }
        }
    }
    let mut out = Vec::with_capacity(inputs.len());
    for i in inputs {
        let h = match platform.sha256_hex_now(i) {
            Some(h) => h,
            None => platform.sha256_hex(i).await,
        };
        out.push(h);
    }
    (out, HashEngine::Cpu)
}

/// SHA-256 of each input for a proof check: on the GPU when WebGPU is here and the batch
/// is big enough to pay ([`use_gpu_for`], with the last probe, probing once if the
/// batch is over [`MIN_GPU_PROOF_BYTES`] and has enough files), else on the CPU.
pub async fn sha256_for_proof(platform: &dyn Platform, inputs: &[Rc<[u8]>]) -> (Vec<String>, HashEngine) {
    let bytes: f64 = inputs.iter().map(|b| b.len() as f64).sum();
    if let Some(t) = THRESHOLD.with(|t| t.get()) {
        let gpu = bytes >= t && !inputs.is_empty() && backend().is_some_and(|b| b.present()) && last_or_fresh_probe(platform).await.available;
        return sha256_many(platform, inputs, gpu).await;
    }
    let worth_a_look = inputs.len() >= MIN_GPU_PROOF_FILES && bytes >= MIN_GPU_PROOF_BYTES && backend().is_some_and(|b| b.present());
    let gpu = if worth_a_look {
        use_gpu_for(&last_or_fresh_probe(platform).await, inputs.len(), bytes)
    } else {
        false
    };
    sha256_many(platform, inputs, gpu).await
}

async fn last_or_fresh_probe(platform: &dyn Platform) -> GpuProbe {
    match LAST_PROBE.with(|s| s.borrow().clone()) {
        Some(p) => p,
        None => fresh_probe(platform).await,
    }
}

/// `sandrun.gpu().sha256(inputs)`: on the GPU when WebGPU works here, else on the CPU.
pub async fn sha256_api(state: &GpuState, platform: &dyn Platform, inputs: &[Rc<[u8]>]) -> Result<Vec<String>> {
    let gpu = backend().is_some_and(|b| b.present()) && probe(state, platform).await.available;
    Ok(sha256_many(platform, inputs, gpu).await.0)
}

/// The GPU types `estimate()` compares against: published datasheet figures (peak FP32
/// without sparsity, the largest common memory size, CUDA compute capability). The
/// README's GPU section prints the same table.
pub const GPU_TYPES: &[(&str, &str, f64, f64, Option<f64>)] = &[
    // (name, vendor, FP32 TFLOP/s, memory GB, compute capability)
    ("h100", "nvidia", 67.0, 80.0, Some(9.0)),
    ("a100", "nvidia", 19.5, 80.0, Some(8.0)),
    ("l40s", "nvidia", 91.6, 48.0, Some(8.9)),
    ("l4", "nvidia", 30.3, 24.0, Some(8.9)),
    ("a10", "nvidia", 31.2, 24.0, Some(8.6)),
    ("v100", "nvidia", 15.7, 32.0, Some(7.0)),
    ("t4", "nvidia", 8.1, 16.0, Some(7.5)),
    ("rtx4090", "nvidia", 82.6, 24.0, Some(8.9)),
    ("rtx3090", "nvidia", 35.6, 24.0, Some(8.6)),
    ("rtx3060", "nvidia", 12.7, 12.0, Some(8.6)),
    ("mi300x", "amd", 163.4, 192.0, None),
    ("mi250", "amd", 45.3, 128.0, None),
    ("rx7900xtx", "amd", 61.4, 24.0, None),
    ("m2", "apple", 3.6, 24.0, None),
];

/// Lowercase letters and digits only: `'RTX 4090'`, `'rtx-4090'` and `'rtx4090'` agree.
pub fn norm(s: &str) -> String {
    s.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_lowercase()).collect()
}

/// Every row of [`GPU_TYPES`].
pub fn gpu_types() -> Vec<GpuType> {
    GPU_TYPES
        .iter()
        .map(|(name, vendor, tf, mem, cc)| GpuType { name: (*name).into(), vendor: (*vendor).into(), fp32_tflops: *tf, memory_gb: *mem, compute: *cc })
        .collect()
}

/// The table row a GPU type names (`'nvidia-a100'`, `'A100-SXM4'` -> a100), longest
/// name first so `'l40s'` is not taken for `'l4'`.
pub fn lookup(kind: &str) -> Option<GpuType> {
    let k = norm(kind);
    let mut rows = gpu_types();
    rows.sort_by_key(|r| std::cmp::Reverse(r.name.len()));
    rows.into_iter().find(|r| k.contains(&r.name))
}

/// Whether `req` could run on the GPU `probe` found here, and how fast it is against
/// the requested type. Pure: tested natively.
pub fn local_estimate(probe: &GpuProbe, req: &GPURequirements) -> LocalGpuEstimate {
    let reference = req.kind.as_deref().and_then(lookup);
    let software = probe.adapter.as_ref().is_some_and(|a| a.software);
    if !probe.available {
        return LocalGpuEstimate {
            available: false,
            can_run: Some(false),
            reasons: vec![probe.reason.clone().unwrap_or_else(|| "no WebGPU here".into())],
            relative_speed: None,
            reference,
            software,
        };
    }
    let mut reasons = Vec::new();
    let mut can_run = Some(true);
    let vendor = probe.adapter.as_ref().map(|a| format!("{} {}", a.vendor, a.name).to_ascii_lowercase()).unwrap_or_default();
    match req.kind.as_deref().map(norm).as_deref() {
        Some("cuda") => {
            can_run = None;
            reasons.push("CUDA code cannot run through WebGPU; only the worker can run it".into());
        }
        Some("opencl") | None => {}
        Some(k) => {
            if !norm(&vendor).contains(k) {
                can_run = None;
                reasons.push(format!("WebGPU does not say which GPU model this is; the job asks for {k}"));
            }
        }
    }
    if req.memory.is_some() {
        can_run = can_run.and(None);
        reasons.push("WebGPU does not expose GPU memory (the largest buffer it allows is in probe().limits)".into());
    }
    if req.count.is_some_and(|c| c > 1) {
        can_run = Some(false);
        reasons.push(format!("WebGPU gives one GPU; the job asks for {}", req.count.unwrap_or(1)));
    }
    if software {
        reasons.push("the local GPU is a software renderer: its figures say nothing about real hardware".into());
    }
    let local_gflops = probe.throughput.as_ref().map(|t| t.fp32_gflops);
    let relative_speed = match (&reference, local_gflops) {
        (Some(r), Some(g)) if r.fp32_tflops > 0.0 => Some(g / (r.fp32_tflops * 1000.0) / req.count.unwrap_or(1).max(1) as f64),
        _ => None,
    };
    LocalGpuEstimate { available: true, can_run, reasons, relative_speed, reference, software }
}

/// [`local_estimate`] with this client's (cached) probe.
pub async fn local_estimate_for(state: &GpuState, platform: &dyn Platform, req: &GPURequirements) -> LocalGpuEstimate {
    local_estimate(&probe(state, platform).await, req)
}

/// The error for a `sha256()` argument that is not a list of byte arrays.
pub fn bad_inputs() -> Error {
    Error::new(ErrorCode::InvalidArgument, "gpu().sha256() takes an array of Uint8Array")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{GpuAdapterInfo, MemorySize};

    fn probe(gflops: f64, software: bool) -> GpuProbe {
        GpuProbe {
            available: true,
            reason: None,
            adapter: Some(GpuAdapterInfo { backend: "webgpu".into(), name: "SwiftShader".into(), vendor: "google".into(), architecture: String::new(), device_type: "cpu".into(), software }),
            limits: None,
            throughput: Some(GpuThroughput { sha256_mbps: 10.0, sha256_batch: 64, dispatch_ms: 1.0, fp32_gflops: gflops, cpu_sha256_mbps: None, proof_threshold_bytes: None }),
        }
    }

    #[test]
    fn the_table_matches_registry_spellings() {
        assert_eq!(lookup("nvidia-a100").unwrap().name, "a100");
        assert_eq!(lookup("RTX 4090").unwrap().name, "rtx4090");
        assert_eq!(lookup("NVIDIA L40S").unwrap().name, "l40s");
        assert_eq!(lookup("nvidia-t4").unwrap().compute, Some(7.5));
        assert!(lookup("cuda").is_none() && lookup("voodoo2").is_none());
    }

    #[test]
    fn local_estimate_is_honest() {
        let none = GpuProbe { available: false, reason: Some("no WebGPU".into()), ..Default::default() };
        let e = local_estimate(&none, &GPURequirements::default());
        assert_eq!((e.available, e.can_run), (false, Some(false)));
        // 1 TFLOP/s locally against an a100 (19.5): about 0.05x.
        let req = GPURequirements { kind: Some("a100".into()), ..Default::default() };
        let e = local_estimate(&probe(1000.0, true), &req);
        assert!((e.relative_speed.unwrap() - 1000.0 / 19500.0).abs() < 1e-9);
        assert!(e.software && e.can_run.is_none(), "{e:?}");
        let e = local_estimate(&probe(1000.0, false), &GPURequirements { kind: Some("cuda".into()), ..Default::default() });
        assert_eq!(e.can_run, None);
        let e = local_estimate(&probe(1000.0, false), &GPURequirements { memory: Some(MemorySize::Text("2GB".into())), ..Default::default() });
        assert_eq!(e.can_run, None);
        let e = local_estimate(&probe(1000.0, false), &GPURequirements { count: Some(2), ..Default::default() });
        assert_eq!(e.can_run, Some(false));
        let e = local_estimate(&probe(1000.0, false), &GPURequirements::default());
        assert_eq!(e.can_run, Some(true));
    }

    #[test]
    fn the_proof_threshold_comes_from_the_measured_figures() {
        let t = |gpu: f64, dispatch: f64| GpuThroughput { sha256_mbps: gpu, sha256_batch: 64, dispatch_ms: dispatch, fp32_gflops: 1.0, cpu_sha256_mbps: None, proof_threshold_bytes: None };
        // A GPU slower than the CPU (a software one) never pays.
        assert_eq!(proof_threshold_bytes(&t(10.0, 1.0), 500.0), None);
        // 4000 MB/s GPU, 1000 MB/s CPU, 20 ms dispatch: b > 20 / (1/1e6 - 1/4e6) bytes-per-ms
        // = 26.7 MB.
        let b = proof_threshold_bytes(&t(4000.0, 20.0), 1000.0).unwrap();
        assert!((b - 26_666_667.0).abs() < 2.0, "{b}");
        // A tiny dispatch cost: the floor holds.
        assert_eq!(proof_threshold_bytes(&t(4000.0, 0.01), 1000.0), Some(MIN_GPU_PROOF_BYTES));
        let mut p = probe(1.0, false);
        p.throughput.as_mut().unwrap().proof_threshold_bytes = Some(MIN_GPU_PROOF_BYTES);
        assert!(use_gpu_for(&p, 64, MIN_GPU_PROOF_BYTES));
        assert!(!use_gpu_for(&p, 63, 1e9), "too few files");
        assert!(!use_gpu_for(&p, 64, MIN_GPU_PROOF_BYTES - 1.0));
        p.throughput.as_mut().unwrap().proof_threshold_bytes = None;
        assert!(!use_gpu_for(&p, 1000, 1e12), "never when the GPU is slower");
    }

    #[test]
    fn the_gpu_modules_probe_json_parses_here() {
        // The shape sandrun-gpu serializes (gpu/src/probe.rs).
        let j = r#"{"available":true,"adapter":{"backend":"webgpu","name":"","vendor":"","architecture":"","deviceType":"cpu","software":true},
            "limits":{"maxBufferSize":268435456,"maxStorageBufferBindingSize":134217728,"maxComputeWorkgroupsPerDimension":65535,"maxComputeInvocationsPerWorkgroup":256,"maxComputeWorkgroupStorageSize":16384},
            "throughput":{"sha256Mbps":11.2,"sha256Batch":64,"dispatchMs":0.99,"fp32Gflops":0.61}}"#;
        let p: GpuProbe = serde_json::from_str(j).unwrap();
        assert!(p.available && p.adapter.unwrap().software && p.limits.unwrap().max_compute_workgroups_per_dimension == 65535);
    }
}
