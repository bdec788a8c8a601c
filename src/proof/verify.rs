//! Ed25519 verification of a worker's signed status, including the CPU candidate search.
//!
//! `/status` prints CPU seconds with 2 decimals, but the worker signed the exact `%g`
//! figure. Without the exact figure (from the WebSocket `[DONE]` frame) we try every
//! microsecond value within +-0.005: up to 10,001 messages. The fixed work (decoding
//! the key, the point R, the scalar S, hashing R || A || prefix) is done once. The
//! search then checks `[k]A == [S]B - R` with a fixed-base table for A (built once),
//! which costs about a quarter of a full verification per candidate.

use super::recipe::{format_g, signed_prefix, signed_suffix};
use crate::wire::WorkerStatus;
use crate::error::{Error, ErrorCode, Result};
use base64::{engine::general_purpose::STANDARD as B64, Engine};
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsBasepointTable, EdwardsPoint};
use curve25519_dalek::traits::BasepointTable;
use curve25519_dalek::scalar::Scalar;
use sha2::{Digest, Sha512};

/// A worker's public key, decoded once.
#[derive(Clone)]
pub struct WorkerKey {
    a_bytes: [u8; 32],
    a: EdwardsPoint,
    minus_a: EdwardsPoint,
}

impl WorkerKey {
    /// From the base64 `worker_id`.
    pub fn from_worker_id(worker_id: &str) -> Result<WorkerKey> {
        let raw = B64
            .decode(worker_id)
            .map_err(|_| Error::new(ErrorCode::VerificationFailed, format!("worker id {worker_id:?} is not base64")))?;
        let a_bytes: [u8; 32] = raw
            .try_into()
            .map_err(|_| Error::new(ErrorCode::VerificationFailed, format!("worker id {worker_id:?} is not a 32-byte Ed25519 key")))?;
        let a = CompressedEdwardsY(a_bytes)
            .decompress()
            .ok_or_else(|| Error::new(ErrorCode::VerificationFailed, format!("worker id {worker_id:?} is not a valid Ed25519 point")))?;
        // Strict: a small-order key (the identity among them) lets a trivial signature verify
        // any message, and a non-canonical encoding gives one key two ids.
        if a.is_small_order() || a.compress().0 != a_bytes {
            return Err(Error::new(
                ErrorCode::VerificationFailed,
                format!("worker id {worker_id:?} is a weak (small-order) or non-canonically encoded Ed25519 key: no signature by it is trusted"),
            ));
        }
        Ok(WorkerKey { a_bytes, a, minus_a: -a })
    }
}

/// Check a list of base64 Ed25519 worker keys, so a typo fails at the call.
pub fn check_worker_keys(what: &str, keys: &[String]) -> Result<()> {
    if keys.is_empty() {
        return Err(Error::invalid(format!("{what} needs at least one worker key (the base64 worker_id a worker shows at /health)")));
    }
    for k in keys {
        WorkerKey::from_worker_id(k)
            .map_err(|e| Error::invalid(format!("{what}: {k:?} is not a usable worker key: {}", e.message)))?;
    }
    Ok(())
}

/// A signature prepared for many candidate messages with a common prefix.
pub struct PreparedSignature {
    r_bytes: [u8; 32],
    s: Scalar,
    key: WorkerKey,
}

