//! `JobExecution`: watching a submitted job, waiting for it, checking it, its logs,
//! cancelling, downloading.

use crate::api::wire::{Logs, WorkerStatus};
use crate::api::WorkerClient;
use crate::error::{Error, ErrorCode, Result};
use crate::job::PreparedJob;
use crate::platform::{WebSocket, WsEvent, WS_UPGRADE_TIMEOUT_MS};
use crate::proof::verify_status_signature;
use crate::types::{ConsensusLevel, JobResult, OutputFile, PaymentInfo, Proof, ProofCheck, ResultStatus};
use crate::platform::target::{self, Staged, WriteOptions};
use crate::util::{race, CancelToken, Either};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

/// Extra seconds past the job's timeout before the SDK gives up waiting, for queueing
/// and the worker's own bookkeeping.
pub const TIMEOUT_GRACE_SECS: f64 = 5.0;

/// A finished, checked result and the output files' bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    pub result: JobResult,
    /// (path, bytes) of every output file that was downloaded and checked.
    pub files: Vec<(String, Rc<[u8]>)>,
}

struct Inner {
    client: WorkerClient,
    id: String,
    job: Rc<PreparedJob>,
    level: ConsensusLevel,
    submitted_ms: f64,
    cancel: CancelToken,
    status: RefCell<String>,
    exact_cpu: Cell<Option<f64>>,
    finished: RefCell<Option<Finished>>,
    cost: RefCell<PaymentInfo>,
    /// While `download_to` runs: output path -> the temporary file its bytes stream
    /// into while they are checked, instead of memory.
    spool: RefCell<std::collections::BTreeMap<String, String>>,
    /// Who may sign this result: the key the worker showed at `/health` when its pool
    /// joined, and the user's allowlist.
    trust: RefCell<SignerPolicy>,
    /// With `gpu()`: where the job was placed and what was checked (`JobResult.placement`).
    placement: RefCell<Option<crate::types::Placement>>,
}

/// Which keys may sign a result. A signature by any other key is a failed check, so a
/// relay that passes on another worker's signed result does not count as that worker.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SignerPolicy {
    /// The key this worker presented at `/health` (pools bind it at `join()`).
    pub bound_key: Option<String>,
    /// Keys the user trusts (`allowedWorkers`, `allow()`); `None` trusts any key.
    pub allowed: Option<Vec<String>>,
}

impl SignerPolicy {
    /// `None` when `signer` may sign, else why not.
    pub fn refuses(&self, signer: Option<&str>) -> Option<String> {
        let signer = signer.unwrap_or("(none)");
        if let Some(k) = &self.bound_key {
            if k != signer {
                return Some(format!("signed by key {signer}, but this worker presented key {k} at /health: a relayed or substituted result"));
            }
        }
        if let Some(a) = &self.allowed {
            if !a.iter().any(|k| k == signer) {
                return Some(format!("signed by key {signer}, which is not in the allowlist ({} key(s))", a.len()));
            }
        }
        None
    }
}

/// A job submitted to one worker.
#[derive(Clone)]
pub struct JobExecution {
    inner: Rc<Inner>,
}

impl JobExecution {
    pub fn new(client: WorkerClient, id: String, job: Rc<PreparedJob>, level: ConsensusLevel, submitted_ms: f64) -> Self {
        let allowed = job.allowed.clone();
        JobExecution {
            inner: Rc::new(Inner {
                client,
                id,
                job,
                level,
                submitted_ms,
                cancel: CancelToken::default(),
                status: RefCell::new("queued".into()),
                exact_cpu: Cell::new(None),
                finished: RefCell::new(None),
                spool: RefCell::default(),
                cost: RefCell::new(PaymentInfo::none()),
                trust: RefCell::new(SignerPolicy { bound_key: None, allowed }),
                placement: RefCell::new(None),
            }),
        }
    }

    /// The job ended with `exit_code` (as the worker reports it; `wait()` checks it): the
    /// status reads `completed` or `failed` from now on, unless the caller cancelled.
    fn note_end(&self, exit_code: i64) {
        let mut s = self.inner.status.borrow_mut();
        if *s != "cancelled" {
            *s = if exit_code == 0 { "completed" } else { "failed" }.into();
        }
    }

