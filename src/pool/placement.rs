//! Placement: a job with `gpu()` goes to a worker whose registry entry declares a
//! matching GPU, alone or in a pool; with no match the call fails `NO_MATCHING_WORKER`
//! naming what was asked and what the registry offers. Without a registry nothing can
//! be checked, and the result says so (`JobResult.placement.gpuChecked: false`).
//!
//! A registry entry declares its GPUs as `capabilities.gpu = { type, memory, count,
//! compute? }`: `memory` per GPU in GB (a number) or a size string (`'24GB'`), `count`
//! defaulting to 1. A requirement matches when every field it sets is met:
//! - `type`: `'cuda'` takes an NVIDIA GPU (the type names NVIDIA or a model the GPU
//!   table lists as NVIDIA); `'opencl'` takes any GPU; any other type must appear in the
//!   declared type, ignoring case and punctuation (`'a100'` matches `'NVIDIA-A100'`).
//! - `memory`: at least that much per GPU. `count`: at least that many GPUs.
//! - `compute`: at least that capability, declared or from the GPU table.

use super::{Pool, PoolNode, PoolSpec};
use crate::api::broker::NodeRecord;
use super::Submitted;
use crate::context::Sandrun;
use crate::error::{Error, ErrorCode, Result};
use crate::execution::{JobExecution, SignerPolicy};
use crate::gpu::{lookup, norm};
use crate::job::PreparedJob;
use crate::types::{ConsensusLevel, EstimatePlacement, GPURequirements, Placement};
use serde_json::{json, Value};
use std::rc::Rc;

/// A declared GPU's memory in MB: a number is GB (the registry's convention), a string a size.
fn declared_memory_mb(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64().map(|g| g * 1024.0),
        Value::String(s) => crate::types::parse_size_mb(s).ok(),
        _ => None,
    }
}

/// `None` when `caps` (a registry entry's capabilities) declares a GPU that meets
/// `req`, else why not.
pub fn gpu_mismatch(req: &GPURequirements, caps: &Value) -> Option<String> {
    let gpu = &caps["gpu"];
    if !gpu.is_object() {
        return Some("declares no GPU".into());
    }
    let kind = gpu["type"].as_str().unwrap_or_default();
    let count = gpu["count"].as_u64().unwrap_or(1);
    if let Some(want) = &req.kind {
        let w = norm(want);
        let ok = match w.as_str() {
            "cuda" => norm(kind).contains("nvidia") || lookup(kind).is_some_and(|r| r.vendor == "nvidia") || gpu["cuda"].as_bool() == Some(true),
            "opencl" => true,
            _ => !w.is_empty() && norm(kind).contains(&w),
        };
        if !ok {
            return Some(format!("its GPU is {kind:?}, not {want:?}"));
        }
    }
    if let Some(m) = req.memory.as_ref().and_then(|m| m.megabytes().ok()) {
        match declared_memory_mb(&gpu["memory"]) {
            Some(have) if have >= m => {}
            Some(have) => return Some(format!("its GPU has {} of memory, the job asks for {}", gb(have), gb(m))),
            None => return Some("its GPU declares no memory size".into()),
        }
    }
    if let Some(c) = req.count {
        if count < c as u64 {
            return Some(format!("it has {count} GPU(s), the job asks for {c}"));
        }
    }
    if let Some(cc) = req.compute {
        match gpu["compute"].as_f64().or_else(|| lookup(kind).and_then(|r| r.compute)) {
            Some(have) if have >= cc => {}
            Some(have) => return Some(format!("its GPU has compute capability {have}, the job asks for {cc}")),
            None => return Some("its GPU's compute capability is unknown".into()),
        }
    }
    None
}

fn gb(mb: f64) -> String {
    let g = mb / 1024.0;
    if g.fract() == 0.0 {
        format!("{g}GB")
    } else {
        format!("{g:.1}GB")
    }
}

/// `gpu({ type: 'a100', memory: '40GB', count: 4 })`, as the user wrote it.
pub fn describe_request(req: &GPURequirements) -> String {
    format!("gpu({})", serde_json::to_string(req).unwrap_or_default())
}

/// What an entry offers: `nvidia-t4 x1 (16GB)`, or `no GPU`.
pub fn describe_offer(caps: &Value) -> String {
    let gpu = &caps["gpu"];
    if !gpu.is_object() {
        return "no GPU".into();
    }
    let mem = declared_memory_mb(&gpu["memory"]).map(|m| format!(" ({})", gb(m))).unwrap_or_default();
    format!("{} x{}{mem}", gpu["type"].as_str().unwrap_or("unnamed GPU"), gpu["count"].as_u64().unwrap_or(1))
}

