//! The job queue and its execution: a submit's upload staged into a job directory under
//! an id, the queue and its scheduler (`--concurrency`, `--reference-timing`'s 1 s poll),
//! running a job (the process, its output hashes and the signed result, with the
//! `wrong-output`, `bad-signature`, `anonymous` and `crash` faults applied), and deleting
//! jobs (whole-job download, the `--job-ttl` reaper).

use super::fault::Fault;
use super::files::{output_candidates, sha256_file};
use super::quota::Quota;
use super::routes::err;
use super::Worker;
use crate::exec::{self, Buf, ExecSpec};
use crate::http::{worker_json, Request};
use crate::manifest::Manifest;
use crate::sign;
use crate::upload;
use crate::util::{fmt_g, json_escape, sha256_hex, unix_now};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Where a job is in its life; `/stream` waits on its changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    Queued,
    Running,
    Done,
    Deleted,
}

/// One output file as signed: its raw relative path, its size and its SHA-256 (hex).
pub(super) struct OutFile {
    pub(super) path: Vec<u8>,
    pub(super) size: u64,
    pub(super) sha: String,
}

/// What a finished job reports in `/status` and signs.
#[derive(Default)]
pub(super) struct Outcome {
    pub(super) exit_code: i32,
    pub(super) cpu: f64,
    pub(super) mem_mb: u64,
    pub(super) files: Vec<OutFile>,
    pub(super) worker_id: Option<String>,
    pub(super) signature: Option<String>,
    /// Whether this job still counts as active for its client's quota.
    pub(super) active_counted: bool,
}

/// One accepted job: what was submitted, its captured output and its outcome.
pub(super) struct Job {
    pub(super) id: String,
    pub(super) ip: IpAddr,
    pub(super) dir: PathBuf,
    pub(super) entrypoint: String,
    pub(super) interpreter: String,
    pub(super) environment: String,
    pub(super) args: Vec<String>,
    pub(super) outputs: Vec<String>,
    pub(super) job_hash: String,
    pub(super) submitted: Instant,
    pub(super) stdout: Buf,
    pub(super) stderr: Buf,
    pub(super) pgid: AtomicI32,
    pub(super) phase: watch::Sender<Phase>,
    pub(super) out: Mutex<Outcome>,
}

impl Job {
    pub(super) fn phase(&self) -> Phase {
        *self.phase.borrow()
    }
    pub(super) fn status_str(&self) -> &'static str {
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

/// The jobs this worker holds, its queue and its clients' quotas, under one lock.
#[derive(Default)]
pub(super) struct State {
    pub(super) jobs: HashMap<String, Arc<Job>>,
    pub(super) queue: VecDeque<Arc<Job>>,
    pub(super) quotas: HashMap<IpAddr, Quota>,
}

impl Worker {
    pub(super) fn job(&self, id: &str) -> Option<Arc<Job>> {
        self.st.lock().unwrap().jobs.get(id).cloned()
    }

    pub(super) fn delete_job(&self, job: &Arc<Job>) {
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

    pub(super) async fn submit(self: &Arc<Self>, req: &Request) -> Vec<u8> {
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

    pub(super) async fn scheduler(self: Arc<Self>) {
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
            env: super::registration::gpu_env(&self.capabilities()["gpu"]),
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

    pub(super) async fn reaper(self: Arc<Self>) {
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
}

fn rand_suffix() -> u64 {
    use rand_core::RngCore;
    rand_core::OsRng.next_u64() >> 1
}
