//! `Sandrun`: configuration plus the host platform; the entry point of the core.

use crate::api::WorkerClient;
use crate::config::SandrunConfig;
use crate::error::{Error, ErrorCode, Result};
use crate::execution::JobExecution;
use crate::job::{prepare::prepare, JobBuilder, PreparedJob};
use crate::platform::Platform;
use crate::types::{ConsensusLevel, JobEstimate};
use std::rc::Rc;

/// Longest a 429 wait is honoured before giving up, so a script never hangs for an hour.
pub const MAX_RATE_LIMIT_WAIT_MS: u64 = 65_000;

/// A configured client. Cheap to clone; `configure` returns a new one.
#[derive(Clone)]
pub struct Sandrun {
    config: Rc<SandrunConfig>,
    platform: Rc<dyn Platform>,
}

impl Sandrun {
    /// Validate the config now, so a typo fails here and not at submit.
    pub fn new(config: SandrunConfig, platform: Rc<dyn Platform>) -> Result<Sandrun> {
        config.validate()?;
        Ok(Sandrun { config: Rc::new(config), platform })
    }

    pub fn config(&self) -> &SandrunConfig {
        &self.config
    }

    pub fn platform(&self) -> &Rc<dyn Platform> {
        &self.platform
    }

    /// A new client with `partial` merged over this one's config.
    pub fn configure(&self, partial: &SandrunConfig) -> Result<Sandrun> {
        Sandrun::new(self.config.merged(partial), self.platform.clone())
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
        prepare(job.spec(), self.platform.as_ref(), &self.config).await
    }

    /// Refuse what this client cannot carry out yet, before anything is sent or paid.
    fn check_supported(&self, job: &JobBuilder) -> Result<()> {
        if let ConsensusLevel::Quorum { k, n } = self.level_of(job) {
            return Err(Error::new(
                ErrorCode::Unsupported,
                format!("consensus {k}-of-{n} needs a pool of {n} workers, and pools are not implemented in this version; use consensus('low') or 'none'"),
            ));
        }
        if job.spec().payment.is_some() {
            return Err(Error::new(
                ErrorCode::Unsupported,
                "payment() is not implemented in this version: nothing was submitted or paid; remove payment() to run unpaid",
            ));
        }
        Ok(())
    }

    /// Prepare and submit to the configured worker. A 429 proves no job was created,
    /// so it is retried after the worker's wait (`defaults.retries` times, default 2).
    pub async fn submit(&self, job: &JobBuilder) -> Result<JobExecution> {
        self.check_supported(job)?;
        let prepared = Rc::new(self.prepare(job).await?);
        self.submit_prepared(prepared, self.level_of(job)).await
    }

    pub async fn submit_prepared(&self, prepared: Rc<PreparedJob>, level: ConsensusLevel) -> Result<JobExecution> {
        let worker = self.worker();
        let retries = self.config.defaults.as_ref().and_then(|d| d.retries).unwrap_or(2);
        let mut attempt = 0u32;
        loop {
            let started = self.platform.now_ms();
            let seed = started.to_bits() ^ u64::from_str_radix(&prepared.job_hash[..16], 16).unwrap_or(0);
            match worker.submit(&prepared, seed).await {
                Ok(id) => return Ok(JobExecution::new(worker, id, prepared, level, started)),
                Err(e) if e.code == ErrorCode::RateLimited && attempt < retries => {
                    let wait = e.retry_after_ms.unwrap_or(1000 << attempt).min(MAX_RATE_LIMIT_WAIT_MS);
                    self.platform.sleep(wait).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// What the job will cost and take, without submitting it.
    pub async fn estimate(&self, job: &JobBuilder) -> Result<JobEstimate> {
        let p = self.prepare(job).await?;
        let level = self.level_of(job);
        let payment = job.spec().payment.clone();
        Ok(JobEstimate {
            workers: level.workers(),
            max_seconds: p.timeout_secs,
            upload_bytes: p.archive()?.len() as u64,
            interpreter: p.interpreter.clone(),
            entrypoint: p.entrypoint.clone(),
            job_hash: p.job_hash.clone(),
            max_cost: payment.as_ref().map(|p| p.amount.clone()).unwrap_or_else(|| "0".into()),
            token: payment.map(|p| p.token).unwrap_or_else(|| "ETH".into()),
        })
    }
}
