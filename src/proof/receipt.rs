//! Receipts: a verified result as JSON that can be checked again later, offline, and
//! the `proof()` checks (signature, signed-string consistency, allowlist, job hash,
//! output bytes).

use crate::error::{Error, ErrorCode, Result};
use super::signed::{parse_signed, signature_ok};
use crate::proof::sha256_hex;
use crate::types::{JobResult, ProofCheck};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[cfg(target_arch = "wasm32")]
use tsify::Tsify;

/// Version of the receipt format.
pub const RECEIPT_VERSION: u32 = 1;

/// A worker's signed statement about one job, self-contained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Receipt {
    pub version: u32,
    /// The worker's URL and its job id (informational: not covered by the signature).
    pub worker: String,
    pub job_id: String,
    /// Base64 Ed25519 public key that signed.
    pub worker_id: String,
    pub signature: String,
    /// Exactly what was signed: `job_hash|exit_code|cpu|memory_mb|(path:sha256|)*`.
    pub signed_string: String,
    pub job_hash: String,
    pub exit_code: i64,
    /// path -> sha256 of every output file.
    pub outputs: BTreeMap<String, String>,
}

/// The outcome of `proof().verify()`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[serde(rename_all = "camelCase")]
pub struct ProofReport {
    /// True when every check passed.
    pub valid: bool,
    pub checks: Vec<ProofCheck>,
    /// The receipt that was checked.
    pub receipt: Receipt,
}

impl Receipt {
    /// From a result whose signature the SDK verified.
    pub fn from_result(r: &JobResult) -> Result<Receipt> {
        let p = r.proof.as_ref().ok_or_else(|| Error::invalid("this result carries no proof"))?;
        let (Some(worker_id), Some(signature), Some(signed)) = (&p.worker_id, &p.signature, &p.signed_string) else {
            return Err(Error::new(
                ErrorCode::VerificationFailed,
                "this result has no verified signature (anonymous worker, or consensus 'none'): there is nothing to make a receipt of",
            ));
        };
        Ok(Receipt {
            version: RECEIPT_VERSION,
            worker: r.worker.clone(),
            job_id: r.id.clone(),
            worker_id: worker_id.clone(),
            signature: signature.clone(),
            signed_string: signed.clone(),
            job_hash: r.job_hash.clone(),
            exit_code: r.exit_code,
            outputs: r.files.iter().map(|f| (f.path.clone(), f.sha256.clone())).collect(),
        })
    }