    /// Only accept a result signed under `policy`.
    pub fn set_signer_policy(&self, policy: SignerPolicy) {
        *self.inner.trust.borrow_mut() = policy;
    }

    /// Record where a GPU job was placed; it is reported as `JobResult.placement`.
    pub fn set_placement(&self, placement: crate::types::Placement) {
        *self.inner.placement.borrow_mut() = Some(placement);
    }

    /// The worker's job id (unique only together with [`Self::worker`]).
    pub fn id(&self) -> &str {
        &self.inner.id
    }
    /// The worker's base URL.
    pub fn worker(&self) -> &str {
        &self.inner.client.base
    }
    /// Last known status: `queued`, `running`, `completed`, `failed` or `cancelled`.
    pub fn status(&self) -> String {
        self.inner.status.borrow().clone()
    }
    /// The job as it was sent.
    pub fn job(&self) -> &Rc<PreparedJob> {
        &self.inner.job
    }
    pub fn set_cost(&self, cost: PaymentInfo) {
        *self.inner.cost.borrow_mut() = cost;
    }

    /// Stop watching: pending and later `wait()`s reject with `CANCELLED`.
    /// Sandrun workers have no cancel endpoint, so the job itself runs to its end there.
    pub fn cancel(&self) {
        *self.inner.status.borrow_mut() = "cancelled".into();
        self.inner.cancel.cancel();
    }

    fn cancelled_error(&self) -> Error {
        Error::new(ErrorCode::Cancelled, format!("job {} on {} was cancelled by the caller", self.inner.id, self.worker()))
    }

    /// Race `f` against cancellation and the job's deadline.
    async fn guarded<T>(&self, f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        let p = self.inner.client.platform().clone();
        let deadline_ms = self.inner.submitted_ms + (self.inner.job.timeout_secs + TIMEOUT_GRACE_SECS) * 1000.0;
        let left = (deadline_ms - p.now_ms()).max(0.0) as u64;
        let stop = async {
            match race(self.inner.cancel.cancelled(), p.sleep(left)).await {
                Either::Left(()) => self.cancelled_error(),
                Either::Right(()) => Error::new(
                    ErrorCode::Timeout,
                    format!(
                        "job {} on {} did not finish within its timeout of {} s; the worker may still be running it (Sandrun has no cancel endpoint)",
                        self.inner.id,
                        self.worker(),
                        self.inner.job.timeout_secs
                    ),
                ),
            }
        };
        match race(f, stop).await {
            Either::Left(r) => r,
            Either::Right(e) => Err(e),
        }
    }

    /// Follow the job's WebSocket until its `[DONE]` frame: the end is seen at once (no
    /// polling delay), and the live frame carries the exact CPU figure that was signed,
    /// which spares the signature check its candidate search. False when no socket
    /// could be used; the caller then polls.
    async fn watch_stream(&self) -> bool {
        let Some(ws) = self.open_stream().await else {
            return false;
        };
        loop {
            match ws.next().await {
                WsEvent::Text(t) if t.starts_with("[DONE]") => {
                    if let Some(cpu) = done_frame_cpu(&t) {
                        self.inner.exact_cpu.set(Some(cpu));
                    }
                    // The reference keeps the socket open until the client says something.
                    ws.send("done");
                    ws.close();
                    return true;
                }
                WsEvent::Text(t) if t.starts_with("[ERROR]") => {
                    ws.close();
                    return false;
                }
                WsEvent::Text(t) => {
                    if t.starts_with("[STATUS] Job started") {
                        *self.inner.status.borrow_mut() = "running".into();
                    }
                }
                WsEvent::Closed => return false,
            }
        }
    }

    /// The job's log socket, or `None` (no WebSocket, refused, or an upgrade that took
    /// longer than [`WS_UPGRADE_TIMEOUT_MS`]: the caller then polls `/status`). The
    /// host has its own upgrade timeout; this one holds even for a host that has none.
    async fn open_stream(&self) -> Option<Box<dyn WebSocket>> {
        let c = &self.inner.client;
        let p = c.platform();
        match race(p.websocket(&c.stream_url(&self.inner.id)), p.sleep(WS_UPGRADE_TIMEOUT_MS + 1_000)).await {
            Either::Left(Ok(ws)) => ws,
            _ => None,
        }
    }

