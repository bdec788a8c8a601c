//! Pools: discovery from the registry, selection, distribution, and consensus across
//! workers.
//!
//! Semantics (also in the package README):
//! - A pool runs a job on up to `n` workers (the consensus level's n, raised by
//!   `redundancy`), one replica per worker, each replica checked as under `'low'`.
//!   Under `Replication::Lazy` (the default) it starts `k` replicas (or `redundancy`, if
//!   higher) and starts another only when one fails or the valid ones cannot reach `k`
//!   agreeing without it, never more than `n` counted results: with `k > n/2`, `k` agreeing
//!   signers are a majority of any `n`, so the replicas not started could not change the
//!   outcome. `Replication::Eager` starts all `n` at once (and names every dissenter).
//! - Two results agree when job hash, exit code and the (path, sha256) set are equal.
//!   A result that fails a check never counts; its worker is named as a dissenter.
//! - When a replica fails (network, crash, timeout, 429, failed check) and an unused
//!   eligible worker remains, the pool starts a replacement there and records it.
//! - As soon as k replicas agree the result is that agreed one; if k can no longer be
//!   reached, `CONSENSUS_NOT_REACHED` with every replica's outcome.

pub mod consensus;
pub mod placement;

use crate::api::{BrokerClient, WorkerClient};
use crate::context::Sandrun;
use crate::error::{Error, ErrorCode, Result};
use crate::execution::{JobExecution, SignerPolicy};
use crate::job::PreparedJob;
use crate::types::{ConsensusLevel, JobResult, Proof};
use crate::util::Race;
use consensus::{largest_group, parse_signed, signature_ok, Agreement};
pub use crate::types::{ConsensusResult, ConsensusRules, ReplicaOutcome};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::rc::Rc;

#[cfg(target_arch = "wasm32")]
use tsify::Tsify;

/// Which registry nodes a pool takes (spec: `DiscoveryCriteria`). All fields optional.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DiscoveryCriteria {
    /// At least this many GPUs.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "minGPUs")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub min_gpus: Option<u32>,
    /// GPU type, e.g. `'a100'` (case-insensitive substring).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub gpu_type: Option<String>,
    /// At least this much GPU memory: `'40GB'` or a number of GB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional, type = "string | number"))]
    pub gpu_memory: Option<Value>,
    /// Region, e.g. `'us-east'` (exact match).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub region: Option<String>,
    /// Highest CPU price per hour, e.g. `'0.2/hour'` or `0.2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional, type = "string | number"))]
    pub max_price: Option<Value>,
    /// Interpreters every node must offer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub interpreters: Option<Vec<String>>,
    /// At most one worker per endpoint host (hostname or IP, any port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub distinct_hosts: Option<bool>,
    /// At most one worker per declared region (workers without a region are left out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub distinct_regions: Option<bool>,
}

fn number_of(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.split('/').next()?.trim().trim_end_matches(|c: char| c.is_ascii_alphabetic()).trim().parse().ok(),
        _ => None,
    }
}

impl DiscoveryCriteria {
    pub fn validate(&self) -> Result<()> {
        if let Some(m) = &self.gpu_memory {
            number_of(m).ok_or_else(|| Error::invalid(format!("discover(): gpuMemory {m} is not like '40GB' or 40")))?;
        }
        if let Some(p) = &self.max_price {
            number_of(p).ok_or_else(|| Error::invalid(format!("discover(): maxPrice {p} is not like '0.2/hour' or 0.2")))?;
        }
        Ok(())
    }

