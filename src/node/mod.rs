//! Provider nodes: register a Sandrun worker with the registry (broker) and serve the
//! registry's jobs on it.
//!
//! Semantics (also in the package README):
//! - `register()` checks the worker's `/health` (a node must serve from a signing worker:
//!   its `worker_id` is advertised), then `POST /register`s it with the reference
//!   capability fields (`cpu_cores`, `memory_gb`, `gpu`, `interpreters`) and the
//!   documented extensions (`storage`, `region`, `pricing`, `payout`, `payout_chain_id`,
//!   `payout_signature`, `worker_id`, `sandrun_endpoint`). A payout must come with the
//!   worker's own signature binding it ([`crate::chain::binding`]); it is verified against
//!   the `/health` key before anything is registered.
//! - The loop ([`Node::run_until_stopped`]) heartbeats (once at start, then every
//!   `heartbeat_ms`), polls `/claim` (quickly at first, then every `poll_ms`), runs each
//!   claimed job on the worker through the ordinary job path with consensus `'low'` (so
//!   the worker's signed status is checked), and reports `/complete` with `output` =
//!   stdout, `error` = stderr, `exit_code`, plus the extension fields `proof` (the
//!   checked proof, camelCase JSON as `JobResult.proof`) and `worker_job_id`.
//! - A job the SDK could not run or check is reported with `exit_code` -1 and the SDK
//!   error in `error`, so it never stays assigned forever.
//! - Errors inside the loop are counted (`errors`, `last_error`) and retried, never thrown.
//! - A registry that forgot the node (a reference broker restarted with an empty database
//!   still answers its heartbeats with 200, and never lists it again) is noticed: every
//!   [`REGISTRATION_CHECK_EVERY`] accepted heartbeats (and after a heartbeat answered 404)
//!   the node looks for itself in `/nodes` and, if missing, registers again with the same
//!   endpoint and capabilities (`reregistrations` counts it).
//! - `stop()` ends the loop: idle waits and heartbeats are cut short at once; a job being
//!   run is finished and reported first, still heartbeating (an abandoned claim would stay
//!   assigned).

use crate::api::broker::BROKER_TIMEOUT_MS;
use crate::api::wire::status_error;
use crate::api::{BrokerClient, WorkerClient};
use crate::client::Sandrun;
use crate::error::{Error, Result};
use crate::job::{JobBuilder, INTERPRETERS};
use crate::platform::HttpRequest;
use crate::types::{parse_size_mb, JobResult};
use crate::util::{race, CancelToken, Either, Race};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;

#[cfg(target_arch = "wasm32")]
use tsify::Tsify;

/// How often a listening node heartbeats the registry by default (ms).
pub const DEFAULT_HEARTBEAT_MS: u64 = 10_000;
/// How often an idle node asks `/claim` for work by default (ms).
pub const DEFAULT_POLL_MS: u64 = 1_000;
/// The first idle polls come this fast, doubling up to the poll interval.
const FIRST_POLL_MS: u64 = 50;
/// Longest wait between retries after errors (ms).
const MAX_BACKOFF_MS: u64 = 10_000;
/// Attempts at reporting one job's result to `/complete`.
const COMPLETE_ATTEMPTS: u32 = 4;
/// Every this many accepted heartbeats the node looks for itself in `/nodes`: a reference
/// broker answers 200 to a heartbeat from a node it does not know (after a restart with
/// an empty database), so a heartbeat's answer cannot tell.
pub const REGISTRATION_CHECK_EVERY: u64 = 3;
/// Interpreters advertised when `interpreters()` was not called.
pub const DEFAULT_INTERPRETERS: [&str; 3] = ["python3", "node", "bash"];

/// A size: `'24GB'`, `'1TB'`, `'512MB'`, or a number of GB.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[serde(untagged)]
pub enum NodeSize {
    Text(String),
    Gigabytes(f64),
}

impl NodeSize {
    /// Gigabytes, or `INVALID_ARGUMENT` naming `what`.
    pub fn gigabytes(&self, what: &str) -> Result<f64> {
        let gb = match self {
            NodeSize::Gigabytes(n) => *n,
            NodeSize::Text(s) => parse_size_mb(s).map_err(|e| Error::invalid(format!("{what}: {}", e.message)))? / 1024.0,
        };
        if !(gb.is_finite() && gb > 0.0) {
            return Err(Error::invalid(format!("{what} must be a positive size like '24GB' or a number of GB, got {gb}")));
        }
        Ok(gb)
    }
}

/// The node's GPUs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeGpu {
    /// e.g. `'rtx4090'`, `'a100'`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Memory per GPU: `'24GB'` or a number of GB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional, type = "string | number"))]
    pub memory: Option<NodeSize>,
    /// How many (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub count: Option<f64>,
}

/// The node's CPUs and memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeCpu {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub cores: Option<f64>,
    /// Host memory: `'64GB'` or a number of GB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional, type = "string | number"))]
    pub memory: Option<NodeSize>,
}

/// What a node offers (`NodeBuilder.capabilities()`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeCapabilities {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub gpu: Option<NodeGpu>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub cpu: Option<NodeCpu>,
    /// Disk: `'1TB'` or a number of GB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional, type = "string | number"))]
    pub storage: Option<NodeSize>,
}

/// Prices per hour (`NodeBuilder.pricing()`): `'0.5/hour'` or a number per hour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodePricing {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional, type = "string | number"))]
    pub gpu: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional, type = "string | number"))]
    pub cpu: Option<Value>,
}