    /// Wait for the end (stream, else polling), then read the final `/status`.
    async fn final_status(&self) -> Result<WorkerStatus> {
        Ok(self.final_status_with(false).await?.0)
    }

    /// [`Self::final_status`]; with `logs`, once the stream has seen the end, `/logs` is
    /// read in the same round trip as `/status` (and used only if the status says the job
    /// ended). Polling reads `/status` alone.
    async fn final_status_with(&self, logs: bool) -> Result<(WorkerStatus, Option<Logs>)> {
        let p = self.inner.client.platform().clone();
        let mut ended = self.inner.exact_cpu.get().is_some();
        if !ended {
            // The stream shows the end at once; `/status` every few seconds is the safety
            // net for a stream that stalls without `[DONE]` (seen on the devnet when a job
            // ended as its socket connected): without it the wait lasted until the job's
            // deadline. When the poll sees the end first, the status is read below.
            let watched = async {
                Ok(match race(self.watch_stream(), self.ended_by_polling()).await {
                    Either::Left(seen) => seen,
                    Either::Right(()) => false,
                })
            };
            ended = self.guarded(watched).await?;
        }
        let mut delay = 20u64;
        loop {
            if self.inner.cancel.is_cancelled() {
                return Err(self.cancelled_error());
            }
            let (c, id) = (&self.inner.client, &self.inner.id);
            if logs && std::mem::take(&mut ended) {
                let (s, l) = self.guarded(async { Ok(crate::util::join(c.status(id), c.logs(id)).await) }).await?;
                let s = s?;
                if s.is_finished() {
                    return Ok((s, Some(l?)));
                }
            } else {
                let s = self.guarded(c.status(id)).await?;
                if s.is_finished() {
                    return Ok((s, None));
                }
            }
            self.guarded(async {
                p.sleep(delay).await;
                Ok(())
            })
            .await?;
            delay = (delay * 2).min(500);
        }
    }

    /// Resolves once `/status` says the job ended, asking after 2 s and then every 5 s at
    /// most (a reference worker answers `/status` only once its job ended anyway). Errors
    /// are ignored here: the read after the wait reports them.
    async fn ended_by_polling(&self) {
        let p = self.inner.client.platform().clone();
        let mut delay = 2_000u64;
        loop {
            p.sleep(delay).await;
            delay = (delay * 2).min(5_000);
            if matches!(self.inner.client.status(&self.inner.id).await, Ok(s) if s.is_finished()) {
                return;
            }
        }
    }

    /// Wait for the end, then check the result as the consensus level asks.
    pub async fn wait(&self) -> Result<JobResult> {
        Ok(self.finish().await?.result)
    }

    /// Wait, check, and keep the downloaded files.
    pub async fn finish(&self) -> Result<Finished> {
        if let Some(f) = self.inner.finished.borrow().clone() {
            return Ok(f);
        }
        if self.inner.cancel.is_cancelled() {
            return Err(self.cancelled_error());
        }
        let (status, logs) = self.final_status_with(true).await?;
        let finished = self.guarded(self.check(status, logs, self.inner.level.verifies())).await?;
        *self.inner.status.borrow_mut() = match finished.result.status {
            ResultStatus::Completed => "completed",
            ResultStatus::Failed => "failed",
            ResultStatus::Cancelled => "cancelled",
        }
        .into();
        *self.inner.finished.borrow_mut() = Some(finished.clone());
        Ok(finished)
    }