    /// Does a node's `capabilities` satisfy every criterion?
    pub fn matches(&self, caps: &Value) -> bool {
        let gpu = &caps["gpu"];
        let count = gpu["count"].as_u64().unwrap_or(if gpu.is_object() { 1 } else { 0 }) as u32;
        if self.min_gpus.is_some_and(|n| count < n) {
            return false;
        }
        if let Some(t) = &self.gpu_type {
            let have = gpu["type"].as_str().unwrap_or_default().to_ascii_lowercase();
            if count == 0 || !have.contains(&t.to_ascii_lowercase()) {
                return false;
            }
        }
        if let Some(m) = self.gpu_memory.as_ref().and_then(number_of) {
            if gpu["memory"].as_f64().or_else(|| number_of(&gpu["memory"])).unwrap_or(0.0) < m {
                return false;
            }
        }
        if let Some(r) = &self.region {
            if caps["region"].as_str() != Some(r.as_str()) {
                return false;
            }
        }
        if let Some(p) = self.max_price.as_ref().and_then(number_of) {
            match number_of(&caps["pricing"]["cpu"]) {
                Some(price) if price <= p => {}
                _ => return false,
            }
        }
        if let Some(want) = &self.interpreters {
            let have: Vec<&str> = caps["interpreters"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
            if !want.iter().all(|w| have.contains(&w.as_str())) {
                return false;
            }
        }
        true
    }
}

/// A submitted job: on one worker, or replicated over a pool for consensus.
#[derive(Clone)]
pub enum Submitted {
    Single(JobExecution),
    Pooled(PooledRun),
}

/// One worker of a pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[serde(rename_all = "camelCase")]
pub struct PoolNode {
    /// Registry node id, or the worker URL when it was given directly.
    pub id: String,
    /// The Sandrun worker URL.
    pub endpoint: String,
    /// Base64 Ed25519 key, checked against the worker's `/health` at `join()`.
    pub worker_id: Option<String>,
    pub region: Option<String>,
    /// Payout address from the registry, if any.
    pub payout: Option<String>,
    #[cfg_attr(target_arch = "wasm32", tsify(type = "Record<string, unknown>"))]
    pub capabilities: Value,
}

/// One distinct capability of a pool's workers (spec: `Capability`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[serde(rename_all = "camelCase")]
pub struct Capability {
    /// `'gpu'`, `'interpreter'` or `'region'`.
    pub kind: String,
    /// e.g. `'a100'`, `'python3'`, `'us-east'`.
    pub value: String,
    /// `kind:value`, e.g. `'gpu:a100'`.
    pub label: String,
    /// How many of the pool's workers offer it.
    pub nodes: u32,
}

/// A pool as described, before `join()`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PoolSpec {
    pub discover: Option<DiscoveryCriteria>,
    pub nodes: Vec<String>,
    pub consensus: Option<ConsensusLevel>,
    pub redundancy: Option<u32>,
    /// Worker keys the pool may take (`allow()`); `None`: the client's `allowedWorkers`.
    pub allow: Option<Vec<String>>,
    /// `replication()`; `None`: lazy.
    pub replication: Option<Replication>,
}

/// How many replicas a pooled job starts at once (`PoolBuilder.replication()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Replication {
    /// `k` at first (or `redundancy`, if higher); another only when one fails or the valid
    /// results so far cannot reach `k` agreeing without it. Same outcome as `Eager` for any
    /// `k > n/2`, at `k/n` of the work and cost when the first `k` agree.
    #[default]
    Lazy,
    /// All `n` at once: every worker's answer is seen (and every dissenter named), at `n`
    /// replicas' work and cost, and the job waits for the slowest replica's grace period.
    Eager,
}

impl Replication {
    /// `'lazy'` or `'eager'`.
    pub fn parse(mode: &str) -> Result<Replication> {
        match mode {
            "lazy" => Ok(Replication::Lazy),
            "eager" => Ok(Replication::Eager),
            other => Err(Error::invalid(format!("replication({other:?}): use 'lazy' (start k replicas, more only when needed) or 'eager' (start all n at once)"))),
        }
    }
}

/// The immutable pool builder.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PoolBuilder {
    spec: Rc<PoolSpec>,
}

impl PoolBuilder {
    pub fn spec(&self) -> &PoolSpec {
        &self.spec
    }
    fn with(&self, f: impl FnOnce(&mut PoolSpec)) -> PoolBuilder {
        let mut s = (*self.spec).clone();
        f(&mut s);
        PoolBuilder { spec: Rc::new(s) }
    }
    /// Take the registry's active nodes that match `criteria`.
    pub fn discover(&self, criteria: DiscoveryCriteria) -> Result<PoolBuilder> {
        criteria.validate()?;
        Ok(self.with(|s| s.discover = Some(criteria)))
    }
    /// Take these nodes: registry node ids or worker URLs.
    pub fn nodes(&self, ids: Vec<String>) -> Result<PoolBuilder> {
        if ids.is_empty() || ids.iter().any(|i| i.trim().is_empty()) {
            return Err(Error::invalid("nodes() needs registry node ids or worker URLs, none empty"));
        }
        Ok(self.with(|s| s.nodes = ids))
    }
    /// The pool's consensus strategy (a job's own `consensus()` takes precedence).
    pub fn consensus(&self, level: &str) -> Result<PoolBuilder> {
        let c = ConsensusLevel::parse(level)?;
        Ok(self.with(|s| s.consensus = Some(c)))
    }
    /// Only take workers whose `/health` key is one of these (base64 Ed25519).
    pub fn allow(&self, worker_ids: Vec<String>) -> Result<PoolBuilder> {
        crate::job::check_worker_keys("allow()", &worker_ids)?;
        Ok(self.with(|s| s.allow = Some(worker_ids)))
    }
    /// Run each job on at least `factor` workers.
    pub fn redundancy(&self, factor: u32) -> Result<PoolBuilder> {
        if !(1..=64).contains(&factor) {
            return Err(Error::invalid(format!("redundancy({factor}) must be between 1 and 64")));
        }
        Ok(self.with(|s| s.redundancy = Some(factor)))
    }
    /// `'lazy'` (default) or `'eager'`: see [`Replication`].
    pub fn replication(&self, mode: &str) -> Result<PoolBuilder> {
        let r = Replication::parse(mode)?;
        Ok(self.with(|s| s.replication = Some(r)))
    }
}

