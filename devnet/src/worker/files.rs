//! Output files as the reference reports them: the walk of a job directory, the
//! manifest's `outputs` glob patterns, file types and MIME types by extension, sizes,
//! SHA-256 hashes, and percent-decoding of download paths.

use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// File type as the reference's `/outputs` and `output_files` report it.
pub fn file_type(name: &[u8]) -> &'static str {
    match ext(name).as_str() {
        "py" | "js" | "sh" | "ts" | "c" | "cpp" | "h" | "hpp" | "java" | "go" | "rs" | "rb" | "r" | "jl" | "mjs" => "code",
        "txt" | "md" | "log" | "rst" => "text",
        "json" | "csv" | "xml" | "yaml" | "yml" | "tsv" | "parquet" | "npy" | "pkl" => "data",
        _ => "other",
    }
}

/// MIME type by extension (download `Content-Type` and `/outputs`).
pub fn mime_type(name: &[u8]) -> &'static str {
    match ext(name).as_str() {
        "py" => "text/x-python",
        "js" | "mjs" => "application/javascript",
        "sh" => "application/x-sh",
        "txt" | "log" => "text/plain",
        "md" => "text/markdown",
        "csv" => "text/csv",
        "json" => "application/json",
        "xml" => "application/xml",
        "html" | "htm" => "text/html",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "svg" => "image/svg+xml",
        "pdf" => "application/pdf",
        "gz" | "tgz" => "application/gzip",
        "zip" => "application/zip",
        "tar" => "application/x-tar",
        _ => "application/octet-stream",
    }
}

fn ext(name: &[u8]) -> String {
    let base = name.rsplit(|&b| b == b'/').next().unwrap_or(name);
    match base.iter().rposition(|&b| b == b'.') {
        Some(0) | None => String::new(),
        Some(i) => String::from_utf8_lossy(&base[i + 1..]).to_ascii_lowercase(),
    }
}

/// `29.0 B`, `1.5 KB`, ...
pub(super) fn size_formatted(n: u64) -> String {
    let units = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < units.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    format!("{:.1} {}", v, units[u])
}

/// Glob where `*` matches any run of bytes, `/` included: covers the reference's
/// `*`, `*.ext`, `prefix*`, `dir/*` and exact names.
pub fn glob_match(pat: &[u8], s: &[u8]) -> bool {
    let (mut p, mut i) = (0usize, 0usize);
    let (mut star, mut mark) = (None, 0usize);
    while i < s.len() {
        if p < pat.len() && pat[p] == b'*' {
            star = Some(p);
            mark = i;
            p += 1;
        } else if p < pat.len() && pat[p] == s[i] {
            p += 1;
            i += 1;
        } else if let Some(sp) = star {
            p = sp + 1;
            mark += 1;
            i = mark;
        } else {
            return false;
        }
    }
    while p < pat.len() && pat[p] == b'*' {
        p += 1;
    }
    p == pat.len()
}

/// Regular files under `dir` in directory order (depth first), as raw relative paths.
fn walk(dir: &Path) -> Vec<(Vec<u8>, u64)> {
    fn rec(root: &Path, d: &Path, out: &mut Vec<(Vec<u8>, u64)>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            let p = e.path();
            if ft.is_dir() {
                rec(root, &p, out);
            } else if ft.is_file() {
                let rel = p.strip_prefix(root).unwrap_or(&p).as_os_str().as_bytes().to_vec();
                let size = e.metadata().map(|m| m.len()).unwrap_or(0);
                out.push((rel, size));
            }
        }
    }
    let mut out = Vec::new();
    rec(dir, dir, &mut out);
    out
}

/// Files the job reports: all of them without patterns, else those matching one.
pub(super) fn output_candidates(dir: &Path, patterns: &[String]) -> Vec<(Vec<u8>, u64)> {
    walk(dir)
        .into_iter()
        .filter(|(p, _)| patterns.is_empty() || patterns.iter().any(|g| glob_match(g.as_bytes(), p)))
        .collect()
}

pub(super) fn sha256_file(p: &Path) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    if let Ok(mut f) = std::fs::File::open(p) {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = f.read(&mut buf) {
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
    }
    crate::util::hex(&h.finalize())
}

pub(super) fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Some(v) = std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match(b"*", b"a/b.txt"));
        assert!(glob_match(b"*.txt", b"output.txt"));
        assert!(!glob_match(b"*.txt", b"main.py"));
        assert!(glob_match(b"results/*", b"results/Zeta.json"));
        assert!(!glob_match(b"results/*", b"data/input.csv"));
        assert!(glob_match(b"out*", b"output.txt"));
        assert!(glob_match(b"main.py", b"main.py"));
        assert!(!glob_match(b"main.py", b"main.pyc"));
    }

    #[test]
    fn types_and_sizes() {
        assert_eq!(file_type(b"main.py"), "code");
        assert_eq!(file_type(b"output.txt"), "text");
        assert_eq!(file_type(b"results/out.csv"), "data");
        assert_eq!(file_type(b"results/.keep"), "other");
        assert_eq!(mime_type(b"results/.keep"), "application/octet-stream");
        assert_eq!(mime_type(b"main.py"), "text/x-python");
        assert_eq!(size_formatted(29), "29.0 B");
        assert_eq!(size_formatted(0), "0.0 B");
        assert_eq!(size_formatted(1536), "1.5 KB");
    }
}
