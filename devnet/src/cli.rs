//! The command line, declared once with clap: the orchestrator's flags (what a user types)
//! and the hidden `worker` subcommand (what the orchestrator passes to each worker
//! process). The flags both share live in [`Common`], so a worker is configured with
//! exactly the flags its orchestrator was given ([`Common::to_args`]).
//!
//! Spelling and defaults are a contract (devnet/README.md's flag table, the test
//! harnesses and scripts that start the devnet): a later flag replaces an earlier one,
//! `--fault` and `--capabilities` repeat, and the word after a flag is always its value,
//! even when it starts with `-`, as with the hand-written loops this replaced.

use crate::worker::Fault;
use clap::{ArgAction, Args, Parser, Subcommand};
use std::path::PathBuf;

/// `sandrun-devnet [FLAGS]`, or `sandrun-devnet worker [FLAGS]` (internal).
#[derive(Parser, Debug, PartialEq)]
#[command(
    name = "sandrun-devnet",
    about = "sandrun-devnet: a local Sandrun network (workers + registry)",
    override_usage = "sandrun-devnet [FLAGS]",
    args_override_self = true,
    args_conflicts_with_subcommands = true,
    disable_help_subcommand = true
)]
pub struct Cli {
    /// Set only when the orchestrator starts a worker process.
    #[command(subcommand)]
    pub worker: Option<Sub>,
    #[command(flatten)]
    pub net: NetArgs,
    #[command(flatten)]
    pub common: Common,
}

/// The internal subcommand.
#[derive(Subcommand, Debug, PartialEq)]
pub enum Sub {
    /// One worker process (started by the orchestrator, not by hand).
    #[command(hide = true)]
    Worker(WorkerArgs),
}

/// The orchestrator's own flags (the network as a whole).
#[derive(Args, Debug, PartialEq)]
pub struct NetArgs {
    /// number of workers
    #[arg(long, value_name = "N", default_value_t = 3, allow_hyphen_values = true)]
    pub workers: usize,
    /// print exactly one JSON line on stdout once ready
    #[arg(long)]
    pub json: bool,
    /// fixed ports: workers N, N+1, ..., registry after them [default: free ports]
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub port_base: Option<u16>,
    /// fault of worker INDEX (repeatable); MODE: wrong-output | bad-signature | anonymous |
    /// slow | crash | 429 | relay | relay-key | stdout-lie | hijack-payout
    #[arg(long = "fault", value_name = "INDEX=MODE", value_parser = indexed_fault, allow_hyphen_values = true)]
    pub faults: Vec<(usize, Fault)>,
    /// JSON object merged into that worker's registry capabilities (repeatable)
    #[arg(long = "capabilities", value_name = "INDEX=JSON", value_parser = indexed_json, allow_hyphen_values = true)]
    pub capabilities: Vec<(usize, serde_json::Value)>,
    /// worker INDEX declares GPUs in its registry entry (repeatable, one per worker):
    /// TYPE:MEMORY_GB:COUNT, e.g. 1=a100:40:4; its jobs see CUDA_VISIBLE_DEVICES=0..COUNT-1.
    /// With any --gpu, workers without one declare no GPU (no simulated nvidia-t4)
    #[arg(long = "gpu", value_name = "INDEX=TYPE:MEMORY_GB:COUNT", value_parser = indexed_gpu, allow_hyphen_values = true)]
    pub gpus: Vec<(usize, serde_json::Value)>,
    /// registry: node inactive after this long without heartbeat
    #[arg(long, value_name = "SECS", default_value_t = 60, allow_hyphen_values = true)]
    pub node_timeout: u64,
    /// registry accepts any /register, like the reference broker (no payout signature or
    /// record takeover checks)
    #[arg(long = "unchecked-registry", action = ArgAction::SetFalse)]
    pub checked_registry: bool,
    /// also start anvil with the escrow and a test ERC-20 deployed, accounts funded, and a
    /// payout address per worker (JSON line: "chain", "payout")
    #[arg(long)]
    pub chain: bool,
    /// the anvil binary [default: node_modules/.bin/anvil from @foundry-rs/anvil]
    #[arg(long, value_name = "PATH", allow_hyphen_values = true)]
    pub anvil: Option<PathBuf>,
    /// also start a local IPFS node (Helia's UnixFS from npm): a Kubo RPC /api/v0/add and a
    /// trustless gateway (JSON line: "ipfs")
    #[arg(long)]
    pub ipfs: bool,
    /// the IPFS node misbehaves (implies --ipfs); MODE: tamper (the gateway serves wrong bytes
    /// for every block) | wrong-cid (add answers the CID of other bytes)
    #[arg(long, value_name = "MODE", value_parser = ["tamper", "wrong-cid"], allow_hyphen_values = true)]
    pub ipfs_fault: Option<String>,
}

