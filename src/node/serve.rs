//! Running one claimed job on the worker (through the ordinary job path, checked under
//! consensus `'low'`) and reporting it to the registry's `/complete`, with retries; a job
//! that cannot be run is reported failed, never left assigned.

use super::register::Node;
use crate::api::broker::BROKER_TIMEOUT_MS;
use crate::api::wire::status_error;
use crate::error::Result;
use crate::job::JobBuilder;
use crate::platform::HttpRequest;
use crate::types::JobResult;
use serde_json::{json, Value};

/// Attempts at reporting one job's result to `/complete`.
const COMPLETE_ATTEMPTS: u32 = 4;

impl Node {
    /// Run one claimed job on the worker, checked under `'low'`.
    pub async fn execute(&self, job: &crate::api::broker::ClaimedJob) -> Result<(String, JobResult)> {
        let mut b = JobBuilder::new().code(job.code.as_bytes().to_vec())?.args(job.args.clone())?.consensus("low")?;
        if let Some(i) = job.interpreter.as_deref().filter(|i| !i.is_empty()) {
            b = b.interpreter(i)?;
        }
        let execution = self.inner.client.submit(&b).await?;
        let result = execution.wait().await?;
        Ok((execution.id().to_string(), result))
    }

    /// Run one claimed job and report it; never fails (errors are counted).
    pub(super) async fn serve(&self, job: &crate::api::broker::ClaimedJob) {
        let mut body = json!({"node_id": self.id(), "job_id": job.id});
        let exit_code = match self.execute(job).await {
            Ok((worker_job_id, r)) => {
                body["output"] = json!(r.stdout);
                body["error"] = json!(r.stderr);
                body["exit_code"] = json!(r.exit_code);
                body["worker_job_id"] = json!(worker_job_id);
                body["proof"] = serde_json::to_value(&r.proof).unwrap_or(Value::Null);
                r.exit_code
            }
            Err(e) => {
                self.error(&format!("job {}", job.id), &e);
                body["output"] = json!("");
                body["error"] = json!(format!("sandrun node {} could not run this job: {e}", self.id()));
                body["exit_code"] = json!(-1);
                -1
            }
        };
        let mut wait = 500;
        for attempt in 1..=COMPLETE_ATTEMPTS {
            match self.complete(&body).await {
                Ok(()) => {
                    let mut s = self.inner.stats.borrow_mut();
                    if exit_code == 0 {
                        s.completed += 1;
                    } else {
                        s.failed += 1;
                    }
                    return;
                }
                Err(e) => {
                    self.error(&format!("complete {}", job.id), &e);
                    if attempt < COMPLETE_ATTEMPTS {
                        self.inner.client.platform().sleep(wait).await;
                        wait *= 2;
                    }
                }
            }
        }
        self.inner.stats.borrow_mut().failed += 1;
    }

    /// `POST /complete` with the extension fields (`proof`, `worker_job_id`) that a
    /// reference broker ignores.
    async fn complete(&self, body: &Value) -> Result<()> {
        let b = &self.inner.broker;
        let mut req = HttpRequest::post(format!("{}/complete", b.base), "application/json", body.to_string().into_bytes()).timeout(BROKER_TIMEOUT_MS);
        req.headers.extend(self.inner.headers.iter().cloned());
        let resp = self.inner.client.platform().http(req).await?;
        if !(200..300).contains(&resp.status) {
            return Err(status_error(resp.status, &resp.body, "registry complete"));
        }
        Ok(())
    }
}
