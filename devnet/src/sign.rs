//! job_hash, the signed string and worker keys, following the reference recipe.
//! This is an independent implementation on purpose (no dependency on the SDK crate),
//! so the SDK's verifier is tested against a second reading of the spec.

use crate::util::{fmt_g, sha256_hex};
use base64::Engine as _;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{Signer, SigningKey};
use std::io;
use std::path::Path;

/// `sha256_hex(entrypoint "|" interpreter "|" environment "|" (arg "|")* content)`;
/// `content` is `None` when the entrypoint file does not exist.
pub fn job_hash(
    entrypoint: &str,
    interpreter: &str,
    environment: &str,
    args: &[String],
    content: Option<&[u8]>,
) -> String {
    let mut buf = Vec::new();
    buf.extend_from_slice(entrypoint.as_bytes());
    buf.push(b'|');
    buf.extend_from_slice(interpreter.as_bytes());
    buf.push(b'|');
    buf.extend_from_slice(environment.as_bytes());
    buf.push(b'|');
    for a in args {
        buf.extend_from_slice(a.as_bytes());
        buf.push(b'|');
    }
    if let Some(c) = content {
        buf.extend_from_slice(c);
    }
    sha256_hex(&buf)
}

/// `job_hash "|" exit "|" %g(cpu) "|" mem_mb "|" (path ":" sha256 "|")*` with the files
/// ordered by the bytes of their raw paths.
pub fn signed_string(
    job_hash: &str,
    exit_code: i32,
    cpu_seconds: f64,
    memory_mb: u64,
    files: &[(Vec<u8>, String)],
) -> Vec<u8> {
    let mut sorted: Vec<&(Vec<u8>, String)> = files.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut s = format!("{}|{}|{}|{}|", job_hash, exit_code, fmt_g(cpu_seconds), memory_mb).into_bytes();
    for (p, h) in sorted {
        s.extend_from_slice(p);
        s.push(b':');
        s.extend_from_slice(h.as_bytes());
        s.push(b'|');
    }
    s
}

/// Standard base64 (with padding) of an Ed25519 signature over `msg`.
pub fn sign_b64(key: &SigningKey, msg: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(key.sign(msg).to_bytes())
}

/// worker_id: standard base64 of the raw 32-byte public key.
pub fn worker_id(key: &SigningKey) -> String {
    base64::engine::general_purpose::STANDARD.encode(key.verifying_key().to_bytes())
}

/// The bytes a worker signs to bind a payout address:
/// `sandrun-payout-v1|<chainId decimal>|<payout address lowercase 0x hex>`.
pub fn payout_message(chain_id: u64, payout: &str) -> String {
    format!("sandrun-payout-v1|{}|{}", chain_id, payout.to_ascii_lowercase())
}

/// `payout_signature`: standard base64 of the worker's Ed25519 signature over
/// [`payout_message`].
pub fn payout_signature(key: &SigningKey, chain_id: u64, payout: &str) -> String {
    sign_b64(key, payout_message(chain_id, payout).as_bytes())
}

