//! Formatting helpers that must match the reference worker's C/C++ output byte for byte.

use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// Escapes bytes the way the reference worker does: one `\u00XX` per byte for bytes
/// from 0x80 up and for control bytes, short escapes for `"` `\\` `\n` `\r` `\t` `\b` `\f`.
/// The reference escapes per *byte*, so UTF-8 text arrives double-encoded; SDKs undo it.
pub fn json_escape_bytes(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() + 8);
    for &c in b {
        match c {
            b'"' => s.push_str("\\\""),
            b'\\' => s.push_str("\\\\"),
            b'\n' => s.push_str("\\n"),
            b'\r' => s.push_str("\\r"),
            b'\t' => s.push_str("\\t"),
            0x08 => s.push_str("\\b"),
            0x0c => s.push_str("\\f"),
            c if !(0x20..0x80).contains(&c) => {
                let _ = write!(s, "\\u{:04x}", c);
            }
            c => s.push(c as char),
        }
    }
    s
}

/// `json_escape_bytes` for a `&str`.
pub fn json_escape(s: &str) -> String {
    json_escape_bytes(s.as_bytes())
}

/// C `printf("%g", x)`: 6 significant digits, trailing zeros stripped, exponent form
/// below 1e-4 or from 1e6 on. Rust's float formatting rounds exactly like glibc.
pub fn fmt_g(x: f64) -> String {
    if x == 0.0 {
        return if x.is_sign_negative() { "-0".into() } else { "0".into() };
    }
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x < 0.0 { "-inf".into() } else { "inf".into() };
    }
    let e = format!("{:.5e}", x);
    let (mant, exp) = e.split_once('e').expect("exponent form");
    let exp: i32 = exp.parse().expect("exponent");
    if !(-4..6).contains(&exp) {
        let m = strip_zeros(mant);
        format!("{}e{}{:02}", m, if exp < 0 { '-' } else { '+' }, exp.abs())
    } else {
        let prec = (5 - exp) as usize;
        strip_zeros(&format!("{:.*}", prec, x)).to_string()
    }
}

fn strip_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// C `printf("%.2f", x)`.
pub fn fmt_2f(x: f64) -> String {
    format!("{:.2}", x)
}

/// C `printf("%f", x)` (6 decimals), used in the WebSocket `[DONE]` frame.
pub fn fmt_f(x: f64) -> String {
    format!("{:.6}", x)
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// Lower-case hex.
pub fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(s, "{:02x}", x);
    }
    s
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// (year, month, day) from days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = (z - era * 146_097) as u64;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe as i64 + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `YYYY-MM-DD HH:MM:SS` in UTC, the broker's timestamp format.
pub fn fmt_timestamp(secs: u64) -> String {
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let t = secs % 86_400;
    format!("{:04}-{:02}-{:02} {:02}:{:02}:{:02}", y, m, d, t / 3600, t / 60 % 60, t % 60)
}

/// RFC 7231 HTTP-date, e.g. `Thu, 26 Nov 2026 18:13:16 GMT`.
pub fn fmt_http_date(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let days = secs / 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    let t = secs % 86_400;
    format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        d,
        MONTHS[(m - 1) as usize],
        y,
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

/// Finds `needle` in `hay` starting at `from`.
pub fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || from > hay.len() || hay.len() - from < needle.len() {
        return None;
    }
    let first = needle[0];
    let last_start = hay.len() - needle.len();
    let mut i = from;
    while i <= last_start {
        match hay[i..=last_start].iter().position(|&b| b == first) {
            None => return None,
            Some(p) => {
                i += p;
                if &hay[i..i + needle.len()] == needle {
                    return Some(i);
                }
                i += 1;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g_matches_c_printf() {
        for (x, s) in [
            (0.029937, "0.029937"),
            (0.01944, "0.01944"),
            (10.6117, "10.6117"),
            (10.61172, "10.6117"),
            (5e-05, "5e-05"),
            (0.0, "0"),
            (0.089368, "0.089368"),
            (9.910632, "9.91063"),
            (10.0, "10"),
            (10.6665, "10.6665"),
            (0.0001, "0.0001"),
            (0.00012345678, "0.000123457"),
            (123456.0, "123456"),
            (1234567.0, "1.23457e+06"),
            (9.9999996, "10"),
            (0.5, "0.5"),
            (1e100, "1e+100"),
            (-1.5, "-1.5"),
            (0.014217, "0.014217"),
            (299.99, "299.99"),
        ] {
            assert_eq!(fmt_g(x), s, "x = {x}");
        }
    }

    #[test]
    fn fixed_formats() {
        assert_eq!(fmt_2f(0.029937), "0.03");
        assert_eq!(fmt_2f(10.6117), "10.61");
        assert_eq!(fmt_2f(0.0), "0.00");
        assert_eq!(fmt_f(0.014217), "0.014217");
    }

    #[test]
    fn escaping_is_per_byte() {
        let s = "h\u{e9}llo \u{2713} tab\there \"quoted\" back\\slash ctrl\u{1} end\n";
        assert_eq!(
            json_escape(s),
            "h\\u00c3\\u00a9llo \\u00e2\\u009c\\u0093 tab\\there \\\"quoted\\\" back\\\\slash ctrl\\u0001 end\\n"
        );
    }

    #[test]
    fn dates() {
        assert_eq!(fmt_timestamp(1_795_716_796), "2026-11-26 18:13:16");
        assert_eq!(fmt_http_date(1_795_716_796), "Thu, 26 Nov 2026 18:13:16 GMT");
        assert_eq!(fmt_timestamp(0), "1970-01-01 00:00:00");
    }

    #[test]
    fn find_works() {
        assert_eq!(find(b"abcabd", b"abd", 0), Some(3));
        assert_eq!(find(b"abc", b"abcd", 0), None);
        assert_eq!(find(b"aaa", b"a", 2), Some(2));
    }
}

/// Start `cmd` in its own process group (so stopping it reaches anything it starts) and
/// have the kernel kill it if the devnet dies first.
pub fn own_group_dies_with_parent(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    unsafe {
        cmd.pre_exec(|| {
            libc::setpgid(0, 0);
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0);
            Ok(())
        });
    }
}