/// A whole number when it is one, so `24.0` is sent as `24`.
fn num(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 9.0e15 {
        json!(x as i64)
    } else {
        json!(x)
    }
}

/// `'0.5/hour'`, `'0.5/h'`, `'0.5'` or `0.5` -> the string sent (`'0.5/hour'` form).
fn price(v: &Value, what: &str) -> Result<Value> {
    let bad = || Error::invalid(format!("pricing(): {what} {v} is not like '0.5/hour' or 0.5 (per hour)"));
    let n = match v {
        Value::Number(n) => return n.as_f64().filter(|n| n.is_finite() && *n >= 0.0).map(|n| json!(format!("{n}/hour"))).ok_or_else(bad),
        Value::String(s) => s.trim(),
        _ => return Err(bad()),
    };
    let (amount, unit) = n.split_once('/').unwrap_or((n, "hour"));
    let amount: f64 = amount.trim().parse().map_err(|_| bad())?;
    let per_hour = ["hour", "hr", "h"].contains(&unit.trim().to_ascii_lowercase().as_str());
    if !(amount.is_finite() && amount >= 0.0 && per_hour) {
        return Err(bad());
    }
    Ok(json!(if n.contains('/') { n.to_string() } else { format!("{n}/hour") }))
}

fn check_url(what: &str, url: &str) -> Result<String> {
    let ok = (url.starts_with("http://") || url.starts_with("https://")) && url.len() > "https://".len() && !url.contains(char::is_whitespace);
    if !ok {
        return Err(Error::invalid(format!("{what} must be an http:// or https:// URL, got {url:?}")));
    }
    Ok(url.trim_end_matches('/').to_string())
}

/// What binds a payout address to the worker (`payout(address, { chainId, signature })`):
/// the worker's own Ed25519 signature over
/// `sandrun-payout-v1|<chainId>|<address, lowercase>` ([`crate::chain::payout_message`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PayoutBinding {
    /// The chain the payments are made on (e.g. 1 for Ethereum mainnet, 31337 for anvil).
    pub chain_id: u64,
    /// Standard base64 of the worker's 64-byte Ed25519 signature.
    pub signature: String,
}

/// A payout address with its binding.
#[derive(Debug, Clone, PartialEq)]
pub struct Payout {
    pub address: String,
    pub chain_id: u64,
    pub signature: String,
}

/// How to make a payout signature, for error messages.
fn payout_how_to(address: &str, chain_id: u64) -> String {
    format!(
        "sign the exact text {:?} with the worker's Ed25519 key (the key whose public half the worker shows as worker_id at /health) \
         and pass the standard base64 of the 64-byte signature: payout(address, {{ chainId, signature }}). \
         With the key in PEM: printf '%s' '<text>' > msg && openssl pkeyutl -sign -rawin -inkey key.pem -in msg | base64 -w0",
        crate::chain::payout_message(chain_id, address)
    )
}

/// Everything a node is, before `register()`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NodeSpec {
    pub capabilities: NodeCapabilities,
    pub region: Option<String>,
    pub pricing: Option<NodePricing>,
    pub payout: Option<Payout>,
    /// The Sandrun worker URL; `None`: the client's `apiEndpoint`.
    pub endpoint: Option<String>,
    pub interpreters: Option<Vec<String>>,
}

impl NodeSpec {
    /// The `capabilities` object sent to `/register`, less `worker_id` and
    /// `sandrun_endpoint` (known at registration).
    pub fn capabilities_json(&self) -> Result<Value> {
        let c = &self.capabilities;
        let gpu = match &c.gpu {
            None => Value::Null,
            Some(g) => json!({
                "type": g.kind,
                "memory": match &g.memory { Some(m) => num(m.gigabytes("capabilities(): gpu.memory")?), None => Value::Null },
                "count": num(g.count.unwrap_or(1.0)),
            }),
        };
        let cpu = c.cpu.clone().unwrap_or_default();
        let memory_gb = match &cpu.memory {
            Some(m) => num(m.gigabytes("capabilities(): cpu.memory")?),
            None => Value::Null,
        };
        let storage = match &c.storage {
            Some(s) => num(s.gigabytes("capabilities(): storage")?),
            None => Value::Null,
        };
        let interpreters: Vec<String> = self.interpreters.clone().unwrap_or_else(|| DEFAULT_INTERPRETERS.iter().map(|s| s.to_string()).collect());
        let pricing = match &self.pricing {
            None => Value::Null,
            Some(p) => {
                let mut m = serde_json::Map::new();
                if let Some(v) = &p.cpu {
                    m.insert("cpu".into(), price(v, "cpu")?);
                }
                if let Some(v) = &p.gpu {
                    m.insert("gpu".into(), price(v, "gpu")?);
                }
                Value::Object(m)
            }
        };
        Ok(json!({
            "cpu_cores": cpu.cores.map(num).unwrap_or(Value::Null),
            "memory_gb": memory_gb,
            "gpu": gpu,
            "interpreters": interpreters,
            "storage": storage,
            "region": self.region,
            "pricing": pricing,
            "payout": self.payout.as_ref().map(|p| p.address.clone()),
            "payout_chain_id": self.payout.as_ref().map(|p| p.chain_id),
            "payout_signature": self.payout.as_ref().map(|p| p.signature.clone()),
        }))
    }
}

/// The immutable node builder: every method returns a new builder.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NodeBuilder {
    spec: Rc<NodeSpec>,
}

