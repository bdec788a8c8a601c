//! `Sandrun`: configuration plus the host platform; the entry point of the core.

use crate::api::WorkerClient;
use crate::config::SandrunConfig;
use crate::error::{Error, ErrorCode, Result};
use crate::execution::JobExecution;
use crate::job::{prepare::prepare, JobBuilder, PreparedJob};
use crate::platform::Platform;
use crate::plugin::{plugin_failed, KnownOrigins, Middleware, MiddlewarePlatform, Plugin};
use crate::pool::{DiscoveryCriteria, Pool, PoolSpec, PooledRun};
use crate::types::{ConsensusLevel, JobEstimate, JobResult};
use std::cell::Cell;
use std::rc::Rc;

/// A submitted job: on one worker, or replicated over a pool for consensus.
#[derive(Clone)]
pub enum Submitted {
    Single(JobExecution),
    Pooled(PooledRun),
}

/// Longest a 429 wait is honoured before giving up, so a script never hangs for an hour.
pub const MAX_RATE_LIMIT_WAIT_MS: u64 = 65_000;

/// One registration with `use` or `with`, in order.
#[derive(Clone)]
pub enum Layer {
    Plugin(Rc<dyn Plugin>),
    Middleware(Rc<dyn Middleware>),
}

/// A configured client. Cheap to clone; `configure`, `use_plugin` and `with_middleware`
/// return a new one and leave this one unchanged.
#[derive(Clone)]
pub struct Sandrun {
    config: Rc<SandrunConfig>,
    /// The host platform, without middleware.
    base: Rc<dyn Platform>,
    /// `base` behind the middleware chain: what every client uses.
    platform: Rc<dyn Platform>,
    layers: Rc<Vec<Layer>>,
    /// `on_init` for this configuration: 0 not run, 1 running, 2 done.
    initialized: Rc<Cell<u8>>,
    /// The user's wallet (EIP-1193), for payments.
    wallet: Option<Rc<dyn crate::chain::Wallet>>,
    /// The local GPU's probe, cached for this client and those derived from it.
    gpu: Rc<crate::gpu::GpuState>,
}

impl Sandrun {
    /// Validate the config now, so a typo fails here and not at submit.
    pub fn new(config: SandrunConfig, platform: Rc<dyn Platform>) -> Result<Sandrun> {
        config.validate()?;
        Ok(Sandrun { config: Rc::new(config), base: platform.clone(), platform, layers: Rc::default(), initialized: Rc::default(), wallet: None, gpu: Rc::default() }.rebound())
    }

    fn with_layer(&self, layer: Layer) -> Sandrun {
        let mut layers = (*self.layers).clone();
        layers.push(layer);
        Sandrun { layers: Rc::new(layers), initialized: Rc::default(), ..self.clone() }.rebound()
    }

    /// Every middleware, outermost first (plugins bring theirs).
    fn chain(&self) -> Vec<Rc<dyn Middleware>> {
        self.layers
            .iter()
            .filter_map(|l| match l {
                Layer::Middleware(m) => Some(m.clone()),
                Layer::Plugin(p) => p.middleware(),
            })
            .collect()
    }

    /// The platform rebuilt for this client's layers and config, so that each request's
    /// `service` (which decides who gets credentials) follows the configured origins.
    fn rebound(self) -> Sandrun {
        let mut chain = self.chain();
        // The config's credentials go innermost, so user middleware sees the request
        // without them (a logging middleware never has them to leak).
        if let Some(auth) = crate::plugin::ConfigAuth::of(&self.config) {
            chain.push(Rc::new(auth));
        }
        let platform: Rc<dyn Platform> =
            if chain.is_empty() { self.base.clone() } else { Rc::new(MiddlewarePlatform::new(self.base.clone(), chain, KnownOrigins::of(&self.config))) };
        Sandrun { platform, ..self }
    }

    /// A new client paying through `wallet`.
    pub fn with_wallet(&self, wallet: Rc<dyn crate::chain::Wallet>) -> Sandrun {
        Sandrun { wallet: Some(wallet), ..self.clone() }
    }

    pub fn wallet(&self) -> Option<Rc<dyn crate::chain::Wallet>> {
        self.wallet.clone()
    }

    /// A new client with `plugin` after the ones it has.
    pub fn use_plugin(&self, plugin: Rc<dyn Plugin>) -> Sandrun {
        self.with_layer(Layer::Plugin(plugin))
    }

    /// A new client with `middleware` inside the ones it has (the first is outermost).
    pub fn with_middleware(&self, middleware: Rc<dyn Middleware>) -> Sandrun {
        self.with_layer(Layer::Middleware(middleware))
    }