/// Whether `s` is a `0x` address (40 hex digits, any case).
pub fn is_address(s: &str) -> bool {
    s.len() == 42 && s.starts_with("0x") && s[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// Checks a payout binding strictly (`verify_strict`: small-order keys and non-canonical
/// signatures are refused). The error says what is wrong, for the registry's 403.
pub fn verify_payout(worker_id: &str, chain_id: u64, payout: &str, signature: &str) -> Result<(), String> {
    use base64::engine::general_purpose::STANDARD;
    if !is_address(payout) {
        return Err(format!("payout {payout:?} is not a 0x address of 40 hex digits"));
    }
    let key: [u8; 32] = STANDARD
        .decode(worker_id)
        .ok()
        .and_then(|k| k.try_into().ok())
        .ok_or_else(|| "worker_id is not the base64 of a 32-byte Ed25519 public key".to_string())?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(&key).map_err(|_| "worker_id is not a valid Ed25519 public key".to_string())?;
    let sig: [u8; 64] = STANDARD
        .decode(signature)
        .ok()
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| "payout_signature is not the base64 of a 64-byte Ed25519 signature".to_string())?;
    let sig = ed25519_dalek::Signature::from_bytes(&sig);
    key.verify_strict(payout_message(chain_id, payout).as_bytes(), &sig)
        .map_err(|_| format!("payout_signature does not verify under worker_id {worker_id} for chain {chain_id} and payout {payout}"))
}

/// Loads the PEM PKCS#8 key at `path`, creating it (mode 0600) on first start.
pub fn load_or_create_key(path: &Path) -> io::Result<SigningKey> {
    if let Ok(pem) = std::fs::read_to_string(path) {
        return SigningKey::from_pkcs8_pem(&pem)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", path.display())));
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let key = SigningKey::generate(&mut rand_core::OsRng);
    let pem = key
        .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .map_err(|e| io::Error::other(e.to_string()))?;
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    // Write to a temp name and rename so a concurrent start never reads half a key.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(pem.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Manifest;

    #[test]
    fn worked_example() {
        let h = job_hash("main.py", "python3", "", &[], Some(b"print(\"Hello from Sandrun!\")\n"));
        assert_eq!(h, "4132144496a5939f391660586dfdd2d9c1439011828c0534b66025896829b9ed");
        let s = signed_string(
            &h,
            0,
            0.029937,
            7,
            &[(b"main.py".to_vec(), "f12ffd66c6f9db9ba8bb330dcfb6ab16c94c4c9234e1750d965ccef6a2654595".into())],
        );
        assert_eq!(
            String::from_utf8(s).unwrap(),
            "4132144496a5939f391660586dfdd2d9c1439011828c0534b66025896829b9ed|0|0.029937|7|main.py:f12ffd66c6f9db9ba8bb330dcfb6ab16c94c4c9234e1750d965ccef6a2654595|"
        );
    }

    /// Rebuilds every signed string of the real vectors from their inputs: the manifest
    /// (or job.json) through our manifest scanner, job_hash from the files, and the
    /// signed string from the /status body plus the exact CPU figure.
    #[test]
    fn all_signature_vectors_rebuild() {
        let v: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/fixtures/signature-vectors.json")).unwrap();
        let vectors = v["vectors"].as_array().unwrap();
        assert_eq!(vectors.len(), 9);
        for vec in vectors {
            let files = vec["job_files"].as_object().unwrap();
            let mut m = match &vec["manifest_sent"] {
                serde_json::Value::Null => Manifest::default(),
                other => Manifest::scan(&other.to_string()),
            };
            if m.entrypoint.is_none() {
                if let Some(j) = files.get("job.json") {
                    m.merge_missing(&Manifest::scan(j.as_str().unwrap()));
                }
            }
            let ep = m.entrypoint.clone().unwrap();
            let content = files.get(&ep).map(|c| c.as_str().unwrap().as_bytes().to_vec());
            let h = job_hash(
                &ep,
                m.interpreter.as_deref().unwrap_or("python3"),
                m.environment.as_deref().unwrap_or(""),
                &m.args,
                content.as_deref(),
            );
            assert_eq!(h, vec["expected_job_hash"].as_str().unwrap(), "{}", vec["capture"]);
            let st = &vec["status"];
            assert_eq!(st["job_hash"], h);
            let cpu: f64 = vec["exact_cpu_string"].as_str().unwrap().parse().unwrap();
            assert_eq!(fmt_g(cpu), vec["exact_cpu_string"].as_str().unwrap());
            let outs: Vec<(Vec<u8>, String)> = st["output_files"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v["sha256"].as_str().unwrap().to_string()))
                .collect();
            let s = signed_string(
                &h,
                st["execution_metadata"]["exit_code"].as_i64().unwrap() as i32,
                cpu,
                st["execution_metadata"]["memory_peak_mb"].as_u64().unwrap(),
                &outs,
            );
            assert_eq!(String::from_utf8(s).unwrap(), vec["signed_string"].as_str().unwrap(), "{}", vec["capture"]);
        }
    }

    #[test]
    fn payout_binding() {
        let k = SigningKey::from_bytes(&[7u8; 32]);
        let other = SigningKey::from_bytes(&[8u8; 32]);
        let a = "0xAbCdEf0123456789aBcDeF0123456789AbCdEf01";
        assert_eq!(payout_message(31337, a), "sandrun-payout-v1|31337|0xabcdef0123456789abcdef0123456789abcdef01");
        let sig = payout_signature(&k, 31337, a);
        let id = worker_id(&k);
        assert!(verify_payout(&id, 31337, a, &sig).is_ok());
        assert!(verify_payout(&id, 31337, &a.to_ascii_lowercase(), &sig).is_ok());
        assert!(verify_payout(&id, 1, a, &sig).unwrap_err().contains("does not verify"));
        assert!(verify_payout(&worker_id(&other), 31337, a, &sig).is_err());
        let b = "0x0000000000000000000000000000000000000001";
        assert!(verify_payout(&id, 31337, b, &sig).is_err());
        assert!(verify_payout(&id, 31337, "0x1234", &sig).unwrap_err().contains("not a 0x address"));
        assert!(verify_payout("bm9wZQ==", 31337, a, &sig).unwrap_err().contains("32-byte"));
        // The identity key with a trivial signature (R = identity, s = 0) verifies any
        // message under lax rules; verify_strict refuses it.
        use base64::Engine as _;
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let mut ident = [0u8; 32];
        ident[0] = 1;
        let mut trivial = [0u8; 64];
        trivial[0] = 1;
        assert!(verify_payout(&b64(&ident), 31337, a, &b64(&trivial)).is_err());
    }

    #[test]
    fn key_roundtrip_and_sign() {
        let dir = std::env::temp_dir().join(format!("devnet-key-test-{}", std::process::id()));
        let p = dir.join("key.pem");
        let k1 = load_or_create_key(&p).unwrap();
        let k2 = load_or_create_key(&p).unwrap();
        assert_eq!(worker_id(&k1), worker_id(&k2));
        assert!(std::fs::read_to_string(&p).unwrap().starts_with("-----BEGIN PRIVATE KEY-----"));
        let sig = sign_b64(&k1, b"hello");
        assert_eq!(sig.len(), 88);
        let _ = std::fs::remove_dir_all(dir);
    }
}
