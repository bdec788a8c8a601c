//! The client's orchestration, on top of the layers below: a submission with its
//! payment (escrow opened first, settled after), through a pool or GPU placement, and the
//! estimate. The context it runs in (config, platform, hooks) is [`crate::context`].

use crate::error::{Error, ErrorCode, Result};
use crate::execution::JobExecution;
use crate::job::{JobBuilder, PreparedJob};
use crate::pool::{DiscoveryCriteria, Pool, PoolSpec};
use crate::types::{ConsensusLevel, JobEstimate};
use std::rc::Rc;

pub use crate::context::{Layer, Sandrun, MAX_RATE_LIMIT_WAIT_MS};
pub use crate::pool::Submitted;

impl Sandrun {
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
                if self.config().registry_endpoint.is_none() {
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

    /// `download()`'s result, with its outputs published to IPFS when the job asked for it
    /// (`publish()`); any other result passes through unchanged.
    pub async fn publish_result(&self, job: &PreparedJob, r: Result<crate::types::JobResult>) -> Result<crate::types::JobResult> {
        let mut res = r?;
        if !job.publish {
            return Ok(res);
        }
        if !res.proof.as_ref().is_some_and(|p| p.verified) {
            return Err(Error::invalid("publish(): only verified outputs are published; run the job with a consensus level other than 'none'"));
        }
        let files: Vec<(String, Vec<u8>)> = res.files.iter().filter_map(|f| f.bytes.clone().map(|b| (f.path.clone(), b))).collect();
        res.ipfs = Some(self.ipfs().publish(job.publishable(files), crate::ipfs::add::AddOptions::default()).await?);
        Ok(res)
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
            upload_bytes: p.archive(self.platform().as_ref()).await?.len() as u64,
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
                Some(req) => Some(crate::gpu::local_estimate_for(self.gpu_state(), self.platform().as_ref(), req).await),
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
                let reg = self.config().registry_endpoint.clone()?;
                crate::api::BrokerClient::new(&reg, self.platform().clone()).nodes().await.ok()?
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
        let wallet = self.wallet()?;
        let price = crate::chain::quantity(&wallet.request("eth_gasPrice", serde_json::json!([])).await.ok()?).ok()?;
        // Measured on anvil: approve ~46k, open ~90k (ETH) / ~105k (ERC-20), release ~45k + ~30k per payee.
        let gas = if erc20 { 46_000 + 105_000 } else { 90_000 } + 45_000 + 30_000 * payees as u128;
        Some((price, (gas * price) as f64 / 1e18))
    }
}