    pub fn parse(json: &str) -> Result<Receipt> {
        let r: Receipt = serde_json::from_str(json).map_err(|e| Error::invalid("not a Sandrun receipt").with_cause(e.to_string()))?;
        if r.version != RECEIPT_VERSION {
            return Err(Error::invalid(format!("receipt version {} is not supported (expected {RECEIPT_VERSION})", r.version)));
        }
        Ok(r)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// What `verify` checks besides the receipt itself.
#[derive(Debug, Clone, Default)]
pub struct ProofInputs {
    /// Accept only these worker ids.
    pub allow: Option<Vec<String>>,
    /// `job_hash` recomputed from the submitted job.
    pub job_hash: Option<String>,
    /// Downloaded files: path -> bytes.
    pub files: Vec<(String, Vec<u8>)>,
}

fn check(name: &str, ok: bool, detail: impl Into<String>) -> ProofCheck {
    ProofCheck { name: name.into(), ok, detail: detail.into() }
}

/// Check a receipt, offline.
pub fn verify_receipt(r: &Receipt, inputs: &ProofInputs) -> ProofReport {
    let mut checks = Vec::new();
    let sig = signature_ok(&r.worker_id, &r.signature, &r.signed_string);
    checks.push(check("signature", sig, if sig { "Ed25519 signature over the signed string verifies" } else { "the signature does not verify for this worker id and signed string" }));
    match parse_signed(&r.signed_string) {
        Some(p) => {
            let a = &p.agreement;
            checks.push(check("job_hash", a.job_hash == r.job_hash, format!("signed {}, receipt says {}", a.job_hash, r.job_hash)));
            checks.push(check("exit_code", a.exit_code == r.exit_code, format!("signed {}, receipt says {}", a.exit_code, r.exit_code)));
            checks.push(check("outputs", a.outputs == r.outputs, format!("{} signed output(s), {} in the receipt", a.outputs.len(), r.outputs.len())));
        }
        None => checks.push(check("signed_string", false, "the signed string is not job_hash|exit|cpu|memory|(path:sha256|)*")),
    }
    if let Some(allow) = &inputs.allow {
        let ok = allow.contains(&r.worker_id);
        checks.push(check("allowlist", ok, if ok { format!("{} is allowed", r.worker_id) } else { format!("{} is not in the allowlist", r.worker_id) }));
    }
    if let Some(h) = &inputs.job_hash {
        checks.push(check("submitted_job", *h == r.job_hash, format!("recomputed {h}, signed {}", r.job_hash)));
    }
    for (path, bytes) in &inputs.files {
        let got = sha256_hex(bytes);
        let check_name = format!("output:{path}");
        match r.outputs.get(path) {
            Some(want) => checks.push(check(&check_name, *want == got, format!("bytes hash to {got}, signed {want}"))),
            None => checks.push(check(&check_name, false, "this file is not among the signed outputs")),
        }
    }
    ProofReport { valid: checks.iter().all(|c| c.ok), checks, receipt: r.clone() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector_receipt() -> Receipt {
        let v: serde_json::Value = serde_json::from_str(include_str!("../../tests/fixtures/signature-vectors.json")).unwrap();
        let v = &v["vectors"][5];
        let st = &v["status"];
        Receipt {
            version: 1,
            worker: "http://worker".into(),
            job_id: st["job_id"].as_str().unwrap().into(),
            worker_id: st["worker_metadata"]["worker_id"].as_str().unwrap().into(),
            signature: st["worker_metadata"]["signature"].as_str().unwrap().into(),
            signed_string: v["signed_string"].as_str().unwrap().into(),
            job_hash: st["job_hash"].as_str().unwrap().into(),
            exit_code: st["execution_metadata"]["exit_code"].as_i64().unwrap(),
            outputs: st["output_files"].as_object().unwrap().iter().map(|(k, m)| (k.clone(), m["sha256"].as_str().unwrap().to_string())).collect(),
        }
    }

    #[test]
    fn a_real_receipt_verifies_and_round_trips() {
        let r = vector_receipt();
        let back = Receipt::parse(&r.to_json()).unwrap();
        assert_eq!(back, r);
        let report = verify_receipt(&back, &ProofInputs { files: vec![("output.txt".into(), b"result data 42\n".to_vec())], ..Default::default() });
        assert!(report.valid, "{report:?}");
    }

    #[test]
    fn tampering_is_caught() {
        let mut r = vector_receipt();
        r.exit_code = 1;
        assert!(!verify_receipt(&r, &ProofInputs::default()).valid);
        let mut r = vector_receipt();
        r.signed_string = r.signed_string.replacen("|0|", "|1|", 1);
        let rep = verify_receipt(&r, &ProofInputs::default());
        assert!(!rep.checks.iter().find(|c| c.name == "signature").unwrap().ok);
        let r = vector_receipt();
        let rep = verify_receipt(&r, &ProofInputs { allow: Some(vec!["someone-else".into()]), job_hash: Some("00".repeat(32)), files: vec![("output.txt".into(), b"forged".to_vec())] });
        let failed: Vec<_> = rep.checks.iter().filter(|c| !c.ok).map(|c| c.name.as_str()).collect();
        assert_eq!(failed, ["allowlist", "submitted_job", "output:output.txt"]);
        assert!(Receipt::parse("{\"version\":2}").is_err());
    }
}
