//! One Sandrun-compatible worker: the reference's endpoints, JSON layouts, queue, rate
//! limits and WebSocket stream, plus devnet fault injection and admin endpoints.
//!
//! This file holds the worker's configuration, its shared state ([`Worker`]), its start
//! and its shutdown. The rest, by concern:
//!
//! - [`routes`]: HTTP connections, the router and the response bodies;
//! - [`jobs`]: submit, the queue, running a job and signing its result, deleting jobs;
//! - [`quota`]: the per-client rate limits;
//! - [`files`]: output files, their types and hashes;
//! - [`stream`]: the WebSocket `/stream/{id}`;
//! - [`registration`]: capabilities, payout binding, register and heartbeat;
//! - [`fault`]: the fault modes; [`relay`] and [`hijack`]: the two faults that attack
//!   worker 0;
//! - [`process`]: the `worker` subcommand (the process around a [`Worker`]).

mod fault;
mod files;
mod hijack;
mod jobs;
pub mod process;
mod quota;
mod registration;
mod relay;
mod routes;
mod stream;

pub use fault::Fault;

use crate::sign;
use ed25519_dalek::SigningKey;
use hijack::Hijack;
use jobs::State;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};

/// Everything a worker process is configured with (flags passed by the orchestrator).
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    pub index: usize,
    /// `<data-dir>/worker-<index>`: key.pem and jobs/.
    pub dir: PathBuf,
    pub job_timeout: Duration,
    pub job_ttl: Duration,
    pub rate_limit: bool,
    pub max_active: usize,
    pub jobs_per_hour: usize,
    pub cpu_per_minute: f64,
    pub concurrency: usize,
    pub reference_timing: bool,
    pub fault: Option<Fault>,
    pub slow_ms: u64,
    pub max_body: usize,
    pub cpu_limit_secs: u64,
    pub mem_limit_mb: u64,
    pub output_cap: usize,
    pub netns: bool,
    /// Registry address `host:port` to register with, if any.
    pub registry: Option<String>,
    /// Merged over the default capabilities.
    pub capabilities: serde_json::Value,
    pub heartbeat_secs: u64,
    /// Worker 0's address `host:port`: the target of the `relay` and `hijack-payout` faults.
    pub worker0: Option<String>,
}

/// A running worker.
pub struct Worker {
    cfg: WorkerConfig,
    jobs_dir: PathBuf,
    key: SigningKey,
    worker_id: String,
    url: String,
    fault: Mutex<Option<Fault>>,
    st: Mutex<State>,
    wake: Notify,
    running: watch::Sender<usize>,
    counter: AtomicU64,
    accepted: AtomicU64,
    /// Job ids this worker forwarded to worker 0 (fault `relay`): served from worker 0.
    relayed: Mutex<std::collections::HashSet<String>>,
    /// Fault `hijack-payout`: each attempt and the registry's answer.
    hijack: Mutex<Hijack>,
}

impl Worker {
    /// Loads (or creates) the key, clears stale jobs and prepares the worker.
    pub fn new(cfg: WorkerConfig, port: u16) -> std::io::Result<Arc<Worker>> {
        let key = sign::load_or_create_key(&cfg.dir.join("key.pem"))?;
        let jobs_dir = cfg.dir.join("jobs");
        let _ = std::fs::remove_dir_all(&jobs_dir);
        std::fs::create_dir_all(&jobs_dir)?;
        let worker_id = sign::worker_id(&key);
        let (running, _) = watch::channel(0usize);
        Ok(Arc::new(Worker {
            fault: Mutex::new(cfg.fault),
            cfg,
            jobs_dir,
            key,
            worker_id,
            url: format!("http://127.0.0.1:{port}"),
            st: Mutex::new(State::default()),
            wake: Notify::new(),
            running,
            counter: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            relayed: Mutex::new(Default::default()),
            hijack: Mutex::new(Hijack::default()),
        }))
    }

    /// The key clients and the registry are shown: none under the `anonymous` fault.
    fn public_id(&self) -> Option<&str> {
        if self.fault() == Some(Fault::Anonymous) {
            None
        } else {
            Some(&self.worker_id)
        }
    }

    /// Serves until the process is told to stop.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        tokio::spawn(self.clone().scheduler());
        tokio::spawn(self.clone().reaper());
        if let Some(reg) = self.cfg.registry.clone() {
            tokio::spawn(self.clone().register_loop(reg));
        }
        loop {
            let Ok((s, addr)) = listener.accept().await else { continue };
            let w = self.clone();
            tokio::spawn(async move { w.handle_conn(s, addr.ip()).await });
        }
    }

    /// Kills every running job's process group (shutdown path).
    pub fn kill_all_jobs(&self) {
        let st = self.st.lock().unwrap();
        for j in st.jobs.values() {
            let pg = j.pgid.load(Ordering::SeqCst);
            if pg > 0 {
                unsafe { libc::killpg(pg, libc::SIGKILL) };
            }
        }
    }

    /// Removes the jobs directory (shutdown path).
    pub fn cleanup(&self) {
        let _ = std::fs::remove_dir_all(&self.jobs_dir);
    }

    /// `--reference-timing`: the reference's blocking endpoints wait while any job runs.
    async fn wait_unlocked(&self) {
        if self.cfg.reference_timing {
            let mut rx = self.running.subscribe();
            let _ = rx.wait_for(|n| *n == 0).await;
        }
    }
}