    fn plugins(&self) -> impl Iterator<Item = Rc<dyn Plugin>> + '_ {
        self.layers.iter().filter_map(|l| match l {
            Layer::Plugin(p) => Some(p.clone()),
            Layer::Middleware(_) => None,
        })
    }

    /// Run every plugin's `on_init` once for this configuration; operations started while
    /// it runs wait for it. If it fails, the next operation tries again.
    pub async fn init(&self) -> Result<()> {
        loop {
            match self.initialized.get() {
                2 => return Ok(()),
                1 => self.platform.sleep(5).await,
                _ => break,
            }
        }
        self.initialized.set(1);
        for p in self.plugins() {
            let name = p.name();
            if let Err(e) = p.on_init((*self.config).clone()).await {
                self.initialized.set(0);
                return Err(plugin_failed(&name, "onInit", e));
            }
        }
        self.initialized.set(2);
        Ok(())
    }

    /// `on_submit` of every plugin, in order; each may rewrite the job.
    pub async fn hook_submit(&self, job: &JobBuilder) -> Result<JobBuilder> {
        self.init().await?;
        let mut job = job.clone();
        for p in self.plugins() {
            let name = p.name();
            let d = p.on_submit(job.describe()).await.map_err(|e| plugin_failed(&name, "onSubmit", e))?;
            job = job.apply(&d).map_err(|e| plugin_failed(&name, "onSubmit", e))?;
        }
        Ok(job)
    }

    /// `on_result` (may rewrite) or `on_error` (may replace) of every plugin, in order.
    pub async fn hook_outcome(&self, outcome: Result<JobResult>, context: serde_json::Value) -> Result<JobResult> {
        let mut outcome = outcome;
        if let Ok(mut r) = outcome {
            outcome = Ok(r.clone());
            for p in self.plugins() {
                let name = p.name();
                match p.on_result(r).await {
                    Ok(next) => r = next,
                    Err(e) => {
                        outcome = Err(plugin_failed(&name, "onResult", e));
                        break;
                    }
                }
                outcome = Ok(r.clone());
            }
        }
        match outcome {
            Ok(r) => Ok(r),
            Err(mut e) => {
                for p in self.plugins() {
                    let name = p.name();
                    e = p.on_error(e, context.clone()).await.map_err(|x| plugin_failed(&name, "onError", x))?;
                }
                Err(e)
            }
        }
    }

    /// This client's GPU state (the cached probe).
    pub fn gpu_state(&self) -> &crate::gpu::GpuState {
        &self.gpu
    }

    pub fn config(&self) -> &SandrunConfig {
        &self.config
    }

    pub fn platform(&self) -> &Rc<dyn Platform> {
        &self.platform
    }

    /// A new client with `partial` merged over this one's config (plugins kept; their
    /// `on_init` runs again for the new configuration).
    pub fn configure(&self, partial: &SandrunConfig) -> Result<Sandrun> {
        let config = self.config.merged(partial);
        config.validate()?;
        Ok(Sandrun { config: Rc::new(config), initialized: Rc::default(), ..self.clone() }.rebound())
    }

    /// The same client aimed at another worker (same plugins and initialization).
    pub fn for_worker(&self, endpoint: &str) -> Sandrun {
        let mut c = (*self.config).clone();
        c.api_endpoint = Some(endpoint.to_string());
        Sandrun { config: Rc::new(c), ..self.clone() }.rebound()
    }

    /// A client for the configured worker.
    pub fn worker(&self) -> WorkerClient {
        WorkerClient::new(&self.config.endpoint(), self.platform.clone())
    }

    /// The consensus level a job runs under.
    pub fn level_of(&self, job: &JobBuilder) -> ConsensusLevel {
        job.spec().consensus.unwrap_or_else(|| self.config.default_consensus())
    }

    /// Resolve a job's sources into what will be sent.
    pub async fn prepare(&self, job: &JobBuilder) -> Result<PreparedJob> {
        prepare(job.spec(), self.platform.as_ref(), &self.config, self.level_of(job).verifies()).await
    }

    /// Submit with payment: the escrow is opened first (a rejected wallet request means
    /// nothing is submitted), and refunded at once if the submission fails.
    pub async fn submit_paid(&self, job: &JobBuilder, pool: Option<&Pool>) -> Result<(Submitted, Option<Rc<crate::chain::pay::PaidJob>>)> {
        let job = &self.hook_submit(job).await?;
        // Prepared once: sources (files, archives) are read and hashed a single time.
        let prepared = Rc::new(self.prepare(job).await?);
        let Some(request) = job.spec().payment.clone() else {
            return Ok((self.submit_hooked(job, pool, prepared).await?, None));
        };
        let paid = Rc::new(crate::chain::pay::open(self, &prepared.job_hash, prepared.timeout_secs, &request).await?);
        match self.submit_hooked(job, pool, prepared).await {
            Ok(s) => Ok((s, Some(paid))),
            Err(e) => {
                let refunded = paid.refund().await;
                let e = e.with_details(serde_json::json!({"cost": paid.info()}));
                match refunded {
                    Ok(()) => Err(e),
                    // The refund's details (escrow key, transactions) let the user settle later.
                    Err(r) => Err(crate::chain::pay::merge_details(
                        Error { details: r.details, ..Error::new(ErrorCode::PaymentFailed, format!("{} (and the refund failed: {})", e.message, r.message)) },
                        serde_json::json!({"cost": paid.info()}),
                    )),
                }
            }
        }
    }

    /// Prepare and submit to the configured worker. A 429 proves no job was created,
    /// so it is retried after the worker's wait (`defaults.retries` times, default 2;
    /// none while a middleware owns retries, e.g. `retryPlugin`).
    /// Quorum levels and payments go through [`Self::submit_paid`].
    pub async fn submit(&self, job: &JobBuilder) -> Result<JobExecution> {
        if let ConsensusLevel::Quorum { k, n } = self.level_of(job) {
            return Err(Error::invalid(format!("consensus {k}-of-{n} runs on {n} workers: submit it through a pool")));
        }
        let prepared = Rc::new(self.prepare(job).await?);
        if let Some(req) = &job.spec().gpu {
            if let Submitted::Single(ex) = crate::pool::placement::submit_gpu(self, req, job.spec().consensus, None, prepared.clone()).await? {
                return Ok(ex);
            }
        }
        self.submit_prepared(prepared, self.level_of(job)).await
    }

    /// Submit through `pool` if given; else a quorum level discovers a pool from the
    /// registry (`registryEndpoint`); else the configured worker. Plugins' `on_submit` ran.
    async fn submit_hooked(&self, job: &JobBuilder, pool: Option<&Pool>, prepared: Rc<PreparedJob>) -> Result<Submitted> {
        // A gpu() job goes only where a registry entry declares a matching GPU.
        if let Some(req) = &job.spec().gpu {
            return crate::pool::placement::submit_gpu(self, req, job.spec().consensus, pool, prepared).await;
        }
        if let Some(p) = pool {
            // The job's own level, else the pool's strategy.
            return Ok(Submitted::Pooled(p.start(job.spec().consensus, prepared).await?));
        }
        match self.level_of(job) {
            ConsensusLevel::Quorum { k, n } => {
                if self.config.registry_endpoint.is_none() {
                    return Err(Error::invalid(format!(
                        "consensus {k}-of-{n} runs on {n} workers: set registryEndpoint so the SDK can discover them, or use .with(pool)"
                    )));
                }
                let criteria = DiscoveryCriteria { interpreters: Some(vec![prepared.interpreter.clone()]), ..Default::default() };
                let spec = PoolSpec { discover: Some(criteria), ..Default::default() };
                let pool = crate::pool::join(self, &spec).await?;
                Ok(Submitted::Pooled(pool.start(Some(self.level_of(job)), prepared).await?))
            }
            level => Ok(Submitted::Single(self.submit_prepared(prepared, level).await?)),
        }
    }

    pub async fn submit_prepared(&self, prepared: Rc<PreparedJob>, level: ConsensusLevel) -> Result<JobExecution> {
        let worker = self.worker();
        // One retry budget per operation: while a middleware owns retries (retryPlugin),
        // it alone decides, so the attempts the worker sees are the ones it allows.
        let retries = if crate::plugin::retries_owned(&self.chain()) { 0 } else { self.config.defaults.as_ref().and_then(|d| d.retries).unwrap_or(2) };
        let mut attempt = 0u32;
        loop {
            let started = self.platform.now_ms();
            let seed = started.to_bits() ^ u64::from_str_radix(&prepared.job_hash[..16], 16).unwrap_or(0);
            match worker.submit(&prepared, seed).await {
                Ok(id) => return Ok(JobExecution::new(worker, id, prepared, level, started)),
                Err(e) if e.code == ErrorCode::RateLimited && attempt < retries => {
                    let wait = e.retry_after_ms.unwrap_or(1000u64 << attempt.min(20)).min(MAX_RATE_LIMIT_WAIT_MS);
                    self.platform.sleep(wait).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// What the job will cost and take, without submitting it.
    pub async fn estimate(&self, job: &JobBuilder) -> Result<JobEstimate> {
        self.estimate_with(job, None).await
    }

    /// [`Self::estimate`] for a job that runs `with(pool)`: the pool's n (the job's level
    /// or the pool's strategy, raised by its redundancy) and its own workers' prices.
    pub async fn estimate_with(&self, job: &JobBuilder, pool: Option<&Pool>) -> Result<JobEstimate> {
        self.init().await?;
        let p = self.prepare(job).await?;
        let level = self.level_of(job);
        let workers = match pool {
            Some(pool) => pool.quorum(job.spec().consensus).1,
            None => level.workers(),
        };
        let payment = job.spec().payment.clone();
        let members: Option<Vec<crate::api::broker::NodeRecord>> = pool.map(|pool| {
            pool.nodes
                .iter()
                .map(|n| crate::api::broker::NodeRecord { id: n.id.clone(), endpoint: n.endpoint.clone(), capabilities: n.capabilities.clone(), active: 1, ..Default::default() })
                .collect()
        });
        Ok(JobEstimate {
            workers,
            max_seconds: p.timeout_secs,
            upload_bytes: p.archive()?.len() as u64,
            interpreter: p.interpreter.clone(),
            entrypoint: p.entrypoint.clone(),
            job_hash: p.job_hash.clone(),
            max_cost: payment.as_ref().map(|p| p.amount.clone()).unwrap_or_else(|| "0".into()),
            token: payment.as_ref().map(|p| p.token.clone()).unwrap_or_else(|| "ETH".into()),
            worker_cost: self.worker_cost(&p, workers, job.spec().gpu.is_some(), members).await,
            gas_price_wei: None,
            gas_cost: None,
            placement: Some(crate::pool::placement::estimate_placement(self, job.spec().gpu.as_ref(), &p.interpreter, workers, pool).await),
            local_gpu: match &job.spec().gpu {
                Some(req) => Some(crate::gpu::local_estimate_for(&self.gpu, self.platform.as_ref(), req).await),
                None => None,
            },
        }
        .with_gas(self.gas_estimate(payment.as_ref().is_some_and(|p| p.token != "ETH"), workers).await))
    }

    /// Cheapest and dearest total of the priced workers that run `p`: the pool's members
    /// when given, else the registry's nodes.
    async fn worker_cost(&self, p: &PreparedJob, workers: u32, gpu: bool, members: Option<Vec<crate::api::broker::NodeRecord>>) -> Option<crate::types::PriceRange> {
        let nodes = match members {
            Some(m) => m,
            None => {
                let reg = self.config.registry_endpoint.clone()?;
                crate::api::BrokerClient::new(&reg, self.platform.clone()).nodes().await.ok()?
            }
        };
        let hours = p.timeout_secs / 3600.0;
        let kind = if gpu { "gpu" } else { "cpu" };
        let mut prices: Vec<f64> = nodes
            .iter()
            .filter(|n| n.active == 1)
            .filter(|n| n.capabilities["interpreters"].as_array().is_none_or(|a| a.iter().any(|i| i.as_str() == Some(&p.interpreter))))
            .filter_map(|n| n.capabilities["pricing"][kind].as_str().and_then(|s| s.split('/').next()).and_then(|x| x.trim().parse::<f64>().ok()))
            .collect();
        if prices.is_empty() {
            return None;
        }
        prices.sort_by(|a, b| a.total_cmp(b));
        let n = workers as usize;
        // The cheapest n and the dearest n eligible workers, for the whole timeout.
        let low: f64 = prices.iter().take(n).sum::<f64>() * hours;
        let high: f64 = prices.iter().rev().take(n).sum::<f64>() * hours;
        Some(crate::types::PriceRange { low, high })
    }

    /// (gas price in wei, gas cost in ETH) of approve (ERC-20) + open + release to `payees`.
    async fn gas_estimate(&self, erc20: bool, payees: u32) -> Option<(u128, f64)> {
        let wallet = self.wallet.clone()?;
        let price = crate::chain::quantity(&wallet.request("eth_gasPrice", serde_json::json!([])).await.ok()?).ok()?;
        // Measured on anvil: approve ~46k, open ~90k (ETH) / ~105k (ERC-20), release ~45k + ~30k per payee.
        let gas = if erc20 { 46_000 + 105_000 } else { 90_000 } + 45_000 + 30_000 * payees as u128;
        Some((price, (gas * price) as f64 / 1e18))
    }
}