impl NetArgs {
    /// Checks that need more than one flag: every INDEX names a worker, and the faults
    /// aimed at worker 0 are given to another worker.
    pub fn check(&self) -> Result<(), String> {
        let workers = self.workers;
        for i in self.faults.iter().map(|(i, _)| *i).chain(self.capabilities.iter().map(|(i, _)| *i)).chain(self.gpus.iter().map(|(i, _)| *i)) {
            if i >= workers {
                return Err(format!("worker index {i} out of range (0..{workers})"));
            }
        }
        for (k, (i, _)) in self.gpus.iter().enumerate() {
            if self.gpus[..k].iter().any(|(j, _)| j == i) {
                return Err(format!("--gpu {i}=...: worker {i} is given GPUs twice (one --gpu per worker)"));
            }
        }
        for (i, f) in &self.faults {
            if *i == 0 && (f.relays() || *f == Fault::HijackPayout) {
                return Err(format!("--fault {i}={}: this fault targets worker 0; give it to another worker", f.name()));
            }
        }
        Ok(())
    }
}

/// Flags shared by the orchestrator and its workers.
#[derive(Args, Clone, Debug, PartialEq)]
pub struct Common {
    /// keys and jobs
    #[arg(long, value_name = "DIR", default_value = ".devnet-data", allow_hyphen_values = true)]
    pub data_dir: PathBuf,
    /// added latency of the `slow` fault
    #[arg(long, value_name = "MS", default_value_t = 1500, allow_hyphen_values = true)]
    pub slow_ms: u64,
    /// wall timeout per job (fractions allowed)
    #[arg(long, value_name = "SECS", default_value_t = 300.0, allow_hyphen_values = true)]
    pub job_timeout: f64,
    /// jobs are deleted this long after submission
    #[arg(long, value_name = "SECS", default_value_t = 360.0, allow_hyphen_values = true)]
    pub job_ttl: f64,
    /// RLIMIT_CPU per job (0 = none)
    #[arg(long, value_name = "SECS", default_value_t = 10, allow_hyphen_values = true)]
    pub cpu_limit: u64,
    /// memory limit per job (0 = none)
    #[arg(long, value_name = "MB", default_value_t = 512, allow_hyphen_values = true)]
    pub memory_mb: u64,
    /// cap on captured stdout and stderr each
    #[arg(long, value_name = "BYTES", default_value_t = 10 << 20, allow_hyphen_values = true)]
    pub output_cap: usize,
    /// largest accepted request body
    #[arg(long, value_name = "MB", default_value_t = 100.0, allow_hyphen_values = true)]
    pub max_body_mb: f64,
    /// rate limit: active jobs per client IP
    #[arg(long, value_name = "N", default_value_t = 2, allow_hyphen_values = true)]
    pub max_active: usize,
    /// rate limit: accepted jobs per client IP per sliding hour
    #[arg(long, value_name = "N", default_value_t = 20, allow_hyphen_values = true)]
    pub jobs_per_hour: usize,
    /// rate limit: CPU seconds per client IP per sliding minute
    #[arg(long, value_name = "SECS", default_value_t = 10.0, allow_hyphen_values = true)]
    pub cpu_per_minute: f64,
    /// disable the three limits above
    #[arg(long = "no-rate-limit", action = ArgAction::SetFalse)]
    pub rate_limit: bool,
    /// jobs run at once per worker (0 counts as 1)
    #[arg(long, value_name = "K", default_value_t = 1, allow_hyphen_values = true)]
    pub concurrency: usize,
    /// reproduce the reference's 1 s queue poll and blocking endpoints
    #[arg(long)]
    pub reference_timing: bool,
    /// do not put jobs in a private network namespace
    #[arg(long = "no-netns", action = ArgAction::SetFalse)]
    pub netns: bool,
    /// worker heartbeat interval
    #[arg(long, value_name = "SECS", default_value_t = 10, allow_hyphen_values = true)]
    pub heartbeat: u64,
}

