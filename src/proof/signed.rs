//! The signed string read back into its parts: `job_hash|exit|cpu|mem|(path:sha|)*`,
//! canonical form only, and the Ed25519 check over it. Pools and receipts both use it.

use super::verify::{PreparedSignature, WorkerKey};
use crate::types::Agreement;
use std::collections::BTreeMap;

/// A signed string split into its parts: `job_hash|exit|cpu|mem|(path:sha|)*`.
#[derive(Debug, Clone, PartialEq)]
pub struct SignedParts {
    pub agreement: Agreement,
    pub cpu: String,
    pub memory_mb: u64,
}

/// Parse a signed string (paths may contain ':' but not '|'; sha256 has none).
///
/// Only the canonical form is accepted: 64 lowercase hex for the job hash and every
/// sha256, numbers as the worker prints them, paths unique and in byte order. So a string
/// has one reading, and it is the one `signed_string` would print for its parts. A path
/// containing `|` cannot be told apart from two files; such a string is read as the
/// files without `|` (and the SDK refuses a status whose paths hold `|`).
pub fn parse_signed(signed: &str) -> Option<SignedParts> {
    let parts = parse_signed_loose(signed)?;
    let hex64 = |s: &str| s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let a = &parts.agreement;
    let canonical = hex64(&a.job_hash)
        && a.outputs.values().all(|h| hex64(h))
        && parts.cpu.parse::<f64>().is_ok()
        && format!(
            "{}{}{}",
            crate::proof::recipe::signed_prefix(&a.job_hash, a.exit_code),
            parts.cpu,
            crate::proof::recipe::signed_suffix(parts.memory_mb, &a.outputs)
        ) == signed;
    canonical.then_some(parts)
}

fn parse_signed_loose(signed: &str) -> Option<SignedParts> {
    let mut parts = signed.split('|');
    let job_hash = parts.next()?.to_string();
    let exit_code: i64 = parts.next()?.parse().ok()?;
    let cpu = parts.next()?.to_string();
    let memory_mb: u64 = parts.next()?.parse().ok()?;
    let mut outputs = BTreeMap::new();
    let rest: Vec<&str> = parts.collect();
    let (last, files) = rest.split_last()?;
    if !last.is_empty() {
        return None;
    }
    for f in files {
        let (path, sha) = f.rsplit_once(':')?;
        if sha.len() != 64 {
            return None;
        }
        outputs.insert(path.to_string(), sha.to_string());
    }
    if job_hash.len() != 64 {
        return None;
    }
    Some(SignedParts { agreement: Agreement { job_hash, exit_code, outputs }, cpu, memory_mb })
}

/// Does `signature` by `worker_id` verify over `signed`?
pub fn signature_ok(worker_id: &str, signature: &str, signed: &str) -> bool {
    match WorkerKey::from_worker_id(worker_id).and_then(|k| PreparedSignature::new(&k, signature)) {
        Ok(sig) => sig.verifies(signed.as_bytes()),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_signed_strings() {
        let s = "4132144496a5939f391660586dfdd2d9c1439011828c0534b66025896829b9ed|0|0.029937|7|main.py:f12ffd66c6f9db9ba8bb330dcfb6ab16c94c4c9234e1750d965ccef6a2654595|";
        let p = parse_signed(s).unwrap();
        assert_eq!(p.agreement.exit_code, 0);
        assert_eq!(p.cpu, "0.029937");
        assert_eq!(p.memory_mb, 7);
        assert_eq!(p.agreement.outputs.len(), 1);
        let none = parse_signed("4999499949994999499949994999499949994999499949994999499949994999|-1|0.012633|7|").unwrap();
        assert!(none.agreement.outputs.is_empty() && none.agreement.exit_code == -1);
        assert!(parse_signed("x|0|1|7|").is_none());
        assert!(parse_signed(&s[..s.len() - 1]).is_none());
    }
}