    /// Build the result; with `verify`, check job hash, signature and every output's bytes.
    async fn check(&self, status: WorkerStatus, logs: Option<Logs>, verify: bool) -> Result<Finished> {
        let c = &self.inner.client;
        let logs = match logs {
            Some(l) => l,
            None => c.logs(&self.inner.id).await?,
        };
        let job = &self.inner.job;
        let mut checks = Vec::new();
        let mut files = Vec::new();
        let got_hash = status.job_hash.clone().unwrap_or_default();
        checks.push(ProofCheck {
            name: "job_hash".into(),
            ok: got_hash == job.job_hash,
            detail: format!("worker reported {got_hash}, recomputed {}", job.job_hash),
        });
        let mut signed_string = None;
        let mut stdout_bytes: Option<Rc<[u8]>> = None;
        if verify {
            match verify_status_signature(&status, self.inner.exact_cpu.get()) {
                Ok(s) => {
                    checks.push(ProofCheck {
                        name: "signature".into(),
                        ok: true,
                        detail: format!("Ed25519 signature verifies with exact CPU {} ({} candidate(s) tried)", s.cpu, s.candidates_tried),
                    });
                    signed_string = Some(s.signed);
                }
                Err(e) => checks.push(ProofCheck { name: "signature".into(), ok: false, detail: e.message }),
            }
            let signer = status.worker_metadata.worker_id.as_deref();
            if let Some(why) = self.inner.trust.borrow().refuses(signer) {
                checks.push(ProofCheck { name: "signer".into(), ok: false, detail: why });
            }
            // Every output is fetched first and then hashed as one batch, which goes to
            // the GPU when WebGPU is here and the batch is big enough to pay (src/gpu.rs).
            let mut slots: Vec<Result<(&String, &crate::api::wire::OutputFileMeta, Rc<[u8]>), ProofCheck>> = Vec::new();
            for (path, meta) in &status.output_files {
                if let Some(check) = self.spooled_check(path, meta).await {
                    slots.push(Err(check));
                    continue;
                }
                // Inputs come back unchanged most of the time: hash our own copy first. The
                // signed stdout file is what the launcher teed, so `/logs` (fetched above)
                // holds the same bytes unless stdout was not UTF-8: hashing those saves a
                // request per job (a round trip over the Internet). Either way only bytes
                // that hash to the signed digest are used; anything else is downloaded.
                let local = job.files.iter().find(|(p, _)| p == path).map(|(_, b)| b.clone()).or_else(|| {
                    (job.stdout_file.as_deref() == Some(path.as_str()) && logs.stdout.len() as u64 == meta.size_bytes).then(|| Rc::from(logs.stdout.as_bytes()))
                });
                let bytes: Rc<[u8]> = match local {
                    Some(b) if c.platform().sha256_hex(&b).await == meta.sha256 => b,
                    _ => match c.download_file(&self.inner.id, path, meta.size_bytes).await {
                        Ok(b) => b.into(),
                        Err(e) => {
                            slots.push(Err(ProofCheck { name: format!("output:{path}"), ok: false, detail: format!("download failed: {}", e.message) }));
                            continue;
                        }
                    },
                };
                slots.push(Ok((path, meta, bytes)));
            }
            let batch: Vec<Rc<[u8]>> = slots.iter().filter_map(|s| s.as_ref().ok().map(|(_, _, b)| b.clone())).collect();
            let (hashes, engine) = crate::gpu::sha256_for_proof(c.platform().as_ref(), &batch).await;
            let on = if engine == crate::gpu::HashEngine::Gpu { " (hashed on the GPU)" } else { "" };
            let mut hashes = hashes.into_iter();
            for slot in slots {
                let (path, meta, bytes) = match slot {
                    Err(check) => {
                        checks.push(check);
                        continue;
                    }
                    Ok(x) => x,
                };
                let h = hashes.next().unwrap_or_default();
                let ok = h == meta.sha256 && bytes.len() as u64 == meta.size_bytes;
                checks.push(ProofCheck {
                    name: format!("output:{path}"),
                    ok,
                    detail: if ok { format!("sha256 {h} matches{on}") } else { format!("worker claims sha256 {} ({} bytes), bytes hash to {h} ({} bytes){on}", meta.sha256, meta.size_bytes, bytes.len()) },
                });
                if job.stdout_file.as_deref() == Some(path.as_str()) && ok {
                    stdout_bytes = Some(bytes.clone());
                }
                files.push((path.clone(), bytes));
            }
            if let Some(name) = &job.stdout_file {
                checks.push(stdout_check(name, stdout_bytes.as_deref(), &logs.stdout));
            }
        }
        let verified = checks.iter().all(|c| c.ok);
        let proof = Proof {
            verified: verify && verified,
            level: self.inner.level.to_string(),
            worker_id: status.worker_metadata.worker_id.clone(),
            signature: status.worker_metadata.signature.clone(),
            signed_string,
            job_hash: job.job_hash.clone(),
            checks,
            consensus: None,
        };
        let meta = &status.execution_metadata;
        // When stdout was signed, the result carries the checked bytes, not `/logs`.
        let (output, stdout) = match &stdout_bytes {
            Some(b) => (b.to_vec(), String::from_utf8_lossy(b).into_owned()),
            None => (logs.stdout.clone().into_bytes(), logs.stdout.clone()),
        };
        let mut lines: Vec<String> = stdout.lines().map(str::to_string).collect();
        lines.extend(logs.stderr.lines().map(str::to_string));
        let result = JobResult {
            id: self.inner.id.clone(),
            // From the exit code, which the signature covers, never from the unsigned
            // `status` field.
            status: if meta.exit_code == 0 { ResultStatus::Completed } else { ResultStatus::Failed },
            output: Some(output),
            logs: lines,
            proof: Some(proof.clone()),
            cost: self.inner.cost.borrow().clone(),
            execution_time: c.platform().now_ms() - self.inner.submitted_ms,
            exit_code: meta.exit_code,
            stdout,
            stderr: logs.stderr,
            worker: c.base.clone(),
            job_hash: got_hash,
            files: status
                .output_files
                .iter()
                .map(|(p, m)| OutputFile { path: p.clone(), size: m.size_bytes, sha256: m.sha256.clone(), bytes: None })
                .collect(),
            cpu_seconds: meta.cpu_seconds,
            memory_mb: meta.memory_peak_mb,
            placement: self.inner.placement.borrow().clone(),
            ipfs: None,
        };
        if verify && !verified {
            let failed: Vec<String> = proof.checks.iter().filter(|c| !c.ok).map(|c| format!("{}: {}", c.name, c.detail)).collect();
            return Err(Error::new(
                ErrorCode::VerificationFailed,
                format!("the result of job {} from {} failed verification; do not trust it ({})", self.inner.id, c.base, failed.join("; ")),
            )
            .with_details(serde_json::to_value(&result).unwrap_or_default()));
        }
        Ok(Finished { result, files })
    }

