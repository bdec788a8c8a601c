//! The reference worker's wire format, quirks included (see `sandrun-wire.md`).

use crate::error::{Error, ErrorCode, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `execution_metadata` of a status object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ExecutionMetadata {
    /// CPU seconds, printed by the worker with 2 decimals only.
    pub cpu_seconds: f64,
    #[serde(default)]
    pub memory_peak_bytes: u64,
    #[serde(default)]
    pub memory_peak_mb: u64,
    #[serde(default)]
    pub wall_time_ms: u64,
    #[serde(default)]
    pub exit_code: i64,
    #[serde(default)]
    pub environment: String,
    #[serde(default)]
    pub interpreter: String,
}

/// One entry of `output_files`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputFileMeta {
    pub size_bytes: u64,
    pub sha256: String,
    #[serde(default, rename = "type")]
    pub kind: String,
}

/// `worker_metadata`: null fields until the job ends, always null on anonymous workers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct WorkerMetadata {
    pub worker_id: Option<String>,
    pub signature: Option<String>,
}

/// The `/status/{id}` object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerStatus {
    pub job_id: String,
    pub status: String,
    #[serde(default)]
    pub queue_position: u64,
    #[serde(default)]
    pub execution_metadata: ExecutionMetadata,
    #[serde(default)]
    pub job_hash: Option<String>,
    /// Keyed by raw (decoded) path; a BTreeMap orders keys by their bytes, as the signature needs.
    #[serde(default)]
    pub output_files: BTreeMap<String, OutputFileMeta>,
    #[serde(default)]
    pub worker_metadata: WorkerMetadata,
}

impl WorkerStatus {
    /// Parse a status body, decoding per-byte escaped paths.
    pub fn parse(body: &[u8]) -> Result<WorkerStatus> {
        let mut s: WorkerStatus = serde_json::from_slice(body)
            .map_err(|e| Error::malformed("the worker's /status answer is not a status object").with_cause(e.to_string()))?;
        s.output_files = std::mem::take(&mut s.output_files)
            .into_iter()
            .map(|(k, v)| (decode_byte_escapes(&k), v))
            .collect();
        Ok(s)
    }

    /// True once the job has ended (the reference has only these two end states).
    pub fn is_finished(&self) -> bool {
        matches!(self.status.as_str(), "completed" | "failed")
    }
}

/// `/logs/{id}`: JSON, not text.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Logs {
    pub stdout: String,
    pub stderr: String,
}

impl Logs {
    pub fn parse(body: &[u8]) -> Result<Logs> {
        let raw: Logs = serde_json::from_slice(body)
            .map_err(|e| Error::malformed("the worker's /logs answer is not {stdout, stderr}").with_cause(e.to_string()))?;
        Ok(Logs { stdout: decode_byte_escapes(&raw.stdout), stderr: decode_byte_escapes(&raw.stderr) })
    }
}

/// `POST /submit` answer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SubmitAnswer {
    pub job_id: String,
    pub status: String,
}

