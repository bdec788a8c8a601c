//! `Sandrun`, the client's context: configuration, the host platform behind the
//! middleware chain, the plugins' hooks, the wallet and the GPU probe, plus submitting a
//! prepared job to one worker. Everything below the client (pools, payments, IPFS, nodes)
//! takes this context and nothing above it; the orchestration that uses those modules
//! (payments, pools, estimates) is in [`crate::client`], on top.

use crate::api::WorkerClient;
use crate::config::SandrunConfig;
use crate::error::{ErrorCode, Result};
use crate::execution::JobExecution;
use crate::job::{prepare::prepare, JobBuilder, PreparedJob};
use crate::platform::{Platform, Wallet};
use crate::plugin::{plugin_failed, KnownOrigins, Middleware, MiddlewarePlatform, Plugin};
use crate::types::{ConsensusLevel, JobResult};
use std::cell::Cell;
use std::rc::Rc;

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
    wallet: Option<Rc<dyn Wallet>>,
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
    pub(crate) fn chain(&self) -> Vec<Rc<dyn Middleware>> {
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
    pub fn with_wallet(&self, wallet: Rc<dyn Wallet>) -> Sandrun {
        Sandrun { wallet: Some(wallet), ..self.clone() }
    }

    pub fn wallet(&self) -> Option<Rc<dyn Wallet>> {
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

    /// IPFS through this client's `ipfsGateway` and `ipfsApi`, on its platform.
    pub fn ipfs(&self) -> crate::ipfs::Ipfs {
        crate::ipfs::Ipfs::with(self.platform.clone(), self.config.ipfs_gateway.clone(), self.config.ipfs_api.clone())
    }

    /// The consensus level a job runs under.
    pub fn level_of(&self, job: &JobBuilder) -> ConsensusLevel {
        job.spec().consensus.unwrap_or_else(|| self.config.default_consensus())
    }

    /// Resolve a job's sources into what will be sent.
    pub async fn prepare(&self, job: &JobBuilder) -> Result<PreparedJob> {
        prepare(job.spec(), self.platform.as_ref(), &self.config, self.level_of(job).verifies()).await
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
}
