//! One Sandrun-compatible worker: the reference's endpoints, JSON layouts, queue,
//! rate limits, WebSocket stream, plus devnet fault injection and admin endpoints.

use crate::exec::{self, Buf, ExecSpec};
use crate::http::{self, read_request, send_and_close, worker_json, worker_response, ReadOutcome, Request};
use crate::manifest::Manifest;
use crate::sign;
use crate::upload;
use crate::util::{fmt_2f, fmt_f, fmt_g, json_escape, json_escape_bytes, sha256_hex, unix_now};
use crate::ws;
use ed25519_dalek::SigningKey;
use std::collections::{HashMap, VecDeque};
use std::io::Read;
use std::net::IpAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};

/// Fault modes a worker can be put into (command line or `POST /_devnet/fault`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    WrongOutput,
    BadSignature,
    Anonymous,
    Slow,
    Crash,
    Reject429,
    /// Forwards every job to worker 0 and answers with worker 0's signed result.
    Relay,
    /// `Relay`, and `/health` shows worker 0's key too.
    RelayKey,
    /// `/logs` and the WebSocket stdout frames show a stdout the program did not print.
    StdoutLie,
    /// Tries to take over worker 0's registry record and payout.
    HijackPayout,
}

impl Fault {
    /// Every mode, in the order `--help` lists them.
    pub const ALL: [Fault; 10] = [
        Fault::WrongOutput,
        Fault::BadSignature,
        Fault::Anonymous,
        Fault::Slow,
        Fault::Crash,
        Fault::Reject429,
        Fault::Relay,
        Fault::RelayKey,
        Fault::StdoutLie,
        Fault::HijackPayout,
    ];
    /// Parses the CLI / admin spelling.
    pub fn parse(s: &str) -> Option<Fault> {
        Some(match s {
            "wrong-output" => Fault::WrongOutput,
            "bad-signature" => Fault::BadSignature,
            "anonymous" => Fault::Anonymous,
            "slow" => Fault::Slow,
            "crash" => Fault::Crash,
            "429" => Fault::Reject429,
            "relay" => Fault::Relay,
            "relay-key" => Fault::RelayKey,
            "stdout-lie" => Fault::StdoutLie,
            "hijack-payout" => Fault::HijackPayout,
            _ => return None,
        })
    }
    /// The CLI / admin spelling.
    pub fn name(self) -> &'static str {
        match self {
            Fault::WrongOutput => "wrong-output",
            Fault::BadSignature => "bad-signature",
            Fault::Anonymous => "anonymous",
            Fault::Slow => "slow",
            Fault::Crash => "crash",
            Fault::Reject429 => "429",
            Fault::Relay => "relay",
            Fault::RelayKey => "relay-key",
            Fault::StdoutLie => "stdout-lie",
            Fault::HijackPayout => "hijack-payout",
        }
    }
    /// Whether this fault forwards jobs to worker 0.
    pub fn relays(self) -> bool {
        matches!(self, Fault::Relay | Fault::RelayKey)
    }
}

/// The `stdout-lie` fault's text: plausible, and always different from `real`. Digits are
/// shifted by one (`42` -> `53`); without digits, ASCII letters swap case; otherwise (and
/// for an empty stdout) a line `0` is added.
pub fn stdout_lie(real: &[u8]) -> Vec<u8> {
    if real.iter().any(u8::is_ascii_digit) {
        real.iter().map(|&b| if b.is_ascii_digit() { b'0' + (b - b'0' + 1) % 10 } else { b }).collect()
    } else if real.iter().any(u8::is_ascii_alphabetic) {
        real.iter()
            .map(|&b| if b.is_ascii_lowercase() { b.to_ascii_uppercase() } else { b.to_ascii_lowercase() })
            .collect()
    } else {
        let mut v = real.to_vec();
        v.extend_from_slice(b"0\n");
        v
    }
}

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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Queued,
    Running,
    Done,
    Deleted,
}

struct OutFile {
    path: Vec<u8>,
    size: u64,
    sha: String,
}

#[derive(Default)]
struct Outcome {
    exit_code: i32,
    cpu: f64,
    mem_mb: u64,
    files: Vec<OutFile>,
    worker_id: Option<String>,
    signature: Option<String>,
    /// Whether this job still counts as active for its client's quota.
    active_counted: bool,
}

struct Job {
    id: String,
    ip: IpAddr,
    dir: PathBuf,
    entrypoint: String,
    interpreter: String,
    environment: String,
    args: Vec<String>,
    outputs: Vec<String>,
    job_hash: String,
    submitted: Instant,
    stdout: Buf,
    stderr: Buf,
    pgid: AtomicI32,
    phase: watch::Sender<Phase>,
    out: Mutex<Outcome>,
}

impl Job {
    fn phase(&self) -> Phase {
        *self.phase.borrow()
    }
    fn status_str(&self) -> &'static str {
        match self.phase() {
            Phase::Done => {
                if self.out.lock().unwrap().exit_code == 0 {
                    "completed"
                } else {
                    "failed"
                }
            }
            // The reference's /status never shows `running` (it blocks instead).
            _ => "queued",
        }
    }
}

#[derive(Default)]
struct Quota {
    active: usize,
    accepted: VecDeque<Instant>,
    cpu: VecDeque<(Instant, f64)>,
}

#[derive(Default)]
struct State {
    jobs: HashMap<String, Arc<Job>>,
    queue: VecDeque<Arc<Job>>,
    quotas: HashMap<IpAddr, Quota>,
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

#[derive(Default)]
struct Hijack {
    started: bool,
    done: bool,
    attempts: Vec<serde_json::Value>,
}

/// `payout_chain_id` when a payout is given without one: anvil's default chain id.
pub const DEFAULT_CHAIN_ID: u64 = 31337;

const ROOT_BODY: &str = "{\n            \"service\": \"sandrun\",\n            \"status\": \"running\",\n            \"description\": \"Batch job execution with directory upload\",\n            \"privacy\": \"Jobs auto-delete after download\",\n            \"limits\": \"10 CPU-sec/min, 512MB RAM, 5 min timeout\"\n        }";

const ENV_BODY: &str = "{\n  \"templates\": [\n    \"data-science\",\n    \"ml-basic\",\n    \"nlp\",\n    \"scientific\",\n    \"vision\"\n  ],\n  \"stats\": {\n    \"total_templates\": 5,\n    \"cached_environments\": 0,\n    \"total_uses\": 0,\n    \"disk_usage_mb\": 0\n  }\n}";

fn err(code: u16, msg: &str) -> Vec<u8> {
    worker_json(code, &format!("{{\"error\":\"{}\"}}", json_escape(msg)))
}

/// File type as the reference's `/outputs` and `output_files` report it.
pub fn file_type(name: &[u8]) -> &'static str {
    match ext(name).as_str() {
        "py" | "js" | "sh" | "ts" | "c" | "cpp" | "h" | "hpp" | "java" | "go" | "rs" | "rb" | "r" | "jl" | "mjs" => "code",
        "txt" | "md" | "log" | "rst" => "text",
        "json" | "csv" | "xml" | "yaml" | "yml" | "tsv" | "parquet" | "npy" | "pkl" => "data",
        _ => "other",
    }
}

