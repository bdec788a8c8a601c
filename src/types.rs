//! The spec's data types. On wasm32 each also derives `Tsify`, so the `.d.ts`
//! is generated from these definitions and cannot drift from them.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fmt;

#[cfg(target_arch = "wasm32")]
use tsify::Tsify;

/// GPU memory: `'2GB'`, `'512MB'` or a number of megabytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[serde(untagged)]
pub enum MemorySize {
    Text(String),
    Megabytes(f64),
}

impl MemorySize {
    /// Megabytes, or an `INVALID_ARGUMENT` error naming the accepted forms.
    pub fn megabytes(&self) -> Result<f64> {
        match self {
            MemorySize::Megabytes(n) if n.is_finite() && *n > 0.0 => Ok(*n),
            MemorySize::Megabytes(n) => Err(Error::invalid(format!("memory must be a positive number of MB, got {n}"))),
            MemorySize::Text(s) => parse_size_mb(s),
        }
    }
}

/// `'2GB'`, `'512 MB'`, `'1TB'`, `'64GiB'` -> megabytes.
pub fn parse_size_mb(s: &str) -> Result<f64> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| Error::invalid(format!("size {s:?} is not like '512MB', '2GB' or '1TB'")))?;
    let mult = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "MB" | "MIB" | "M" => 1.0,
        "GB" | "GIB" | "G" => 1024.0,
        "TB" | "TIB" | "T" => 1024.0 * 1024.0,
        "KB" | "KIB" | "K" => 1.0 / 1024.0,
        _ => return Err(Error::invalid(format!("size {s:?} has an unknown unit; use MB, GB or TB"))),
    };
    if n <= 0.0 {
        return Err(Error::invalid(format!("size {s:?} must be positive")));
    }
    Ok(n * mult)
}

/// What a job needs of GPUs (spec: `GPURequirements`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[serde(rename_all = "camelCase")]
pub struct GPURequirements {
    /// `'cuda' | 'opencl' | 'a100' | 'rtx4090' | string`
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional, type = "'cuda' | 'opencl' | 'a100' | 'rtx4090' | (string & {})"))]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional, type = "string | number"))]
    pub memory: Option<MemorySize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub count: Option<u32>,
    /// Compute capability, e.g. 8.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub compute: Option<f64>,
}

impl GPURequirements {
    /// Reject what no worker could satisfy, at the builder call.
    pub fn validate(&self) -> Result<()> {
        if let Some(m) = &self.memory {
            m.megabytes().map_err(|e| Error::invalid(format!("gpu.memory: {}", e.message)))?;
        }
        if self.count == Some(0) {
            return Err(Error::invalid("gpu.count must be at least 1 (leave gpu() out for CPU jobs)"));
        }
        if let Some(c) = self.compute {
            if !(c.is_finite() && c > 0.0) {
                return Err(Error::invalid(format!("gpu.compute must be a positive compute capability like 8.0, got {c}")));
            }
        }
        if let Some(k) = &self.kind {
            if k.trim().is_empty() {
                return Err(Error::invalid("gpu.type must not be empty"));
            }
        }
        Ok(())
    }
}

/// How many workers must agree (spec: `ConsensusLevel`, plus any `'k-of-n'`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsensusLevel {
    /// One worker, nothing checked.
    None,
    /// One worker; signature, job hash and output hashes checked.
    Low,
    /// k of n workers must return agreeing verified results.
    Quorum { k: u32, n: u32 },
}

impl ConsensusLevel {
    /// Parse `'none' | 'low' | 'medium' | 'high' | 'k-of-n'`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "none" => Ok(ConsensusLevel::None),
            "low" => Ok(ConsensusLevel::Low),
            "medium" => Ok(ConsensusLevel::Quorum { k: 2, n: 3 }),
            "high" => Ok(ConsensusLevel::Quorum { k: 3, n: 5 }),
            other => {
                let bad = || {
                    Error::invalid(format!(
                        "consensus {other:?} is not one of 'none', 'low', 'medium', 'high' or 'k-of-n' (like '2-of-3')"
                    ))
                };
                let (k, n) = other.split_once("-of-").ok_or_else(bad)?;
                let (k, n): (u32, u32) = (k.parse().map_err(|_| bad())?, n.parse().map_err(|_| bad())?);
                if k == 0 || n == 0 || k > n || n > 64 {
                    return Err(Error::invalid(format!("consensus {other:?}: need 1 <= k <= n <= 64")));
                }
                // With k <= n/2 two disjoint groups can each reach k: a minority could win.
                if 2 * k <= n {
                    return Err(Error::invalid(format!(
                        "consensus {other:?}: k must be a strict majority of n (k > n/2), so that two disagreeing groups cannot both reach it; try '{}-of-{n}'",
                        n / 2 + 1
                    )));
                }
                Ok(ConsensusLevel::Quorum { k, n })
            }
        }
    }
    /// Workers to run on.
    pub fn workers(self) -> u32 {
        match self {
            ConsensusLevel::None | ConsensusLevel::Low => 1,
            ConsensusLevel::Quorum { n, .. } => n,
        }
    }
    /// Whether results are verified at all.
    pub fn verifies(self) -> bool {
        !matches!(self, ConsensusLevel::None)
    }
}