impl PreparedSignature {
    pub fn new(key: &WorkerKey, signature_b64: &str) -> Result<PreparedSignature> {
        let raw = B64
            .decode(signature_b64)
            .map_err(|_| Error::new(ErrorCode::VerificationFailed, "the worker's signature is not base64"))?;
        if raw.len() != 64 {
            return Err(Error::new(ErrorCode::VerificationFailed, "the worker's signature is not 64 bytes"));
        }
        let mut r_bytes = [0u8; 32];
        r_bytes.copy_from_slice(&raw[..32]);
        let mut s_bytes = [0u8; 32];
        s_bytes.copy_from_slice(&raw[32..]);
        let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes))
            .ok_or_else(|| Error::new(ErrorCode::VerificationFailed, "the worker's signature has a non-canonical S"))?;
        // As ed25519-dalek's verify_strict: R must be a canonical point of large order.
        let r_ok = CompressedEdwardsY(r_bytes).decompress().is_some_and(|r| !r.is_small_order() && r.compress().0 == r_bytes);
        if !r_ok {
            return Err(Error::new(ErrorCode::VerificationFailed, "the worker's signature has a small-order or non-canonical R"));
        }
        Ok(PreparedSignature { r_bytes, s, key: key.clone() })
    }

    /// SHA-512 state after R || A || prefix.
    pub fn hasher(&self, prefix: &[u8]) -> Sha512 {
        let mut h = Sha512::new();
        h.update(self.r_bytes);
        h.update(self.key.a_bytes);
        h.update(prefix);
        h
    }

    /// Does the signature verify for `prefix + rest` (given `hasher(prefix)`)?
    pub fn verifies_with(&self, prefixed: &Sha512, rest: &[u8]) -> bool {
        let mut h = prefixed.clone();
        h.update(rest);
        let k = Scalar::from_hash(h);
        let r = EdwardsPoint::vartime_double_scalar_mul_basepoint(&k, &self.key.minus_a, &self.s);
        r.compress().0 == self.r_bytes
    }

    /// Prepare a search over many messages sharing `prefix`; `None` when R is not a
    /// canonical point encoding (no message can verify then).
    pub fn search(&self, prefix: &[u8]) -> Option<CandidateSearch> {
        let r = CompressedEdwardsY(self.r_bytes).decompress()?;
        // Point equality below equals dalek's compressed-bytes comparison only for a
        // canonical R.
        if r.compress().0 != self.r_bytes {
            return None;
        }
        let t = EdwardsPoint::mul_base(&self.s) - r;
        Some(CandidateSearch { table: EdwardsBasepointTable::create(&self.key.a), t, hasher: self.hasher(prefix) })
    }

    /// Verify one whole message.
    pub fn verifies(&self, message: &[u8]) -> bool {
        self.verifies_with(&self.hasher(b""), message)
    }
}

/// A prepared search: `[k]A == [S]B - R` per candidate, with a fixed-base table for A.
pub struct CandidateSearch {
    table: EdwardsBasepointTable,
    t: EdwardsPoint,
    hasher: Sha512,
}

impl CandidateSearch {
    /// Does the signature verify for `prefix + rest`?
    pub fn matches(&self, rest: &[u8]) -> bool {
        let mut h = self.hasher.clone();
        h.update(rest);
        let k = Scalar::from_hash(h);
        &k * &self.table == self.t
    }
}

/// What a signature check found.
#[derive(Debug, Clone, PartialEq)]
pub struct SignatureCheck {
    /// The exact signed string that verified.
    pub signed: String,
    /// The exact CPU figure as signed (`%g`).
    pub cpu: String,
    /// Candidate strings tried (1 when the exact CPU was known).
    pub candidates_tried: u32,
}

/// The distinct `%g` strings within +-0.005 of a 2-decimal figure, nearest first.
pub fn cpu_candidates(cpu_2dp: f64) -> Vec<String> {
    let center = (cpu_2dp * 1_000_000.0).round() as i64;
    let mut out: Vec<String> = Vec::with_capacity(10_001);
    let mut seen = std::collections::HashSet::with_capacity(10_001);
    for d in 0..=5000i64 {
        // Saturating: the reported figure is the worker's, `1e300` included.
        for micros in if d == 0 { vec![center] } else { vec![center.saturating_sub(d), center.saturating_add(d)] } {
            if micros < 0 {
                continue;
            }
            let s = format_g(micros as f64 / 1_000_000.0);
            if seen.insert(s.clone()) {
                out.push(s);
            }
        }
    }
    out
}