/// MIME type by extension (download `Content-Type` and `/outputs`).
pub fn mime_type(name: &[u8]) -> &'static str {
    match ext(name).as_str() {
        "py" => "text/x-python",
        "js" | "mjs" => "application/javascript",
        "sh" => "application/x-sh",
        "txt" | "log" => "text/plain",
        "md" => "text/markdown",
        "csv" => "text/csv",
        "json" => "application/json",
        "xml" => "application/xml",
        "html" | "htm" => "text/html",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "svg" => "image/svg+xml",
        "pdf" => "application/pdf",
        "gz" | "tgz" => "application/gzip",
        "zip" => "application/zip",
        "tar" => "application/x-tar",
        _ => "application/octet-stream",
    }
}

fn ext(name: &[u8]) -> String {
    let base = name.rsplit(|&b| b == b'/').next().unwrap_or(name);
    match base.iter().rposition(|&b| b == b'.') {
        Some(0) | None => String::new(),
        Some(i) => String::from_utf8_lossy(&base[i + 1..]).to_ascii_lowercase(),
    }
}

/// `29.0 B`, `1.5 KB`, ...
fn size_formatted(n: u64) -> String {
    let units = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < units.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    format!("{:.1} {}", v, units[u])
}

/// Glob where `*` matches any run of bytes, `/` included: covers the reference's
/// `*`, `*.ext`, `prefix*`, `dir/*` and exact names.
pub fn glob_match(pat: &[u8], s: &[u8]) -> bool {
    let (mut p, mut i) = (0usize, 0usize);
    let (mut star, mut mark) = (None, 0usize);
    while i < s.len() {
        if p < pat.len() && pat[p] == b'*' {
            star = Some(p);
            mark = i;
            p += 1;
        } else if p < pat.len() && pat[p] == s[i] {
            p += 1;
            i += 1;
        } else if let Some(sp) = star {
            p = sp + 1;
            mark += 1;
            i = mark;
        } else {
            return false;
        }
    }
    while p < pat.len() && pat[p] == b'*' {
        p += 1;
    }
    p == pat.len()
}

/// Regular files under `dir` in directory order (depth first), as raw relative paths.
fn walk(dir: &Path) -> Vec<(Vec<u8>, u64)> {
    fn rec(root: &Path, d: &Path, out: &mut Vec<(Vec<u8>, u64)>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            let p = e.path();
            if ft.is_dir() {
                rec(root, &p, out);
            } else if ft.is_file() {
                let rel = p.strip_prefix(root).unwrap_or(&p).as_os_str().as_bytes().to_vec();
                let size = e.metadata().map(|m| m.len()).unwrap_or(0);
                out.push((rel, size));
            }
        }
    }
    let mut out = Vec::new();
    rec(dir, dir, &mut out);
    out
}

/// Files the job reports: all of them without patterns, else those matching one.
fn output_candidates(dir: &Path, patterns: &[String]) -> Vec<(Vec<u8>, u64)> {
    walk(dir)
        .into_iter()
        .filter(|(p, _)| patterns.is_empty() || patterns.iter().any(|g| glob_match(g.as_bytes(), p)))
        .collect()
}

fn sha256_file(p: &Path) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    if let Ok(mut f) = std::fs::File::open(p) {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = f.read(&mut buf) {
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
    }
    crate::util::hex(&h.finalize())
}

fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Some(v) = std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

fn memory_gb() -> u64 {
    let s = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kb: u64 = s
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    ((kb as f64) / 1024.0 / 1024.0).round() as u64
}

fn storage_gb(p: &Path) -> u64 {
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap_or_default();
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } == 0 {
        (s.f_bavail as u64 * s.f_frsize as u64) / (1 << 30)
    } else {
        0
    }
}

