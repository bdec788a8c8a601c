//! A client for one Sandrun worker's HTTP API.

use super::wire::{status_error, Logs, Multipart, SubmitAnswer, WorkerStatus};
use crate::error::{Error, Result};
use crate::job::PreparedJob;
use crate::platform::{HttpRequest, HttpResponse, Platform};
use std::rc::Rc;

/// How long to wait for an answer from a worker. A reference worker holds
/// `/status`, `/logs`, `/submit` ... while a job runs, up to its 300 s job timeout.
pub const BLOCKING_TIMEOUT_MS: u64 = 330_000;
/// For endpoints that never block (`/`, `/health`).
pub const QUICK_TIMEOUT_MS: u64 = 15_000;

/// One worker, by base URL.
#[derive(Clone)]
pub struct WorkerClient {
    pub base: String,
    platform: Rc<dyn Platform>,
}

/// Percent-encode a job-relative path for a URL, keeping `/`.
pub fn encode_path(path: &str) -> String {
    let mut s = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

impl WorkerClient {
    pub fn new(base: &str, platform: Rc<dyn Platform>) -> Self {
        WorkerClient { base: base.trim_end_matches('/').to_string(), platform }
    }

    pub fn platform(&self) -> &Rc<dyn Platform> {
        &self.platform
    }

    async fn get(&self, path: &str, timeout_ms: u64, what: &str) -> Result<HttpResponse> {
        self.get_capped(path, timeout_ms, crate::platform::DEFAULT_MAX_RESPONSE_BYTES, what).await
    }

    async fn get_capped(&self, path: &str, timeout_ms: u64, max_bytes: u64, what: &str) -> Result<HttpResponse> {
        let resp = self.platform.http(HttpRequest::get(format!("{}{path}", self.base)).to_worker().timeout(timeout_ms).max_bytes(max_bytes)).await?;
        if resp.status != 200 {
            return Err(status_error(resp.status, &resp.body, what));
        }
        Ok(resp)
    }

    /// `GET /health`: the worker's id (`None` for an anonymous worker).
    pub async fn health(&self) -> Result<Option<String>> {
        let r = self.get("/health", QUICK_TIMEOUT_MS, "health").await?;
        let v: serde_json::Value = serde_json::from_slice(&r.body)
            .map_err(|e| Error::malformed(format!("{}/health did not answer JSON: is this a Sandrun worker?", self.base)).with_cause(e.to_string()))?;
        if v["status"] != "healthy" {
            return Err(Error::malformed(format!("{}/health says {v}", self.base)));
        }
        Ok(v["worker_id"].as_str().map(str::to_string))
    }

    /// `POST /submit` with the job's tar.gz and manifest.
    pub async fn submit(&self, job: &PreparedJob, seed: u64) -> Result<String> {
        let archive = job.archive(self.platform.as_ref()).await?;
        let (ct, body) = Multipart::new(seed)
            .file("files", "job.tar.gz", "application/gzip", &archive)
            .field("manifest", &job.manifest)
            .finish();
        let url = format!("{}/submit", self.base);
        let resp = self.platform.http(HttpRequest::post(url, &ct, body).to_worker().timeout(BLOCKING_TIMEOUT_MS)).await?;
        if resp.status != 200 {
            return Err(status_error(resp.status, &resp.body, "submit"));
        }
        let a: SubmitAnswer = serde_json::from_slice(&resp.body)
            .map_err(|e| Error::malformed("the worker's /submit answer has no job_id").with_cause(e.to_string()))?;
        Ok(a.job_id)
    }

    pub async fn status(&self, id: &str) -> Result<WorkerStatus> {
        let r = self.get(&format!("/status/{id}"), BLOCKING_TIMEOUT_MS, "status").await?;
        WorkerStatus::parse(&r.body)
    }

    pub async fn logs(&self, id: &str) -> Result<Logs> {
        let r = self.get(&format!("/logs/{id}"), BLOCKING_TIMEOUT_MS, "logs").await?;
        Logs::parse(&r.body)
    }

    /// One output file's bytes, at most `size_bytes` of them (the size the worker
    /// declared, and signed): a longer body is cut off with `MALFORMED_RESPONSE`, so a
    /// worker cannot make the SDK hold more than it announced. Never call before the
    /// job ended.
    pub async fn download_file(&self, id: &str, path: &str, size_bytes: u64) -> Result<Vec<u8>> {
        // max_bytes 0 would mean "the default": an empty file gets a cap of 1 byte,
        // which still fails any body at all once the length is compared.
        let r = self.get_capped(&format!("/download/{id}/{}", encode_path(path)), download_deadline_ms(size_bytes), size_bytes.max(1), "download").await?;
        Ok(r.body)
    }

    /// Stream one output file into a new file at `target` (`None`: hash only), never
    /// holding it whole in memory; at most `size_bytes` bytes. Returns (sha256, size).
    pub async fn download_file_to(&self, id: &str, path: &str, size_bytes: u64, target: Option<&str>) -> Result<(String, u64)> {
        let req = HttpRequest::get(format!("{}/download/{id}/{}", self.base, encode_path(path)))
            .to_worker()
            .timeout(download_deadline_ms(size_bytes))
            .max_bytes(size_bytes.max(1));
        let r = self.platform.http_to_file(req, target).await?;
        if r.status != 200 {
            return Err(status_error(r.status, &r.error_body, "download"));
        }
        Ok((r.sha256, r.size))
    }

    /// The WebSocket URL of a job's log stream.
    pub fn stream_url(&self, id: &str) -> String {
        let ws = if let Some(rest) = self.base.strip_prefix("https://") { format!("wss://{rest}") } else { self.base.replacen("http://", "ws://", 1) };
        format!("{ws}/stream/{id}")
    }
}

/// The total deadline of one output download: the blocking timeout plus a second per
/// MiB, so a large file on a slow link still finishes and a dripping one cannot hang.
pub fn download_deadline_ms(size_bytes: u64) -> u64 {
    BLOCKING_TIMEOUT_MS + size_bytes / 1024
}

impl std::fmt::Debug for WorkerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerClient").field("base", &self.base).finish()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn encodes_paths() {
        assert_eq!(super::encode_path("results/out put é.csv"), "results/out%20put%20%C3%A9.csv");
    }
}