/// A joined pool: checked, reachable workers.
#[derive(Clone)]
pub struct Pool {
    pub nodes: Vec<PoolNode>,
    pub consensus: ConsensusLevel,
    pub redundancy: u32,
    pub replication: Replication,
    pub rules: ConsensusRules,
    /// Workers `join()` left out, and why (same key twice, key mismatch, unreachable,
    /// not allowed, diversity rules).
    pub excluded: Vec<(String, String)>,
    client: Sandrun,
    /// With a `gpu()` job: the requirement the nodes were narrowed to (placement.rs), so
    /// each replica's result says where it ran and what was checked.
    pub(crate) gpu: Option<crate::types::GPURequirements>,
}

/// A worker given by URL. Its key comes from the `/health` check below, which asks every
/// node at once under a deadline: one slow or dead URL cannot hold up or fail the join.
async fn resolve_url_node(client: &Sandrun, url: &str) -> Result<PoolNode> {
    let w = WorkerClient::new(url, client.platform().clone());
    Ok(PoolNode { id: url.trim_end_matches('/').into(), endpoint: w.base.clone(), worker_id: None, region: None, payout: None, capabilities: Value::Null })
}

/// How long `join()` waits for one node's `/health`, body included, before it drops the
/// node (listed in `Pool.excluded`) and goes on with the others.
pub const JOIN_HEALTH_DEADLINE_MS: u64 = 10_000;