fn on_path(prog: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(prog).is_file()))
        .unwrap_or(false)
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

    fn fault(&self) -> Option<Fault> {
        *self.fault.lock().unwrap()
    }

    fn public_id(&self) -> Option<&str> {
        if self.fault() == Some(Fault::Anonymous) {
            None
        } else {
            Some(&self.worker_id)
        }
    }

    /// Capabilities sent to the registry: reference fields plus devnet extension fields.
    pub fn capabilities(&self) -> serde_json::Value {
        let i = self.cfg.index;
        let regions = ["us-east", "us-west", "eu-west"];
        let gpu = if i % 3 == 1 {
            serde_json::json!({"type": "nvidia-t4", "memory": 16, "count": 1})
        } else {
            serde_json::Value::Null
        };
        let interpreters: Vec<&str> = ["python3", "node", "bash"].into_iter().filter(|p| on_path(p)).collect();
        let mut caps = serde_json::json!({
            "cpu_cores": num_cpus(),
            "memory_gb": memory_gb(),
            "gpu": gpu,
            "interpreters": interpreters,
            "storage": storage_gb(&self.cfg.dir),
            "region": regions[i % regions.len()],
            "pricing": {"cpu": "0.1/hour", "gpu": "0.5/hour"},
            "payout": null,
            "worker_id": self.public_id(),
            "sandrun_endpoint": self.url,
        });
        if let (Some(obj), Some(extra)) = (caps.as_object_mut(), self.cfg.capabilities.as_object()) {
            for (k, v) in extra {
                obj.insert(k.clone(), v.clone());
            }
            // Bind the payout with this worker's key (devnet registry extension), unless
            // the caller set `payout_signature` itself.
            if let Some(p) = obj.get("payout").and_then(|p| p.as_str()).map(str::to_string) {
                if !obj.contains_key("payout_signature") {
                    if self.public_id().is_some() {
                        let chain = obj.get("payout_chain_id").and_then(|c| c.as_u64()).unwrap_or(DEFAULT_CHAIN_ID);
                        obj.insert("payout_chain_id".into(), chain.into());
                        obj.insert("payout_signature".into(), sign::payout_signature(&self.key, chain, &p).into());
                    } else {
                        // No key in use, so nothing can bind the address: no payout.
                        obj.insert("payout".into(), serde_json::Value::Null);
                    }
                }
            }
        }
        caps
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

    async fn register_loop(self: Arc<Self>, reg: String) {
        let body = serde_json::json!({"endpoint": self.url, "capabilities": self.capabilities()}).to_string();
        let mut node_id = None;
        loop {
            if node_id.is_none() {
                match http::client_request(&reg, "POST", "/register", Some("application/json"), body.as_bytes(), Duration::from_secs(5)).await {
                    Ok((200, b)) => {
                        node_id = serde_json::from_slice::<serde_json::Value>(&b)
                            .ok()
                            .and_then(|v| v["node_id"].as_str().map(str::to_string));
                        if node_id.is_some() && self.fault() == Some(Fault::HijackPayout) {
                            self.start_hijack();
                        }
                    }
                    Ok((code, b)) => {
                        eprintln!("worker {}: registration refused: HTTP {code} {}", self.cfg.index, String::from_utf8_lossy(&b).trim())
                    }
                    Err(e) => eprintln!("worker {}: registration failed: {e}", self.cfg.index),
                }
                if node_id.is_none() {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            }
            tokio::time::sleep(Duration::from_secs(self.cfg.heartbeat_secs.max(1))).await;
            let hb = serde_json::json!({"node_id": node_id}).to_string();
            let _ = http::client_request(&reg, "POST", "/heartbeat", Some("application/json"), hb.as_bytes(), Duration::from_secs(5)).await;
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

    async fn wait_unlocked(&self) {
        if self.cfg.reference_timing {
            let mut rx = self.running.subscribe();
            let _ = rx.wait_for(|n| *n == 0).await;
        }
    }

    async fn handle_conn(self: Arc<Self>, mut s: TcpStream, peer: IpAddr) {
        let req = match read_request(&mut s, peer, self.cfg.max_body, true).await {
            Ok(ReadOutcome::Req(r)) => r,
            Ok(ReadOutcome::TooLarge) => {
                // The reference's 413: no CORS header, and a Content-Length one byte
                // shorter than the body it writes.
                let body = "{\"error\":\"Request body too large\"}";
                let resp = format!(
                    "HTTP/1.1 413 Unknown\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
                    body.len() - 1,
                    body
                );
                send_and_close(&mut s, resp.as_bytes()).await;
                return;
            }
            _ => return,
        };
        let admin = req.path.starts_with("/_devnet/");
        if !admin && self.fault() == Some(Fault::Slow) {
            tokio::time::sleep(Duration::from_millis(self.cfg.slow_ms)).await;
        }
        if req.method == "GET"
            && req.path.starts_with("/stream/")
            && req.header_exact("Upgrade").map(|v| v.eq_ignore_ascii_case("websocket")).unwrap_or(false)
        {
            if let Some(key) = req.header_exact("Sec-WebSocket-Key").map(str::to_string) {
                let id = &req.path["/stream/".len()..];
                if self.is_relayed(id) {
                    self.relay_ws(s, &req).await;
                } else {
                    self.serve_ws(s, id, &key).await;
                }
                return;
            }
        }
        if let Some(resp) = self.relay(&req).await {
            send_and_close(&mut s, &resp).await;
            return;
        }
        let resp = self.route(&req).await;
        send_and_close(&mut s, &resp).await;
    }

    async fn route(self: &Arc<Self>, req: &Request) -> Vec<u8> {
        let p = req.path.as_str();
        match req.method.as_str() {
            "GET" => {
                if p == "/health" {
                    let id = match self.public_id() {
                        Some(id) => format!("\"{id}\""),
                        None => "null".into(),
                    };
                    worker_json(200, &format!("{{\"status\":\"healthy\",\"worker_id\":{id}}}"))
                } else if p == "/environments" {
                    worker_json(200, ENV_BODY)
                } else if p == "/stats" {
                    self.wait_unlocked().await;
                    self.stats(req.peer)
                } else if let Some(id) = p.strip_prefix("/status/") {
                    self.wait_unlocked().await;
                    self.status(id)
                } else if let Some(id) = p.strip_prefix("/logs/") {
                    self.wait_unlocked().await;
                    match self.job(id) {
                        None => err(404, "Job not found"),
                        Some(j) => {
                            let so = json_escape_bytes(&self.shown_stdout(&j.stdout.lock().unwrap()));
                            let se = json_escape_bytes(&j.stderr.lock().unwrap());
                            worker_json(200, &format!("{{\"stdout\":\"{so}\",\"stderr\":\"{se}\"}}"))
                        }
                    }
                } else if let Some(id) = p.strip_prefix("/outputs/") {
                    self.wait_unlocked().await;
                    self.outputs(id)
                } else if let Some(rest) = p.strip_prefix("/download/") {
                    self.wait_unlocked().await;
                    self.download(rest).await
                } else if p == "/_devnet/jobs" {
                    let st = self.st.lock().unwrap();
                    let running = *self.running.borrow();
                    worker_json(
                        200,
                        &format!(
                            "{{\"accepted\":{},\"stored\":{},\"queued\":{},\"running\":{}}}",
                            self.accepted.load(Ordering::SeqCst),
                            st.jobs.len(),
                            st.queue.len(),
                            running
                        ),
                    )
                } else if let Some(id) = p.strip_prefix("/_devnet/jobs/") {
                    // Devnet-only: the exact CPU figure (the reference only shows it in the
                    // WebSocket [DONE] frame), so tests can rebuild the signed string cheaply.
                    match self.job(id) {
                        None => err(404, "Job not found"),
                        Some(j) => {
                            let o = j.out.lock().unwrap();
                            worker_json(
                                200,
                                &format!(
                                    "{{\"job_id\":\"{}\",\"phase\":\"{:?}\",\"cpu_seconds_exact\":\"{}\"}}",
                                    json_escape(&j.id),
                                    j.phase(),
                                    fmt_g(o.cpu)
                                ),
                            )
                        }
                    }
                } else if p == "/_devnet/fault" {
                    self.fault_body()
                } else if p == "/_devnet/hijack" {
                    let h = self.hijack.lock().unwrap();
                    worker_json(200, &serde_json::json!({"done": h.done, "attempts": h.attempts}).to_string())
                } else {
                    // Prefix routing: any other GET is the service info.
                    worker_json(200, ROOT_BODY)
                }
            }
            "POST" if p == "/submit" => {
                if self.fault() == Some(Fault::Reject429) {
                    return err(429, "Rate limit exceeded");
                }
                self.wait_unlocked().await;
                self.submit(req).await
            }
            "POST" if p == "/_devnet/fault" => {
                let v: serde_json::Value = match serde_json::from_slice(&req.body) {
                    Ok(v) => v,
                    Err(_) => return err(400, "Body must be JSON like {\"mode\":\"slow\"} or {\"mode\":null}"),
                };
                let new = match &v["mode"] {
                    serde_json::Value::Null => None,
                    serde_json::Value::String(s) if s == "none" || s.is_empty() => None,
                    serde_json::Value::String(s) => match Fault::parse(s) {
                        Some(f) => Some(f),
                        None => return err(400, &format!("Unknown fault mode: {s}")),
                    },
                    _ => return err(400, "mode must be a string or null"),
                };
                if let Some(f) = new {
                    if let Err(e) = self.fault_allowed(f) {
                        return err(400, &e);
                    }
                }
                *self.fault.lock().unwrap() = new;
                eprintln!("worker {}: fault set to {:?}", self.cfg.index, new.map(Fault::name));
                if new == Some(Fault::HijackPayout) {
                    self.start_hijack();
                }
                self.fault_body()
            }
            "POST" if p == "/_devnet/payout-signature" => {
                // Devnet-only: what an operator does offline with the worker's key.
                let v: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
                let Some(payout) = v["payout"].as_str().filter(|p| sign::is_address(p)) else {
                    return err(400, "Body must be JSON like {\"payout\":\"0x<40 hex>\",\"chain_id\":31337}");
                };
                let chain = v["chain_id"].as_u64().unwrap_or(DEFAULT_CHAIN_ID);
                worker_json(
                    200,
                    &serde_json::json!({
                        "worker_id": self.worker_id,
                        "payout": payout,
                        "payout_chain_id": chain,
                        "payout_signature": sign::payout_signature(&self.key, chain, payout),
                    })
                    .to_string(),
                )
            }
            _ => err(404, "Not found"),
        }
    }

    /// Whether worker `index` can take fault `f` (relaying needs worker 0, and another one).
    pub fn fault_allowed(&self, f: Fault) -> Result<(), String> {
        if f.relays() || f == Fault::HijackPayout {
            if self.cfg.index == 0 {
                return Err(format!("Fault {} targets worker 0; give it to another worker", f.name()));
            }
            if self.cfg.worker0.is_none() {
                return Err(format!("Fault {} needs worker 0's address", f.name()));
            }
        }
        if f == Fault::HijackPayout && self.cfg.registry.is_none() {
            return Err("Fault hijack-payout needs a registry".into());
        }
        Ok(())
    }

    /// The stdout a client is shown (the `stdout-lie` fault changes it; files and the
    /// signature never change).
    fn shown_stdout(&self, real: &[u8]) -> Vec<u8> {
        if self.fault() == Some(Fault::StdoutLie) {
            stdout_lie(real)
        } else {
            real.to_vec()
        }
    }

    fn is_relayed(&self, id: &str) -> bool {
        self.relayed.lock().unwrap().contains(id)
    }

    /// Fault `relay`: a submit is forwarded to worker 0 (the same request bytes), and
    /// every job endpoint of a forwarded job answers with worker 0's response. `None`:
    /// not relayed, serve locally.
    async fn relay(&self, req: &Request) -> Option<Vec<u8>> {
        let w0 = self.cfg.worker0.clone()?;
        let p = req.path.as_str();
        let fault = self.fault();
        let relaying = fault.map(Fault::relays).unwrap_or(false);
        let forward = if req.method == "POST" && p == "/submit" {
            relaying
        } else if req.method == "GET" && p == "/health" {
            fault == Some(Fault::RelayKey)
        } else if req.method == "GET" {
            let id = ["/status/", "/logs/", "/outputs/", "/download/", "/_devnet/jobs/"]
                .iter()
                .find_map(|pre| p.strip_prefix(pre))
                .map(|rest| rest.split('/').next().unwrap_or(""));
            id.map(|id| self.is_relayed(id)).unwrap_or(false)
        } else {
            false
        };
        if !forward {
            return None;
        }
        // Long enough for the reference-timing blocking endpoints and big downloads.
        let timeout = self.cfg.job_timeout + Duration::from_secs(60);
        let resp = match http::forward(&w0, req, timeout).await {
            Ok(r) => r,
            Err(e) => return Some(err(502, &format!("Relay: worker 0 at {w0} did not answer: {e}"))),
        };
        if req.method == "POST" {
            let (code, body) = http::split_response(&resp);
            if code == 200 {
                if let Some(id) = serde_json::from_slice::<serde_json::Value>(body).ok().and_then(|v| v["job_id"].as_str().map(str::to_string)) {
                    eprintln!("worker {}: fault relay: job {id} forwarded to worker 0", self.cfg.index);
                    self.relayed.lock().unwrap().insert(id);
                    self.accepted.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
        Some(resp)
    }

    /// Fault `relay`, WebSocket: replays the client's handshake to worker 0 and then
    /// copies bytes both ways, like a TCP-level proxy.
    async fn relay_ws(&self, mut s: TcpStream, req: &Request) {
        let Some(w0) = self.cfg.worker0.clone() else { return };
        let Ok(mut up) = TcpStream::connect(&w0).await else { return };
        use tokio::io::AsyncWriteExt;
        if up.write_all(&http::request_bytes(req)).await.is_err() {
            return;
        }
        let _ = tokio::io::copy_bidirectional(&mut s, &mut up).await;
    }

    /// Fault `hijack-payout`, once per process (or per runtime switch to the fault).
    fn start_hijack(self: &Arc<Self>) {
        {
            let mut h = self.hijack.lock().unwrap();
            if h.started {
                return;
            }
            *h = Hijack { started: true, ..Default::default() };
        }
        let w = self.clone();
        tokio::spawn(async move {
            w.hijack_payout().await;
            let mut h = w.hijack.lock().unwrap();
            h.done = true;
            h.started = false;
        });
    }

    /// Tries every way to take over worker 0's record and payout; logs each attempt and
    /// the registry's answer (stderr and `GET /_devnet/hijack`).
    async fn hijack_payout(&self) {
        let (Some(reg), Some(w0)) = (self.cfg.registry.clone(), self.cfg.worker0.clone()) else { return };
        let i = self.cfg.index;
        let w0_url = format!("http://{w0}");
        // Worker 0's record (and our own) must be there first: a takeover, not a head start.
        let deadline = Instant::now() + Duration::from_secs(30);
        let w0_rec = loop {
            let nodes = http::client_request(&reg, "GET", "/nodes", None, b"", Duration::from_secs(5))
                .await
                .ok()
                .and_then(|(_, b)| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .unwrap_or_default();
            let find = |url: &str| nodes["nodes"].as_array().and_then(|a| a.iter().find(|n| n["endpoint"] == url).cloned());
            if let (Some(r), Some(_)) = (find(&w0_url), find(&self.url)) {
                break r;
            }
            if Instant::now() > deadline {
                eprintln!("worker {i}: hijack-payout: worker 0 never appeared in the registry");
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let w0_caps = w0_rec["capabilities"].clone();
        let own_caps = self.capabilities();
        let own_payout = own_caps["payout"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("0x{}", &sha256_hex(self.worker_id.as_bytes())[..40]));
        let chain = own_caps["payout_chain_id"].as_u64().unwrap_or(DEFAULT_CHAIN_ID);
        let own_sig = sign::payout_signature(&self.key, chain, &own_payout);
        let with = |base: &serde_json::Value, fields: serde_json::Value| {
            let mut c = base.clone();
            if let (Some(c), Some(f)) = (c.as_object_mut(), fields.as_object()) {
                c.extend(f.clone());
            }
            c
        };
        let stolen = |wid: &serde_json::Value| {
            serde_json::json!({"worker_id": wid, "payout": own_payout, "payout_chain_id": chain, "payout_signature": own_sig})
        };
        let w0_id = w0_caps["worker_id"].clone();
        let fresh = format!("{}/hijack", self.url);
        let mut attempts = vec![
            ("own-key-on-worker0-endpoint", w0_url.clone(), with(&w0_caps, stolen(&serde_json::json!(self.worker_id)))),
            ("worker0-key-own-payout", w0_url.clone(), with(&w0_caps, stolen(&w0_id))),
            ("own-endpoint-claims-worker0-key", self.url.clone(), with(&own_caps, stolen(&w0_id))),
            (
                "new-endpoint-replays-worker0-binding",
                fresh.clone(),
                with(&w0_caps, serde_json::json!({"sandrun_endpoint": fresh})),
            ),
        ];
        if !w0_caps["payout"].is_null() {
            let drop = serde_json::json!({"payout": null, "payout_chain_id": null, "payout_signature": null});
            attempts.push(("drop-worker0-payout", w0_url.clone(), with(&w0_caps, drop)));
        }
        for (route, endpoint, caps) in attempts {
            let body = serde_json::json!({"endpoint": endpoint, "capabilities": caps}).to_string();
            let r = http::client_request(&reg, "POST", "/register", Some("application/json"), body.as_bytes(), Duration::from_secs(5)).await;
            let (status, answer) = match r {
                Ok((code, b)) => (
                    serde_json::json!(code),
                    serde_json::from_slice::<serde_json::Value>(&b).unwrap_or_else(|_| String::from_utf8_lossy(&b).into_owned().into()),
                ),
                Err(e) => (serde_json::Value::Null, serde_json::json!(e.to_string())),
            };
            eprintln!("worker {i}: hijack-payout: {route} ({endpoint}): HTTP {status} {answer}");
            self.hijack.lock().unwrap().attempts.push(serde_json::json!({"route": route, "endpoint": endpoint, "status": status, "answer": answer}));
        }
    }

    fn fault_body(&self) -> Vec<u8> {
        let f = match self.fault() {
            Some(f) => format!("\"{}\"", f.name()),
            None => "null".into(),
        };
        worker_json(200, &format!("{{\"fault\":{f}}}"))
    }

    fn job(&self, id: &str) -> Option<Arc<Job>> {
        self.st.lock().unwrap().jobs.get(id).cloned()
    }

    /// (used, available, active, can_submit, reason) for a client; prunes old entries.
    fn quota(&self, st: &mut State, ip: IpAddr) -> (f64, f64, usize, bool, String) {
        let q = st.quotas.entry(ip).or_default();
        let now = Instant::now();
        while q.accepted.front().map(|t| now.duration_since(*t) > Duration::from_secs(3600)).unwrap_or(false) {
            q.accepted.pop_front();
        }
        while q.cpu.front().map(|(t, _)| now.duration_since(*t) > Duration::from_secs(60)).unwrap_or(false) {
            q.cpu.pop_front();
        }
        let used: f64 = q.cpu.iter().fold(0.0, |a, (_, c)| a + c);
        let limit = self.cfg.cpu_per_minute;
        if !self.cfg.rate_limit {
            return (used, (limit - used).max(0.0), q.active, true, String::new());
        }
        let reason = if q.active >= self.cfg.max_active {
            format!("Max concurrent jobs reached ({})", self.cfg.max_active)
        } else if q.accepted.len() >= self.cfg.jobs_per_hour {
            format!("Max jobs per hour reached ({})", self.cfg.jobs_per_hour)
        } else if used >= limit {
            // Wait until enough of the window has expired to get back under the limit.
            let mut left = used;
            let mut wait = 60u64;
            for (t, c) in q.cpu.iter() {
                left -= c;
                if left < limit {
                    let until = (*t + Duration::from_secs(60)).saturating_duration_since(now);
                    wait = until.as_secs() + u64::from(until.subsec_nanos() > 0);
                    break;
                }
            }
            format!("CPU quota exhausted, wait {wait} seconds")
        } else {
            String::new()
        };
        let can = reason.is_empty();
        (used, if can { (limit - used).max(0.0) } else { 0.0 }, q.active, can, reason)
    }

    fn stats(&self, ip: IpAddr) -> Vec<u8> {
        let mut st = self.st.lock().unwrap();
        let (used, avail, active, can, reason) = self.quota(&mut st, ip);
        let queue_len = st.queue.len();
        let running = *self.running.borrow();
        worker_json(
            200,
            &format!(
                "{{\"your_quota\":{{\"used\":{},\"limit\":{},\"available\":{},\"active_jobs\":{},\"can_submit\":{},\"reason\":\"{}\"}},\"system\":{{\"queue_length\":{},\"active_jobs\":{}}}}}",
                fmt_g(used),
                fmt_g(self.cfg.cpu_per_minute),
                fmt_g(avail),
                active,
                can,
                json_escape(&reason),
                queue_len,
                running
            ),
        )
    }

    fn status(&self, id: &str) -> Vec<u8> {
        let Some(job) = self.job(id) else { return err(404, "Job not found") };
        let pos = {
            let st = self.st.lock().unwrap();
            st.queue.iter().position(|j| Arc::ptr_eq(j, &job)).map(|i| i + 1).unwrap_or(0)
        };
        let status = job.status_str();
        let o = job.out.lock().unwrap();
        let files = if o.files.is_empty() {
            String::new()
        } else {
            let v: Vec<String> = o
                .files
                .iter()
                .map(|f| {
                    format!(
                        "    \"{}\": {{\n      \"size_bytes\": {},\n      \"sha256\": \"{}\",\n      \"type\": \"{}\"\n    }}",
                        json_escape_bytes(&f.path),
                        f.size,
                        f.sha,
                        file_type(&f.path)
                    )
                })
                .collect();
            v.join(",\n")
        };
        let q = |v: &Option<String>| match v {
            Some(s) => format!("\"{s}\""),
            None => "null".into(),
        };
        let body = format!(
            "{{\n  \"job_id\": \"{}\",\n  \"status\": \"{}\",\n  \"queue_position\": {},\n  \"execution_metadata\": {{\n    \"cpu_seconds\": {},\n    \"memory_peak_bytes\": {},\n    \"memory_peak_mb\": {},\n    \"wall_time_ms\": 0,\n    \"exit_code\": {},\n    \"environment\": \"{}\",\n    \"interpreter\": \"{}\"\n  }},\n  \"job_hash\": \"{}\",\n  \"output_files\": {{\n{}\n  }},\n  \"worker_metadata\": {{\n    \"worker_id\": {},\n    \"signature\": {}\n  }}\n}}",
            json_escape(&job.id),
            status,
            pos,
            fmt_2f(o.cpu),
            o.mem_mb * 1_048_576,
            o.mem_mb,
            o.exit_code,
            json_escape(&job.environment),
            json_escape(&job.interpreter),
            job.job_hash,
            files,
            q(&o.worker_id),
            q(&o.signature)
        );
        worker_json(200, &body)
    }

    fn outputs(&self, id: &str) -> Vec<u8> {
        let Some(job) = self.job(id) else { return err(404, "Job not found") };
        let files = output_candidates(&job.dir, &job.outputs);
        let entries = if files.is_empty() {
            String::new()
        } else {
            let v: Vec<String> = files
                .iter()
                .map(|(p, size)| {
                    let name = json_escape_bytes(p);
                    format!(
                        "    {{\n      \"name\": \"{}\",\n      \"size\": {},\n      \"size_formatted\": \"{}\",\n      \"type\": \"{}\",\n      \"mime_type\": \"{}\",\n      \"download_url\": \"/download/{}/{}\"\n    }}",
                        name,
                        size,
                        size_formatted(*size),
                        file_type(p),
                        mime_type(p),
                        json_escape(&job.id),
                        name
                    )
                })
                .collect();
            v.join(",\n")
        };
        let body = format!(
            "{{\n  \"job_id\": \"{}\",\n  \"status\": \"{}\",\n  \"total_files\": {},\n  \"files\": [\n{}\n  ]\n}}",
            json_escape(&job.id),
            job.status_str(),
            files.len(),
            entries
        );
        worker_json(200, &body)
    }

    async fn download(self: &Arc<Self>, rest: &str) -> Vec<u8> {
        let (id, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        let Some(job) = self.job(id) else { return err(404, "Job not found") };
        if path.is_empty() {
            if matches!(job.phase(), Phase::Queued | Phase::Running) {
                // The reference crashes here; the devnet answers instead.
                return err(400, "Job not finished");
            }
            let dir = job.dir.clone();
            let tgz = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
                let enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                let mut b = tar::Builder::new(enc);
                b.follow_symlinks(false);
                b.append_dir_all(".", &dir)?;
                b.into_inner()?.finish()
            })
            .await;
            let data = match tgz {
                Ok(Ok(d)) => d,
                Ok(Err(e)) => return err(500, &format!("Cannot archive job: {e}")),
                Err(e) => return err(500, &format!("Cannot archive job: {e}")),
            };
            self.delete_job(&job);
            return worker_response(
                200,
                "application/gzip",
                &[("Content-Disposition", format!("attachment; filename=\"{}.tar.gz\"", job.id))],
                &data,
            );
        }
        let canon_dir = match std::fs::canonicalize(&job.dir) {
            Ok(d) => d,
            Err(_) => return err(404, "Job not found"),
        };
        let mut target = std::fs::canonicalize(job.dir.join(path));
        if target.is_err() && path.contains('%') {
            let dec = percent_decode(path);
            target = std::fs::canonicalize(job.dir.join(std::ffi::OsStr::from_bytes(&dec)));
        }
        let target = match target {
            Ok(t) => t,
            Err(_) => {
                return err(
                    500,
                    &format!("filesystem error: cannot make canonical path: No such file or directory [{}/{}]", job.id, path),
                )
            }
        };
        if !target.starts_with(&canon_dir) {
            return err(403, "Access denied: path traversal detected");
        }
        if target.is_dir() {
            return err(404, "File not found");
        }
        match tokio::task::block_in_place(|| std::fs::read(&target)) {
            Ok(data) => {
                let name = target.file_name().map(|n| n.as_bytes().to_vec()).unwrap_or_default();
                worker_response(
                    200,
                    mime_type(&name),
                    &[("Content-Disposition", format!("attachment; filename=\"{}\"", String::from_utf8_lossy(&name)))],
                    &data,
                )
            }
            Err(e) => err(500, &format!("Cannot read file: {e}")),
        }
    }

    fn delete_job(&self, job: &Arc<Job>) {
        {
            let mut st = self.st.lock().unwrap();
            st.jobs.remove(&job.id);
            st.queue.retain(|j| !Arc::ptr_eq(j, job));
            let mut o = job.out.lock().unwrap();
            if o.active_counted {
                o.active_counted = false;
                if let Some(q) = st.quotas.get_mut(&job.ip) {
                    q.active = q.active.saturating_sub(1);
                }
            }
        }
        job.phase.send_replace(Phase::Deleted);
        let _ = std::fs::remove_dir_all(&job.dir);
    }

    async fn submit(self: &Arc<Self>, req: &Request) -> Vec<u8> {
        let Some(b) = req.header_exact("Content-Type").and_then(upload::boundary) else {
            return err(400, "No files uploaded");
        };
        let parts = upload::parse(&req.body, &b);
        if parts.is_empty() {
            return err(400, "No files uploaded");
        }
        {
            let mut st = self.st.lock().unwrap();
            let (_, avail, active, can, reason) = self.quota(&mut st, req.peer);
            if !can {
                return worker_json(
                    429,
                    &format!(
                        "{{\"error\":\"{}\",\"cpu_available\":{},\"active_jobs\":{}}}",
                        json_escape(&reason),
                        fmt_g(avail),
                        active
                    ),
                );
            }
        }
        let staging = self.jobs_dir.join(format!(".staging-{}", self.counter.load(Ordering::SeqCst) + rand_suffix()));
        // File writes and archive extraction can take a while for big uploads.
        let res = tokio::task::block_in_place(|| self.stage(&staging, &parts));
        let m = match res {
            Ok(m) => m,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&staging);
                return err(400, &e);
            }
        };
        let entrypoint = m.entrypoint.clone().unwrap_or_default();
        let interpreter = m.interpreter.clone().unwrap_or_else(|| "python3".into());
        let environment = m.environment.clone().unwrap_or_default();
        let content = std::fs::read(staging.join(&entrypoint)).ok();
        let job_hash = sign::job_hash(&entrypoint, &interpreter, &environment, &m.args, content.as_deref());
        // An id this worker handed out for a job it relayed to worker 0 stays worker 0's.
        let id = loop {
            let n = self.counter.fetch_add(1, Ordering::SeqCst) + 1;
            let id = format!("job_{}_{}", unix_now(), n);
            if !self.is_relayed(&id) {
                break id;
            }
        };
        let dir = self.jobs_dir.join(&id);
        if let Err(e) = std::fs::rename(&staging, &dir) {
            let _ = std::fs::remove_dir_all(&staging);
            return err(500, &format!("Cannot create job: {e}"));
        }
        let (phase, _) = watch::channel(Phase::Queued);
        let job = Arc::new(Job {
            id: id.clone(),
            ip: req.peer,
            dir,
            entrypoint,
            interpreter,
            environment,
            args: m.args,
            outputs: m.outputs,
            job_hash,
            submitted: Instant::now(),
            stdout: Arc::new(Mutex::new(Vec::new())),
            stderr: Arc::new(Mutex::new(Vec::new())),
            pgid: AtomicI32::new(0),
            phase,
            out: Mutex::new(Outcome { active_counted: true, ..Default::default() }),
        });
        {
            let mut st = self.st.lock().unwrap();
            st.jobs.insert(id.clone(), job.clone());
            st.queue.push_back(job);
            let q = st.quotas.entry(req.peer).or_default();
            q.active += 1;
            q.accepted.push_back(Instant::now());
        }
        self.accepted.fetch_add(1, Ordering::SeqCst);
        self.wake.notify_one();
        worker_json(200, &format!("{{\"job_id\":\"{id}\",\"status\":\"queued\"}}"))
    }

    /// Writes the uploaded files into `dir` and works out the manifest.
    fn stage(&self, dir: &Path, parts: &[upload::Part<'_>]) -> Result<Manifest, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("Cannot create job dir: {e}"))?;
        let limit = (self.cfg.max_body as u64).saturating_mul(10).max(1 << 30);
        let mut manifest_text = None;
        for p in parts {
            if p.name == "files" {
                if let Some(f) = &p.filename {
                    upload::save_file(dir, f, p.data, limit)?;
                }
            } else if p.name == "manifest" {
                manifest_text = Some(String::from_utf8_lossy(p.data).into_owned());
            }
        }
        let mut m = manifest_text.as_deref().map(Manifest::scan).unwrap_or_default();
        if m.entrypoint.is_none() {
            if let Ok(j) = std::fs::read(dir.join("job.json")) {
                m.merge_missing(&Manifest::scan(&String::from_utf8_lossy(&j)));
            }
        }
        if m.entrypoint.is_none() {
            for (f, interp) in [("main.py", "python3"), ("index.js", "node"), ("run.sh", "bash")] {
                if dir.join(f).is_file() {
                    m.entrypoint = Some(f.into());
                    if m.interpreter.is_none() {
                        m.interpreter = Some(interp.into());
                    }
                    break;
                }
            }
        }
        let Some(ep) = &m.entrypoint else { return Err("No entrypoint specified".into()) };
        if upload::safe_rel(Path::new(ep)).is_none() {
            return Err(format!("Invalid entrypoint: {ep}"));
        }
        Ok(m)
    }

    async fn scheduler(self: Arc<Self>) {
        loop {
            if self.cfg.reference_timing {
                tokio::time::sleep(Duration::from_secs(1)).await;
            } else {
                self.wake.notified().await;
            }
            loop {
                let job = {
                    let mut st = self.st.lock().unwrap();
                    if *self.running.borrow() >= self.cfg.concurrency.max(1) {
                        None
                    } else {
                        st.queue.pop_front()
                    }
                };
                let Some(job) = job else { break };
                self.running.send_modify(|n| *n += 1);
                job.phase.send_replace(Phase::Running);
                let w = self.clone();
                tokio::spawn(async move {
                    w.clone().run_job(job).await;
                    w.running.send_modify(|n| *n -= 1);
                    w.wake.notify_one();
                });
            }
        }
    }

    async fn run_job(self: Arc<Self>, job: Arc<Job>) {
        let spec = ExecSpec {
            dir: job.dir.clone(),
            interpreter: job.interpreter.clone(),
            entrypoint: job.entrypoint.clone(),
            args: job.args.clone(),
            wall_timeout: self.cfg.job_timeout,
            cpu_limit_secs: self.cfg.cpu_limit_secs,
            mem_limit_mb: self.cfg.mem_limit_mb,
            output_cap: self.cfg.output_cap,
            netns: self.cfg.netns,
            crash: self.fault() == Some(Fault::Crash),
        };
        let j2 = job.clone();
        let r = tokio::task::spawn_blocking(move || {
            let r = exec::run(&spec, j2.stdout.clone(), j2.stderr.clone(), &j2.pgid);
            let files = output_candidates(&j2.dir, &j2.outputs);
            let mut files: Vec<OutFile> = files
                .into_iter()
                .map(|(p, size)| {
                    let sha = sha256_file(&j2.dir.join(std::ffi::OsStr::from_bytes(&p)));
                    OutFile { path: p, size, sha }
                })
                .collect();
            files.sort_by(|a, b| a.path.cmp(&b.path));
            (r, files)
        })
        .await;
        let (r, mut files) = match r {
            Ok(x) => x,
            Err(_) => (exec::ExecResult { exit_code: -1, cpu_seconds: 0.0, maxrss_kb: 0, timed_out: false }, Vec::new()),
        };
        if r.timed_out {
            job.stderr.lock().unwrap().extend_from_slice(b"\nKilled: timeout");
        }
        let mem_mb = r.maxrss_kb.div_ceil(1024);
        let fault = self.fault();
        if fault == Some(Fault::WrongOutput) {
            if let Some(f) = files.first_mut() {
                // A hash that cannot match the file's bytes, signed as if it were right.
                let mut tampered = f.path.clone();
                tampered.extend_from_slice(b"\0sandrun-devnet wrong-output");
                f.sha = sha256_hex(&tampered);
            }
        }
        let pairs: Vec<(Vec<u8>, String)> = files.iter().map(|f| (f.path.clone(), f.sha.clone())).collect();
        let signed = sign::signed_string(&job.job_hash, r.exit_code, r.cpu_seconds, mem_mb, &pairs);
        let (wid, sig) = match fault {
            Some(Fault::Anonymous) => (None, None),
            Some(Fault::BadSignature) => {
                let mut other = signed.clone();
                other.extend_from_slice(b"tampered");
                (Some(self.worker_id.clone()), Some(sign::sign_b64(&self.key, &other)))
            }
            _ => (Some(self.worker_id.clone()), Some(sign::sign_b64(&self.key, &signed))),
        };
        {
            let mut st = self.st.lock().unwrap();
            let mut o = job.out.lock().unwrap();
            o.exit_code = r.exit_code;
            o.cpu = r.cpu_seconds;
            o.mem_mb = mem_mb;
            o.files = files;
            o.worker_id = wid;
            o.signature = sig;
            let q = st.quotas.entry(job.ip).or_default();
            if o.active_counted {
                o.active_counted = false;
                q.active = q.active.saturating_sub(1);
            }
            q.cpu.push_back((Instant::now(), r.cpu_seconds));
        }
        job.phase.send_replace(Phase::Done);
    }

    async fn reaper(self: Arc<Self>) {
        let every = (self.cfg.job_ttl / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
        loop {
            tokio::time::sleep(every).await;
            let old: Vec<Arc<Job>> = {
                let st = self.st.lock().unwrap();
                st.jobs
                    .values()
                    .filter(|j| j.submitted.elapsed() >= self.cfg.job_ttl && j.phase() != Phase::Running)
                    .cloned()
                    .collect()
            };
            for j in old {
                self.delete_job(&j);
            }
        }
    }

    async fn serve_ws(self: Arc<Self>, mut s: TcpStream, id: &str, key: &str) {
        self.wait_unlocked().await;
        use tokio::io::AsyncWriteExt;
        if s.write_all(&ws::handshake_response(key)).await.is_err() {
            return;
        }
        let Some(job) = self.job(id) else {
            let _ = ws::send_text(&mut s, format!("[ERROR] Job not found: {id}\n").as_bytes()).await;
            close_ws(&mut s).await;
            return;
        };
        let stdout = || self.shown_stdout(&job.stdout.lock().unwrap());
        if job.phase() == Phase::Done {
            let out = stdout();
            if !out.is_empty() {
                let _ = ws::send_text(&mut s, &out).await;
            }
            let _ = ws::send_text(&mut s, format!("[STATUS] Job status: {}\n", job.status_str()).as_bytes()).await;
            if !out.is_empty() {
                let _ = ws::send_text(&mut s, &out).await;
            }
            let _ = ws::send_text(&mut s, b"[DONE] Job completed\n").await;
            close_ws(&mut s).await;
            return;
        }
        if ws::send_text(&mut s, b"[STATUS] Job status: queued\n").await.is_err() {
            return;
        }
        let mut rx = job.phase.subscribe();
        let p = rx.wait_for(|p| *p != Phase::Queued).await.map(|p| *p).unwrap_or(Phase::Deleted);
        if p == Phase::Deleted {
            let _ = ws::send_text(&mut s, format!("[ERROR] Job not found: {id}\n").as_bytes()).await;
            close_ws(&mut s).await;
            return;
        }
        if ws::send_text(&mut s, b"[STATUS] Job started\n").await.is_err() {
            return;
        }
        let p = rx.wait_for(|p| matches!(p, Phase::Done | Phase::Deleted)).await.map(|p| *p).unwrap_or(Phase::Deleted);
        if p == Phase::Deleted {
            let _ = ws::send_text(&mut s, format!("[ERROR] Job not found: {id}\n").as_bytes()).await;
            close_ws(&mut s).await;
            return;
        }
        let out = stdout();
        if !out.is_empty() {
            let _ = ws::send_text(&mut s, &out).await;
        }
        let err_out = job.stderr.lock().unwrap().clone();
        if !err_out.is_empty() {
            let mut f = b"[STDERR]\n".to_vec();
            f.extend_from_slice(&err_out);
            let _ = ws::send_text(&mut s, &f).await;
        }
        let (exit, cpu, mem) = {
            let o = job.out.lock().unwrap();
            (o.exit_code, o.cpu, o.mem_mb)
        };
        let done = format!("[DONE] Job completed (exit={}, CPU={}s, Mem={}MB)\n", exit, fmt_f(cpu), mem);
        if ws::send_text(&mut s, done.as_bytes()).await.is_err() {
            return;
        }
        // Like the reference: wait for any client frame, answer, drop TCP without a close frame.
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(3600), ws::read_frame(&mut s)).await {
            let _ = ws::send_text(&mut s, b"[DONE] Job completed\n").await;
        }
        let _ = s.shutdown().await;
    }
}

async fn close_ws(s: &mut TcpStream) {
    use tokio::io::AsyncWriteExt;
    let _ = ws::send_close(s).await;
    // Give the client a moment to answer with its own close frame.
    let _ = tokio::time::timeout(Duration::from_secs(1), ws::read_frame(s)).await;
    let _ = s.shutdown().await;
}

fn rand_suffix() -> u64 {
    use rand_core::RngCore;
    rand_core::OsRng.next_u64() >> 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match(b"*", b"a/b.txt"));
        assert!(glob_match(b"*.txt", b"output.txt"));
        assert!(!glob_match(b"*.txt", b"main.py"));
        assert!(glob_match(b"results/*", b"results/Zeta.json"));
        assert!(!glob_match(b"results/*", b"data/input.csv"));
        assert!(glob_match(b"out*", b"output.txt"));
        assert!(glob_match(b"main.py", b"main.py"));
        assert!(!glob_match(b"main.py", b"main.pyc"));
    }

    #[test]
    fn types_and_sizes() {
        assert_eq!(file_type(b"main.py"), "code");
        assert_eq!(file_type(b"output.txt"), "text");
        assert_eq!(file_type(b"results/out.csv"), "data");
        assert_eq!(file_type(b"results/.keep"), "other");
        assert_eq!(mime_type(b"results/.keep"), "application/octet-stream");
        assert_eq!(mime_type(b"main.py"), "text/x-python");
        assert_eq!(size_formatted(29), "29.0 B");
        assert_eq!(size_formatted(0), "0.0 B");
        assert_eq!(size_formatted(1536), "1.5 KB");
    }

    fn capture_body(name: &str) -> String {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/captures/http").join(name);
        let d = std::fs::read_to_string(p).unwrap();
        let (head, body) = d.split_once("\n\n").unwrap();
        let cl: usize = head.lines().find_map(|l| l.strip_prefix("Content-Length: ")).unwrap().parse().unwrap();
        body[..cl].to_string()
    }

    #[test]
    fn static_bodies_match_captures() {
        assert_eq!(ROOT_BODY, capture_body("01-get-root.http"));
        assert_eq!(ENV_BODY, capture_body("03-environments.http"));
    }
}
