//! A client for the Sandrun broker (the job registry): JSON over HTTP.

use super::wire::status_error;
use crate::error::{Error, Result};
use crate::platform::{HttpRequest, Platform};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::rc::Rc;

/// Brokers answer quickly; they never hold a request while a job runs.
pub const BROKER_TIMEOUT_MS: u64 = 30_000;

/// A node as `/nodes` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct NodeRecord {
    pub id: String,
    pub endpoint: String,
    #[serde(default)]
    pub active: u8,
    #[serde(default)]
    pub capabilities: Value,
    #[serde(default)]
    pub jobs_completed: u64,
    #[serde(default)]
    pub jobs_failed: u64,
    #[serde(default)]
    pub last_heartbeat: Option<String>,
}

impl NodeRecord {
    /// The Sandrun worker URL of this node: the `sandrun_endpoint` extension, else `endpoint`.
    pub fn worker_url(&self) -> String {
        self.capabilities["sandrun_endpoint"].as_str().unwrap_or(&self.endpoint).trim_end_matches('/').to_string()
    }
    /// The `worker_id` extension (base64 Ed25519 key), when advertised.
    pub fn worker_id(&self) -> Option<String> {
        self.capabilities["worker_id"].as_str().map(str::to_string)
    }
}

/// A job handed out by `/claim`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ClaimedJob {
    pub id: String,
    pub code: String,
    #[serde(default)]
    pub interpreter: Option<String>,
    #[serde(default)]
    pub args: Vec<String>,
}

/// The registry at `base`.
#[derive(Clone)]
pub struct BrokerClient {
    pub base: String,
    platform: Rc<dyn Platform>,
    /// Extra headers (auth) for brokers that accept them.
    headers: Vec<(String, String)>,
}

impl BrokerClient {
    pub fn new(base: &str, platform: Rc<dyn Platform>) -> Self {
        BrokerClient { base: base.trim_end_matches('/').to_string(), platform, headers: vec![] }
    }

    pub fn with_headers(mut self, headers: Vec<(String, String)>) -> Self {
        self.headers = headers;
        self
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>, what: &str) -> Result<(u16, Value)> {
        let url = format!("{}{path}", self.base);
        let mut req = match &body {
            Some(b) => HttpRequest::post(url, "application/json", b.to_string().into_bytes()),
            None => HttpRequest::get(url),
        };
        req.method = method.into();
        req.headers.extend(self.headers.iter().cloned());
        let resp = self.platform.http(req.timeout(BROKER_TIMEOUT_MS)).await?;
        if !(200..300).contains(&resp.status) {
            return Err(status_error(resp.status, &resp.body, &format!("registry {what}")));
        }
        let v: Value = serde_json::from_slice(&resp.body)
            .map_err(|e| Error::malformed(format!("the registry's {what} answer is not JSON: is {} a Sandrun broker?", self.base)).with_cause(e.to_string()))?;
        Ok((resp.status, v))
    }

    pub async fn health(&self) -> Result<Value> {
        Ok(self.call("GET", "/health", None, "health").await?.1)
    }

    /// Register a node; returns its id.
    pub async fn register(&self, endpoint: &str, capabilities: &Value) -> Result<String> {
        let (_, v) = self.call("POST", "/register", Some(json!({"endpoint": endpoint, "capabilities": capabilities})), "register").await?;
        v["node_id"].as_str().map(str::to_string).ok_or_else(|| Error::malformed("the registry's register answer has no node_id"))
    }

    pub async fn nodes(&self) -> Result<Vec<NodeRecord>> {
        let (_, v) = self.call("GET", "/nodes", None, "nodes").await?;
        serde_json::from_value(v["nodes"].clone()).map_err(|e| Error::malformed("the registry's /nodes answer is not a node list").with_cause(e.to_string()))
    }

    pub async fn heartbeat(&self, node_id: &str) -> Result<()> {
        self.call("POST", "/heartbeat", Some(json!({"node_id": node_id})), "heartbeat").await.map(|_| ())
    }

    /// The next pending job for this node, if any.
    pub async fn claim(&self, node_id: &str) -> Result<Option<ClaimedJob>> {
        let (_, v) = self.call("POST", "/claim", Some(json!({"node_id": node_id})), "claim").await?;
        if v["job"].is_null() {
            return Ok(None);
        }
        serde_json::from_value(v["job"].clone()).map(Some).map_err(|e| Error::malformed("the registry's claimed job is malformed").with_cause(e.to_string()))
    }

    pub async fn complete(&self, node_id: &str, job_id: &str, output: &str, error: &str, exit_code: i64) -> Result<()> {
        let body = json!({"node_id": node_id, "job_id": job_id, "output": output, "error": error, "exit_code": exit_code});
        self.call("POST", "/complete", Some(body), "complete").await.map(|_| ())
    }

    /// Submit a broker job (code run by whichever node claims it).
    pub async fn submit(&self, code: &str, interpreter: Option<&str>, args: &[String]) -> Result<String> {
        let mut body = json!({"code": code, "args": args});
        if let Some(i) = interpreter {
            body["interpreter"] = json!(i);
        }
        let (_, v) = self.call("POST", "/submit", Some(body), "submit").await?;
        v["job_id"].as_str().map(str::to_string).ok_or_else(|| Error::malformed("the registry's submit answer has no job_id"))
    }

    pub async fn status(&self, job_id: &str) -> Result<Value> {
        Ok(self.call("GET", &format!("/status/{job_id}"), None, "status").await?.1)
    }

    /// `None` while the job has not finished (HTTP 202).
    pub async fn results(&self, job_id: &str) -> Result<Option<Value>> {
        let (status, v) = self.call("GET", &format!("/results/{job_id}"), None, "results").await?;
        Ok(if status == 202 { None } else { Some(v) })
    }
}