/// Discover and check the pool's workers.
pub async fn join(client: &Sandrun, spec: &PoolSpec) -> Result<Pool> {
    // Plugins' onInit runs before the first network operation of any kind.
    client.init().await?;
    let mut nodes: Vec<PoolNode> = Vec::new();
    let registry_nodes = if spec.discover.is_some() || spec.nodes.iter().any(|n| !n.starts_with("http")) {
        let reg = client.config().registry_endpoint.clone().ok_or_else(|| {
            Error::invalid("discover() and node ids need SandrunConfig.registryEndpoint (the registry URL)")
        })?;
        BrokerClient::new(&reg, client.platform().clone()).nodes().await?
    } else {
        vec![]
    };
    let to_node = |r: &crate::api::broker::NodeRecord| PoolNode {
        id: r.id.clone(),
        endpoint: r.worker_url(),
        worker_id: r.worker_id(),
        region: r.capabilities["region"].as_str().map(str::to_string),
        payout: r.capabilities["payout"].as_str().map(str::to_string),
        capabilities: r.capabilities.clone(),
    };
    for id in &spec.nodes {
        if id.starts_with("http://") || id.starts_with("https://") {
            nodes.push(resolve_url_node(client, id).await?);
        } else {
            let r = registry_nodes
                .iter()
                .find(|r| &r.id == id)
                .ok_or_else(|| Error::invalid(format!("nodes(): the registry has no node {id:?}")))?;
            nodes.push(to_node(r));
        }
    }
    if let Some(c) = &spec.discover {
        let matching: Vec<_> = registry_nodes.iter().filter(|r| r.active == 1 && c.matches(&r.capabilities)).collect();
        if matching.is_empty() && nodes.is_empty() {
            return Err(placement::no_discovery_match(c, &registry_nodes));
        }
        for r in matching {
            if !nodes.iter().any(|n| n.endpoint == r.worker_url()) {
                nodes.push(to_node(r));
            }
        }
    }
    // A node whose worker answers with another key than the registry advertises is not
    // the worker we think it is; an unreachable one is useless. Drop both.
    let mut checked = Vec::new();
    let mut race = Race::default();
    for n in &nodes {
        let w = WorkerClient::new(&n.endpoint, client.platform().clone());
        let p = client.platform().clone();
        // Besides the request's own deadline: a node that drips its answer, or a host
        // that ignores timeouts, still cannot hang the join.
        race.push(async move {
            match crate::util::race(w.health(), p.sleep(JOIN_HEALTH_DEADLINE_MS)).await {
                crate::util::Either::Left(r) => r,
                crate::util::Either::Right(()) => Err(Error::new(ErrorCode::Timeout, format!("no complete /health answer within {JOIN_HEALTH_DEADLINE_MS} ms"))),
            }
        });
    }
    let mut answers = vec![None; nodes.len()];
    while let Some((i, r)) = race.next().await {
        answers[i] = Some(r);
    }
    let allow = spec.allow.clone().or_else(|| client.config().allowed_workers.clone());
    let criteria = spec.discover.clone().unwrap_or_default();
    let rules = ConsensusRules {
        distinct_keys: true,
        allowlist: allow.clone(),
        distinct_hosts: criteria.distinct_hosts == Some(true),
        distinct_regions: criteria.distinct_regions == Some(true),
    };
    let mut excluded = Vec::new();
    for (n, a) in nodes.into_iter().zip(answers) {
        // The key the worker shows at /health now is the only key its votes count under.
        let key = match a {
            Some(Ok(key)) if n.worker_id.is_none() || n.worker_id == key => key,
            Some(Ok(key)) => {
                excluded.push((n.endpoint, format!("its /health key {key:?} differs from the registry's {:?}", n.worker_id)));
                continue;
            }
            Some(Err(e)) => {
                excluded.push((n.endpoint, format!("unreachable: {}", e.message)));
                continue;
            }
            None => continue,
        };
        let why = admission(&checked, &n, key.as_deref(), &rules);
        match why {
            Some(why) => excluded.push((n.endpoint, why)),
            None => checked.push(PoolNode { worker_id: key, ..n }),
        }
    }
    if checked.is_empty() {
        let why: Vec<String> = excluded.iter().map(|(e, w)| format!("{e}: {w}")).collect();
        return Err(Error::new(
            ErrorCode::ConsensusNotReached,
            format!("the pool has no usable worker: check discover() criteria, nodes(), allowlists and the registry ({})", why.join("; ")),
        ));
    }
    Ok(Pool {
        nodes: checked,
        consensus: spec.consensus.unwrap_or(ConsensusLevel::Low),
        redundancy: spec.redundancy.unwrap_or(1),
        replication: spec.replication.unwrap_or_default(),
        rules,
        excluded,
        client: client.clone(),
        gpu: None,
    })
}

/// The host of a URL (no scheme, port or path), lowercased.
fn host_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if authority.starts_with('[') { authority.split(']').next().unwrap_or(authority).trim_start_matches('[') } else { authority.split(':').next().unwrap_or(authority) };
    host.to_ascii_lowercase()
}

/// Why `n` (whose `/health` key is `key`) may not join a pool that already has `taken`.
fn admission(taken: &[PoolNode], n: &PoolNode, key: Option<&str>, rules: &ConsensusRules) -> Option<String> {
    if let Some(k) = key {
        if let Some(other) = taken.iter().find(|t| t.worker_id.as_deref() == Some(k)) {
            return Some(format!("same key as {} (one key is one vote, whatever its URLs)", other.endpoint));
        }
    }
    if let Some(allow) = &rules.allowlist {
        if !key.is_some_and(|k| allow.iter().any(|a| a == k)) {
            return Some(format!("its key {key:?} is not in the allowlist"));
        }
    }
    if rules.distinct_hosts {
        let host = host_of(&n.endpoint);
        if let Some(other) = taken.iter().find(|t| host_of(&t.endpoint) == host) {
            return Some(format!("same host {host} as {} (distinctHosts)", other.endpoint));
        }
    }
    if rules.distinct_regions {
        match &n.region {
            None => return Some("no declared region (distinctRegions)".into()),
            Some(r) => {
                if let Some(other) = taken.iter().find(|t| t.region.as_deref() == Some(r)) {
                    return Some(format!("same region {r} as {} (distinctRegions)", other.endpoint));
                }
            }
        }
    }
    None
}

impl Pool {
    /// The pool's client (config, platform).
    pub fn client(&self) -> &Sandrun {
        &self.client
    }

