//! Facade of `proof()`: check a result or a receipt, and export receipts.

use super::convert::{err, from_js, to_js};
use super::JobBuilder;
use crate::proof::receipt::{verify_receipt, ProofInputs, Receipt};
use crate::types::{JobResult, OutputFile, Proof};
use crate::Sandrun as CoreSandrun;
use js_sys::{Promise, Reflect, Uint8Array};
use serde::Deserialize;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

/// The parts of a `JobResult` a receipt needs (the rest, like `output` bytes, is not read).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResultLike {
    id: String,
    worker: String,
    job_hash: String,
    exit_code: i64,
    proof: Option<Proof>,
    files: Vec<FileLike>,
}

#[derive(Deserialize)]
struct FileLike {
    path: String,
    sha256: String,
}

/// An immutable description of what to check: `sandrun.proof().from(result).verify()`.
#[wasm_bindgen]
#[derive(Clone)]
pub struct ProofBuilder {
    pub(super) client: CoreSandrun,
    pub(super) receipt: Option<Rc<Receipt>>,
    pub(super) allow: Option<Vec<String>>,
    pub(super) job: Option<JobBuilder>,
    pub(super) files: Rc<Vec<(String, Vec<u8>)>>,
}

super::plugin::layered_builder!(ProofBuilder);

fn receipt_of(v: &JsValue) -> crate::Result<Receipt> {
    if let Some(s) = v.as_string() {
        return Receipt::parse(&s);
    }
    let is_receipt = Reflect::get(v, &"signedString".into()).map(|x| x.is_string()).unwrap_or(false);
    if is_receipt {
        return serde_wasm_bindgen::from_value(v.clone()).map_err(|e| crate::Error::invalid(format!("not a Sandrun receipt: {e}")));
    }
    let r: ResultLike = serde_wasm_bindgen::from_value(v.clone())
        .map_err(|e| crate::Error::invalid(format!("from() takes a JobResult, a receipt object or a receipt JSON string: {e}")))?;
    let result = JobResult {
        id: r.id,
        status: crate::types::ResultStatus::Completed,
        output: None,
        logs: vec![],
        proof: r.proof,
        cost: crate::types::PaymentInfo::none(),
        execution_time: 0.0,
        exit_code: r.exit_code,
        stdout: String::new(),
        stderr: String::new(),
        worker: r.worker,
        job_hash: r.job_hash,
        files: r.files.into_iter().map(|f| OutputFile { path: f.path, size: 0, sha256: f.sha256, bytes: None }).collect(),
        cpu_seconds: 0.0,
        memory_mb: 0,
        placement: None,
        ipfs: None,
    };
    Receipt::from_result(&result)
}