impl Common {
    /// The same settings as worker command-line flags.
    pub fn to_args(&self) -> Vec<String> {
        let mut a = vec![
            "--data-dir".into(),
            self.data_dir.display().to_string(),
            "--job-timeout".into(),
            self.job_timeout.to_string(),
            "--job-ttl".into(),
            self.job_ttl.to_string(),
            "--cpu-limit".into(),
            self.cpu_limit.to_string(),
            "--memory-mb".into(),
            self.memory_mb.to_string(),
            "--output-cap".into(),
            self.output_cap.to_string(),
            "--max-body-mb".into(),
            self.max_body_mb.to_string(),
            "--max-active".into(),
            self.max_active.to_string(),
            "--jobs-per-hour".into(),
            self.jobs_per_hour.to_string(),
            "--cpu-per-minute".into(),
            self.cpu_per_minute.to_string(),
            "--concurrency".into(),
            self.concurrency.to_string(),
            "--slow-ms".into(),
            self.slow_ms.to_string(),
            "--heartbeat".into(),
            self.heartbeat.to_string(),
        ];
        if !self.rate_limit {
            a.push("--no-rate-limit".into());
        }
        if self.reference_timing {
            a.push("--reference-timing".into());
        }
        if !self.netns {
            a.push("--no-netns".into());
        }
        a
    }
}

/// The worker subcommand's own flags (passed by the orchestrator).
#[derive(Args, Debug, PartialEq)]
pub struct WorkerArgs {
    /// this worker's index in the network
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    pub index: usize,
    /// serve on this inherited listening socket
    #[arg(long, allow_hyphen_values = true)]
    pub listen_fd: Option<i32>,
    /// the port (bound here when there is no --listen-fd; 0 = any)
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    pub port: u16,
    /// registry address host:port to register with
    #[arg(long, allow_hyphen_values = true)]
    pub registry: Option<String>,
    /// worker 0's address host:port (target of the relay and hijack-payout faults)
    #[arg(long, allow_hyphen_values = true)]
    pub worker0: Option<String>,
    /// fault mode
    #[arg(long, value_parser = fault, allow_hyphen_values = true)]
    pub fault: Option<Fault>,
    /// JSON merged over the default capabilities (repeatable; objects are merged in order)
    #[arg(long = "capabilities", value_parser = json, allow_hyphen_values = true)]
    pub capabilities: Vec<serde_json::Value>,
    #[command(flatten)]
    pub common: Common,
}

impl WorkerArgs {
    /// Every `--capabilities` object merged into one, later keys winning.
    pub fn merged_capabilities(&self) -> serde_json::Value {
        let mut caps = serde_json::json!({});
        for v in &self.capabilities {
            if let (Some(a), Some(b)) = (caps.as_object_mut(), v.as_object()) {
                a.extend(b.clone());
            }
        }
        caps
    }
}

fn fault(s: &str) -> Result<Fault, String> {
    Fault::parse(s).ok_or_else(|| {
        let modes: Vec<&str> = Fault::ALL.iter().map(|f| f.name()).collect();
        format!("unknown mode {s} (one of: {})", modes.join(", "))
    })
}

fn json(s: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(s).map_err(|e| format!("bad JSON: {e}"))
}

fn index(i: &str) -> Result<usize, String> {
    i.parse().map_err(|_| format!("bad index {i:?} (a worker number: 0, 1, ...)"))
}

/// `INDEX=MODE`, e.g. `3=wrong-output`.
fn indexed_fault(s: &str) -> Result<(usize, Fault), String> {
    let (i, m) = s.split_once('=').ok_or("wants INDEX=MODE, e.g. 1=wrong-output")?;
    Ok((index(i)?, fault(m)?))
}