    /// (k, n) for a job: its own level, else the pool's; n raised to `redundancy`.
    pub fn quorum(&self, level: Option<ConsensusLevel>) -> (u32, u32, ConsensusLevel) {
        let level = level.unwrap_or(self.consensus);
        let (k, n) = match level {
            ConsensusLevel::None | ConsensusLevel::Low => (1, 1),
            ConsensusLevel::Quorum { k, n } => (k, n),
        };
        (k, n.max(self.redundancy), level)
    }

    /// Distinct capabilities of the pool's nodes, as `kind:value` strings.
    pub fn capabilities(&self) -> Vec<Capability> {
        let mut caps: Vec<Capability> = Vec::new();
        let mut add = |kind: &str, value: &str| match caps.iter_mut().find(|c| c.kind == kind && c.value == value) {
            Some(c) => c.nodes += 1,
            None => caps.push(Capability { kind: kind.into(), value: value.into(), label: format!("{kind}:{value}"), nodes: 1 }),
        };
        for n in &self.nodes {
            let c = &n.capabilities;
            if let Some(t) = c["gpu"]["type"].as_str() {
                add("gpu", t);
            }
            for i in c["interpreters"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                add("interpreter", i);
            }
            if let Some(r) = &n.region {
                add("region", r);
            }
        }
        caps.sort_by(|a, b| a.label.cmp(&b.label));
        caps
    }

    /// A pool with no workers yet (what a built, not yet joined pool shows).
    pub fn empty(client: Sandrun) -> Pool {
        Pool { nodes: vec![], consensus: ConsensusLevel::Low, redundancy: 1, replication: Replication::Lazy, rules: ConsensusRules::default(), excluded: vec![], client, gpu: None }
    }

    async fn submit_to(&self, i: usize, prepared: Rc<PreparedJob>, level: ConsensusLevel) -> Result<JobExecution> {
        let node = &self.nodes[i];
        let replica = self.client.for_worker(&node.endpoint);
        // Replicas are checked one by one as under 'low'; agreement is the pool's job.
        let level = if level.verifies() { ConsensusLevel::Low } else { ConsensusLevel::None };
        let allowed = prepared.allowed.clone().or_else(|| self.rules.allowlist.clone());
        let ex = replica.submit_prepared(prepared, level).await?;
        // Only a result signed by the key this worker showed at join() is its vote.
        ex.set_signer_policy(SignerPolicy { bound_key: node.worker_id.clone(), allowed });
        if let Some(p) = self.placement_of(i) {
            ex.set_placement(p);
        }
        Ok(ex)
    }

    /// Submit a job to `n` workers for consensus (refusals are replaced by unused
    /// workers); `PooledRun::wait()` then runs it to agreement. See the module docs.
    /// `level` is the job's own consensus level, if it set one.
    pub async fn start(&self, level: Option<ConsensusLevel>, prepared: Rc<PreparedJob>) -> Result<PooledRun> {
        let (k, n, level) = self.quorum(level);
        if (self.nodes.len() as u32) < n {
            return Err(Error::new(
                ErrorCode::ConsensusNotReached,
                format!("consensus {level} needs {n} workers but the pool has {}: widen discover() or add nodes()", self.nodes.len()),
            ));
        }
        let mut run = PooledRun { pool: self.clone(), prepared, level, k, n, replicas: Vec::new(), running: Vec::new(), next: 0, done: Rc::new(std::cell::RefCell::new(None)), all: Rc::default() };
        let first = match self.replication {
            Replication::Eager => n,
            Replication::Lazy => k.max(self.redundancy).min(n),
        };
        // The first replicas are submitted at once: the last one starts a round trip
        // sooner than one after the other. A refused replica is replaced by the next
        // unused worker; outcomes are recorded in node order either way.
        while run.running.len() < first as usize {
            let mut batch = Vec::new();
            while run.running.len() + batch.len() < first as usize {
                let Some(i) = run.take_node() else { break };
                batch.push(i);
            }
            if batch.is_empty() {
                break;
            }
            let mut race = Race::default();
            for &i in &batch {
                race.push(self.submit_to(i, run.prepared.clone(), level));
            }
            let mut answers = Vec::new();
            while let Some(answer) = race.next().await {
                answers.push(answer);
            }
            drop(race);
            answers.sort_by_key(|(j, _)| *j);
            for (j, answer) in answers {
                let i = batch[j];
                match answer {
                    Ok(ex) => {
                        run.all.borrow_mut().push(ex.clone());
                        run.running.push((i, ex, None));
                    }
                    Err(e) => run.replicas.push(outcome(&self.nodes[i], None, "failed", format!("{}: {}", e.code.as_str(), e.message), None)),
                }
            }
        }
        if run.running.is_empty() {
            return Err(run.not_reached());
        }
        Ok(run)
    }
    /// Check proofs offline and find the agreement among them: each distinct signer
    /// counts once, and only signers that are members of this pool count.
    pub fn verify(&self, proofs: &[Proof], level: Option<ConsensusLevel>) -> ConsensusResult {
        let (k, n, _) = self.quorum(level);
        let members: Vec<String> = self.nodes.iter().filter_map(|n| n.worker_id.clone()).collect();
        let mut r = verify_proofs(proofs, k, n, Some(&members));
        r.rules = self.rules.clone();
        r
    }
}