/// Undo the reference's one-`\u00XX`-per-byte escaping.
///
/// A string whose chars are all <= U+00FF is taken as bytes and decoded as UTF-8;
/// anything else (a server that escapes properly) is returned as it is.
pub fn decode_byte_escapes(s: &str) -> String {
    if s.is_ascii() || s.chars().any(|c| c as u32 > 0xff) {
        return s.to_string();
    }
    let bytes: Vec<u8> = s.chars().map(|c| c as u32 as u8).collect();
    match String::from_utf8(bytes) {
        Ok(v) => v,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

/// The message of an `{"error": "..."}` body, or the body as text.
pub fn error_text(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct E {
        error: String,
    }
    match serde_json::from_slice::<E>(body) {
        Ok(e) => e.error,
        Err(_) => String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned(),
    }
}

/// The wait inside a 429 text (`CPU quota exhausted, wait 34 seconds`), in ms.
pub fn retry_after_ms(text: &str) -> Option<u64> {
    let at = text.find("wait ")? + 5;
    let digits: String = text[at..].chars().take_while(|c| c.is_ascii_digit()).collect();
    let n: u64 = digits.parse().ok()?;
    // The figure is the server's: `wait 18446744073709552 seconds` must not overflow.
    Some(n.saturating_mul(1000))
}

/// Map a non-2xx answer to a typed error.
pub fn status_error(status: u16, body: &[u8], what: &str) -> Error {
    let text = error_text(body);
    match status {
        429 => {
            let mut e = Error::new(
                ErrorCode::RateLimited,
                format!("{what}: the worker is rate-limiting this client ({text}); wait and retry, or use retryPlugin"),
            )
            .with_status(429)
            .with_cause(text.clone());
            e.retry_after_ms = retry_after_ms(&text);
            e
        }
        404 if text == "Job not found" => Error::new(
            ErrorCode::JobNotFound,
            format!("{what}: the worker does not know this job (never submitted there, deleted about 6 minutes after submission, or already downloaded whole)"),
        )
        .with_status(404)
        .with_cause(text),
        _ => Error::new(ErrorCode::HttpStatus, format!("{what}: the server answered HTTP {status}: {text}"))
            .with_status(status)
            .with_cause(text),
    }
}

/// A multipart/form-data body with canonical headers, built by hand so its length is exact.
pub struct Multipart {
    boundary: String,
    body: Vec<u8>,
}

impl Multipart {
    pub fn new(seed: u64) -> Self {
        Multipart { boundary: format!("----sandrun{seed:016x}"), body: Vec::new() }
    }
    pub fn file(mut self, name: &str, filename: &str, content_type: &str, bytes: &[u8]) -> Self {
        self.body.extend_from_slice(
            format!(
                "--{}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\nContent-Type: {content_type}\r\n\r\n",
                self.boundary
            )
            .as_bytes(),
        );
        self.body.extend_from_slice(bytes);
        self.body.extend_from_slice(b"\r\n");
        self
    }
    pub fn field(mut self, name: &str, value: &str) -> Self {
        self.body.extend_from_slice(
            format!("--{}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n", self.boundary).as_bytes(),
        );
        self
    }
    /// (content type, body)
    pub fn finish(mut self) -> (String, Vec<u8>) {
        self.body.extend_from_slice(format!("--{}--\r\n", self.boundary).as_bytes());
        (format!("multipart/form-data; boundary={}", self.boundary), self.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capture_body(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/fixtures/captures/http/{name}", env!("CARGO_MANIFEST_DIR"));
        let raw = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let at = raw.windows(4).position(|w| w == b"\r\n\r\n").or_else(|| raw.windows(2).position(|w| w == b"\n\n")).unwrap();
        let skip = if raw[at..].starts_with(b"\r\n\r\n") { 4 } else { 2 };
        raw[at + skip..].to_vec()
    }

    #[test]
    fn decodes_per_byte_escapes_from_the_capture() {
        let logs = Logs::parse(&capture_body("58-logs-unicode.http")).unwrap();
        assert_eq!(logs.stdout, "héllo ✓ tab\there \"quoted\" back\\slash ctrl\u{1} end\n");
        assert_eq!(logs.stderr, "err ü\n");
        assert_eq!(decode_byte_escapes("ok ✓"), "ok ✓");
    }

    #[test]
    fn parses_every_status_capture() {
        for name in ["07-status-queued.http", "08-status-completed.http", "20-status-writer.http", "31-status-failed.http", "51-status-writer2.http", "58b-status-unicode.http"] {
            let s = WorkerStatus::parse(&capture_body(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(s.job_hash.as_deref().unwrap().len() == 64, "{name}");
        }
        let q = WorkerStatus::parse(&capture_body("07-status-queued.http")).unwrap();
        assert_eq!((q.status.as_str(), q.queue_position, q.output_files.len()), ("queued", 1, 0));
        assert!(!q.is_finished());
        let w = WorkerStatus::parse(&capture_body("51-status-writer2.http")).unwrap();
        let keys: Vec<_> = w.output_files.keys().cloned().collect();
        assert_eq!(keys, ["output.txt", "results/.keep", "results/Zeta.json", "results/out.csv"]);
        assert_eq!(w.execution_metadata.memory_peak_mb, 8);
    }

    #[test]
    fn maps_error_bodies() {
        let e = status_error(429, &capture_body("64-submit-429-cpu.http"), "submit");
        assert_eq!(e.code, ErrorCode::RateLimited);
        assert!(e.retry_after_ms.unwrap() > 0, "{e:?}");
        let e = status_error(429, &capture_body("14-submit-429-concurrency.http"), "submit");
        assert_eq!((e.code, e.retry_after_ms), (ErrorCode::RateLimited, None));
        let e = status_error(404, &capture_body("40-404-status.http"), "status");
        assert_eq!(e.code, ErrorCode::JobNotFound);
        let e = status_error(400, &capture_body("39-400-empty-multipart.http"), "submit");
        assert_eq!((e.code, e.cause.as_deref()), (ErrorCode::HttpStatus, Some("No files uploaded")));
        assert_eq!(retry_after_ms("CPU quota exhausted, wait 34 seconds"), Some(34_000));
        // Found by tests/fuzz.rs: the multiplication overflowed (a panic in debug builds).
        assert_eq!(retry_after_ms("wait 18446744073709552 seconds"), Some(u64::MAX));
    }

    #[test]
    fn rejects_malformed_json() {
        assert_eq!(WorkerStatus::parse(b"{\"job_id\": 3").unwrap_err().code, ErrorCode::MalformedResponse);
        assert_eq!(Logs::parse(b"<html>").unwrap_err().code, ErrorCode::MalformedResponse);
    }
}
