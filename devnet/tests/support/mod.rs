//! Test helpers: start the real devnet binary, a raw HTTP/1.1 client with canonical
//! header case, a multipart builder, tar.gz builder, a tiny WebSocket client and
//! signature verification with ed25519-compact (independent of ed25519-dalek).
#![allow(dead_code)]

use base64::Engine as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub struct Devnet {
    pub child: Child,
    /// `127.0.0.1:PORT` of each worker.
    pub workers: Vec<String>,
    pub worker_ids: Vec<Option<String>>,
    pub registry: String,
    pub data_dir: PathBuf,
    pub line: String,
}

static N: AtomicUsize = AtomicUsize::new(0);

impl Devnet {
    pub fn start(args: &[&str]) -> Devnet {
        let data_dir = std::env::temp_dir().join(format!(
            "devnet-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let mut child = Command::new(env!("CARGO_BIN_EXE_sandrun-devnet"))
            .arg("--json")
            .arg("--data-dir")
            .arg(&data_dir)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start devnet");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut line = String::new();
            let _ = r.read_line(&mut line);
            let _ = tx.send(line);
            // Anything more on stdout would break the contract.
            let mut rest = String::new();
            let _ = r.read_to_string(&mut rest);
            assert!(rest.is_empty(), "extra stdout: {rest:?}");
        });
        let line = rx.recv_timeout(Duration::from_secs(30)).expect("devnet JSON line");
        let v: serde_json::Value = serde_json::from_str(line.trim()).expect("JSON line");
        let strip = |u: &str| u.strip_prefix("http://").unwrap().to_string();
        let workers = v["workers"].as_array().unwrap();
        Devnet {
            child,
            workers: workers.iter().map(|w| strip(w["url"].as_str().unwrap())).collect(),
            worker_ids: workers.iter().map(|w| w["worker_id"].as_str().map(str::to_string)).collect(),
            registry: strip(v["registry"].as_str().unwrap()),
            data_dir,
            line,
        }
    }

    pub fn w(&self, i: usize) -> &str {
        &self.workers[i]
    }

    pub fn sigterm(&mut self) -> std::process::ExitStatus {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(Instant::now() < deadline, "devnet did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.sigterm();
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub status_line: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub raw_head: String,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    pub fn header(&self, n: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v.as_str())
    }
}

/// Sends raw bytes, reads to EOF (the server closes after each response).
pub fn raw(addr: &str, req: &[u8]) -> Resp {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let _ = s.write_all(req);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    parse_resp(&buf)
}

pub fn parse_resp(buf: &[u8]) -> Resp {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or_else(|| panic!("no head: {:?}", String::from_utf8_lossy(buf)));
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap().to_string();
    let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines.filter_map(|l| l.split_once(": ")).map(|(a, b)| (a.to_string(), b.to_string())).collect();
    Resp { status, status_line, headers, body: buf[end + 4..].to_vec(), raw_head: head }
}

pub fn get(addr: &str, path: &str) -> Resp {
    raw(addr, format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
}

pub fn request(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n");
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    r.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut b = r.into_bytes();
    b.extend_from_slice(body);
    raw(addr, &b)
}

pub fn post_json(addr: &str, path: &str, body: &str) -> Resp {
    request(addr, "POST", path, &[("Content-Type", "application/json")], body.as_bytes())
}

pub const BOUNDARY: &str = "----devnetTestBoundary7MA4YWxkTrZu0gW";

/// multipart/form-data body: `files` parts then an optional `manifest` part.
pub fn multipart(files: &[(&str, &[u8])], manifest: Option<&str>) -> Vec<u8> {
    let mut b = Vec::new();
    for (name, data) in files {
        b.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        b.extend_from_slice(data);
        b.extend_from_slice(b"\r\n");
    }
    if let Some(m) = manifest {
        b.extend_from_slice(format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"manifest\"\r\n\r\n{m}\r\n").as_bytes());
    }
    b.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    b
}

pub fn submit_raw(addr: &str, body: &[u8]) -> Resp {
    let ct = format!("multipart/form-data; boundary={BOUNDARY}");
    request(addr, "POST", "/submit", &[("Content-Type", &ct)], body)
}

pub fn submit(addr: &str, files: &[(&str, &[u8])], manifest: Option<&str>) -> Resp {
    submit_raw(addr, &multipart(files, manifest))
}

/// Submits and returns the job id (panics unless 200).
pub fn submit_ok(addr: &str, files: &[(&str, &[u8])], manifest: Option<&str>) -> String {
    let r = submit(addr, files, manifest);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["job_id"].as_str().unwrap().to_string()
}

pub fn py(addr: &str, code: &str) -> String {
    submit_ok(addr, &[("main.py", code.as_bytes())], Some(r#"{"entrypoint":"main.py","interpreter":"python3"}"#))
}

pub fn tar_gz(files: &[(&str, &[u8])]) -> Vec<u8> {
    let enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut b = tar::Builder::new(enc);
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}

/// Tar with a raw (unchecked) entry name, e.g. `../evil.txt`.
pub fn tar_gz_raw_name(name: &str, data: &[u8]) -> Vec<u8> {
    let mut h = tar::Header::new_old();
    {
        let bytes = h.as_mut_bytes();
        bytes[..name.len()].copy_from_slice(name.as_bytes());
    }
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    let mut raw = h.as_bytes().to_vec();
    raw.extend_from_slice(data);
    raw.resize(raw.len().div_ceil(512) * 512 + 1024, 0);
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(&raw).unwrap();
    enc.finish().unwrap()
}

/// Polls /status until the job is no longer queued.
pub fn wait_done(addr: &str, id: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = get(addr, &format!("/status/{id}"));
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        if v["status"] != "queued" {
            return v;
        }
        assert!(Instant::now() < deadline, "job {id} never finished");
        std::thread::sleep(Duration::from_millis(30));
    }
}

pub fn logs(addr: &str, id: &str) -> serde_json::Value {
    get(addr, &format!("/logs/{id}")).json()
}

pub fn sha256_hex(d: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(d).iter().map(|b| format!("{b:02x}")).collect()
}

/// Rebuilds the signed string from a /status body and the exact CPU string.
pub fn signed_string(status: &serde_json::Value, cpu_exact: &str) -> String {
    let em = &status["execution_metadata"];
    let mut files: Vec<(&String, &serde_json::Value)> = status["output_files"].as_object().unwrap().iter().collect();
    files.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut s = format!(
        "{}|{}|{}|{}|",
        status["job_hash"].as_str().unwrap(),
        em["exit_code"],
        cpu_exact,
        em["memory_peak_mb"]
    );
    for (p, f) in files {
        s.push_str(&format!("{}:{}|", p, f["sha256"].as_str().unwrap()));
    }
    s
}

pub fn exact_cpu(addr: &str, id: &str) -> String {
    get(addr, &format!("/_devnet/jobs/{id}")).json()["cpu_seconds_exact"].as_str().unwrap().to_string()
}

/// Verifies the status signature with ed25519-compact.
pub fn verify(addr: &str, id: &str, status: &serde_json::Value) -> bool {
    let wid = status["worker_metadata"]["worker_id"].as_str().expect("worker_id");
    let sig = status["worker_metadata"]["signature"].as_str().expect("signature");
    let pk = base64::engine::general_purpose::STANDARD.decode(wid).unwrap();
    let sig = base64::engine::general_purpose::STANDARD.decode(sig).unwrap();
    let pk = ed25519_compact::PublicKey::from_slice(&pk).unwrap();
    let sig = ed25519_compact::Signature::from_slice(&sig).unwrap();
    let msg = signed_string(status, &exact_cpu(addr, id));
    pk.verify(msg.as_bytes(), &sig).is_ok()
}

/// Verifies a registry payout binding (`sandrun-payout-v1|<chain>|<payout lowercase>`)
/// with ed25519-compact.
pub fn verify_payout(worker_id: &str, chain: u64, payout: &str, sig: &str) -> bool {
    let pk = base64::engine::general_purpose::STANDARD.decode(worker_id).unwrap();
    let sig = base64::engine::general_purpose::STANDARD.decode(sig).unwrap();
    let pk = ed25519_compact::PublicKey::from_slice(&pk).unwrap();
    let sig = ed25519_compact::Signature::from_slice(&sig).unwrap();
    let msg = format!("sandrun-payout-v1|{chain}|{}", payout.to_ascii_lowercase());
    pk.verify(msg.as_bytes(), &sig).is_ok()
}

/// Minimal WebSocket client: connect + handshake; returns the stream and the 101 head.
pub fn ws_connect(addr: &str, path: &str) -> (TcpStream, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).unwrap();
        head.push(b[0]);
    }
    (s, String::from_utf8(head).unwrap())
}