impl NodeBuilder {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn spec(&self) -> &NodeSpec {
        &self.spec
    }
    fn with(&self, f: impl FnOnce(&mut NodeSpec)) -> NodeBuilder {
        let mut s = (*self.spec).clone();
        f(&mut s);
        NodeBuilder { spec: Rc::new(s) }
    }

    /// What the node offers (replaces earlier capabilities). Checked now.
    pub fn capabilities(&self, caps: NodeCapabilities) -> Result<NodeBuilder> {
        if let Some(g) = &caps.gpu {
            if g.kind.trim().is_empty() {
                return Err(Error::invalid("capabilities(): gpu.type must name the GPU, e.g. 'rtx4090'"));
            }
            if let Some(n) = g.count {
                if !(n.fract() == 0.0 && (1.0..=1024.0).contains(&n)) {
                    return Err(Error::invalid(format!("capabilities(): gpu.count must be a whole number from 1 to 1024, got {n}")));
                }
            }
        }
        if let Some(n) = caps.cpu.as_ref().and_then(|c| c.cores) {
            if !(n.fract() == 0.0 && (1.0..=1_000_000.0).contains(&n)) {
                return Err(Error::invalid(format!("capabilities(): cpu.cores must be a whole number >= 1, got {n}")));
            }
        }
        let next = self.with(|s| s.capabilities = caps);
        next.spec.capabilities_json()?;
        Ok(next)
    }

    /// Where the node is, e.g. `'us-west-2'`.
    pub fn region(&self, region: &str) -> Result<NodeBuilder> {
        let ok = !region.is_empty() && region.len() <= 64 && region.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !ok {
            return Err(Error::invalid(format!("region({region:?}) must be 1-64 letters, digits, '-', '_' or '.', like 'us-west-2'")));
        }
        let region = region.to_string();
        Ok(self.with(|s| s.region = Some(region)))
    }

    /// Prices per hour. Checked now.
    pub fn pricing(&self, pricing: NodePricing) -> Result<NodeBuilder> {
        if pricing.cpu.is_none() && pricing.gpu.is_none() {
            return Err(Error::invalid("pricing() needs cpu and/or gpu, like { cpu: '0.1/hour' }"));
        }
        let next = self.with(|s| s.pricing = Some(pricing));
        next.spec.capabilities_json()?;
        Ok(next)
    }

    /// The address payments for this node's work go to (`0x` + 40 hex digits), bound by
    /// the worker's own signature: payers pay an address only when that signature
    /// verifies under the worker's key, so a registry entry cannot redirect payments.
    /// The shape is checked now; the signature itself at `register()`, against the key
    /// the worker shows at `/health`.
    pub fn payout(&self, address: &str, binding: &PayoutBinding) -> Result<NodeBuilder> {
        if !crate::chain::binding::is_address(address) || !address.starts_with("0x") {
            return Err(Error::invalid(format!("payout({address:?}) must be an Ethereum address: 0x + 40 hex digits")));
        }
        if binding.chain_id == 0 {
            return Err(Error::invalid(format!("payout(): chainId must be the chain's id (1 for Ethereum mainnet, 31337 for anvil), not 0; {}", payout_how_to(address, 1))));
        }
        use base64::Engine;
        let sig_ok = base64::engine::general_purpose::STANDARD.decode(binding.signature.trim()).is_ok_and(|b| b.len() == 64);
        if !sig_ok {
            return Err(Error::invalid(format!("payout(): signature is not the base64 of a 64-byte Ed25519 signature; {}", payout_how_to(address, binding.chain_id))));
        }
        let payout = Payout { address: address.to_string(), chain_id: binding.chain_id, signature: binding.signature.trim().to_string() };
        Ok(self.with(|s| s.payout = Some(payout)))
    }

    /// The Sandrun worker this node serves from (default: the client's `apiEndpoint`).
    pub fn endpoint(&self, url: &str) -> Result<NodeBuilder> {
        let url = check_url("endpoint()", url)?;
        Ok(self.with(|s| s.endpoint = Some(url)))
    }

    /// The interpreters advertised (default `['python3', 'node', 'bash']`).
    pub fn interpreters(&self, names: Vec<String>) -> Result<NodeBuilder> {
        if names.is_empty() {
            return Err(Error::invalid(format!("interpreters() needs at least one of {}", INTERPRETERS.join(", "))));
        }
        for n in &names {
            if !INTERPRETERS.contains(&n.as_str()) {
                return Err(Error::invalid(format!("interpreters(): {n:?} is not one of {}", INTERPRETERS.join(", "))));
            }
        }
        Ok(self.with(|s| s.interpreters = Some(names)))
    }
}

/// Listening options (`startListening(options?)`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListenOptions {
    /// Milliseconds between heartbeats (default 10000; the registry drops a node after 60 s).
    #[serde(default = "default_heartbeat")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub heartbeat_interval: u64,
    /// Milliseconds between `/claim` polls while idle (default 1000).
    #[serde(default = "default_poll")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub poll_interval: u64,
}

fn default_heartbeat() -> u64 {
    DEFAULT_HEARTBEAT_MS
}
fn default_poll() -> u64 {
    DEFAULT_POLL_MS
}

impl Default for ListenOptions {
    fn default() -> Self {
        ListenOptions { heartbeat_interval: DEFAULT_HEARTBEAT_MS, poll_interval: DEFAULT_POLL_MS }
    }
}

