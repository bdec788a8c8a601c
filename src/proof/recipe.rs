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

/// Whether `h` is 64 lowercase hex digits (what a host's hex digest must be before it is
/// taken). Eight bytes at a time: on the verification path this check ran once per
/// output, byte by byte, at 1 KiB a measurable share of the SDK's own cost (issue 14 4a).
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))] // used by the JS platform; tested natively
pub(crate) fn is_lower_hex64(h: &[u8; 64]) -> bool {
    const L: u64 = 0x0101_0101_0101_0101;
    const H: u64 = 0x8080_8080_8080_8080;
    h.chunks_exact(8).all(|c| {
        let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        // With every byte below 0x80 (checked), adding at most 0x50 to one never carries
        // into the next: bit 7 of (c + 0x80 - lo) is set exactly when c >= lo. (Otherwise
        // the sums may wrap, and are not used.)
        let digit = w.wrapping_add(0x50 * L) & !w.wrapping_add(0x46 * L); // '0' <= c < ':'
        let letter = w.wrapping_add(0x1f * L) & !w.wrapping_add(0x19 * L); // 'a' <= c < 'g'
        w & H == 0 && (digit | letter) & H == H
    })
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

    /// The word-at-a-time check agrees with the byte-wise definition for every byte value
    /// at every position (a carry or borrow between bytes would show at some neighbour),
    /// and on pseudo-random mixes of valid and invalid bytes.
    #[test]
    fn is_lower_hex64_matches_bytewise() {
        let bytewise = |h: &[u8; 64]| h.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
        let good = *b"0123456789abcdef0123456789abcdefa9b8c7d6e5f40312fedcba9876543210";
        assert!(is_lower_hex64(&good));
        for pos in 0..64 {
            for v in 0..=255u8 {
                for neighbour in [b'0', b'9', b'a', b'f'] {
                    let mut h = [neighbour; 64];
                    h[pos] = v;
                    assert_eq!(is_lower_hex64(&h), bytewise(&h), "byte {v:#04x} at {pos} among {neighbour:#04x}");
                }
            }
        }
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let alphabet = b"0123456789abcdef/:`gAF\x00\x7f\x80\xb0\xe1\xff";
        for _ in 0..20_000 {
            let mut h = good;
            for b in h.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Mostly valid digits, so whole-valid and one-bad-byte inputs both occur.
                *b = if x % 64 == 0 { alphabet[(x >> 8) as usize % alphabet.len()] } else { alphabet[(x >> 8) as usize % 16] };
            }
            assert_eq!(is_lower_hex64(&h), bytewise(&h), "{h:?}");
        }
    }

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