/// Verify a finished status's signature against its own `worker_id`.
///
/// `exact_cpu` is the `CPU=...s` figure from the `[DONE]` frame when it was seen.
pub fn verify_status_signature(status: &WorkerStatus, exact_cpu: Option<f64>) -> Result<SignatureCheck> {
    let (Some(worker_id), Some(signature)) = (&status.worker_metadata.worker_id, &status.worker_metadata.signature) else {
        return Err(Error::new(
            ErrorCode::VerificationFailed,
            "the worker did not sign this result (anonymous worker, or the job has not ended); use consensus('none') to accept unsigned results",
        ));
    };
    let job_hash = status.job_hash.as_deref().unwrap_or_default();
    let key = WorkerKey::from_worker_id(worker_id)?;
    let sig = PreparedSignature::new(&key, signature)?;
    let prefix = signed_prefix(job_hash, status.execution_metadata.exit_code);
    let suffix = signed_suffix(
        status.execution_metadata.memory_peak_mb,
        status.output_files.iter().map(|(p, m)| (p, &m.sha256)),
    );
    // The signed string must mean exactly this status. A path holding `|`, or a sha256 or
    // job hash that is not 64 lowercase hex, lets the same bytes read as another set of
    // (path, sha256): `{"a:<h1>|b": h2}` signs as `a:<h1>|b:<h2>|`, which is `{a: h1, b: h2}`.
    let files: std::collections::BTreeMap<String, String> = status.output_files.iter().map(|(p, m)| (p.clone(), m.sha256.clone())).collect();
    let means_the_status = super::signed::parse_signed(&format!("{prefix}0{suffix}")).is_some_and(|p| {
        p.agreement.job_hash == job_hash && p.agreement.exit_code == status.execution_metadata.exit_code && p.agreement.outputs == files
    });
    if !means_the_status {
        return Err(Error::new(
            ErrorCode::VerificationFailed,
            format!(
                "the result of job {} cannot be signed unambiguously (a job hash or sha256 that is not 64 lowercase hex, or an output path containing '|'): do not trust it",
                status.job_id
            ),
        ));
    }
    let hasher = sig.hasher(prefix.as_bytes());
    let try_cpu = |cpu: &str| {
        let mut rest = String::with_capacity(cpu.len() + suffix.len());
        rest.push_str(cpu);
        rest.push_str(&suffix);
        sig.verifies_with(&hasher, rest.as_bytes()).then(|| format!("{prefix}{rest}"))
    };
    if let Some(cpu) = exact_cpu {
        // The [DONE] frame prints the same microsecond figure with %f: try it and its
        // neighbours (float rounding), and no wider search, so a bad signature is cheap.
        let micros = (cpu * 1_000_000.0).round() as i64;
        for (tried, m) in [micros, micros.saturating_sub(1), micros.saturating_add(1)].into_iter().enumerate() {
            let cpu = format_g(m.max(0) as f64 / 1_000_000.0);
            if let Some(signed) = try_cpu(&cpu) {
                return Ok(SignatureCheck { signed, cpu, candidates_tried: tried as u32 + 1 });
            }
        }
        return Err(Error::new(
            ErrorCode::VerificationFailed,
            format!("the signature of worker {worker_id} does not verify for job {} (exact CPU {cpu} from its stream): do not trust this result", status.job_id),
        ));
    }
    let candidates = cpu_candidates(status.execution_metadata.cpu_seconds);
    if let Some(search) = sig.search(prefix.as_bytes()) {
        for (i, cpu) in candidates.iter().enumerate() {
            let rest = format!("{cpu}{suffix}");
            if search.matches(rest.as_bytes()) {
                // Confirm with the ordinary verification before trusting the fast path.
                if let Some(signed) = try_cpu(cpu) {
                    return Ok(SignatureCheck { signed, cpu: cpu.clone(), candidates_tried: i as u32 + 1 });
                }
            }
        }
    }
    Err(Error::new(
        ErrorCode::VerificationFailed,
        format!(
            "the signature of worker {worker_id} does not verify for job {} (tried {} CPU figures): do not trust this result",
            status.job_id,
            candidates.len()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proof::recipe::job_hash;

    fn vectors() -> serde_json::Value {
        let p = format!("{}/tests/fixtures/signature-vectors.json", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    }

    #[test]
    fn all_reference_vectors_verify_by_candidate_search_and_by_exact_cpu() {
        for v in vectors()["vectors"].as_array().unwrap() {
            let status = WorkerStatus::parse(v["status"].to_string().as_bytes()).unwrap();
            let check = verify_status_signature(&status, None).unwrap();
            assert_eq!(check.signed, v["signed_string"].as_str().unwrap(), "{}", v["capture"]);
            assert_eq!(check.cpu, v["exact_cpu_string"].as_str().unwrap());
            let exact: f64 = check.cpu.parse().unwrap();
            assert_eq!(verify_status_signature(&status, Some(exact)).unwrap().candidates_tried, 1);
            // Cross-check the fast path against ed25519-dalek's own verify.
            let key = ed25519_dalek::VerifyingKey::from_bytes(
                &B64.decode(status.worker_metadata.worker_id.as_ref().unwrap()).unwrap().try_into().unwrap(),
            )
            .unwrap();
            let sig = ed25519_dalek::Signature::from_slice(&B64.decode(status.worker_metadata.signature.as_ref().unwrap()).unwrap()).unwrap();
            assert!(key.verify_strict(check.signed.as_bytes(), &sig).is_ok());
        }
    }

    #[test]
    fn job_hashes_recompute_from_inputs() {
        for v in vectors()["vectors"].as_array().unwrap() {
            let m = &v["manifest_sent"];
            let m = if m.is_null() { serde_json::from_str(v["job_files"]["job.json"].as_str().unwrap()).unwrap() } else { m.clone() };
            let entry = m["entrypoint"].as_str().unwrap();
            let args: Vec<String> = m["args"].as_array().map(|a| a.iter().map(|x| x.as_str().unwrap().to_string()).collect()).unwrap_or_default();
            let content = v["job_files"][entry].as_str().map(|s| s.as_bytes());
            let h = job_hash(entry, m["interpreter"].as_str().unwrap_or("python3"), m["environment"].as_str().unwrap_or(""), &args, content);
            assert_eq!(h, v["expected_job_hash"].as_str().unwrap(), "{}", v["capture"]);
        }
    }

    #[test]
    fn tampering_fails() {
        let v = &vectors()["vectors"][0];
        let mut status = WorkerStatus::parse(v["status"].to_string().as_bytes()).unwrap();
        status.output_files.values_mut().next().unwrap().sha256 = "00".repeat(32);
        let e = verify_status_signature(&status, None).unwrap_err();
        assert_eq!(e.code, ErrorCode::VerificationFailed);
        let mut anon = WorkerStatus::parse(v["status"].to_string().as_bytes()).unwrap();
        anon.worker_metadata.signature = None;
        assert_eq!(verify_status_signature(&anon, None).unwrap_err().code, ErrorCode::VerificationFailed);
    }

    /// The identity point as a key with R = identity and S = 0 satisfies the cofactorless
    /// equation for every message; a strict verifier must refuse it (and small-order R).
    #[test]
    fn small_order_keys_and_trivial_signatures_are_refused() {
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let key = B64.encode(identity);
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&identity);
        let sig = B64.encode(sig);
        let verifies = |msg: &[u8]| WorkerKey::from_worker_id(&key).and_then(|k| PreparedSignature::new(&k, &sig)).map(|s| s.verifies(msg)).unwrap_or(false);
        assert!(!verifies(b"anything"), "the identity key verified a message");
        assert!(!verifies(b"anything else"));
        // A real key with a small-order R and S = 0 must not verify either.
        let v = &vectors()["vectors"][0];
        let real = v["status"]["worker_metadata"]["worker_id"].as_str().unwrap();
        let k = WorkerKey::from_worker_id(real).unwrap();
        assert!(PreparedSignature::new(&k, &sig).map(|s| s.verifies(b"x")).unwrap_or(false) == false);
        // A non-canonical encoding of a valid key (y + p) is refused.
        let mut noncanon = [0xffu8; 32];
        noncanon[0] = 0xee; // y = p + 1 (encodes y = 1 non-canonically), sign bit clear
        noncanon[31] = 0x7f;
        assert!(WorkerKey::from_worker_id(&B64.encode(noncanon)).is_err());
    }

    #[test]
    fn candidates_cover_the_window() {
        let c = cpu_candidates(0.03);
        assert_eq!(c.len(), 10_001);
        assert_eq!(c[0], "0.03");
        assert!(c.contains(&"0.025".to_string()) && c.contains(&"0.035".to_string()) && c.contains(&"0.029937".to_string()));
        assert_eq!(cpu_candidates(0.0)[0], "0");
    }
}