/// `NO_MATCHING_WORKER` naming what was asked and what each entry offers (and why it was
/// not taken). `details`: `{ asked, offered: [{ id, endpoint, active, offers, why }] }`.
pub fn no_match(asked: &str, asked_json: Value, offered: &[(String, String, bool, Value, String)]) -> Error {
    let listed: Vec<String> = offered
        .iter()
        .take(12)
        .map(|(id, ep, active, caps, why)| format!("{id} at {ep}{}: {} ({why})", if *active { "" } else { " (inactive)" }, describe_offer(caps)))
        .collect();
    let more = offered.len().saturating_sub(12);
    let offers = if offered.is_empty() {
        "the registry lists no worker".to_string()
    } else {
        format!("the registry offers: {}{}", listed.join("; "), if more > 0 { format!("; and {more} more") } else { String::new() })
    };
    Error::new(ErrorCode::NoMatchingWorker, format!("no worker matches {asked}: {offers}. Relax the requirements or point registryEndpoint at a registry with such workers"))
        .with_details(json!({
            "asked": asked_json,
            "offered": offered.iter().map(|(id, ep, active, caps, why)| json!({"id": id, "endpoint": ep, "active": active, "offers": caps.get("gpu").cloned().unwrap_or(Value::Null), "why": why})).collect::<Vec<_>>(),
        }))
}

/// `NO_MATCHING_WORKER` for `discover()` criteria that no active registry entry meets.
pub fn no_discovery_match(c: &super::DiscoveryCriteria, records: &[NodeRecord]) -> Error {
    let offered: Vec<_> = records
        .iter()
        .map(|r| {
            let caps = &r.capabilities;
            let why = format!(
                "{}region {}, interpreters {}",
                if r.active == 1 { "" } else { "inactive, " },
                caps["region"].as_str().unwrap_or("none"),
                caps["interpreters"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("/")).unwrap_or_else(|| "any".into())
            );
            (r.id.clone(), r.worker_url(), r.active == 1, caps.clone(), why)
        })
        .collect();
    no_match(&format!("discover({})", serde_json::to_string(c).unwrap_or_default()), serde_json::to_value(c).unwrap_or_default(), &offered)
}

/// Does `r` offer `interpreter` (entries that list none are taken to run anything)?
fn runs(r: &NodeRecord, interpreter: &str) -> bool {
    r.capabilities["interpreters"].as_array().is_none_or(|a| a.iter().any(|i| i.as_str() == Some(interpreter)))
}

/// Why registry entry `r` cannot take a job needing `req` and `interpreter`, if it can't.
fn refusal(r: &NodeRecord, req: &GPURequirements, interpreter: &str) -> Option<String> {
    if r.active != 1 {
        return Some("inactive".into());
    }
    if !runs(r, interpreter) {
        return Some(format!("no {interpreter}"));
    }
    gpu_mismatch(req, &r.capabilities)
}

/// What a job's placement record says.
fn placed(node: &PoolNode, req: &GPURequirements) -> Placement {
    Placement {
        worker: node.endpoint.clone(),
        gpu_checked: true,
        declared: Some(node.capabilities["gpu"].clone()),
        detail: format!("the registry entry {} declares {}, which meets {}", node.id, describe_offer(&node.capabilities), describe_request(req)),
    }
}

fn unchecked(worker: &str, req: &GPURequirements) -> Placement {
    Placement {
        worker: worker.to_string(),
        gpu_checked: false,
        declared: None,
        detail: format!("{} was NOT checked: no registryEndpoint is configured, so the SDK cannot tell whether {worker} has such a GPU; the job was sent there anyway", describe_request(req)),
    }
}

impl Pool {
    /// This pool narrowed to the nodes whose registry entry declares a GPU meeting `req`;
    /// `NO_MATCHING_WORKER` when fewer than `needed` remain. Nodes given by URL have no
    /// registry entry, so their GPU cannot be checked and they are left out.
    pub fn for_gpu(&self, req: &GPURequirements, needed: u32) -> Result<Pool> {
        let mut keep = Vec::new();
        let mut offered = Vec::new();
        for n in &self.nodes {
            let why = if n.capabilities.is_null() { Some("given by URL: no registry entry to check".into()) } else { gpu_mismatch(req, &n.capabilities) };
            match why {
                None => keep.push(n.clone()),
                Some(why) => offered.push((n.id.clone(), n.endpoint.clone(), true, n.capabilities.clone(), why)),
            }
        }
        if (keep.len() as u32) < needed.max(1) {
            let asked = if needed > 1 { format!("{} on {needed} workers (the pool has {} that match)", describe_request(req), keep.len()) } else { describe_request(req) };
            for n in &keep {
                offered.push((n.id.clone(), n.endpoint.clone(), true, n.capabilities.clone(), "matches".into()));
            }
            return Err(no_match(&asked, serde_json::to_value(req).unwrap_or_default(), &offered));
        }
        Ok(Pool { nodes: keep, gpu: Some(req.clone()), ..self.clone() })
    }