impl fmt::Display for ConsensusLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConsensusLevel::None => f.write_str("none"),
            ConsensusLevel::Low => f.write_str("low"),
            ConsensusLevel::Quorum { k, n } => write!(f, "{k}-of-{n}"),
        }
    }
}

/// What two results must share to agree: equal job hash, exit code and set of
/// (path, sha256) of the outputs. CPU and memory differ between honest workers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[serde(rename_all = "camelCase")]
pub struct Agreement {
    pub job_hash: String,
    pub exit_code: i64,
    /// path -> sha256
    pub outputs: std::collections::BTreeMap<String, String>,
}

/// The rules a pool's consensus ran under (`proof.consensus.rules`). One vote is one
/// distinct key, always; distinct keys are not distinct operators unless the keys come
/// from an allowlist you trust, so the report says which rules were in force.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[serde(rename_all = "camelCase")]
pub struct ConsensusRules {
    /// Each vote is a distinct Ed25519 key, bound at `join()` to the key the worker
    /// presented at `/health` (always true).
    pub distinct_keys: bool,
    /// The allowlist of worker keys in force, if any.
    pub allowlist: Option<Vec<String>>,
    /// At most one worker per endpoint host.
    pub distinct_hosts: bool,
    /// At most one worker per region.
    pub distinct_regions: bool,
}

/// What happened to one replica of a pooled job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[serde(rename_all = "camelCase")]
pub struct ReplicaOutcome {
    pub worker: String,
    pub worker_id: Option<String>,
    pub job_id: Option<String>,
    /// `'agreed' | 'dissented' | 'failed' | 'unfinished'`
    pub outcome: String,
    pub detail: String,
    /// The worker this replica replaced, when it was a replacement.
    pub replaces: Option<String>,
}

/// The outcome of consensus (spec: `ConsensusResult`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[serde(rename_all = "camelCase")]
pub struct ConsensusResult {
    pub reached: bool,
    pub required: u32,
    pub of: u32,
    /// The agreed job hash, exit code and outputs.
    pub agreed: Option<Agreement>,
    /// Worker ids (or URLs) whose results agreed.
    pub agreeing: Vec<String>,
    /// Workers whose results were valid but different, or failed a check.
    pub dissenting: Vec<String>,
    /// Every replica, in the order they ended.
    pub replicas: Vec<ReplicaOutcome>,
    /// The rules this consensus ran under.
    pub rules: ConsensusRules,
}

/// Where a submitted job stands (`JobExecution.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Queued,
    Running,
    Completed,
    Failed,
    Cancelled,
}

/// Where a job's result stands (`JobResult.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[serde(rename_all = "lowercase")]
pub enum ResultStatus {
    Completed,
    Failed,
    Cancelled,
}

/// What was paid and how (`JobResult.cost`). Without `payment()` the state is `'none'`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[serde(rename_all = "camelCase")]
pub struct PaymentInfo {
    /// Amount in the token's display units, as given to `payment()` ("0" when unpaid).
    pub amount: String,
    /// `'ETH'` or an ERC-20 address/symbol.
    pub token: String,
    /// `'none'` (no payment requested), `'pending'`, `'released'`, `'refunded'`.
    pub state: String,
    /// Transaction hashes in order (open, release/refund).
    pub transactions: Vec<String>,
    /// Gas used by this job's transactions.
    pub gas_used: u64,
    /// Payout addresses the release credited instead of paying (their call failed: they
    /// refused the payment or ran out of gas); each pulls its share from the escrow with
    /// `withdraw()`. Empty when every payee was paid.
    #[serde(default)]
    pub credited: Vec<String>,
}