    /// Wait, then fetch every output file and check it against the signed hashes.
    pub async fn download(&self) -> Result<Finished> {
        let f = self.finish().await?;
        if f.files.len() == f.result.files.len() {
            return Ok(f);
        }
        // Under consensus 'none' nothing was fetched yet: fetch and hash-check now.
        let mut files = Vec::new();
        for of in &f.result.files {
            let bytes = self.inner.client.download_file(&self.inner.id, &of.path, of.size).await?;
            let h = self.inner.client.platform().sha256_hex(&bytes).await;
            if h != of.sha256 || bytes.len() as u64 != of.size {
                return Err(Error::new(
                    ErrorCode::VerificationFailed,
                    format!("output {} of job {} hashes to {h}, but the worker reported {}", of.path, self.inner.id, of.sha256),
                ));
            }
            files.push((of.path.clone(), Rc::from(bytes)));
        }
        let f = Finished { result: f.result, files };
        *self.inner.finished.borrow_mut() = Some(f.clone());
        Ok(f)
    }

    /// Wait, check, then write the job's output files under `dir`: only those matching
    /// the job's `outputs()` patterns when it had any (never the SDK's stdout capture),
    /// each streamed to a temporary name next to its final one while it is hashed, and
    /// moved to its final name once checked. Nothing is followed through a symlink at
    /// or under `dir`, nothing lands outside it, and an existing file is refused (the
    /// whole call, before anything is written) unless `overwrite`. Returns the paths
    /// written.
    pub async fn download_to(&self, dir: &str, opts: WriteOptions) -> Result<Vec<String>> {
        let (_, staged) = self.download_staged(dir, opts).await?;
        staged?.commit().await
    }

