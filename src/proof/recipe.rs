//! The reference worker's hashes and signed string, byte for byte.

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Lowercase hex of SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&sha256(bytes))
}

/// SHA-256 digest, computed here (Rust's sha2; in wasm, the fallback of
/// [`crate::platform::Platform::sha256`]).
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(D[(b >> 4) as usize] as char);
        s.push(D[(b & 15) as usize] as char);
    }
    s
}

/// `sha256_hex(entrypoint|interpreter|environment|(arg|)* <entrypoint bytes>)`.
///
/// `entry_content` is `None` when the entrypoint file is not part of the job (the
/// worker then hashes nothing after the last `|`).
pub fn job_hash(entrypoint: &str, interpreter: &str, environment: &str, args: &[String], entry_content: Option<&[u8]>) -> String {
    let mut h = Sha256::new();
    h.update(entrypoint.as_bytes());
    h.update(b"|");
    h.update(interpreter.as_bytes());
    h.update(b"|");
    h.update(environment.as_bytes());
    h.update(b"|");
    for a in args {
        h.update(a.as_bytes());
        h.update(b"|");
    }
    if let Some(c) = entry_content {
        h.update(c);
    }
    hex(&h.finalize())
}

/// C's `printf("%g", x)`: 6 significant digits, trailing zeros dropped,
/// scientific below 1e-4 or from 1e6 with a two-digit exponent.
pub fn format_g(x: f64) -> String {
    if x == 0.0 {
        return "0".into();
    }
    if !x.is_finite() {
        return if x.is_nan() { "nan".into() } else if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    // Rounding to 6 significant digits first decides the exponent, as C does.
    let sci = format!("{:.5e}", x);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..6).contains(&exp) {
        let m = trim_zeros(mantissa);
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{m}e{sign}{:02}", exp.abs())
    } else {
        let decimals = (5 - exp).max(0) as usize;
        trim_zeros(&format!("{:.*}", decimals, x)).to_string()
    }
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// The part of the signed string before the CPU figure: `job_hash|exit_code|`.
pub fn signed_prefix(job_hash: &str, exit_code: i64) -> String {
    format!("{job_hash}|{exit_code}|")
}

/// The part after the CPU figure: `|memory_mb|(path:sha256|)*`, paths in byte order.
pub fn signed_suffix<'a>(memory_mb: u64, files: impl IntoIterator<Item = (&'a String, &'a String)>) -> String {
    let mut s = format!("|{memory_mb}|");
    for (path, sha) in files {
        s.push_str(path);
        s.push(':');
        s.push_str(sha);
        s.push('|');
    }
    s
}

/// The whole signed string for an exact CPU figure.
pub fn signed_string(job_hash: &str, exit_code: i64, cpu_seconds: f64, memory_mb: u64, files: &BTreeMap<String, String>) -> String {
    format!("{}{}{}", signed_prefix(job_hash, exit_code), format_g(cpu_seconds), signed_suffix(memory_mb, files))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_g_matches_c() {
        for (x, s) in [
            (0.029937, "0.029937"),
            (0.01944, "0.01944"),
            (10.6117, "10.6117"),
            (5e-05, "5e-05"),
            (0.0, "0"),
            (1.0, "1"),
            (0.1, "0.1"),
            (123456.0, "123456"),
            (1234567.0, "1.23457e+06"),
            (0.0001, "0.0001"),
            (0.00012345678, "0.000123457"),
            (9.9999996, "10"),
            (0.089368, "0.089368"),
            (9.91063, "9.91063"),
            (999999.5, "1e+06"),
        ] {
            assert_eq!(format_g(x), s, "{x}");
        }
    }

    #[test]
    fn worked_example() {
        let h = job_hash("main.py", "python3", "", &[], Some(b"print(\"Hello from Sandrun!\")\n"));
        assert_eq!(h, "4132144496a5939f391660586dfdd2d9c1439011828c0534b66025896829b9ed");
        let files: BTreeMap<String, String> =
            [("main.py".to_string(), "f12ffd66c6f9db9ba8bb330dcfb6ab16c94c4c9234e1750d965ccef6a2654595".to_string())].into();
        assert_eq!(
            signed_string(&h, 0, 0.029937, 7, &files),
            "4132144496a5939f391660586dfdd2d9c1439011828c0534b66025896829b9ed|0|0.029937|7|main.py:f12ffd66c6f9db9ba8bb330dcfb6ab16c94c4c9234e1750d965ccef6a2654595|"
        );
    }
}