impl PaymentInfo {
    pub fn none() -> Self {
        PaymentInfo { amount: "0".into(), token: "ETH".into(), state: "none".into(), transactions: vec![], gas_used: 0, credited: vec![] }
    }
}

/// A payment requested with `payment(amount, token?)`, validated at the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRequest {
    pub amount: String,
    pub token: String,
}

impl PaymentRequest {
    pub fn new(amount: &str, token: Option<&str>) -> Result<Self> {
        let a = amount.trim();
        let valid = !a.is_empty()
            && a.chars().all(|c| c.is_ascii_digit() || c == '.')
            && a.matches('.').count() <= 1
            && a.chars().any(|c| c.is_ascii_digit() && c != '0');
        if !valid {
            return Err(Error::invalid(format!(
                "payment amount {amount:?} must be a positive decimal string like '0.1' (units of the token)"
            )));
        }
        if a.split('.').nth(1).map_or(0, str::len) > 18 {
            return Err(Error::invalid(format!("payment amount {amount:?} has more than 18 decimals")));
        }
        let token = token.unwrap_or("ETH").trim();
        let is_addr = token.len() == 42 && token.starts_with("0x") && token[2..].chars().all(|c| c.is_ascii_hexdigit());
        if !(token.eq_ignore_ascii_case("ETH") || is_addr) {
            return Err(Error::invalid(format!("payment token {token:?} must be 'ETH' or an ERC-20 contract address (0x + 40 hex)")));
        }
        Ok(PaymentRequest { amount: a.to_string(), token: if is_addr { token.to_string() } else { "ETH".into() } })
    }
}

/// One output file of a result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[serde(rename_all = "camelCase")]
pub struct OutputFile {
    pub path: String,
    pub size: u64,
    pub sha256: String,
    /// The file's bytes, checked against `sha256` (present after `download()`).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_bytes")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional, type = "Uint8Array"))]
    pub bytes: Option<Vec<u8>>,
}

/// What was checked about a result (`JobResult.proof`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[serde(rename_all = "camelCase")]
pub struct Proof {
    /// True when every check below passed.
    pub verified: bool,
    /// The consensus level the result was checked under.
    pub level: String,
    /// Base64 Ed25519 key of the worker (null on anonymous workers).
    pub worker_id: Option<String>,
    pub signature: Option<String>,
    /// The exact string the worker signed, when the signature verified.
    pub signed_string: Option<String>,
    /// `job_hash` recomputed from what the SDK submitted.
    pub job_hash: String,
    /// Each check with its outcome (`'job_hash'`, `'signature'`, `'output:<path>'`).
    pub checks: Vec<ProofCheck>,
    /// With a quorum: which workers agreed, dissented, failed or were replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub consensus: Option<ConsensusResult>,
}