    /// [`Self::download_to`] in two steps, so a paid job can be settled between them.
    /// `Err`: the job's outcome failed (nothing is left on disk). `Ok((finished, Err))`:
    /// the job's result stands, but the files cannot be written (a refused target, an
    /// existing file); nothing was written. `Ok((finished, Ok(staged)))`: every file is
    /// checked and waits under its temporary name for [`Staged::commit`].
    pub async fn download_staged(&self, dir: &str, opts: WriteOptions) -> Result<(Finished, Result<Staged>)> {
        let p = self.inner.client.platform().clone();
        if let Err(e) = target::check_root(&*p, dir).await {
            return Ok((self.finish().await?, Err(e)));
        }
        let cached = self.inner.finished.borrow().clone();
        let fresh = cached.is_none() && self.inner.level.verifies() && !self.inner.cancel.is_cancelled();
        if !fresh {
            // Already checked (bytes in memory), or nothing to check in the result itself
            // (consensus 'none'): each file is checked against the reported hash as it
            // streams.
            let f = self.finish().await?;
            let rels = self.selected_outputs(f.result.files.iter().map(|o| o.path.as_str()));
            let plan = match target::plan(&*p, dir, &rels, opts).await {
                Ok(plan) => plan,
                Err(e) => return Ok((f, Err(e))),
            };
            if let Err(e) = target::make_dirs(&*p, &plan).await {
                return Ok((f, Err(e)));
            }
            let mut staged = Staged::new(p.clone(), opts.overwrite);
            for pf in &plan.files {
                let of = f.result.files.iter().find(|o| o.path == pf.rel).expect("planned from these files");
                let r = match f.files.iter().find(|(path, _)| *path == pf.rel) {
                    Some((_, bytes)) => p.write_new_file(&pf.temp, bytes).await,
                    None => self.stream_checked(&pf.rel, of.size, &of.sha256, &pf.temp).await,
                };
                staged.add(pf.temp.clone(), pf.dest.clone());
                if let Err(e) = r {
                    staged.discard().await;
                    return match e.code {
                        ErrorCode::Io => Ok((f, Err(e))),
                        _ => Err(e),
                    };
                }
            }
            return Ok((f, Ok(staged)));
        }
        // Not checked yet: check while streaming into the temporary files.
        let status = self.final_status().await?;
        let rels = self.selected_outputs(status.output_files.keys().map(String::as_str));
        let plan = match target::plan(&*p, dir, &rels, opts).await {
            Ok(plan) => plan,
            Err(e) => return Ok((self.finish().await?, Err(e))),
        };
        if let Err(e) = target::make_dirs(&*p, &plan).await {
            return Ok((self.finish().await?, Err(e)));
        }
        *self.inner.spool.borrow_mut() = plan.files.iter().map(|f| (f.rel.clone(), f.temp.clone())).collect();
        let outcome = self.finish().await;
        let spooled = std::mem::take(&mut *self.inner.spool.borrow_mut());
        let mut staged = Staged::new(p.clone(), opts.overwrite);
        for pf in &plan.files {
            staged.add(pf.temp.clone(), pf.dest.clone());
        }
        match outcome {
            Ok(f) if spooled.is_empty() => Ok((f, Ok(staged))),
            Ok(f) => {
                // Some files were not streamed: the result was checked before this call
                // (a concurrent wait()), so their bytes are in memory, or they still
                // have to be fetched against the reported hash.
                for pf in plan.files.iter().filter(|pf| spooled.contains_key(&pf.rel)) {
                    let of = f.result.files.iter().find(|o| o.path == pf.rel);
                    let r = match (f.files.iter().find(|(path, _)| *path == pf.rel), of) {
                        (Some((_, bytes)), _) => p.write_new_file(&pf.temp, bytes).await,
                        (None, Some(of)) => self.stream_checked(&pf.rel, of.size, &of.sha256, &pf.temp).await,
                        (None, None) => Err(Error::new(ErrorCode::VerificationFailed, format!("output {} is no longer reported by the worker", pf.rel))),
                    };
                    if let Err(e) = r {
                        staged.discard().await;
                        return match e.code {
                            ErrorCode::Io => Ok((f, Err(e))),
                            _ => Err(e),
                        };
                    }
                }
                Ok((f, Ok(staged)))
            }
            Err(e) => {
                staged.discard().await;
                Err(e)
            }
        }
    }