/// `INDEX=TYPE:MEMORY_GB:COUNT`, e.g. `1=a100:40:4`, as the registry entry's `gpu` object
/// (`{"type": "a100", "memory": 40, "count": 4}`: memory in GB per GPU).
fn indexed_gpu(s: &str) -> Result<(usize, serde_json::Value), String> {
    let bad = || format!("wants INDEX=TYPE:MEMORY_GB:COUNT, e.g. 1=a100:40:4, got {s:?}");
    let (i, spec) = s.split_once('=').ok_or_else(bad)?;
    let parts: Vec<&str> = spec.split(':').collect();
    let [kind, mem, count] = parts[..] else { return Err(bad()) };
    let memory: f64 = mem.parse().ok().filter(|m: &f64| m.is_finite() && *m > 0.0).ok_or_else(|| format!("--gpu {s}: MEMORY_GB {mem:?} must be a positive number of GB"))?;
    let count: u32 = count.parse().ok().filter(|c| *c >= 1).ok_or_else(|| format!("--gpu {s}: COUNT {count:?} must be a whole number >= 1"))?;
    if kind.is_empty() || !kind.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        return Err(format!("--gpu {s}: TYPE {kind:?} must be letters, digits, '-', '_' or '.'"));
    }
    let memory = if memory.fract() == 0.0 { serde_json::json!(memory as u64) } else { serde_json::json!(memory) };
    Ok((index(i)?, serde_json::json!({"type": kind, "memory": memory, "count": count})))
}