impl ListenOptions {
    pub fn validate(&self) -> Result<()> {
        if !(100..=50_000).contains(&self.heartbeat_interval) {
            return Err(Error::invalid(format!(
                "heartbeatInterval must be 100-50000 ms (the registry drops a node after 60 s without one), got {}",
                self.heartbeat_interval
            )));
        }
        if !(10..=60_000).contains(&self.poll_interval) {
            return Err(Error::invalid(format!("pollInterval must be 10-60000 ms, got {}", self.poll_interval)));
        }
        Ok(())
    }
}

/// Counters of a node's loop (`node.stats`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[serde(rename_all = "camelCase")]
pub struct NodeStats {
    /// Jobs claimed from the registry.
    pub claimed: u64,
    /// Jobs reported with exit code 0.
    pub completed: u64,
    /// Jobs reported with a non-zero exit code, or that could not be run or reported.
    pub failed: u64,
    /// Heartbeats the registry accepted.
    pub heartbeats: u64,
    /// `/claim` polls that found no job.
    pub polls: u64,
    /// Errors inside the loop (registry unreachable, a job the SDK could not run, ...).
    pub errors: u64,
    /// Times the node registered again because the registry had forgotten it (missing
    /// from `/nodes`, e.g. after a registry restart with an empty database).
    pub reregistrations: u64,
    /// The latest of those errors, as `CODE: message`.
    pub last_error: Option<String>,
    /// Whether the loop is running.
    pub running: bool,
}

#[derive(Clone, Default)]
struct Run {
    stop: CancelToken,
    started: CancelToken,
    done: CancelToken,
}

struct Inner {
    /// The client, aimed at the node's worker.
    client: Sandrun,
    broker: BrokerClient,
    /// Credentials for the registry (`authentication`).
    headers: Vec<(String, String)>,
    /// The registry's id for the node; a registry that forgot the node may give a new
    /// one when it registers again (a reference broker gives the same).
    id: RefCell<String>,
    endpoint: String,
    worker_id: String,
    capabilities: Value,
    stats: RefCell<NodeStats>,
    run: RefCell<Option<Run>>,
    running: Cell<bool>,
}

/// A registered node. Cheap to clone (shared state).
#[derive(Clone)]
pub struct Node {
    inner: Rc<Inner>,
}

/// The registry client of `client`, and the credential headers it sends.
fn broker_of(client: &Sandrun) -> Result<(BrokerClient, Vec<(String, String)>)> {
    let reg = client.config().registry_endpoint.clone().ok_or_else(|| {
        Error::invalid("node().register() needs SandrunConfig.registryEndpoint (the registry URL), e.g. Sandrun.create({ registryEndpoint: 'http://127.0.0.1:7703' })")
    })?;
    let mut headers = Vec::new();
    if let Some(a) = &client.config().authentication {
        if let Some(t) = &a.token {
            headers.push(("Authorization".to_string(), format!("Bearer {t}")));
        }
        if let Some(k) = &a.api_key {
            headers.push(("X-API-Key".to_string(), k.clone()));
        }
    }
    Ok((BrokerClient::new(&reg, client.platform().clone()).with_headers(headers.clone()), headers))
}

/// Check the worker, then register it with the registry.
pub async fn register(client: &Sandrun, spec: &NodeSpec) -> Result<Node> {
    let (broker, headers) = broker_of(client)?;
    let mut caps = spec.capabilities_json()?;
    let endpoint = match &spec.endpoint {
        Some(e) => e.clone(),
        None => check_url("apiEndpoint", &client.config().endpoint())?,
    };
    let worker = WorkerClient::new(&endpoint, client.platform().clone());
    let worker_id = worker.health().await?.ok_or_else(|| {
        Error::invalid(format!(
            "the worker at {endpoint} is anonymous (no worker_id in /health): a node must serve from a worker that signs its results"
        ))
    })?;
    if let Some(p) = &spec.payout {
        // Checked before registering: a registration with a binding that does not verify
        // would be refused by payers (and by registries that check) anyway.
        if !crate::chain::verify_payout_binding(&worker_id, p.chain_id, &p.address, &p.signature) {
            return Err(Error::invalid(format!(
                "payout({}): the signature does not verify under the key of the worker at {endpoint} ({worker_id}) for chain {}; {}",
                p.address,
                p.chain_id,
                payout_how_to(&p.address, p.chain_id)
            )));
        }
    }
    caps["worker_id"] = json!(worker_id);
    caps["sandrun_endpoint"] = json!(endpoint);
    let id = broker.register(&endpoint, &caps).await?;
    Ok(Node {
        inner: Rc::new(Inner {
            client: client.for_worker(&endpoint),
            broker,
            headers,
            id: RefCell::new(id),
            endpoint,
            worker_id,
            capabilities: caps,
            stats: RefCell::new(NodeStats::default()),
            run: RefCell::new(None),
            running: Cell::new(false),
        }),
    })
}

/// Clears `running` and wakes `stop()` however the loop ends (even if dropped).
struct RunGuard {
    node: Node,
    run: Run,
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        self.node.inner.running.set(false);
        self.node.inner.stats.borrow_mut().running = false;
        self.run.started.cancel();
        self.run.done.cancel();
    }
}