    /// The job-relative outputs `download_to` writes: those matching the job's
    /// `outputs()` patterns (all without patterns), never the SDK's stdout capture.
    fn selected_outputs<'a>(&self, paths: impl Iterator<Item = &'a str>) -> Vec<String> {
        // The SDK's own files (the launcher and the stdout capture) are not the job's outputs.
        paths.filter(|p| self.inner.job.is_user_output(p)).map(str::to_string).collect()
    }

    /// Stream one output into `temp`, checking its size and hash; on a mismatch the file
    /// is removed and the error is `VERIFICATION_FAILED`.
    async fn stream_checked(&self, path: &str, size: u64, sha256: &str, temp: &str) -> Result<()> {
        let c = &self.inner.client;
        let (h, n) = match c.download_file_to(&self.inner.id, path, size, Some(temp)).await {
            Ok(v) => v,
            Err(e) if e.code == ErrorCode::MalformedResponse => {
                return Err(Error::new(ErrorCode::VerificationFailed, format!("output {path} of job {}: {}", self.inner.id, e.message)));
            }
            Err(e) => return Err(e),
        };
        if h != sha256 || n != size {
            let _ = c.platform().remove_file(temp).await;
            return Err(Error::new(
                ErrorCode::VerificationFailed,
                format!("output {path} of job {} hashes to {h} ({n} bytes), but the worker reported {sha256} ({size} bytes); the file was not kept", self.inner.id),
            ));
        }
        Ok(())
    }

    /// Inside `check()`: an output `download_to` is writing streams into its temporary
    /// file and is hashed on the way, instead of being held in memory. `None` for any
    /// other output (`check()` then fetches it as usual).
    async fn spooled_check(&self, path: &str, meta: &crate::api::wire::OutputFileMeta) -> Option<ProofCheck> {
        let temp = self.inner.spool.borrow_mut().remove(path)?;
        let name = format!("output:{path}");
        let c = &self.inner.client;
        Some(match c.download_file_to(&self.inner.id, path, meta.size_bytes, Some(&temp)).await {
            Ok((h, n)) if h == meta.sha256 && n == meta.size_bytes => ProofCheck { name, ok: true, detail: format!("sha256 {h} matches (streamed to disk)") },
            Ok((h, n)) => {
                let _ = c.platform().remove_file(&temp).await;
                ProofCheck { name, ok: false, detail: format!("worker claims sha256 {} ({} bytes), bytes hash to {h} ({n} bytes)", meta.sha256, meta.size_bytes) }
            }
            Err(e) => ProofCheck { name, ok: false, detail: format!("download failed: {}", e.message) },
        })
    }

    /// A stream of the job's log chunks.
    pub fn logs(&self) -> LogStream {
        LogStream { exec: self.clone(), state: RefCell::new(LogState::Start), delivered_stdout: RefCell::new(String::new()) }
    }
}

/// Does the stdout the worker reported (unsigned `/logs`) match the file the launcher
/// wrote, which the worker hashed and signed?
fn stdout_check(name: &str, signed: Option<&[u8]>, reported: &str) -> ProofCheck {
    let (ok, detail) = match signed {
        None => (false, format!("the signed stdout file {name} is missing from the worker's outputs or failed its hash")),
        Some(b) if String::from_utf8_lossy(b) == reported => (true, format!("stdout is covered by the signature ({name}, {} bytes)", b.len())),
        Some(b) => (
            false,
            format!("the worker reported {} bytes of stdout that differ from the {} bytes it signed in {name}", reported.len(), b.len()),
        ),
    };
    ProofCheck { name: "stdout".into(), ok, detail }
}

/// One piece of a job's log.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
pub struct LogChunk {
    /// `stdout`, `stderr` or `status`.
    #[cfg_attr(target_arch = "wasm32", tsify(type = "'stdout' | 'stderr' | 'status'"))]
    pub stream: String,
    pub text: String,
}

impl LogChunk {
    fn new(stream: &str, text: impl Into<String>) -> Self {
        LogChunk { stream: stream.into(), text: text.into() }
    }
}

enum LogState {
    Start,
    Live(Box<dyn WebSocket>),
    Queue(VecDeque<LogChunk>),
    Done,
}

/// The live log of a job: WebSocket frames while they come, and `/logs` after the
/// end for whatever the socket did not deliver, so nothing is lost.
pub struct LogStream {
    exec: JobExecution,
    state: RefCell<LogState>,
    delivered_stdout: RefCell<String>,
}

/// `CPU=0.014217s` inside a `[DONE]` frame.
pub fn done_frame_cpu(frame: &str) -> Option<f64> {
    let at = frame.find("CPU=")? + 4;
    let end = frame[at..].find('s')? + at;
    // The frame is the worker's word: `inf`, `NaN` or `-1` are no CPU time.
    frame[at..end].parse().ok().filter(|c: &f64| c.is_finite() && *c >= 0.0)
}

