//! What `probe()` reports. The core SDK's `GpuProbe` (src/types.rs) has the same JSON
//! shape; this crate does not depend on the core, so the shape is written twice and a
//! test in the core parses this crate's JSON.

use serde::{Deserialize, Serialize};

/// What the local GPU is and how fast it measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct GpuProbe {
    /// Whether WebGPU (or, natively, Vulkan) gave a working device.
    pub available: bool,
    /// Why not, when it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<AdapterSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<GpuLimits>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throughput: Option<Throughput>,
}

/// The adapter, as far as the platform tells (browsers hide most of it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct AdapterSummary {
    /// `'webgpu'` in browsers and Node, `'vulkan'` natively.
    pub backend: String,
    /// The adapter's name or description ("" where the browser withholds it).
    pub name: String,
    /// `GPUAdapterInfo.vendor` / PCI vendor (e.g. `'nvidia'`, `'0x10de'`), when known.
    #[serde(default)]
    pub vendor: String,
    /// `GPUAdapterInfo.architecture`, when known.
    #[serde(default)]
    pub architecture: String,
    /// `'discrete' | 'integrated' | 'virtual' | 'cpu' | 'other'`.
    pub device_type: String,
    /// A software rasterizer (SwiftShader, lavapipe/llvmpipe, a fallback adapter): figures
    /// measured on it say nothing about a real GPU.
    pub software: bool,
}

/// The limits that bound a compute batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct GpuLimits {
    pub max_buffer_size: f64,
    pub max_storage_buffer_binding_size: f64,
    pub max_compute_workgroups_per_dimension: u32,
    pub max_compute_invocations_per_workgroup: u32,
    pub max_compute_workgroup_storage_size: u32,
}

/// Calibration results (measured on this machine by the calibration kernels).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Throughput {
    /// Batch SHA-256 on the GPU: MB/s over many 4 KiB messages, upload and readback included.
    pub sha256_mbps: f64,
    /// Messages per batch in that measurement.
    pub sha256_batch: u32,
    /// Time of one tiny dispatch with readback (the fixed cost every batch pays), ms.
    pub dispatch_ms: f64,
    /// FP32 throughput from the FMA kernel, GFLOP/s.
    pub fp32_gflops: f64,
}