/// One check of a proof.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[serde(rename_all = "camelCase")]
pub struct ProofCheck {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

/// The result of a job (spec: `JobResult`), plus the fields a user needs to act on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[serde(rename_all = "camelCase")]
pub struct JobResult {
    pub id: String,
    pub status: ResultStatus,
    /// The job's stdout as bytes.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_bytes")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional, type = "Uint8Array"))]
    pub output: Option<Vec<u8>>,
    /// stdout then stderr, one entry per line.
    pub logs: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub proof: Option<Proof>,
    pub cost: PaymentInfo,
    /// Milliseconds from submit to the end of the job, as seen by the SDK.
    pub execution_time: f64,
    pub exit_code: i64,
    pub stdout: String,
    pub stderr: String,
    /// The worker that ran it.
    pub worker: String,
    pub job_hash: String,
    pub files: Vec<OutputFile>,
    /// CPU seconds (2 decimals, as the worker reports it).
    pub cpu_seconds: f64,
    pub memory_mb: u64,
    /// With `gpu()`: the worker the job was placed on and whether its registry entry was
    /// checked against the requirements (`gpuChecked: false` without a registry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub placement: Option<Placement>,
    /// Where the outputs were published to IPFS (jobs built with `publish()`, after
    /// `download()` verified them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub ipfs: Option<PublishedOutputs>,
}

/// A job's outputs on IPFS (`JobResult.ipfs`): every CID computed by the SDK from the
/// verified bytes and equal to the one the IPFS node answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[serde(rename_all = "camelCase")]
pub struct PublishedOutputs {
    /// The directory holding the published files (`ipfs://<root>/<path>`).
    pub root: String,
    pub files: Vec<PublishedFile>,
}

/// One published output file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[serde(rename_all = "camelCase")]
pub struct PublishedFile {
    pub path: String,
    pub cid: String,
    pub size: u64,
}

/// Where a GPU job was placed and what was checked (`JobResult.placement`; only jobs
/// with `gpu()`). Without a registry nothing could be checked, and this says so.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[serde(rename_all = "camelCase")]
pub struct Placement {
    /// The worker the job ran on.
    pub worker: String,
    /// True when the worker's registry entry was checked against `gpu()` and matched.
    pub gpu_checked: bool,
    /// The GPU the worker's registry entry declares, when it was checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional, type = "Record<string, unknown>"))]
    pub declared: Option<serde_json::Value>,
    /// What was checked, or why nothing was.
    pub detail: String,
}

/// Where a job would run (`JobEstimate.placement`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[serde(rename_all = "camelCase")]
pub struct EstimatePlacement {
    /// Worker URLs the job would be sent to: the registry's matching active entries (not
    /// yet health-checked), or the configured worker without a registry.
    pub workers: Vec<String>,
    /// Whether a registry was consulted.
    pub checked: bool,
    /// With `gpu()`: whether the registry has enough workers declaring a matching GPU
    /// (absent without a registry: not checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub gpu_met: Option<bool>,
    pub detail: String,
}

/// Whether the job's `GPURequirements` could run on this machine's GPU, from the probe
/// (`JobEstimate.localGpu`; only jobs with `gpu()`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[serde(rename_all = "camelCase")]
pub struct LocalGpuEstimate {
    /// WebGPU gave a working device here.
    pub available: bool,
    /// Whether the local GPU meets the requirements (absent: cannot be told, e.g. WebGPU
    /// does not expose GPU memory and the job asks for some; `reasons` says why).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub can_run: Option<bool>,
    /// Why not, or what could not be told.
    pub reasons: Vec<String>,
    /// Measured local FP32 throughput divided by the requested GPU type's (from the
    /// documented table, `gpuTypes()`); absent when the type is not in the table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub relative_speed: Option<f64>,
    /// The table entry the requested type matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub reference: Option<GpuType>,
    /// The local figures came from a software GPU (SwiftShader, lavapipe): they say
    /// nothing about real hardware.
    pub software: bool,
}

/// One row of the GPU type table (`gpuTypes()`): published figures of a GPU model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[serde(rename_all = "camelCase")]
pub struct GpuType {
    /// Canonical name, matched against `gpu({ type })` and registry entries.
    pub name: String,
    pub vendor: String,
    /// Peak FP32 TFLOP/s (vendor datasheet, boost clock, no sparsity).
    pub fp32_tflops: f64,
    /// Memory per GPU in GB (the largest common variant).
    pub memory_gb: f64,
    /// CUDA compute capability (NVIDIA only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub compute: Option<f64>,
}

/// What `sandrun.gpu().probe()` reports: whether WebGPU works here, the adapter, its
/// limits and the throughput the calibration kernels measured. Same JSON as the GPU
/// module's (`gpu/src/probe.rs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[serde(rename_all = "camelCase")]
pub struct GpuProbe {
    pub available: bool,
    /// Why WebGPU is not available, when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub adapter: Option<GpuAdapterInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub limits: Option<GpuLimits>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub throughput: Option<GpuThroughput>,
}

/// The adapter, as far as the platform tells (browsers withhold most of it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[serde(rename_all = "camelCase")]
pub struct GpuAdapterInfo {
    /// `'webgpu'` (browsers, Node) or `'vulkan'` (native).
    pub backend: String,
    pub name: String,
    #[serde(default)]
    pub vendor: String,
    #[serde(default)]
    pub architecture: String,
    /// `'discrete' | 'integrated' | 'virtual' | 'cpu' | 'other'`
    pub device_type: String,
    /// A software GPU (SwiftShader, lavapipe, a fallback adapter).
    pub software: bool,
}

/// Adapter limits that bound a compute batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[serde(rename_all = "camelCase")]
pub struct GpuLimits {
    pub max_buffer_size: f64,
    pub max_storage_buffer_binding_size: f64,
    pub max_compute_workgroups_per_dimension: u32,
    pub max_compute_invocations_per_workgroup: u32,
    pub max_compute_workgroup_storage_size: u32,
}

/// Calibration results, measured on this machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[serde(rename_all = "camelCase")]
pub struct GpuThroughput {
    /// Batch SHA-256 on the GPU (many 4 KiB messages, upload and readback included), MB/s.
    pub sha256_mbps: f64,
    pub sha256_batch: u32,
    /// One tiny dispatch with readback: the fixed cost of every batch, ms.
    pub dispatch_ms: f64,
    /// FP32 GFLOP/s from the FMA kernel.
    pub fp32_gflops: f64,
    /// The CPU's SHA-256 on the same data (the platform's native hash), MB/s, when measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub cpu_sha256_mbps: Option<f64>,
    /// Smallest batch (total bytes) for which proof checks hash on the GPU, from these
    /// figures; absent when the GPU never beats the CPU here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub proof_threshold_bytes: Option<f64>,
}

/// A cost and time estimate (spec: `JobEstimate`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[serde(rename_all = "camelCase")]
pub struct JobEstimate {
    /// Workers the job will run on (from its consensus level).
    pub workers: u32,
    /// Upper bound of the job's run time in seconds (its timeout).
    pub max_seconds: f64,
    /// Bytes that will be uploaded to each worker.
    pub upload_bytes: u64,
    /// Interpreter the job will run with.
    pub interpreter: String,
    pub entrypoint: String,
    /// `job_hash` the workers will report.
    pub job_hash: String,
    /// The payment that will be locked (`'0'` without `payment()`).
    pub max_cost: String,
    pub token: String,
    /// What the eligible workers' advertised prices (`pricing` in the registry, per hour)
    /// come to for `workers` replicas running the whole timeout, cheapest and dearest, in
    /// the pricing's unit (ETH). Absent without a registry or priced workers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub worker_cost: Option<PriceRange>,
    /// Current gas price (wei) from the wallet's chain, when a wallet is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub gas_price_wei: Option<String>,
    /// Gas cost of the payment's transactions (approve, open, release) at that price, in ETH.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub gas_cost: Option<String>,
    /// Where the job would run, and whether its `gpu()` requirements can be met there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub placement: Option<EstimatePlacement>,
    /// With `gpu()`: whether the requirements could run on this machine's GPU, and its
    /// speed relative to the requested type (from `sandrun.gpu().probe()`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub local_gpu: Option<LocalGpuEstimate>,
}

impl JobEstimate {
    /// With the gas price and cost filled in, when known.
    pub fn with_gas(mut self, gas: Option<(u128, f64)>) -> Self {
        if let Some((price, cost)) = gas {
            self.gas_price_wei = Some(price.to_string());
            self.gas_cost = Some(format!("{cost:.9}"));
        }
        self
    }
}

/// A low-high range of a cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[serde(rename_all = "camelCase")]
pub struct PriceRange {
    pub low: f64,
    pub high: f64,
}

mod opt_bytes {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_bytes(b),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Option::<Vec<u8>>::deserialize(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consensus_levels() {
        assert_eq!(ConsensusLevel::parse("medium").unwrap(), ConsensusLevel::Quorum { k: 2, n: 3 });
        assert_eq!(ConsensusLevel::parse("3-of-5").unwrap().workers(), 5);
        assert_eq!(ConsensusLevel::parse("4-of-7").unwrap().to_string(), "4-of-7");
        for bad in ["", "3-of-2", "0-of-1", "x-of-3", "ultra", "1-of-2", "2-of-4", "1-of-3"] {
            assert_eq!(ConsensusLevel::parse(bad).unwrap_err().code, crate::ErrorCode::InvalidArgument, "{bad}");
        }
    }

    #[test]
    fn sizes_and_payments() {
        assert_eq!(parse_size_mb("2GB").unwrap(), 2048.0);
        assert_eq!(parse_size_mb("512 MB").unwrap(), 512.0);
        assert!(parse_size_mb("lots").is_err() && parse_size_mb("2XB").is_err() && parse_size_mb("0GB").is_err());
        assert_eq!(PaymentRequest::new("0.1", Some("ETH")).unwrap().token, "ETH");
        assert!(PaymentRequest::new("-1", None).is_err());
        assert!(PaymentRequest::new("0", None).is_err());
        assert!(PaymentRequest::new("1e3", None).is_err());
        assert!(PaymentRequest::new("1", Some("DOGE")).is_err());
        assert!(PaymentRequest::new("1", Some("0x5FbDB2315678afecb367f032d93F642f64180aa3")).is_ok());
        let g = GPURequirements { count: Some(0), ..Default::default() };
        assert!(g.validate().is_err());
    }
}