#[derive(Debug, PartialEq)]
pub enum Frame {
    Text(String),
    Close(Vec<u8>),
    /// TCP closed without a close frame.
    Eof,
}

pub fn ws_read(s: &mut TcpStream) -> Frame {
    let mut h = [0u8; 2];
    if s.read_exact(&mut h).is_err() {
        return Frame::Eof;
    }
    assert_eq!(h[1] & 0x80, 0, "server frames are unmasked");
    let mut len = (h[1] & 0x7f) as usize;
    if len == 126 {
        let mut b = [0u8; 2];
        s.read_exact(&mut b).unwrap();
        len = u16::from_be_bytes(b) as usize;
    } else if len == 127 {
        let mut b = [0u8; 8];
        s.read_exact(&mut b).unwrap();
        len = u64::from_be_bytes(b) as usize;
    }
    let mut p = vec![0u8; len];
    s.read_exact(&mut p).unwrap();
    match h[0] & 0x0f {
        1 => Frame::Text(String::from_utf8(p).unwrap()),
        8 => Frame::Close(p),
        o => panic!("unexpected opcode {o}"),
    }
}

/// Sends a masked text frame.
pub fn ws_send(s: &mut TcpStream, text: &str) {
    let mask = [1u8, 2, 3, 4];
    let mut f = vec![0x81, 0x80 | text.len() as u8];
    f.extend_from_slice(&mask);
    f.extend(text.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    s.write_all(&f).unwrap();
}

/// The body of a reference capture (Content-Length bytes after the blank line).
pub fn capture_body(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/captures/http").join(name);
    let d = std::fs::read_to_string(p).unwrap();
    let (head, body) = d.split_once("\n\n").unwrap();
    let cl: usize = head.lines().find_map(|l| l.strip_prefix("Content-Length: ")).unwrap().parse().unwrap();
    body[..cl].to_string()
}

/// Waits until the worker has started the job (devnet admin endpoint).
pub fn wait_running(addr: &str, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(addr, &format!("/_devnet/jobs/{id}")).json()["phase"] == "Queued" {
        assert!(Instant::now() < deadline, "job {id} never started");
        std::thread::sleep(Duration::from_millis(10));
    }
}