#[wasm_bindgen]
impl ProofBuilder {
    /// What to check: a `JobResult` (signed), a receipt object, or a receipt JSON string.
    pub fn from(&self, #[wasm_bindgen(unchecked_param_type = "JobResult | Receipt | string")] source: JsValue) -> Result<ProofBuilder, JsValue> {
        Ok(ProofBuilder { receipt: Some(Rc::new(receipt_of(&source).map_err(err)?)), ..self.clone() })
    }
    /// Accept only results signed by these worker ids (base64 Ed25519 keys).
    pub fn allow(&self, #[wasm_bindgen(js_name = workerIds, unchecked_param_type = "string[]")] worker_ids: JsValue) -> Result<ProofBuilder, JsValue> {
        Ok(ProofBuilder { allow: Some(from_js(worker_ids, "allow()")?), ..self.clone() })
    }
    /// The job that was submitted (a `Job` or a `JobBuilder`): its hash is recomputed and
    /// compared.
    pub fn job(&self, #[wasm_bindgen(unchecked_param_type = "Job | JobBuilder")] job: JsValue) -> Result<ProofBuilder, JsValue> {
        let job = super::Job::builder_of(&job).ok_or_else(|| err(crate::Error::invalid("proof().job() takes the Job or JobBuilder that was submitted")))?;
        Ok(ProofBuilder { job: Some(job), ..self.clone() })
    }
    /// The receipt this builder checks (spec: `build()`), without checking it: `verify()`
    /// or `toReceipt()` check it.
    #[wasm_bindgen(unchecked_return_type = "Receipt")]
    pub fn build(&self) -> Result<JsValue, JsValue> {
        let receipt = self.receipt.clone().ok_or_else(|| err(crate::Error::invalid("proof(): call from(result or receipt) before build()")))?;
        to_js(&*receipt)
    }
    /// Downloaded files (`result.files` after `download()`, or `{ path: bytes }`): each is hashed.
    pub fn files(&self, #[wasm_bindgen(unchecked_param_type = "OutputFile[] | Record<string, Uint8Array>")] files: JsValue) -> Result<ProofBuilder, JsValue> {
        let mut out = Vec::new();
        if js_sys::Array::is_array(&files) {
            for f in js_sys::Array::from(&files).iter() {
                let path = Reflect::get(&f, &"path".into())?.as_string();
                let bytes = Reflect::get(&f, &"bytes".into())?;
                match (path, bytes.is_instance_of::<Uint8Array>()) {
                    (Some(p), true) => out.push((p, Uint8Array::new(&bytes).to_vec())),
                    _ => return Err(err(crate::Error::invalid("files(): each entry needs `path` and `bytes` (a Uint8Array): pass download()'s result.files"))),
                }
            }
        } else if files.is_object() {
            for k in js_sys::Object::keys(files.unchecked_ref::<js_sys::Object>()).iter() {
                let v = Reflect::get(&files, &k)?;
                if !v.is_instance_of::<Uint8Array>() {
                    return Err(err(crate::Error::invalid("files(): values must be Uint8Array")));
                }
                out.push((k.as_string().unwrap_or_default(), Uint8Array::new(&v).to_vec()));
            }
        } else {
            return Err(err(crate::Error::invalid("files() takes result.files or { path: Uint8Array }")));
        }
        Ok(ProofBuilder { files: Rc::new(out), ..self.clone() })
    }
    /// Run every check; resolves with a report (it does not reject on a failed check).
    #[wasm_bindgen(unchecked_return_type = "Promise<ProofReport>")]
    pub fn verify(&self) -> Promise {
        let this = self.clone();
        future_to_promise(async move {
            let receipt = this.receipt.clone().ok_or_else(|| err(crate::Error::invalid("proof(): call from(result or receipt) first")))?;
            let job_hash = match this.job.clone() {
                Some(j) => {
                    // Recomputing the hash may fetch the job's sources: a network operation.
                    let client = this.client.clone();
                    let core = j.resolved().await?;
                    match async { client.init().await?; client.prepare(&core).await }.await {
                        Ok(p) => Some(p.job_hash),
                        Err(e) => return Err(super::failed(&client, e, "proof").await),
                    }
                }
                None => None,
            };
            let inputs = ProofInputs { allow: this.allow.clone(), job_hash, files: (*this.files).clone() };
            to_js(&verify_receipt(&receipt, &inputs))
        })
    }
    /// The receipt as JSON, after checking it (rejects with `VERIFICATION_FAILED` if a check fails).
    #[wasm_bindgen(js_name = toReceipt, unchecked_return_type = "Promise<string>")]
    pub fn to_receipt(&self) -> Promise {
        let this = self.clone();
        future_to_promise(async move {
            let receipt = this.receipt.clone().ok_or_else(|| err(crate::Error::invalid("proof(): call from(result) first")))?;
            let report = verify_receipt(&receipt, &ProofInputs { allow: this.allow.clone(), ..Default::default() });
            if !report.valid {
                return Err(err(crate::Error::new(crate::ErrorCode::VerificationFailed, "this result does not verify: no receipt is issued for it")));
            }
            Ok(JsValue::from_str(&receipt.to_json()))
        })
    }
}

/// Lowercase hex SHA-256 of `bytes`, computed in wasm.
#[wasm_bindgen(js_name = sha256Hex)]
pub fn sha256_hex(bytes: &[u8]) -> String {
    crate::proof::sha256_hex(bytes)
}

/// Does `signature` (base64) by `workerId` (base64 Ed25519 key) verify over `message`?
#[wasm_bindgen(js_name = verifyEd25519)]
pub fn verify_ed25519(#[wasm_bindgen(js_name = workerId)] worker_id: &str, signature: &str, message: &[u8]) -> bool {
    crate::proof::verify::WorkerKey::from_worker_id(worker_id)
        .and_then(|k| crate::proof::verify::PreparedSignature::new(&k, signature))
        .map(|s| s.verifies(message))
        .unwrap_or(false)
}

/// Verify a worker's `/status` body (JSON text) against its own signature; without
/// `exactCpu` (from the `[DONE]` frame) the CPU figure is searched. Resolves with
/// `{ signed, cpu, candidatesTried }`; rejects with `VERIFICATION_FAILED`.
#[wasm_bindgen(js_name = verifyWorkerStatus, unchecked_return_type = "{ signed: string; cpu: string; candidatesTried: number }")]
pub fn verify_worker_status(status: &str, #[wasm_bindgen(js_name = exactCpu)] exact_cpu: Option<f64>) -> Result<JsValue, JsValue> {
    let s = crate::api::wire::WorkerStatus::parse(status.as_bytes()).map_err(err)?;
    let c = crate::proof::verify_status_signature(&s, exact_cpu).map_err(err)?;
    to_js(&serde_json::json!({"signed": c.signed, "cpu": c.cpu, "candidatesTried": c.candidates_tried}))
}