fn outcome(node: &PoolNode, job_id: Option<String>, what: &str, detail: String, replaces: Option<String>) -> ReplicaOutcome {
    ReplicaOutcome { worker: node.endpoint.clone(), worker_id: node.worker_id.clone(), job_id, outcome: what.into(), detail, replaces }
}

/// A job submitted to a pool: replicas running on several workers.
#[derive(Clone)]
pub struct PooledRun {
    pool: Pool,
    prepared: Rc<PreparedJob>,
    level: ConsensusLevel,
    k: u32,
    n: u32,
    /// Replicas that already ended (or were refused), in the order they ended.
    replicas: Vec<ReplicaOutcome>,
    /// (node index, execution, the worker it replaced)
    running: Vec<(usize, JobExecution, Option<String>)>,
    next: usize,
    done: Rc<std::cell::RefCell<Option<Result<JobResult>>>>,
    /// Every execution started, replacements included.
    all: Rc<std::cell::RefCell<Vec<JobExecution>>>,
}

impl PooledRun {
    fn take_node(&mut self) -> Option<usize> {
        let i = self.next;
        self.next += 1;
        (i < self.pool.nodes.len()).then_some(i)
    }

    /// Start a replica on node `i` (a replacement for `replaces`, if given) in `race`.
    fn spawn_replica<'a>(
        &self,
        race: &mut Race<'a, (Option<String>, Result<JobResult>)>,
        slots: &mut Vec<(usize, Option<String>)>,
        finished: &mut Vec<bool>,
        i: usize,
        replaces: Option<String>,
    ) {
        let (p, prepared, all, level) = (self.pool.clone(), self.prepared.clone(), self.all.clone(), self.level);
        slots.push((i, replaces));
        finished.push(false);
        race.push(async move {
            match p.submit_to(i, prepared, level).await {
                Ok(ex) => {
                    all.borrow_mut().push(ex.clone());
                    (Some(ex.id().to_string()), ex.wait().await)
                }
                Err(e) => (None, Err(e)),
            }
        });
    }

    /// Every replica's execution, replacements included.
    pub fn executions(&self) -> Vec<JobExecution> {
        self.all.borrow().clone()
    }

    /// The finished result, if `wait()` has settled.
    pub fn settled(&self) -> Option<Result<JobResult>> {
        self.done.borrow().clone()
    }

    pub fn level(&self) -> ConsensusLevel {
        self.level
    }

    /// Stop waiting for every replica.
    pub fn cancel(&self) {
        for e in self.all.borrow().iter() {
            e.cancel();
        }
    }

    fn not_reached(&self) -> Error {
        let rep = report(self.k, self.n, None, &self.replicas, &self.pool.rules);
        Error::new(
            ErrorCode::ConsensusNotReached,
            format!(
                "consensus {} not reached: {}",
                self.level,
                self.replicas.iter().map(|r| format!("{} {} ({})", r.worker, r.outcome, r.detail)).collect::<Vec<_>>().join("; ")
            ),
        )
        .with_details(serde_json::to_value(&rep).unwrap_or_default())
    }

    /// Wait until k replicas agree (replacing failed ones while unused workers remain),
    /// or until k can no longer be reached. The result is the agreed one, with the
    /// consensus report in `proof.consensus`.
    pub async fn wait(&self) -> Result<JobResult> {
        if let Some(r) = self.done.borrow().clone() {
            return r;
        }
        let r = self.clone().settle().await;
        *self.done.borrow_mut() = Some(r.clone());
        r
    }

    async fn settle(mut self) -> Result<JobResult> {
        let pool = self.pool.clone();
        let level = self.level;
        let platform = pool.client.platform().clone();
        let started_ms = platform.now_ms();
        let mut race = Race::default();
        let mut slots: Vec<(usize, Option<String>)> = Vec::new();
        for (i, ex, replaces) in self.running.drain(..) {
            slots.push((i, replaces));
            race.push(async move { (Some(ex.id().to_string()), ex.wait().await) });
        }
        let mut finished = vec![false; slots.len()];
        let mut valid: Vec<(Agreement, (usize, JobResult))> = Vec::new();
        let mut agreed: Option<(Agreement, JobResult)> = None;
        loop {
            // Once k agree, stragglers get as long again as the quorum took (at least
            // 1 s) to be named as agreeing or dissenting; no replacements are started.
            let next = match &agreed {
                None => race.next().await,
                Some(_) => {
                    let grace = (platform.now_ms() - started_ms).max(1000.0) as u64;
                    match crate::util::race(race.next(), platform.sleep(grace)).await {
                        crate::util::Either::Left(n) => n,
                        crate::util::Either::Right(()) => None,
                    }
                }
            };
            let Some((slot, (job_id, r))) = next else { break };
            finished[slot] = true;
            let (node_i, replaces) = slots[slot].clone();
            let node = &pool.nodes[node_i];
            // The worker a lazily started replica replaces, when this one failed.
            let failed = r.is_err().then(|| node.endpoint.clone());
            match r {
                Ok(result) => {
                    valid.push((agreement_of(&result), (self.replicas.len(), result)));
                    self.replicas.push(outcome(node, job_id, "pending", "verified".into(), replaces));
                }
                Err(e) => {
                    let what = if e.code == ErrorCode::VerificationFailed { "dissented" } else { "failed" };
                    self.replicas.push(outcome(node, job_id, what, format!("{}: {}", e.code.as_str(), e.message), replaces));
                    if agreed.is_some() {
                        continue;
                    }
                    if pool.replication == Replication::Eager {
                        if let Some(i) = self.take_node() {
                            self.spawn_replica(&mut race, &mut slots, &mut finished, i, failed.clone());
                        }
                    }
                }
            }
            if agreed.is_none() {
                if let Some((a, members)) = largest_group(&valid) {
                    if members.len() as u32 >= self.k {
                        agreed = Some((a, members[0].1.clone()));
                        continue;
                    }
                }
                let best = largest_group(&valid).map_or(0, |(_, m)| m.len());
                if pool.replication == Replication::Lazy {
                    // Start only what k still needs, within n counted results (valid ones
                    // and those running); a failed replica frees its slot for a replacement.
                    let running = race.pending();
                    let slots_left = (self.n as usize).saturating_sub(valid.len() + running);
                    let missing = (self.k as usize).saturating_sub(best + running);
                    for _ in 0..missing.min(slots_left) {
                        let Some(i) = self.take_node() else { break };
                        self.spawn_replica(&mut race, &mut slots, &mut finished, i, failed.clone());
                    }
                    // Each new result can add at most one agreeing signer, and at most n
                    // results count.
                    let more = race.pending() + pool.nodes.len().saturating_sub(self.next);
                    let possible = best + more.min((self.n as usize).saturating_sub(valid.len()));
                    if (possible as u32) < self.k {
                        break;
                    }
                    continue;
                }
                let possible = best + race.pending() + pool.nodes.len().saturating_sub(self.next);
                if (possible as u32) < self.k {
                    break;
                }
            }
        }
        // Replicas still running when we stopped are named too.
        for (slot, done) in finished.iter().enumerate() {
            if !done {
                let node = &pool.nodes[slots[slot].0];
                let job_id = self.all.borrow().iter().find(|e| e.worker() == node.endpoint).map(|e| e.id().to_string());
                let why = if agreed.is_some() { "still running when the quorum was reached" } else { "stopped: the quorum could no longer be reached" };
                self.replicas.push(outcome(node, job_id, "unfinished", why.into(), slots[slot].1.clone()));
            }
        }
        match agreed {
            Some((a, winner)) => {
                for (ag, (i, _)) in &valid {
                    let agrees = *ag == a;
                    self.replicas[*i].outcome = if agrees { "agreed".into() } else { "dissented".into() };
                    if !agrees {
                        self.replicas[*i].detail = "valid, but a different result from the majority".into();
                    }
                }
                Ok(with_consensus(winner, level, report(self.k, self.n, Some(a), &self.replicas, &pool.rules)))
            }
            None => {
                for r in self.replicas.iter_mut().filter(|r| r.outcome == "pending") {
                    r.outcome = "dissented".into();
                    r.detail = "valid, but too few agreed with it".into();
                }
                Err(self.not_reached())
            }
        }
    }
}

