//! The `worker` subcommand: one worker process, started by the orchestrator with its
//! listening socket inherited as a file descriptor (no port race), serving until SIGINT
//! or SIGTERM, then killing its jobs' process groups and removing its jobs directory.

use super::{Worker, WorkerConfig};
use crate::cli::WorkerArgs;
use crate::{die, runtime};
use std::time::Duration;

/// Runs a worker process with the flags the orchestrator passed; never returns.
pub fn main(args: WorkerArgs) {
    let caps = args.merged_capabilities();
    let WorkerArgs { index, listen_fd, port, registry, worker0, fault, common, .. } = args;
    let cfg = WorkerConfig {
        index,
        dir: common.data_dir.join(format!("worker-{index}")),
        job_timeout: Duration::from_secs_f64(common.job_timeout.max(0.001)),
        job_ttl: Duration::from_secs_f64(common.job_ttl.max(0.001)),
        rate_limit: common.rate_limit,
        max_active: common.max_active,
        jobs_per_hour: common.jobs_per_hour,
        cpu_per_minute: common.cpu_per_minute,
        concurrency: common.concurrency.max(1),
        reference_timing: common.reference_timing,
        fault,
        slow_ms: common.slow_ms,
        max_body: (common.max_body_mb * 1024.0 * 1024.0) as usize,
        cpu_limit_secs: common.cpu_limit,
        mem_limit_mb: common.memory_mb,
        output_cap: common.output_cap,
        netns: common.netns,
        registry,
        capabilities: caps,
        heartbeat_secs: common.heartbeat,
        worker0,
    };
    if cfg.netns && unsafe { libc::geteuid() } != 0 {
        eprintln!("worker {index}: not root, jobs keep the host network (no network namespace)");
    }
    let rt = runtime();
    rt.block_on(async move {
        let std_listener = match listen_fd {
            Some(fd) => {
                use std::os::unix::io::FromRawFd;
                unsafe { std::net::TcpListener::from_raw_fd(fd) }
            }
            None => std::net::TcpListener::bind(("127.0.0.1", port)).unwrap_or_else(|e| die(&format!("bind: {e}"))),
        };
        std_listener.set_nonblocking(true).unwrap_or_else(|e| die(&format!("listener: {e}")));
        let port = std_listener.local_addr().map(|a| a.port()).unwrap_or(port);
        let listener = tokio::net::TcpListener::from_std(std_listener).unwrap_or_else(|e| die(&format!("listener: {e}")));
        let fault = cfg.fault;
        let w = Worker::new(cfg, port).unwrap_or_else(|e| die(&format!("worker {index}: {e}")));
        if let Some(Err(e)) = fault.map(|f| w.fault_allowed(f)) {
            die(&format!("worker {index}: {e}"));
        }
        tokio::spawn(w.clone().serve(listener));
        use tokio::signal::unix::{signal, SignalKind};
        let mut sigint = signal(SignalKind::interrupt()).unwrap();
        let mut sigterm = signal(SignalKind::terminate()).unwrap();
        tokio::select! {
            _ = sigint.recv() => {},
            _ = sigterm.recv() => {},
        }
        w.kill_all_jobs();
        w.cleanup();
        std::process::exit(0);
    });
}
