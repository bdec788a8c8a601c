//! Registration with the registry: the capabilities a worker advertises (reference fields,
//! devnet extensions, and its payout bound by a signature of its own key) and the
//! register / heartbeat loop.

use super::fault::Fault;
use super::Worker;
use crate::http;
use crate::sign;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// `payout_chain_id` when a payout is given without one: anvil's default chain id.
pub const DEFAULT_CHAIN_ID: u64 = 31337;

/// The environment a job on a GPU worker reads: `CUDA_VISIBLE_DEVICES` (and NVIDIA's
/// container spelling) listing devices `0..count`, plus the declared GPU as
/// `SANDRUN_GPU_TYPE`, `SANDRUN_GPU_MEMORY_GB`, `SANDRUN_GPU_COUNT`. The devnet's GPUs are
/// declared, not real: a job that needs a GPU driver still runs on the CPU. A worker
/// without a GPU adds nothing.
pub fn gpu_env(gpu: &serde_json::Value) -> Vec<(String, String)> {
    if !gpu.is_object() {
        return Vec::new();
    }
    let count = gpu["count"].as_u64().unwrap_or(1);
    let devices = (0..count).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
    let memory = match &gpu["memory"] {
        serde_json::Value::String(s) => s.clone(),
        v => v.to_string(),
    };
    vec![
        ("CUDA_VISIBLE_DEVICES".into(), devices.clone()),
        ("NVIDIA_VISIBLE_DEVICES".into(), devices),
        ("SANDRUN_GPU_TYPE".into(), gpu["type"].as_str().unwrap_or_default().to_string()),
        ("SANDRUN_GPU_MEMORY_GB".into(), memory),
        ("SANDRUN_GPU_COUNT".into(), count.to_string()),
    ]
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

fn memory_gb() -> u64 {
    let s = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kb: u64 = s
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    ((kb as f64) / 1024.0 / 1024.0).round() as u64
}

fn storage_gb(p: &Path) -> u64 {
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap_or_default();
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } == 0 {
        (s.f_bavail as u64 * s.f_frsize as u64) / (1 << 30)
    } else {
        0
    }
}

fn on_path(prog: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(prog).is_file()))
        .unwrap_or(false)
}

impl Worker {
    /// Capabilities sent to the registry: reference fields plus devnet extension fields.
    pub fn capabilities(&self) -> serde_json::Value {
        let i = self.cfg.index;
        let regions = ["us-east", "us-west", "eu-west"];
        let gpu = if i % 3 == 1 {
            serde_json::json!({"type": "nvidia-t4", "memory": 16, "count": 1})
        } else {
            serde_json::Value::Null
        };
        let interpreters: Vec<&str> = ["python3", "node", "bash"].into_iter().filter(|p| on_path(p)).collect();
        let mut caps = serde_json::json!({
            "cpu_cores": num_cpus(),
            "memory_gb": memory_gb(),
            "gpu": gpu,
            "interpreters": interpreters,
            "storage": storage_gb(&self.cfg.dir),
            "region": regions[i % regions.len()],
            "pricing": {"cpu": "0.1/hour", "gpu": "0.5/hour"},
            "payout": null,
            "worker_id": self.public_id(),
            "sandrun_endpoint": self.url,
        });
        if let (Some(obj), Some(extra)) = (caps.as_object_mut(), self.cfg.capabilities.as_object()) {
            for (k, v) in extra {
                obj.insert(k.clone(), v.clone());
            }
            // Bind the payout with this worker's key (devnet registry extension), unless
            // the caller set `payout_signature` itself.
            if let Some(p) = obj.get("payout").and_then(|p| p.as_str()).map(str::to_string) {
                if !obj.contains_key("payout_signature") {
                    if self.public_id().is_some() {
                        let chain = obj.get("payout_chain_id").and_then(|c| c.as_u64()).unwrap_or(DEFAULT_CHAIN_ID);
                        obj.insert("payout_chain_id".into(), chain.into());
                        obj.insert("payout_signature".into(), sign::payout_signature(&self.key, chain, &p).into());
                    } else {
                        // No key in use, so nothing can bind the address: no payout.
                        obj.insert("payout".into(), serde_json::Value::Null);
                    }
                }
            }
        }
        caps
    }

    pub(super) async fn register_loop(self: Arc<Self>, reg: String) {
        let body = serde_json::json!({"endpoint": self.url, "capabilities": self.capabilities()}).to_string();
        let mut node_id = None;
        loop {
            if node_id.is_none() {
                match http::client_request(&reg, "POST", "/register", Some("application/json"), body.as_bytes(), Duration::from_secs(5)).await {
                    Ok((200, b)) => {
                        node_id = serde_json::from_slice::<serde_json::Value>(&b)
                            .ok()
                            .and_then(|v| v["node_id"].as_str().map(str::to_string));
                        if node_id.is_some() && self.fault() == Some(Fault::HijackPayout) {
                            self.start_hijack();
                        }
                    }
                    Ok((code, b)) => {
                        eprintln!("worker {}: registration refused: HTTP {code} {}", self.cfg.index, String::from_utf8_lossy(&b).trim())
                    }
                    Err(e) => eprintln!("worker {}: registration failed: {e}", self.cfg.index),
                }
                if node_id.is_none() {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            }
            tokio::time::sleep(Duration::from_secs(self.cfg.heartbeat_secs.max(1))).await;
            let hb = serde_json::json!({"node_id": node_id}).to_string();
            let _ = http::client_request(&reg, "POST", "/heartbeat", Some("application/json"), hb.as_bytes(), Duration::from_secs(5)).await;
        }
    }
}