fn agreement_of(r: &JobResult) -> Agreement {
    Agreement {
        job_hash: r.job_hash.clone(),
        exit_code: r.exit_code,
        outputs: r.files.iter().map(|f| (f.path.clone(), f.sha256.clone())).collect(),
    }
}

fn report(k: u32, n: u32, agreed: Option<Agreement>, replicas: &[ReplicaOutcome], rules: &ConsensusRules) -> ConsensusResult {
    let name = |r: &ReplicaOutcome| r.worker_id.clone().unwrap_or_else(|| r.worker.clone());
    ConsensusResult {
        reached: agreed.is_some(),
        required: k,
        of: n,
        agreed,
        agreeing: replicas.iter().filter(|r| r.outcome == "agreed").map(name).collect(),
        dissenting: replicas.iter().filter(|r| r.outcome == "dissented" || r.outcome == "failed").map(name).collect(),
        replicas: replicas.to_vec(),
        rules: rules.clone(),
    }
}

fn with_consensus(mut r: JobResult, level: ConsensusLevel, c: ConsensusResult) -> JobResult {
    if let Some(p) = r.proof.as_mut() {
        p.level = level.to_string();
        p.consensus = Some(c);
    }
    r
}

/// Verify each proof's signature over its signed string, then find the largest agreeing
/// group. Proofs that do not verify are dissenters and never count. Each distinct signer
/// counts once (its first valid proof); with `members`, proofs by other keys are
/// ignored. A group wins only with at least `k` signers and a strict majority of the
/// signers counted, so a minority never wins however many proofs are passed in.
pub fn verify_proofs(proofs: &[Proof], k: u32, n: u32, members: Option<&[String]>) -> ConsensusResult {
    let mut replicas = Vec::new();
    let mut valid = Vec::new();
    let mut counted: Vec<String> = Vec::new();
    let ignored = |who: &str, detail: &str| ReplicaOutcome {
        worker: who.to_string(),
        worker_id: Some(who.to_string()),
        job_id: None,
        outcome: "ignored".into(),
        detail: detail.into(),
        replaces: None,
    };
    for p in proofs {
        let who = p.worker_id.clone().unwrap_or_else(|| "anonymous".into());
        let parsed = match (&p.worker_id, &p.signature, &p.signed_string) {
            (Some(w), Some(s), Some(signed)) if signature_ok(w, s, signed) => parse_signed(signed).filter(|x| x.agreement.job_hash == p.job_hash),
            _ => None,
        };
        match parsed {
            Some(_) if members.is_some_and(|m| !m.contains(&who)) => {
                replicas.push(ignored(&who, "signed by a key that is not a member of this pool"));
            }
            Some(_) if counted.contains(&who) => {
                replicas.push(ignored(&who, "another proof by the same key was already counted (one key, one vote)"));
            }
            Some(parts) => {
                counted.push(who.clone());
                valid.push((parts.agreement, replicas.len()));
                replicas.push(ReplicaOutcome { worker: who.clone(), worker_id: p.worker_id.clone(), job_id: None, outcome: "pending".into(), detail: "signature verifies".into(), replaces: None });
            }
            None => replicas.push(ReplicaOutcome {
                worker: who,
                worker_id: p.worker_id.clone(),
                job_id: None,
                outcome: "dissented".into(),
                detail: "no valid signature over a well-formed signed string for this job hash".into(),
                replaces: None,
            }),
        }
    }
    // `agreeing` is the largest group of valid proofs that agree with each other, even when
    // it is smaller than k (then `reached` is false); the rest are dissenters.
    let mut agreed = None;
    if let Some((a, members)) = largest_group(&valid) {
        for (ag, i) in &valid {
            let with_majority = members.contains(i);
            replicas[*i].outcome = if with_majority { "agreed".into() } else { "dissented".into() };
            if *ag != a {
                replicas[*i].detail = "valid, but a different result from the majority".into();
            }
        }
        let size = members.len();
        if size as u32 >= k && 2 * size > counted.len() {
            agreed = Some(a);
        }
    }
    let rules = ConsensusRules { distinct_keys: true, ..Default::default() };
    report(k, n.max(counted.len() as u32), agreed, &replicas, &rules)
}