/// `INDEX=JSON`, e.g. `2={"region":"ap-south"}`.
fn indexed_json(s: &str) -> Result<(usize, serde_json::Value), String> {
    let (i, j) = s.split_once('=').ok_or("wants INDEX=JSON, e.g. 2={\"region\":\"ap-south\"}")?;
    Ok((index(i)?, json(j)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("sandrun-devnet").chain(args.iter().copied()))
    }

    /// The orchestrator's flags, with the message clap gives for `args`.
    fn net(args: &[&str]) -> (NetArgs, Common) {
        let c = parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        assert_eq!(c.worker, None);
        (c.net, c.common)
    }

    fn error(args: &[&str]) -> String {
        match parse(args) {
            Ok(c) => panic!("{args:?} parsed: {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let (n, c) = net(&[]);
        assert_eq!((n.workers, n.json, n.port_base, n.node_timeout), (3, false, None, 60));
        assert!(n.faults.is_empty() && n.capabilities.is_empty() && n.gpus.is_empty());
        assert!(n.checked_registry && !n.chain && n.anvil.is_none());
        assert!(!n.ipfs && n.ipfs_fault.is_none());
        assert_eq!(c.data_dir, PathBuf::from(".devnet-data"));
        assert_eq!((c.job_timeout, c.job_ttl, c.cpu_limit, c.memory_mb), (300.0, 360.0, 10, 512));
        assert_eq!((c.output_cap, c.max_body_mb, c.max_active, c.jobs_per_hour), (10_485_760, 100.0, 2, 20));
        assert_eq!((c.cpu_per_minute, c.concurrency, c.slow_ms, c.heartbeat), (10.0, 1, 1500, 10));
        assert!(c.rate_limit && c.netns && !c.reference_timing);
    }

    #[test]
    fn every_flag_as_the_harnesses_spell_it() {
        let (n, c) = net(&[
            "--json", "--data-dir", "/tmp/d", "--workers", "7", "--no-rate-limit", "--port-base", "7700",
            "--fault", "3=wrong-output", "--fault", "4=bad-signature", "--fault", "5=anonymous", "--fault", "6=crash",
            "--fault", "1=429", "--fault", "2=slow", "--slow-ms", "300",
            "--capabilities", "2={\"region\":\"ap-south\"}", "--capabilities", "2={\"payout\":null}",
            "--job-timeout", "3", "--job-ttl", "2", "--cpu-limit", "1", "--memory-mb", "0", "--output-cap", "64",
            "--max-body-mb", "1", "--max-active", "5", "--jobs-per-hour", "2", "--cpu-per-minute", "0.01",
            "--concurrency", "2", "--reference-timing", "--no-netns", "--node-timeout", "1",
            "--unchecked-registry", "--heartbeat", "1", "--chain", "--anvil", "/opt/anvil",
        ]);
        assert_eq!((n.workers, n.json, n.port_base, n.node_timeout), (7, true, Some(7700), 1));
        assert_eq!(
            n.faults,
            vec![
                (3, Fault::WrongOutput),
                (4, Fault::BadSignature),
                (5, Fault::Anonymous),
                (6, Fault::Crash),
                (1, Fault::Reject429),
                (2, Fault::Slow)
            ]
        );
        assert_eq!(
            n.capabilities,
            vec![(2, serde_json::json!({"region": "ap-south"})), (2, serde_json::json!({"payout": null}))]
        );
        assert!(!n.checked_registry && n.chain);
        assert_eq!(n.anvil, Some(PathBuf::from("/opt/anvil")));
        assert_eq!(c.data_dir, PathBuf::from("/tmp/d"));
        assert_eq!((c.job_timeout, c.job_ttl, c.cpu_limit, c.memory_mb), (3.0, 2.0, 1, 0));
        assert_eq!((c.output_cap, c.max_body_mb, c.max_active, c.jobs_per_hour), (64, 1.0, 5, 2));
        assert_eq!((c.cpu_per_minute, c.concurrency, c.slow_ms, c.heartbeat), (0.01, 2, 300, 1));
        assert!(!c.rate_limit && !c.netns && c.reference_timing);
        assert_eq!(n.check(), Ok(()));
    }

    #[test]
    fn faults_repeat_and_all_modes_parse() {
        for f in Fault::ALL {
            let (n, _) = net(&["--workers", "2", "--fault", &format!("1={}", f.name())]);
            assert_eq!(n.faults, vec![(1, f)]);
        }
        // The same worker twice, in order (the worker process keeps the last).
        let (n, _) = net(&["--fault", "1=slow", "--fault", "1=crash"]);
        assert_eq!(n.faults, vec![(1, Fault::Slow), (1, Fault::Crash)]);
    }

    #[test]
    fn a_later_flag_replaces_an_earlier_one() {
        let (n, c) = net(&["--workers", "2", "--workers", "0", "--data-dir", "a", "--data-dir", "b", "--json", "--json"]);
        assert_eq!((n.workers, n.json), (0, true));
        assert_eq!(c.data_dir, PathBuf::from("b"));
    }

    #[test]
    fn the_word_after_a_flag_is_its_value() {
        let (_, c) = net(&["--data-dir", "-odd-dir", "--job-timeout", "-1"]);
        assert_eq!((c.data_dir, c.job_timeout), (PathBuf::from("-odd-dir"), -1.0));
    }

    #[test]
    fn bad_flags_say_what_is_wrong() {
        let cases: &[(&[&str], &[&str])] = &[
            (&["--bogus"], &["--bogus"]),
            (&["stray"], &["stray"]),
            (&["--workers", "x"], &["--workers", "'x'"]),
            (&["--workers"], &["--workers", "value"]),
            (&["--port-base", "70000"], &["--port-base", "70000"]),
            (&["--job-timeout", "soon"], &["--job-timeout", "soon"]),
            (&["--fault", "1"], &["--fault", "INDEX=MODE"]),
            (&["--fault", "x=slow"], &["--fault", "bad index \"x\""]),
            (&["--fault", "1=bogus"], &["--fault", "unknown mode bogus", "hijack-payout"]),
            (&["--capabilities", "1"], &["--capabilities", "INDEX=JSON"]),
            (&["--capabilities", "1={nope"], &["--capabilities", "bad JSON"]),
            (&["--json", "worker"], &["worker"]),
        ];
        for (args, wanted) in cases {
            let e = error(args);
            for w in *wanted {
                assert!(e.contains(w), "{args:?}: {w:?} not in {e:?}");
            }
        }
        let e = parse(&["--fault", "1=bogus"]).unwrap_err();
        assert_eq!((e.kind(), e.exit_code()), (ErrorKind::ValueValidation, 2));
    }

    #[test]
    fn checks_across_flags() {
        let (n, _) = net(&["--workers", "2", "--fault", "2=slow"]);
        assert_eq!(n.check(), Err("worker index 2 out of range (0..2)".into()));
        let (n, _) = net(&["--workers", "2", "--capabilities", "5={}"]);
        assert_eq!(n.check(), Err("worker index 5 out of range (0..2)".into()));
        for m in ["relay", "relay-key", "hijack-payout"] {
            let (n, _) = net(&["--fault", &format!("0={m}")]);
            assert_eq!(n.check(), Err(format!("--fault 0={m}: this fault targets worker 0; give it to another worker")));
            let (n, _) = net(&["--fault", &format!("1={m}")]);
            assert_eq!(n.check(), Ok(()));
        }
    }

    #[test]
    fn help_lists_every_flag() {
        let e = parse(&["--help"]).unwrap_err();
        assert_eq!((e.kind(), e.exit_code()), (ErrorKind::DisplayHelp, 0));
        let help = e.to_string();
        for f in [
            "--workers", "--json", "--data-dir", "--port-base", "--fault", "--slow-ms", "--capabilities",
            "--job-timeout", "--job-ttl", "--cpu-limit", "--memory-mb", "--output-cap", "--max-body-mb",
            "--max-active", "--jobs-per-hour", "--cpu-per-minute", "--no-rate-limit", "--concurrency",
            "--reference-timing", "--no-netns", "--node-timeout", "--unchecked-registry", "--heartbeat",
            "--chain", "--anvil", "-h, --help",
        ] {
            assert!(help.contains(f), "{f} not in --help:\n{help}");
        }
        assert!(!help.contains("Commands:") && !help.contains("\n  worker"), "the worker subcommand is internal:\n{help}");
        assert_eq!(parse(&["-h"]).unwrap_err().kind(), ErrorKind::DisplayHelp);
    }

    #[test]
    fn a_worker_gets_its_orchestrators_settings() {
        let (_, c) = net(&[
            "--data-dir", "/tmp/x y", "--job-timeout", "0.5", "--cpu-per-minute", "2.5", "--no-rate-limit",
            "--no-netns", "--reference-timing", "--concurrency", "3", "--slow-ms", "7", "--heartbeat", "2",
        ]);
        let mut args = vec!["worker".to_string(), "--index".into(), "2".into(), "--fault".into(), "relay".into()];
        args.extend(["--capabilities".into(), "{\"a\":1,\"b\":1}".into(), "--capabilities".into(), "{\"b\":2}".into()]);
        args.extend(c.to_args());
        let w = match Cli::try_parse_from(std::iter::once("sandrun-devnet".to_string()).chain(args)).unwrap().worker {
            Some(Sub::Worker(w)) => w,
            None => panic!("not a worker"),
        };
        assert_eq!(w.common, c);
        assert_eq!((w.index, w.fault, w.listen_fd, w.port), (2, Some(Fault::Relay), None, 0));
        assert_eq!(w.merged_capabilities(), serde_json::json!({"a": 1, "b": 2}));
        // Defaults round-trip too.
        let (_, d) = net(&[]);
        let mut args = vec!["sandrun-devnet".to_string(), "worker".into()];
        args.extend(d.to_args());
        match Cli::try_parse_from(args).unwrap().worker {
            Some(Sub::Worker(w)) => assert_eq!(w.common, d),
            None => panic!("not a worker"),
        }
    }

    #[test]
    fn ipfs_flags() {
        let (n, _) = net(&["--ipfs"]);
        assert!(n.ipfs && n.ipfs_fault.is_none());
        let (n, _) = net(&["--ipfs-fault", "tamper"]);
        assert_eq!(n.ipfs_fault.as_deref(), Some("tamper"));
        let (n, _) = net(&["--ipfs-fault", "wrong-cid", "--ipfs"]);
        assert_eq!(n.ipfs_fault.as_deref(), Some("wrong-cid"));
        assert!(error(&["--ipfs-fault", "melt"]).contains("melt"));
    }

    #[test]
    fn gpu_flags_become_registry_gpu_objects() {
        let (n, _) = net(&["--workers", "3", "--gpu", "0=a100:40:4", "--gpu", "2=rtx4090:24:2", "--gpu", "1=t4:7.5:1"]);
        assert_eq!(n.gpus[0], (0, serde_json::json!({"type": "a100", "memory": 40, "count": 4})));
        assert_eq!(n.gpus[2], (1, serde_json::json!({"type": "t4", "memory": 7.5, "count": 1})));
        assert!(n.check().is_ok());
        for (bad, says) in [("1=a100:40", "TYPE:MEMORY_GB:COUNT"), ("1=a100:0:1", "MEMORY_GB"), ("1=a100:40:0", "COUNT"), ("1=a 100:40:1", "TYPE"), ("x=a100:1:1", "bad index")] {
            assert!(error(&["--gpu", bad]).contains(says), "{bad}");
        }
        let (n, _) = net(&["--workers", "2", "--gpu", "1=a100:40:1", "--gpu", "1=t4:16:1"]);
        assert!(n.check().unwrap_err().contains("twice"));
        let (n, _) = net(&["--workers", "2", "--gpu", "2=a100:40:1"]);
        assert!(n.check().unwrap_err().contains("out of range"));
    }
}