impl Node {
    /// The registry's node id (`sha256(endpoint)[:16]` on a reference broker).
    pub fn id(&self) -> String {
        self.inner.id.borrow().clone()
    }
    /// The Sandrun worker URL.
    pub fn endpoint(&self) -> &str {
        &self.inner.endpoint
    }
    /// The worker's base64 Ed25519 key, from its `/health`.
    pub fn worker_id(&self) -> &str {
        &self.inner.worker_id
    }
    /// The capabilities as registered.
    pub fn capabilities(&self) -> &Value {
        &self.inner.capabilities
    }
    pub fn stats(&self) -> NodeStats {
        self.inner.stats.borrow().clone()
    }
    pub fn is_running(&self) -> bool {
        self.inner.running.get()
    }

    fn error(&self, what: &str, e: &Error) {
        let mut s = self.inner.stats.borrow_mut();
        s.errors += 1;
        s.last_error = Some(format!("{what}: {e}"));
    }

    /// Start the loop: returns the future that runs it (to be spawned or awaited), or
    /// `None` when a loop is already running. State changes now, not at the first poll.
    pub fn start(&self, options: ListenOptions) -> Option<impl Future<Output = ()> + 'static> {
        if self.inner.running.get() {
            return None;
        }
        let run = Run::default();
        self.inner.running.set(true);
        self.inner.stats.borrow_mut().running = true;
        *self.inner.run.borrow_mut() = Some(run.clone());
        let node = self.clone();
        // Made now, so that even a future dropped before its first poll marks the end.
        let guard = RunGuard { node: node.clone(), run: run.clone() };
        Some(async move {
            // Heartbeats go on until the work loop has ended, so a job still being
            // finished after stop() does not make the registry think the node died.
            let work_done = CancelToken::default();
            let mut both = Race::default();
            both.push(node.heartbeat_loop(&run, &work_done, options));
            both.push(async {
                node.work_loop(&run, options).await;
                work_done.cancel();
            });
            while both.next().await.is_some() {}
            drop(guard);
        })
    }

    /// Run the loop until [`Self::stop`]. If one is already running, wait for its end.
    pub async fn run_until_stopped(&self, options: ListenOptions) {
        match self.start(options) {
            Some(f) => f.await,
            None => self.ended().await,
        }
    }

    fn current(&self) -> Option<Run> {
        self.inner.run.borrow().clone()
    }

    /// Resolves once the running loop has made its first heartbeat attempt (or ended).
    pub async fn started(&self) {
        if let Some(r) = self.current() {
            r.started.cancelled().await;
        }
    }

    async fn ended(&self) {
        if let Some(r) = self.current() {
            r.done.cancelled().await;
        }
    }

    /// Ask the loop to end and wait until it has (a job being run is finished and
    /// reported first). Resolves at once when no loop runs.
    pub async fn stop(&self) {
        if let Some(r) = self.current() {
            r.stop.cancel();
            r.done.cancelled().await;
        }
    }

    /// Sleep `ms`, unless stopped first. True when stopped.
    async fn pause(&self, run: &Run, ms: u64) -> bool {
        if run.stop.is_cancelled() {
            return true;
        }
        let p = self.inner.client.platform().clone();
        matches!(race(p.sleep(ms), run.stop.cancelled()).await, Either::Right(()))
    }

    async fn heartbeat_loop(&self, run: &Run, until: &CancelToken, o: ListenOptions) {
        let mut accepted = 0u64;
        loop {
            let wait = match race(self.inner.broker.heartbeat(&self.id()), until.cancelled()).await {
                Either::Right(()) => break,
                Either::Left(Ok(())) => {
                    self.inner.stats.borrow_mut().heartbeats += 1;
                    accepted += 1;
                    if accepted % REGISTRATION_CHECK_EVERY == 0 {
                        self.ensure_registered(until).await;
                    }
                    o.heartbeat_interval
                }
                Either::Left(Err(e)) => {
                    self.error("heartbeat", &e);
                    // A registry that says it does not know the node: look at once.
                    if e.status == Some(404) {
                        self.ensure_registered(until).await;
                    }
                    o.heartbeat_interval.min(2_000)
                }
            };
            run.started.cancel();
            let p = self.inner.client.platform().clone();
            if let Either::Right(()) = race(p.sleep(wait), until.cancelled()).await {
                break;
            }
        }
    }

    /// Register again, with the same endpoint and capabilities, when the registry no
    /// longer lists the node (it restarted with an empty database, or dropped the node).
    /// Failures are counted and tried again at the next check.
    async fn ensure_registered(&self, until: &CancelToken) {
        let listed = match race(self.inner.broker.nodes(), until.cancelled()).await {
            Either::Right(()) => return,
            Either::Left(Ok(nodes)) => {
                let id = self.id();
                nodes.iter().any(|n| n.id == id)
            }
            Either::Left(Err(e)) => return self.error("nodes (registration check)", &e),
        };
        if listed {
            return;
        }
        match race(self.inner.broker.register(&self.inner.endpoint, &self.inner.capabilities), until.cancelled()).await {
            Either::Right(()) => {}
            Either::Left(Ok(id)) => {
                *self.inner.id.borrow_mut() = id;
                self.inner.stats.borrow_mut().reregistrations += 1;
            }
            Either::Left(Err(e)) => self.error("register again", &e),
        }
    }

    async fn work_loop(&self, run: &Run, o: ListenOptions) {
        let mut idle = FIRST_POLL_MS.min(o.poll_interval);
        let mut backoff = o.poll_interval.max(500);
        while !run.stop.is_cancelled() {
            // Not raced with stop: a claim that reached the registry may have assigned
            // a job to us, which must then be run and reported.
            let wait = match self.inner.broker.claim(&self.id()).await {
                Ok(Some(job)) => {
                    self.inner.stats.borrow_mut().claimed += 1;
                    self.serve(&job).await;
                    idle = FIRST_POLL_MS.min(o.poll_interval);
                    backoff = o.poll_interval.max(500);
                    continue;
                }
                Ok(None) => {
                    self.inner.stats.borrow_mut().polls += 1;
                    let w = idle;
                    idle = (idle * 2).min(o.poll_interval);
                    backoff = o.poll_interval.max(500);
                    w
                }
                Err(e) => {
                    self.error("claim", &e);
                    let w = backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF_MS);
                    w
                }
            };
            if self.pause(run, wait).await {
                break;
            }
        }
    }

    /// Run one claimed job on the worker, checked under `'low'`.
    pub async fn execute(&self, job: &crate::api::broker::ClaimedJob) -> Result<(String, JobResult)> {
        let mut b = JobBuilder::new().code(job.code.as_bytes().to_vec())?.args(job.args.clone())?.consensus("low")?;
        if let Some(i) = job.interpreter.as_deref().filter(|i| !i.is_empty()) {
            b = b.interpreter(i)?;
        }
        let execution = self.inner.client.submit(&b).await?;
        let result = execution.wait().await?;
        Ok((execution.id().to_string(), result))
    }

    /// Run one claimed job and report it; never fails (errors are counted).
    async fn serve(&self, job: &crate::api::broker::ClaimedJob) {
        let mut body = json!({"node_id": self.id(), "job_id": job.id});
        let exit_code = match self.execute(job).await {
            Ok((worker_job_id, r)) => {
                body["output"] = json!(r.stdout);
                body["error"] = json!(r.stderr);
                body["exit_code"] = json!(r.exit_code);
                body["worker_job_id"] = json!(worker_job_id);
                body["proof"] = serde_json::to_value(&r.proof).unwrap_or(Value::Null);
                r.exit_code
            }
            Err(e) => {
                self.error(&format!("job {}", job.id), &e);
                body["output"] = json!("");
                body["error"] = json!(format!("sandrun node {} could not run this job: {e}", self.id()));
                body["exit_code"] = json!(-1);
                -1
            }
        };
        let mut wait = 500;
        for attempt in 1..=COMPLETE_ATTEMPTS {
            match self.complete(&body).await {
                Ok(()) => {
                    let mut s = self.inner.stats.borrow_mut();
                    if exit_code == 0 {
                        s.completed += 1;
                    } else {
                        s.failed += 1;
                    }
                    return;
                }
                Err(e) => {
                    self.error(&format!("complete {}", job.id), &e);
                    if attempt < COMPLETE_ATTEMPTS {
                        self.inner.client.platform().sleep(wait).await;
                        wait *= 2;
                    }
                }
            }
        }
        self.inner.stats.borrow_mut().failed += 1;
    }

    /// `POST /complete` with the extension fields (`proof`, `worker_job_id`) that a
    /// reference broker ignores.
    async fn complete(&self, body: &Value) -> Result<()> {
        let b = &self.inner.broker;
        let mut req = HttpRequest::post(format!("{}/complete", b.base), "application/json", body.to_string().into_bytes()).timeout(BROKER_TIMEOUT_MS);
        req.headers.extend(self.inner.headers.iter().cloned());
        let resp = self.inner.client.platform().http(req).await?;
        if !(200..300).contains(&resp.status) {
            return Err(status_error(resp.status, &resp.body, "registry complete"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps() -> NodeCapabilities {
        serde_json::from_value(json!({
            "gpu": { "type": "rtx4090", "memory": "24GB", "count": 2 },
            "cpu": { "cores": 16, "memory": "64GB" },
            "storage": "1TB"
        }))
        .unwrap()
    }

    fn binding() -> PayoutBinding {
        use base64::Engine;
        PayoutBinding { chain_id: 31337, signature: base64::engine::general_purpose::STANDARD.encode([7u8; 64]) }
    }

    #[test]
    fn builds_the_registry_capabilities() {
        let b = NodeBuilder::new()
            .capabilities(caps())
            .unwrap()
            .region("us-west-2")
            .unwrap()
            .pricing(serde_json::from_value(json!({"gpu": "0.5/hour", "cpu": 0.1})).unwrap())
            .unwrap()
            .payout("0x00000000000000000000000000000000000000aB", &binding())
            .unwrap();
        let c = b.spec().capabilities_json().unwrap();
        assert_eq!(
            c,
            json!({
                "cpu_cores": 16, "memory_gb": 64, "gpu": {"type": "rtx4090", "memory": 24, "count": 2},
                "interpreters": ["python3", "node", "bash"], "storage": 1024, "region": "us-west-2",
                "pricing": {"cpu": "0.1/hour", "gpu": "0.5/hour"}, "payout": "0x00000000000000000000000000000000000000aB",
                "payout_chain_id": 31337, "payout_signature": binding().signature
            })
        );
        // Discovery reads these fields back.
        let d: crate::pool::DiscoveryCriteria = serde_json::from_value(json!({"minGPUs": 2, "gpuType": "RTX", "gpuMemory": "24GB", "region": "us-west-2", "maxPrice": "0.1/hour"})).unwrap();
        assert!(d.matches(&c));
    }

    #[test]
    fn builders_are_immutable_and_validate() {
        let a = NodeBuilder::new();
        let b = a.region("eu-west").unwrap();
        assert_eq!(a.spec().region, None);
        assert_eq!(b.spec().region.as_deref(), Some("eu-west"));
        let bad: Vec<Result<NodeBuilder>> = vec![
            a.region(""),
            a.region("us west"),
            a.payout("0x123", &binding()),
            a.payout("0xZZ00000000000000000000000000000000000000", &binding()),
            a.payout("0x00000000000000000000000000000000000000aB", &PayoutBinding { chain_id: 0, ..binding() }),
            a.payout("0x00000000000000000000000000000000000000aB", &PayoutBinding { signature: "c2ln".into(), ..binding() }),
            a.payout("0x00000000000000000000000000000000000000aB", &PayoutBinding { signature: "not base64!".into(), ..binding() }),
            a.endpoint("ftp://x"),
            a.endpoint(""),
            a.interpreters(vec![]),
            a.interpreters(vec!["ruby".into()]),
            a.pricing(NodePricing::default()),
            a.pricing(serde_json::from_value(json!({"cpu": "cheap"})).unwrap()),
            a.pricing(serde_json::from_value(json!({"cpu": "0.1/fortnight"})).unwrap()),
            a.capabilities(serde_json::from_value(json!({"gpu": {"type": "a100", "count": 0}})).unwrap()),
            a.capabilities(serde_json::from_value(json!({"gpu": {"type": "", "count": 1}})).unwrap()),
            a.capabilities(serde_json::from_value(json!({"cpu": {"memory": "lots"}})).unwrap()),
            a.capabilities(serde_json::from_value(json!({"storage": -1})).unwrap()),
        ];
        for r in bad {
            assert_eq!(r.unwrap_err().code, crate::ErrorCode::InvalidArgument);
        }
        assert!(serde_json::from_value::<NodeCapabilities>(json!({"gpus": {}})).is_err());
        assert_eq!(a.endpoint("http://h:1/").unwrap().spec().endpoint.as_deref(), Some("http://h:1"));
    }

    #[test]
    fn listen_options_default_and_validate() {
        let o: ListenOptions = serde_json::from_value(json!({"pollInterval": 100})).unwrap();
        assert_eq!(o, ListenOptions { heartbeat_interval: DEFAULT_HEARTBEAT_MS, poll_interval: 100 });
        assert!(ListenOptions { heartbeat_interval: 60_000, poll_interval: 100 }.validate().is_err());
        assert!(ListenOptions::default().validate().is_ok());
    }

    /// The loop against an in-memory registry and worker (`/health`): heartbeats, polls,
    /// errors counted while the registry is down, reports of jobs the SDK refuses, stop().
    mod looping {
        use super::super::*;
        use crate::config::SandrunConfig;
        use crate::platform::{HttpResponse, LocalFuture, Platform, WebSocket};
        use std::cell::RefCell;

        /// A registry like the reference broker: it answers a heartbeat for a node it does
        /// not know with 200, and `registered` is what `/nodes` lists (cleared: a restart
        /// with an empty database).
        #[derive(Default)]
        struct Fake {
            down: Cell<bool>,
            jobs: RefCell<Vec<Value>>,
            completes: RefCell<Vec<Value>>,
            heartbeats: Cell<u32>,
            registered: RefCell<Vec<Value>>,
            registers: Cell<u32>,
            node_lists: Cell<u32>,
        }

        impl Platform for Fake {
            fn http(&self, req: HttpRequest) -> LocalFuture<'_, Result<HttpResponse>> {
                Box::pin(async move {
                    let path = req.url.split_once("://").map(|(_, r)| &r[r.find('/').unwrap_or(r.len())..]).unwrap_or("");
                    let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
                    let answer = match path {
                        "/health" => json!({"status": "healthy", "worker_id": "AAAA"}),
                        _ if self.down.get() => return Err(Error::network("connection refused")),
                        "/register" => {
                            self.registers.set(self.registers.get() + 1);
                            self.registered.borrow_mut().retain(|n| n["id"] != "n1");
                            self.registered.borrow_mut().push(json!({"id": "n1", "endpoint": body["endpoint"], "capabilities": body["capabilities"], "active": 1}));
                            json!({"node_id": "n1"})
                        }
                        "/nodes" => {
                            self.node_lists.set(self.node_lists.get() + 1);
                            json!({"nodes": *self.registered.borrow()})
                        }
                        "/heartbeat" => {
                            self.heartbeats.set(self.heartbeats.get() + 1);
                            json!({"status": "ok"})
                        }
                        "/claim" => json!({"job": self.jobs.borrow_mut().pop()}),
                        "/complete" => {
                            self.completes.borrow_mut().push(body);
                            json!({"status": "ok"})
                        }
                        p => panic!("unexpected request {p}"),
                    };
                    Ok(HttpResponse { status: 200, headers: vec![], body: answer.to_string().into_bytes() })
                })
            }
            fn sleep(&self, ms: u64) -> LocalFuture<'_, ()> {
                Box::pin(tokio::time::sleep(std::time::Duration::from_millis(ms)))
            }
            fn now_ms(&self) -> f64 {
                0.0
            }
            fn websocket(&self, _: &str) -> LocalFuture<'_, Result<Option<Box<dyn WebSocket>>>> {
                Box::pin(async { Ok(None) })
            }
            fn read_file(&self, _: &str) -> LocalFuture<'_, Result<Vec<u8>>> {
                unimplemented!()
            }
            fn read_dir(&self, _: &str) -> LocalFuture<'_, Result<Vec<(String, bool)>>> {
                unimplemented!()
            }
            fn write_file(&self, _: &str, _: &[u8]) -> LocalFuture<'_, Result<()>> {
                unimplemented!()
            }
        }

        async fn pause(ms: u64) {
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }

        #[tokio::test(flavor = "current_thread")]
        async fn heartbeats_polls_counts_errors_and_stops() {
            let fake = Rc::new(Fake::default());
            let config = SandrunConfig { api_endpoint: Some("http://w:1".into()), registry_endpoint: Some("http://reg:2".into()), ..Default::default() };
            let client = Sandrun::new(config, fake.clone()).unwrap();
            let local = tokio::task::LocalSet::new();
            local
                .run_until(async {
                    let node = register(&client, NodeBuilder::new().region("r").unwrap().spec()).await.unwrap();
                    assert_eq!((node.id().as_str(), node.worker_id(), node.endpoint()), ("n1", "AAAA", "http://w:1"));
                    assert_eq!(node.capabilities()["sandrun_endpoint"], "http://w:1");
                    let o = ListenOptions { heartbeat_interval: 100, poll_interval: 20 };
                    tokio::task::spawn_local(node.start(o).unwrap());
                    assert!(node.start(o).is_none(), "one loop at a time");
                    node.started().await;
                    assert_eq!(node.stats().heartbeats, 1);
                    pause(250).await;
                    let s = node.stats();
                    assert!(s.heartbeats >= 2 && s.polls >= 3 && s.errors == 0 && s.running, "{s:?}");
                    // A job the SDK refuses is reported failed with the reason.
                    fake.jobs.borrow_mut().push(json!({"id": "j1", "code": "puts 1", "interpreter": "ruby", "args": []}));
                    pause(100).await;
                    let c = fake.completes.borrow()[0].clone();
                    assert_eq!((c["node_id"].as_str(), c["job_id"].as_str(), c["exit_code"].as_i64()), (Some("n1"), Some("j1"), Some(-1)));
                    assert!(c["error"].as_str().unwrap().contains("INVALID_ARGUMENT"), "{c}");
                    assert_eq!((node.stats().claimed, node.stats().failed), (1, 1));
                    // The registry goes down: counted, not thrown; the loop keeps going.
                    fake.down.set(true);
                    pause(150).await;
                    let s = node.stats();
                    assert!(s.errors >= 2 && s.running && s.last_error.as_deref().unwrap_or("").contains("NETWORK"), "{s:?}");
                    fake.down.set(false);
                    node.stop().await;
                    let frozen = node.stats();
                    assert!(!frozen.running);
                    let hb = fake.heartbeats.get();
                    pause(250).await;
                    assert_eq!(node.stats(), frozen);
                    assert_eq!(fake.heartbeats.get(), hb);
                    // A dropped loop future still marks the node stopped.
                    drop(node.start(o).unwrap());
                    assert!(!node.is_running());
                    node.stop().await;
                })
                .await;
        }

        #[tokio::test(flavor = "current_thread")]
        async fn a_payout_whose_signature_does_not_verify_is_not_registered() {
            use base64::Engine;
            let fake = Rc::new(Fake::default());
            let config = SandrunConfig { api_endpoint: Some("http://w:1".into()), registry_endpoint: Some("http://reg:2".into()), ..Default::default() };
            let client = Sandrun::new(config, fake.clone()).unwrap();
            let sig = base64::engine::general_purpose::STANDARD.encode([7u8; 64]);
            let spec = NodeBuilder::new().payout("0x00000000000000000000000000000000000000aB", &PayoutBinding { chain_id: 31337, signature: sig }).unwrap();
            let e = register(&client, spec.spec()).await.err().expect("refused");
            assert_eq!(e.code, crate::ErrorCode::InvalidArgument);
            assert!(e.message.contains("sandrun-payout-v1|31337|0x00000000000000000000000000000000000000ab"), "{}", e.message);
            assert_eq!(fake.registers.get(), 0, "nothing was registered");
        }

        #[tokio::test(flavor = "current_thread")]
        async fn registers_again_when_the_registry_forgets_it() {
            let fake = Rc::new(Fake::default());
            let config = SandrunConfig { api_endpoint: Some("http://w:1".into()), registry_endpoint: Some("http://reg:2".into()), ..Default::default() };
            let client = Sandrun::new(config, fake.clone()).unwrap();
            let local = tokio::task::LocalSet::new();
            local
                .run_until(async {
                    let node = register(&client, NodeBuilder::new().region("r").unwrap().spec()).await.unwrap();
                    assert_eq!(fake.registers.get(), 1);
                    let o = ListenOptions { heartbeat_interval: 100, poll_interval: 20 };
                    tokio::task::spawn_local(node.start(o).unwrap());
                    node.started().await;
                    // The registry restarts with an empty database; heartbeats still get 200.
                    fake.registered.borrow_mut().clear();
                    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
                    while fake.registered.borrow().is_empty() && std::time::Instant::now() < deadline {
                        pause(10).await;
                    }
                    let listed = fake.registered.borrow().first().cloned().expect("the node registered again");
                    assert_eq!(fake.registers.get(), 2);
                    assert_eq!(listed["id"], "n1");
                    assert_eq!(&listed["capabilities"], node.capabilities(), "same capabilities");
                    assert_eq!(listed["endpoint"], "http://w:1");
                    assert_eq!(node.stats().reregistrations, 1);
                    // Listed again: no more registrations.
                    pause(500).await;
                    assert_eq!(fake.registers.get(), 2);
                    assert!(fake.node_lists.get() >= 2, "the listing is checked periodically");
                    node.stop().await;
                })
                .await;
        }
    }

}