    /// The placement record of a replica on node `i` (pools narrowed by [`Self::for_gpu`]).
    pub(crate) fn placement_of(&self, i: usize) -> Option<Placement> {
        self.gpu.as_ref().map(|req| placed(&self.nodes[i], req))
    }
}

/// Submit a job that has `gpu()`: through `pool` narrowed to matching nodes; else, with
/// a quorum level, through a pool discovered from the registry and narrowed; else on one
/// matching, reachable worker from the registry; without a registry, on the configured
/// worker with `placement.gpuChecked: false`.
pub async fn submit_gpu(client: &Sandrun, req: &GPURequirements, level: Option<ConsensusLevel>, pool: Option<&Pool>, prepared: Rc<PreparedJob>) -> Result<Submitted> {
    if let Some(p) = pool {
        let (_, n, _) = p.quorum(level);
        let narrowed = p.for_gpu(req, n)?;
        return Ok(Submitted::Pooled(narrowed.start(level, prepared).await?));
    }
    let level = level.unwrap_or_else(|| client.config().default_consensus());
    if client.config().registry_endpoint.is_none() {
        if let ConsensusLevel::Quorum { k, n } = level {
            return Err(Error::invalid(format!("consensus {k}-of-{n} runs on {n} workers: set registryEndpoint so the SDK can discover them, or use .with(pool)")));
        }
        let ex = client.submit_prepared(prepared, level).await?;
        ex.set_placement(unchecked(ex.worker(), req));
        return Ok(Submitted::Single(ex));
    }
    let reg = client.config().registry_endpoint.clone().unwrap_or_default();
    let records = crate::api::BrokerClient::new(&reg, client.platform().clone()).nodes().await?;
    let mut ids = Vec::new();
    let mut offered = Vec::new();
    for r in &records {
        match refusal(r, req, &prepared.interpreter) {
            None => ids.push(r.id.clone()),
            Some(why) => offered.push((r.id.clone(), r.worker_url(), r.active == 1, r.capabilities.clone(), why)),
        }
    }
    let needed = level.workers();
    if (ids.len() as u32) < needed {
        let asked = if needed > 1 { format!("{} with {} on {needed} workers", describe_request(req), prepared.interpreter) } else { format!("{} with {}", describe_request(req), prepared.interpreter) };
        for id in &ids {
            if let Some(r) = records.iter().find(|r| &r.id == id) {
                offered.push((r.id.clone(), r.worker_url(), true, r.capabilities.clone(), "matches".into()));
            }
        }
        return Err(no_match(&asked, serde_json::to_value(req).unwrap_or_default(), &offered));
    }
    // join() checks each matching worker's /health and binds the key it shows.
    let joined = super::join(client, &PoolSpec { nodes: ids, ..Default::default() }).await?;
    let joined = Pool { gpu: Some(req.clone()), ..joined };
    if let ConsensusLevel::Quorum { .. } = level {
        return Ok(Submitted::Pooled(joined.start(Some(level), prepared).await?));
    }
    let mut last = None;
    for (i, node) in joined.nodes.iter().enumerate() {
        match client.for_worker(&node.endpoint).submit_prepared(prepared.clone(), level).await {
            Ok(ex) => {
                bind(&ex, node, &prepared);
                if let Some(p) = joined.placement_of(i) {
                    ex.set_placement(p);
                }
                return Ok(Submitted::Single(ex));
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| Error::new(ErrorCode::NoMatchingWorker, "no matching worker accepted the job")))
}

/// Only the key the worker showed at `/health` (and the allowlist) may sign its result.
fn bind(ex: &JobExecution, node: &PoolNode, prepared: &PreparedJob) {
    ex.set_signer_policy(SignerPolicy { bound_key: node.worker_id.clone(), allowed: prepared.allowed.clone() });
}

/// `estimate().placement`: the registry's active entries that would take the job (for
/// `gpu()` jobs, those whose GPU matches), without contacting them; without a registry,
/// the configured worker, unchecked.
pub async fn estimate_placement(client: &Sandrun, req: Option<&GPURequirements>, interpreter: &str, workers: u32, pool: Option<&Pool>) -> EstimatePlacement {
    if let Some(p) = pool {
        let taken: Vec<&PoolNode> = p.nodes.iter().filter(|n| req.is_none_or(|r| !n.capabilities.is_null() && gpu_mismatch(r, &n.capabilities).is_none())).collect();
        let met = req.map(|_| taken.len() as u32 >= workers);
        return EstimatePlacement {
            workers: taken.iter().map(|n| n.endpoint.clone()).collect(),
            checked: true,
            gpu_met: met,
            detail: format!("{} of the pool's {} workers would take it; it needs {workers}", taken.len(), p.nodes.len()),
        };
    }
    let Some(reg) = client.config().registry_endpoint.clone() else {
        let w = client.config().endpoint();
        let detail = match req {
            Some(r) => format!("no registryEndpoint: the job would go to {w} and {} would NOT be checked", describe_request(r)),
            None => format!("no registryEndpoint: the job would go to {w}"),
        };
        return EstimatePlacement { workers: vec![w], checked: false, gpu_met: None, detail };
    };
    let records = match crate::api::BrokerClient::new(&reg, client.platform().clone()).nodes().await {
        Ok(r) => r,
        Err(e) => return EstimatePlacement { workers: vec![], checked: false, gpu_met: None, detail: format!("the registry did not answer: {}", e.message) },
    };
    let any = GPURequirements::default();
    let taken: Vec<&NodeRecord> = records
        .iter()
        .filter(|r| match req {
            Some(q) => refusal(r, q, interpreter).is_none(),
            None => r.active == 1 && runs(r, interpreter),
        })
        .collect();
    let _ = any;
    let n = taken.len() as u32;
    let detail = match req {
        Some(q) if n >= workers => format!("{n} registry worker(s) declare a GPU meeting {} (not yet health-checked); it needs {workers}", describe_request(q)),
        Some(q) => format!(
            "{} cannot be met: {n} registry worker(s) match, it needs {workers}; the registry offers {}",
            describe_request(q),
            records.iter().filter(|r| r.active == 1).map(|r| format!("{}: {}", r.id, describe_offer(&r.capabilities))).collect::<Vec<_>>().join(", ")
        ),
        None => format!("{n} active registry worker(s) run {interpreter}; it needs {workers}"),
    };
    EstimatePlacement { workers: taken.iter().map(|r| r.worker_url()).collect(), checked: true, gpu_met: req.map(|_| n >= workers), detail }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::MemorySize;

    fn req(kind: Option<&str>, mem: Option<&str>, count: Option<u32>) -> GPURequirements {
        GPURequirements { kind: kind.map(Into::into), memory: mem.map(|m| MemorySize::Text(m.into())), count, compute: None }
    }

    #[test]
    fn gpu_requirements_against_registry_entries() {
        let a100 = json!({"gpu": {"type": "nvidia-a100", "memory": 40, "count": 4}});
        let t4 = json!({"gpu": {"type": "nvidia-t4", "memory": 16, "count": 1}});
        let rtx = json!({"gpu": {"type": "RTX 4090", "memory": "24GB", "count": 2}});
        let cpu = json!({"gpu": null});
        assert_eq!(gpu_mismatch(&req(Some("a100"), Some("40GB"), Some(4)), &a100), None);
        assert!(gpu_mismatch(&req(Some("a100"), Some("80GB"), None), &a100).unwrap().contains("40GB of memory"));
        assert!(gpu_mismatch(&req(Some("a100"), None, Some(8)), &a100).unwrap().contains("4 GPU(s)"));
        assert!(gpu_mismatch(&req(Some("h100"), None, None), &a100).is_some());
        assert_eq!(gpu_mismatch(&req(Some("cuda"), Some("2GB"), None), &t4), None);
        assert_eq!(gpu_mismatch(&req(Some("cuda"), None, None), &rtx), None, "rtx4090 is NVIDIA by the table");
        assert_eq!(gpu_mismatch(&req(Some("rtx4090"), Some("24GB"), Some(2)), &rtx), None);
        assert_eq!(gpu_mismatch(&req(Some("opencl"), None, None), &t4), None);
        assert_eq!(gpu_mismatch(&req(None, None, None), &cpu).as_deref(), Some("declares no GPU"));
        assert!(gpu_mismatch(&req(Some("cuda"), None, None), &json!({"gpu": {"type": "amd-mi250"}})).is_some());
        let cc = GPURequirements { compute: Some(8.0), ..Default::default() };
        assert_eq!(gpu_mismatch(&cc, &a100), None);
        assert!(gpu_mismatch(&cc, &t4).unwrap().contains("7.5"));
        assert_eq!(describe_offer(&t4), "nvidia-t4 x1 (16GB)");
        assert_eq!(describe_offer(&cpu), "no GPU");
    }

    #[test]
    fn no_match_names_the_request_and_the_offers() {
        let e = no_match(
            &describe_request(&req(Some("h100"), None, None)),
            json!({"type": "h100"}),
            &[("w1".into(), "http://127.0.0.1:1".into(), true, json!({"gpu": {"type": "nvidia-t4", "memory": 16}}), "its GPU is \"nvidia-t4\", not \"h100\"".into())],
        );
        assert_eq!(e.code, ErrorCode::NoMatchingWorker);
        assert!(e.message.contains("h100") && e.message.contains("nvidia-t4 x1 (16GB)"), "{}", e.message);
        assert_eq!(e.details.unwrap()["offered"][0]["offers"]["type"], "nvidia-t4");
    }
}
