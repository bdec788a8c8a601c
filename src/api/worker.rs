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
        let resp = self.platform.http(HttpRequest::get(format!("{}{path}", self.base)).timeout(timeout_ms)).await?;
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
        let (ct, body) = Multipart::new(seed)
            .file("files", "job.tar.gz", "application/gzip", &job.archive()?)
            .field("manifest", &job.manifest)
            .finish();
        let url = format!("{}/submit", self.base);
        let resp = self.platform.http(HttpRequest::post(url, &ct, body).timeout(BLOCKING_TIMEOUT_MS)).await?;
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

    /// One output file's bytes. Never call before the job ended.
    pub async fn download_file(&self, id: &str, path: &str) -> Result<Vec<u8>> {
        let r = self.get(&format!("/download/{id}/{}", encode_path(path)), BLOCKING_TIMEOUT_MS, "download").await?;
        Ok(r.body)
    }

    /// The WebSocket URL of a job's log stream.
    pub fn stream_url(&self, id: &str) -> String {
        let ws = if let Some(rest) = self.base.strip_prefix("https://") { format!("wss://{rest}") } else { self.base.replacen("http://", "ws://", 1) };
        format!("{ws}/stream/{id}")
    }
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