impl LogStream {
    /// The next chunk, or `None` at the end.
    pub async fn next(&self) -> Result<Option<LogChunk>> {
        loop {
            let state = std::mem::replace(&mut *self.state.borrow_mut(), LogState::Done);
            match state {
                LogState::Done => return Ok(None),
                LogState::Start => {
                    let ws = self.exec.open_stream().await;
                    *self.state.borrow_mut() = match ws {
                        Some(ws) => LogState::Live(ws),
                        None => self.fallback().await?,
                    };
                }
                LogState::Live(ws) => {
                    let ev = self.exec.guarded(async { Ok(ws.next().await) }).await?;
                    match ev {
                        WsEvent::Closed => *self.state.borrow_mut() = self.fallback().await?,
                        WsEvent::Text(t) => {
                            if let Some(rest) = t.strip_prefix("[STATUS] ") {
                                if rest.starts_with("Job status: completed") || rest.starts_with("Job status: failed") {
                                    // Connected after the end: this replay has no stderr. Use /logs.
                                    ws.close();
                                    *self.state.borrow_mut() = self.fallback().await?;
                                    continue;
                                }
                                if rest.starts_with("Job started") {
                                    *self.exec.inner.status.borrow_mut() = "running".into();
                                }
                                *self.state.borrow_mut() = LogState::Live(ws);
                                return Ok(Some(LogChunk::new("status", rest.trim_end())));
                            }
                            if t.starts_with("[DONE]") {
                                if let Some(cpu) = done_frame_cpu(&t) {
                                    self.exec.inner.exact_cpu.set(Some(cpu));
                                }
                                if let Some(exit) = t.split("exit=").nth(1).and_then(|r| r.split([',', ')']).next()).and_then(|x| x.trim().parse::<i64>().ok()) {
                                    self.exec.note_end(exit);
                                }
                                // The reference keeps the socket open until we say something.
                                ws.send("done");
                                ws.close();
                                *self.state.borrow_mut() = LogState::Done;
                                return Ok(Some(LogChunk::new("status", t.trim_end())));
                            }
                            if let Some(rest) = t.strip_prefix("[ERROR] ") {
                                ws.close();
                                return Err(Error::new(ErrorCode::JobNotFound, format!("log stream of job {}: {}", self.exec.id(), rest.trim_end())));
                            }
                            *self.state.borrow_mut() = LogState::Live(ws);
                            if let Some(err) = t.strip_prefix("[STDERR]\n") {
                                return Ok(Some(LogChunk::new("stderr", err)));
                            }
                            self.delivered_stdout.borrow_mut().push_str(&t);
                            return Ok(Some(LogChunk::new("stdout", t)));
                        }
                    }
                }
                LogState::Queue(mut q) => {
                    let next = q.pop_front();
                    *self.state.borrow_mut() = LogState::Queue(q);
                    if next.is_none() {
                        *self.state.borrow_mut() = LogState::Done;
                    }
                    return Ok(next);
                }
            }
        }
    }

    /// Wait for the end, then queue what `/logs` has beyond what was delivered.
    async fn fallback(&self) -> Result<LogState> {
        let exec = &self.exec;
        let status = exec.final_status().await?;
        exec.note_end(status.execution_metadata.exit_code);
        let logs = exec.inner.client.logs(exec.id()).await?;
        let mut q = VecDeque::new();
        let delivered = self.delivered_stdout.borrow().clone();
        let stdout = logs.stdout.strip_prefix(delivered.as_str()).unwrap_or(&logs.stdout);
        if !stdout.is_empty() {
            q.push_back(LogChunk::new("stdout", stdout));
        }
        if !logs.stderr.is_empty() {
            q.push_back(LogChunk::new("stderr", logs.stderr));
        }
        q.push_back(LogChunk::new("status", format!("Job {} (exit={})", status.status, status.execution_metadata.exit_code)));
        Ok(LogState::Queue(q))
    }

    /// Collect the whole log.
    pub async fn collect(&self) -> Result<Vec<LogChunk>> {
        let mut v = Vec::new();
        while let Some(c) = self.next().await? {
            v.push(c);
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_done_frames() {
        assert_eq!(super::done_frame_cpu("[DONE] Job completed (exit=0, CPU=0.014217s, Mem=8MB)\n"), Some(0.014217));
        assert_eq!(super::done_frame_cpu("[DONE] Job completed\n"), None);
    }
}
