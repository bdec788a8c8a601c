//! `sandrun-devnet`: a local Sandrun network in one command.
//!
//! The orchestrator (this binary without a subcommand) runs the registry in-process and
//! starts each worker as a child process of the same binary (`sandrun-devnet worker`,
//! hidden), so that the `crash` fault is a real process exit. Once every server answers
//! it prints one JSON line (`--json`) describing the network and keeps running until
//! SIGINT/SIGTERM, then stops the workers, which kill their jobs' process groups.

mod chain;
mod exec;
mod http;
mod manifest;
mod registry;
mod sign;
mod upload;
mod util;
mod worker;
mod ws;

use std::os::unix::io::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};
use worker::{Fault, WorkerConfig};

const USAGE: &str = "\
sandrun-devnet: a local Sandrun network (workers + registry)

USAGE: sandrun-devnet [FLAGS]

  --workers N            number of workers (default 3)
  --json                 print exactly one JSON line on stdout once ready
  --data-dir DIR         keys and jobs (default .devnet-data)
  --port-base N          fixed ports: workers N, N+1, ..., registry after them
  --fault INDEX=MODE     wrong-output | bad-signature | anonymous | slow | crash | 429 | relay |
                         relay-key | stdout-lie | hijack-payout (repeatable)
  --slow-ms MS           added latency of the `slow` fault (default 1500)
  --capabilities INDEX=JSON   merged into that worker's registry capabilities (repeatable)
  --job-timeout SECS     wall timeout per job (default 300)
  --job-ttl SECS         jobs are deleted this long after submission (default 360)
  --cpu-limit SECS       RLIMIT_CPU per job (default 10; 0 = none)
  --memory-mb MB         memory limit per job (default 512; 0 = none)
  --output-cap BYTES     cap on captured stdout and stderr each (default 10485760)
  --max-body-mb MB       largest accepted request body (default 100)
  --max-active N         rate limit: active jobs per client IP (default 2)
  --jobs-per-hour N      rate limit: accepted jobs per client IP per sliding hour (default 20)
  --cpu-per-minute SECS  rate limit: CPU seconds per client IP per sliding minute (default 10)
  --no-rate-limit        disable the three limits above
  --concurrency K        jobs run at once per worker (default 1)
  --reference-timing     reproduce the reference's 1 s queue poll and blocking endpoints
  --no-netns             do not put jobs in a private network namespace
  --node-timeout SECS    registry: node inactive after this long without heartbeat (default 60)
  --unchecked-registry   registry accepts any /register, like the reference broker (no payout
                         signature or record takeover checks)
  --heartbeat SECS       worker heartbeat interval (default 10)
  --chain                also start anvil with the escrow and a test ERC-20 deployed, accounts
                         funded, and a payout address per worker (JSON line: \"chain\", \"payout\")
  --anvil PATH           the anvil binary (default: node_modules/.bin/anvil from @foundry-rs/anvil)
  -h, --help             this text
";

/// Flags shared by the orchestrator and its workers.
#[derive(Clone, Debug)]
struct Common {
    data_dir: PathBuf,
    job_timeout: f64,
    job_ttl: f64,
    cpu_limit: u64,
    memory_mb: u64,
    output_cap: usize,
    max_body_mb: f64,
    max_active: usize,
    jobs_per_hour: usize,
    cpu_per_minute: f64,
    rate_limit: bool,
    concurrency: usize,
    reference_timing: bool,
    netns: bool,
    slow_ms: u64,
    heartbeat: u64,
}

impl Default for Common {
    fn default() -> Self {
        Common {
            data_dir: PathBuf::from(".devnet-data"),
            job_timeout: 300.0,
            job_ttl: 360.0,
            cpu_limit: 10,
            memory_mb: 512,
            output_cap: 10 << 20,
            max_body_mb: 100.0,
            max_active: 2,
            jobs_per_hour: 20,
            cpu_per_minute: 10.0,
            rate_limit: true,
            concurrency: 1,
            reference_timing: false,
            netns: true,
            slow_ms: 1500,
            heartbeat: 10,
        }
    }
}

impl Common {
    /// Handles one shared flag; returns false if `flag` is not one of them.
    fn take(&mut self, flag: &str, next: &mut dyn FnMut() -> String) -> bool {
        fn num<T: std::str::FromStr>(flag: &str, v: String) -> T {
            v.parse().unwrap_or_else(|_| die(&format!("{flag}: not a number: {v}")))
        }
        match flag {
            "--data-dir" => self.data_dir = PathBuf::from(next()),
            "--job-timeout" => self.job_timeout = num(flag, next()),
            "--job-ttl" => self.job_ttl = num(flag, next()),
            "--cpu-limit" => self.cpu_limit = num(flag, next()),
            "--memory-mb" => self.memory_mb = num(flag, next()),
            "--output-cap" => self.output_cap = num(flag, next()),
            "--max-body-mb" => self.max_body_mb = num(flag, next()),
            "--max-active" => self.max_active = num(flag, next()),
            "--jobs-per-hour" => self.jobs_per_hour = num(flag, next()),
            "--cpu-per-minute" => self.cpu_per_minute = num(flag, next()),
            "--no-rate-limit" => self.rate_limit = false,
            "--concurrency" => self.concurrency = num::<usize>(flag, next()).max(1),
            "--reference-timing" => self.reference_timing = true,
            "--no-netns" => self.netns = false,
            "--slow-ms" => self.slow_ms = num(flag, next()),
            "--heartbeat" => self.heartbeat = num(flag, next()),
            _ => return false,
        }
        true
    }

    /// The same settings as worker command-line flags.
    fn to_args(&self) -> Vec<String> {
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

fn die(msg: &str) -> ! {
    eprintln!("sandrun-devnet: {msg}");
    std::process::exit(2)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| die(&format!("cannot start runtime: {e}")))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("worker") {
        worker_main(&args[1..]);
    } else {
        orchestrator_main(&args);
    }
}

/// What the `--json` line describes. Later services (chain, IPFS) become new fields here.
struct Services {
    workers: Vec<(String, Option<String>)>,
    registry: String,
    /// With `--chain`: each worker's payout address (same order as `workers`) and the chain.
    payouts: Vec<String>,
    chain: Option<String>,
}

impl Services {
    /// The single stdout line; key order is part of the contract, so it is written by hand.
    fn to_json_line(&self) -> String {
        let ws: Vec<String> = self
            .workers
            .iter()
            .enumerate()
            .map(|(i, (url, id))| {
                let id = id.as_ref().map(|i| format!("\"{i}\"")).unwrap_or_else(|| "null".into());
                match self.payouts.get(i) {
                    Some(p) => format!("{{\"url\":\"{url}\",\"worker_id\":{id},\"payout\":\"{p}\"}}"),
                    None => format!("{{\"url\":\"{url}\",\"worker_id\":{id}}}"),
                }
            })
            .collect();
        match &self.chain {
            Some(c) => format!("{{\"workers\":[{}],\"registry\":\"{}\",\"chain\":{c}}}", ws.join(","), self.registry),
            None => format!("{{\"workers\":[{}],\"registry\":\"{}\"}}", ws.join(","), self.registry),
        }
    }
}

fn orchestrator_main(args: &[String]) {
    let mut common = Common::default();
    let mut workers = 3usize;
    let mut json = false;
    let mut port_base: Option<u16> = None;
    let mut faults: Vec<(usize, Fault)> = Vec::new();
    let mut caps: Vec<(usize, serde_json::Value)> = Vec::new();
    let mut node_timeout = 60u64;
    let mut with_chain = false;
    let mut checked_registry = true;
    let mut anvil: Option<std::path::PathBuf> = None;
    let mut it = args.iter().cloned();
    while let Some(flag) = it.next() {
        let mut next = || it.next().unwrap_or_else(|| die(&format!("{flag} needs a value")));
        if common.take(&flag, &mut next) {
            continue;
        }
        match flag.as_str() {
            "--workers" => workers = next().parse().unwrap_or_else(|_| die("--workers: not a number")),
            "--json" => json = true,
            "--chain" => with_chain = true,
            "--unchecked-registry" => checked_registry = false,
            "--anvil" => anvil = Some(next().into()),
            "--port-base" => port_base = Some(next().parse().unwrap_or_else(|_| die("--port-base: not a port"))),
            "--node-timeout" => node_timeout = next().parse().unwrap_or_else(|_| die("--node-timeout: not a number")),
            "--fault" => {
                let v = next();
                let (i, m) = v.split_once('=').unwrap_or_else(|| die("--fault wants INDEX=MODE"));
                let i: usize = i.parse().unwrap_or_else(|_| die("--fault: bad index"));
                let f = Fault::parse(m).unwrap_or_else(|| die(&format!("--fault: unknown mode {m}")));
                faults.push((i, f));
            }
            "--capabilities" => {
                let v = next();
                let (i, j) = v.split_once('=').unwrap_or_else(|| die("--capabilities wants INDEX=JSON"));
                let i: usize = i.parse().unwrap_or_else(|_| die("--capabilities: bad index"));
                let j: serde_json::Value = serde_json::from_str(j).unwrap_or_else(|_| die("--capabilities: bad JSON"));
                caps.push((i, j));
            }
            "-h" | "--help" => {
                print!("{USAGE}");
                return;
            }
            other => die(&format!("unknown flag {other} (see --help)")),
        }
    }
    for i in faults.iter().map(|(i, _)| *i).chain(caps.iter().map(|(i, _)| *i)) {
        if i >= workers {
            die(&format!("worker index {i} out of range (0..{workers})"));
        }
    }
    for (i, f) in &faults {
        if *i == 0 && (f.relays() || *f == Fault::HijackPayout) {
            die(&format!("--fault {i}={}: this fault targets worker 0; give it to another worker", f.name()));
        }
    }
    std::fs::create_dir_all(&common.data_dir).unwrap_or_else(|e| die(&format!("data dir: {e}")));
    common.data_dir = std::fs::canonicalize(&common.data_dir).unwrap_or_else(|e| die(&format!("data dir: {e}")));

    let rt = runtime();
    rt.block_on(async move {
        let reg_port = port_base.map(|b| b + workers as u16).unwrap_or(0);
        let reg_listener = tokio::net::TcpListener::bind(("127.0.0.1", reg_port))
            .await
            .unwrap_or_else(|e| die(&format!("registry port {reg_port}: {e}")));
        let reg_addr = reg_listener.local_addr().unwrap();
        let registry = registry::Registry::new(node_timeout, checked_registry);
        tokio::spawn(registry.clone().serve(reg_listener));

        // The chain first: its accounts give each worker a payout address.
        let mut chain = None;
        let mut payouts = Vec::new();
        if with_chain {
            let bin = chain::find_anvil(anvil.clone()).unwrap_or_else(|e| die(&e));
            let port = port_base.map(|b| b + workers as u16 + 1).unwrap_or(0);
            let c = chain::start(&bin, &common.data_dir, port, (workers + 5).max(10)).await.unwrap_or_else(|e| die(&format!("--chain: {e}")));
            payouts = (0..workers).map(|i| c.accounts[c.accounts.len() - 1 - i].0.clone()).collect();
            chain = Some(c);
        }

        let exe = std::env::current_exe().unwrap_or_else(|e| die(&format!("current_exe: {e}")));
        let mut children: Vec<Child> = Vec::new();
        let mut urls: Vec<String> = Vec::new();
        for i in 0..workers {
            let port = port_base.map(|b| b + i as u16).unwrap_or(0);
            let l = std::net::TcpListener::bind(("127.0.0.1", port))
                .unwrap_or_else(|e| die(&format!("worker {i} port {port}: {e}")));
            let port = l.local_addr().unwrap().port();
            let fd = l.as_raw_fd();
            let mut cmd = Command::new(&exe);
            cmd.arg("worker")
                .args(["--index", &i.to_string(), "--listen-fd", "3", "--port", &port.to_string()])
                .args(["--registry", &reg_addr.to_string()])
                .args(common.to_args());
            if let Some(w0) = urls.first() {
                cmd.args(["--worker0", w0.as_str()]);
            }
            for (_, f) in faults.iter().filter(|(j, _)| *j == i) {
                cmd.args(["--fault", f.name()]);
            }
            if let (Some(p), Some(c)) = (payouts.get(i), chain.as_ref()) {
                // The worker signs this binding with its own key at registration.
                cmd.args(["--capabilities", &serde_json::json!({ "payout": p, "payout_chain_id": c.chain_id }).to_string()]);
            }
            for (_, c) in caps.iter().filter(|(j, _)| *j == i) {
                cmd.args(["--capabilities", &c.to_string()]);
            }
            unsafe {
                cmd.pre_exec(move || {
                    // The listening socket becomes fd 3 in the worker (no port race).
                    if fd == 3 {
                        let fl = libc::fcntl(3, libc::F_GETFD);
                        libc::fcntl(3, libc::F_SETFD, fl & !libc::FD_CLOEXEC);
                    } else if libc::dup2(fd, 3) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    // Workers write nothing to stdout: the JSON line must stay alone there.
                    libc::dup2(2, 1);
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong, 0, 0, 0);
                    Ok(())
                });
            }
            let child = cmd.spawn().unwrap_or_else(|e| die(&format!("cannot start worker {i}: {e}")));
            drop(l);
            children.push(child);
            urls.push(format!("127.0.0.1:{port}"));
        }

        // Ready = every worker answers /health and has registered itself.
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut ids = Vec::new();
        for (i, addr) in urls.iter().enumerate() {
            loop {
                if let Ok((200, body)) = http::client_request(addr, "GET", "/health", None, b"", Duration::from_secs(2)).await {
                    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                    ids.push(v["worker_id"].as_str().map(str::to_string));
                    break;
                }
                if let Ok(Some(st)) = children[i].try_wait() {
                    die(&format!("worker {i} exited during startup: {st}"));
                }
                if Instant::now() > deadline {
                    die(&format!("worker {i} did not answer on {addr}"));
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
        while registry.node_count() < workers && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        // A `hijack-payout` worker has tried every takeover before anyone reads /nodes.
        for (i, _) in faults.iter().filter(|(_, f)| *f == Fault::HijackPayout) {
            loop {
                let done = http::client_request(&urls[*i], "GET", "/_devnet/hijack", None, b"", Duration::from_secs(2))
                    .await
                    .ok()
                    .and_then(|(_, b)| serde_json::from_slice::<serde_json::Value>(&b).ok())
                    .map(|v| v["done"] == true)
                    .unwrap_or(false);
                if done || Instant::now() > deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
        // Handlers first: a script may send SIGTERM the moment it reads the JSON line.
        use tokio::signal::unix::{signal, SignalKind};
        let mut sigint = signal(SignalKind::interrupt()).unwrap();
        let mut sigterm = signal(SignalKind::terminate()).unwrap();
        let services = Services {
            workers: urls.iter().zip(ids).map(|(a, id)| (format!("http://{a}"), id)).collect(),
            registry: format!("http://{reg_addr}"),
            payouts: payouts.clone(),
            chain: chain.as_ref().map(|c| c.to_json()),
        };
        if json {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{}", services.to_json_line());
            let _ = out.flush();
        } else {
            println!("sandrun-devnet is up (Ctrl-C to stop)");
            for (i, (url, id)) in services.workers.iter().enumerate() {
                let f: Vec<&str> = faults.iter().filter(|(j, _)| *j == i).map(|(_, f)| f.name()).collect();
                println!(
                    "  worker {i}: {url}  worker_id {}{}",
                    id.as_deref().unwrap_or("null (anonymous)"),
                    if f.is_empty() { String::new() } else { format!("  fault {}", f.join(",")) }
                );
            }
            println!("  registry: {}", services.registry);
            if let Some(c) = &chain {
                println!("  chain: {} (chain id {}), escrow {}, test token {}", c.rpc, c.chain_id, c.escrow, c.token);
            }
            println!("  data dir: {}", common.data_dir.display());
        }

        let mut reported = vec![false; children.len()];
        loop {
            tokio::select! {
                _ = sigint.recv() => break,
                _ = sigterm.recv() => break,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {
                    for (i, c) in children.iter_mut().enumerate() {
                        if !reported[i] {
                            if let Ok(Some(st)) = c.try_wait() {
                                eprintln!("sandrun-devnet: worker {i} exited ({st})");
                                reported[i] = true;
                            }
                        }
                    }
                }
            }
        }
        eprintln!("sandrun-devnet: stopping");
        if let Some(c) = chain.as_mut() {
            c.stop();
        }
        for c in children.iter() {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for c in children.iter_mut() {
            loop {
                match c.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() > deadline => {
                        let _ = c.kill();
                        let _ = c.wait();
                        break;
                    }
                    Ok(None) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        }
        std::process::exit(0);
    });
}

fn worker_main(args: &[String]) {
    let mut common = Common::default();
    let mut index = 0usize;
    let mut listen_fd: Option<i32> = None;
    let mut port: u16 = 0;
    let mut registry: Option<String> = None;
    let mut fault = None;
    let mut worker0 = None;
    let mut caps = serde_json::json!({});
    let mut it = args.iter().cloned();
    while let Some(flag) = it.next() {
        let mut next = || it.next().unwrap_or_else(|| die(&format!("{flag} needs a value")));
        if common.take(&flag, &mut next) {
            continue;
        }
        match flag.as_str() {
            "--index" => index = next().parse().unwrap_or_else(|_| die("--index")),
            "--listen-fd" => listen_fd = Some(next().parse().unwrap_or_else(|_| die("--listen-fd"))),
            "--port" => port = next().parse().unwrap_or_else(|_| die("--port")),
            "--registry" => registry = Some(next()),
            "--worker0" => worker0 = Some(next()),
            "--fault" => fault = Some(Fault::parse(&next()).unwrap_or_else(|| die("--fault: unknown mode"))),
            "--capabilities" => {
                let v: serde_json::Value = serde_json::from_str(&next()).unwrap_or_else(|_| die("--capabilities"));
                if let (Some(a), Some(b)) = (caps.as_object_mut(), v.as_object()) {
                    a.extend(b.clone());
                }
            }
            other => die(&format!("worker: unknown flag {other}")),
        }
    }
    let cfg = WorkerConfig {
        index,
        dir: common.data_dir.join(format!("worker-{index}")),
        job_timeout: Duration::from_secs_f64(common.job_timeout.max(0.001)),
        job_ttl: Duration::from_secs_f64(common.job_ttl.max(0.001)),
        rate_limit: common.rate_limit,
        max_active: common.max_active,
        jobs_per_hour: common.jobs_per_hour,
        cpu_per_minute: common.cpu_per_minute,
        concurrency: common.concurrency,
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
        let w = worker::Worker::new(cfg, port).unwrap_or_else(|e| die(&format!("worker {index}: {e}")));
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
