//! The native host: tokio sockets and files. Used by `cargo test` and native tools.
//!
//! HTTP is written by hand on purpose: a reference worker matches header names
//! case-sensitively and serves one request per connection, so we send exactly the
//! bytes we mean and read until the server closes.

use super::{too_large, FileResponse, HttpRequest, HttpResponse, LocalFuture, PathKind, Platform, WebSocket, WsEvent, WS_MAX_FRAME_BYTES, WS_UPGRADE_TIMEOUT_MS};
use crate::error::{Error, ErrorCode, Result};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The native platform (plain `http://` only).
pub struct NativePlatform {
    start: Instant,
}

impl Default for NativePlatform {
    fn default() -> Self {
        NativePlatform { start: Instant::now() }
    }
}

/// `http://host:port/path` split into (host:port, path).
pub(crate) fn split_http_url(url: &str) -> Result<(String, String)> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        Error::new(ErrorCode::Unsupported, format!("the native transport speaks plain http:// only, not {url}"))
    })?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let authority = if authority.contains(':') { authority.to_string() } else { format!("{authority}:80") };
    Ok((authority, path.to_string()))
}

/// Connect and write the request: its head, then its body.
async fn open_and_send(authority: &str, head: &str, body: &[u8]) -> Result<TcpStream> {
    let mut stream = connect(authority).await?;
    let fail = |e: std::io::Error| Error::network(format!("connection to {authority} failed")).with_cause(e.to_string());
    stream.write_all(head.as_bytes()).await.map_err(fail)?;
    stream.write_all(body).await.map_err(fail)?;
    Ok(stream)
}

async fn connect(authority: &str) -> Result<TcpStream> {
    TcpStream::connect(authority)
        .await
        .map_err(|e| Error::network(format!("cannot connect to {authority}: is the server running?")).with_cause(e.to_string()))
}

/// Status and headers of an HTTP head (the bytes before the blank line).
fn parse_head(head: &[u8]) -> Result<(u16, Vec<(String, String)>)> {
    let head = String::from_utf8_lossy(head);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::malformed(format!("bad HTTP status line {status_line:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':').map(|(k, v)| (k.to_string(), v.trim().to_string())))
        .collect();
    Ok((status, headers))
}

fn parse_response(raw: &[u8]) -> Result<HttpResponse> {
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| Error::malformed("the server closed the connection before a complete HTTP head"))?;
    let (status, headers) = parse_head(&raw[..head_end])?;
    let mut body = raw[head_end + 4..].to_vec();
    let declared = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok());
    if let Some(n) = declared {
        if body.len() < n {
            return Err(Error::network(format!(
                "the response body was truncated: {} of {n} bytes arrived",
                body.len()
            )));
        }
        body.truncate(n);
    }
    Ok(HttpResponse { status, headers, body })
}

fn request_head(req: &HttpRequest, authority: &str, path: &str) -> String {
    let mut head = format!("{} {} HTTP/1.1\r\nHost: {}\r\n", req.method, path, authority);
    for (k, v) in &req.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !req.body.is_empty() || req.method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", req.body.len()));
    }
    head.push_str("Connection: close\r\n\r\n");
    head
}

fn deadline_error(req: &HttpRequest) -> Error {
    Error::new(ErrorCode::Timeout, format!("no complete answer from {} within {} ms", req.url, req.deadline_ms()))
}

async fn send(req: HttpRequest) -> Result<HttpResponse> {
    let (authority, path) = split_http_url(&req.url)?;
    let head = request_head(&req, &authority, &path);
    // The head may be up to 64 KiB on top of the body cap.
    let cap = req.body_cap().saturating_add(64 * 1024);
    let io = async {
        let mut stream = open_and_send(&authority, &head, &req.body).await?;
        let fail = |e: std::io::Error| Error::network(format!("connection to {authority} failed")).with_cause(e.to_string());
        let mut raw = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let n = stream.read(&mut chunk).await.map_err(fail)?;
            if n == 0 {
                break;
            }
            raw.extend_from_slice(&chunk[..n]);
            if raw.len() as u64 > cap {
                return Err(too_large(&req.url, req.body_cap()));
            }
        }
        Ok(raw)
    };
    let raw = tokio::time::timeout(Duration::from_millis(req.deadline_ms()), io).await.map_err(|_| deadline_error(&req))??;
    let r = parse_response(&raw)?;
    if r.body.len() as u64 > req.body_cap() {
        return Err(too_large(&req.url, req.body_cap()));
    }
    Ok(r)
}

/// Stream a response body into `path` (see [`Platform::http_to_file`]).
async fn send_to_file(req: HttpRequest, path: Option<String>) -> Result<FileResponse> {
    use sha2::Digest;
    let (authority, url_path) = split_http_url(&req.url)?;
    let head = request_head(&req, &authority, &url_path);
    let cap = req.body_cap();
    let mut file: Option<tokio::fs::File> = None;
    let io = async {
        let mut stream = open_and_send(&authority, &head, &req.body).await?;
        let fail = |e: std::io::Error| Error::network(format!("connection to {authority} failed")).with_cause(e.to_string());
        // Read the head, then stream the body.
        let mut raw = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        let head_end = loop {
            if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break at;
            }
            if raw.len() > 64 * 1024 {
                return Err(Error::malformed(format!("{} sent an HTTP head over 64 KiB", req.url)));
            }
            let n = stream.read(&mut chunk).await.map_err(fail)?;
            if n == 0 {
                return Err(Error::malformed("the server closed the connection before a complete HTTP head"));
            }
            raw.extend_from_slice(&chunk[..n]);
        };
        let (status, headers) = parse_head(&raw[..head_end])?;
        let parsed = HttpResponse { status, headers, body: Vec::new() };
        let mut body = raw[head_end + 4..].to_vec();
        let declared = parsed.header("content-length").and_then(|v| v.parse::<u64>().ok());
        let ok = (200..300).contains(&parsed.status);
        if declared.is_some_and(|n| n > cap) {
            return Err(too_large(&req.url, cap));
        }
        let mut hasher = sha2::Sha256::new();
        let mut size = 0u64;
        let mut error_body = Vec::new();
        if ok {
            if let Some(p) = &path {
                let f = tokio::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .custom_flags(libc_nofollow())
                    .open(p)
                    .await
                    .map_err(|e| Error::new(ErrorCode::Io, format!("cannot create {p}")).with_cause(e.to_string()))?;
                file = Some(f);
            }
        }
        loop {
            if !body.is_empty() {
                size += body.len() as u64;
                if size > cap {
                    return Err(too_large(&req.url, cap));
                }
                if ok {
                    hasher.update(&body);
                    if let Some(f) = file.as_mut() {
                        f.write_all(&body).await.map_err(|e| Error::new(ErrorCode::Io, "cannot write a downloaded file").with_cause(e.to_string()))?;
                    }
                } else if error_body.len() < 64 * 1024 {
                    error_body.extend_from_slice(&body);
                }
            }
            if declared.is_some_and(|n| size >= n) {
                break;
            }
            let n = stream.read(&mut chunk).await.map_err(fail)?;
            if n == 0 {
                break;
            }
            body = chunk[..n].to_vec();
        }
        if let Some(n) = declared {
            if size < n {
                return Err(Error::network(format!("the response body was truncated: {size} of {n} bytes arrived")));
            }
        }
        if let Some(f) = file.as_mut() {
            f.flush().await.map_err(|e| Error::new(ErrorCode::Io, "cannot write a downloaded file").with_cause(e.to_string()))?;
            f.sync_all().await.ok();
        }
        Ok(FileResponse { status: parsed.status, headers: parsed.headers, size, sha256: if ok { crate::proof::recipe::hex(&hasher.finalize()) } else { String::new() }, error_body })
    };
    let out = match tokio::time::timeout(Duration::from_millis(req.deadline_ms()), io).await {
        Ok(r) => r,
        Err(_) => Err(deadline_error(&req)),
    };
    if out.is_err() {
        // Only remove what this call created: `file` is set once create_new succeeded.
        if let (Some(_), Some(p)) = (file.take(), &path) {
            let _ = tokio::fs::remove_file(p).await;
        }
    }
    out
}

/// `O_NOFOLLOW`: with `create_new` (O_EXCL) a symlink at the path already fails; this
/// says so twice, for platforms that honour only one of them.
fn libc_nofollow() -> i32 {
    #[cfg(target_os = "linux")]
    {
        0o400000
    }
    #[cfg(target_os = "macos")]
    {
        0x0100
    }
    #[cfg(not(any(target_os = "linux", target_os = "macos")))]
    {
        0
    }
}

fn io_err(what: String) -> impl Fn(std::io::Error) -> Error {
    move |e| Error::new(ErrorCode::Io, what.clone()).with_cause(e.to_string())
}

impl Platform for NativePlatform {
    fn http(&self, req: HttpRequest) -> LocalFuture<'_, Result<HttpResponse>> {
        Box::pin(send(req))
    }
    // Its `sha256` is the default (sha2, synchronous): the same digest, now.
    fn sha256_now(&self, bytes: &[u8]) -> Option<[u8; 32]> {
        Some(crate::proof::sha256(bytes))
    }
    fn sleep(&self, ms: u64) -> LocalFuture<'_, ()> {
        Box::pin(tokio::time::sleep(Duration::from_millis(ms)))
    }
    fn now_ms(&self) -> f64 {
        self.start.elapsed().as_secs_f64() * 1000.0
    }
    fn websocket(&self, url: &str) -> LocalFuture<'_, Result<Option<Box<dyn WebSocket>>>> {
        let url = url.to_string();
        Box::pin(ws_connect_within(url, WS_UPGRADE_TIMEOUT_MS))
    }
    fn read_file(&self, path: &str) -> LocalFuture<'_, Result<Vec<u8>>> {
        let path = path.to_string();
        Box::pin(async move {
            tokio::fs::read(&path)
                .await
                .map_err(|e| Error::new(ErrorCode::Io, format!("cannot read {path}")).with_cause(e.to_string()))
        })
    }
    fn read_dir(&self, path: &str) -> LocalFuture<'_, Result<Vec<(String, bool)>>> {
        let path = path.to_string();
        Box::pin(async move {
            let io = |e: std::io::Error| Error::new(ErrorCode::Io, format!("cannot list {path}")).with_cause(e.to_string());
            let mut rd = tokio::fs::read_dir(&path).await.map_err(io)?;
            let mut out = Vec::new();
            while let Some(e) = rd.next_entry().await.map_err(io)? {
                let is_dir = e.file_type().await.map_err(io)?.is_dir();
                out.push((e.file_name().to_string_lossy().into_owned(), is_dir));
            }
            Ok(out)
        })
    }
    fn lstat(&self, path: &str) -> LocalFuture<'_, Result<PathKind>> {
        let path = path.to_string();
        Box::pin(async move {
            match tokio::fs::symlink_metadata(&path).await {
                Ok(m) if m.file_type().is_symlink() => Ok(PathKind::Symlink),
                Ok(m) if m.is_dir() => Ok(PathKind::Dir),
                Ok(m) if m.is_file() => Ok(PathKind::File),
                Ok(_) => Ok(PathKind::Other),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(PathKind::Missing),
                Err(e) => Err(Error::new(ErrorCode::Io, format!("cannot inspect {path}")).with_cause(e.to_string())),
            }
        })
    }
    fn make_dir(&self, path: &str) -> LocalFuture<'_, Result<()>> {
        let path = path.to_string();
        Box::pin(async move {
            match tokio::fs::create_dir(&path).await {
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => match tokio::fs::symlink_metadata(&path).await {
                    Ok(m) if m.is_dir() => Ok(()),
                    _ => Err(Error::new(ErrorCode::Io, format!("cannot create directory {path}: something else is there"))),
                },
                r => r.map_err(io_err(format!("cannot create directory {path}"))),
            }
        })
    }
    fn http_to_file(&self, req: HttpRequest, path: Option<&str>) -> LocalFuture<'_, Result<FileResponse>> {
        Box::pin(send_to_file(req, path.map(str::to_string)))
    }
    fn write_new_file(&self, path: &str, bytes: &[u8]) -> LocalFuture<'_, Result<()>> {
        let path = path.to_string();
        let bytes = bytes.to_vec();
        Box::pin(async move {
            let mut f = tokio::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(libc_nofollow())
                .open(&path)
                .await
                .map_err(io_err(format!("cannot create {path}")))?;
            f.write_all(&bytes).await.map_err(io_err(format!("cannot write {path}")))?;
            f.flush().await.map_err(io_err(format!("cannot write {path}")))
        })
    }
    fn commit_file(&self, from: &str, to: &str, replace: bool) -> LocalFuture<'_, Result<()>> {
        let (from, to) = (from.to_string(), to.to_string());
        Box::pin(async move {
            if replace {
                return tokio::fs::rename(&from, &to).await.map_err(io_err(format!("cannot move {from} to {to}")));
            }
            // link() fails if anything exists at `to`, atomically: no check-then-write race.
            match tokio::fs::hard_link(&from, &to).await {
                Ok(()) => tokio::fs::remove_file(&from).await.map_err(io_err(format!("cannot remove {from}"))),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(Error::new(
                    ErrorCode::Io,
                    format!("refusing to overwrite {to}: it exists (pass {{ overwrite: true }} to replace files)"),
                )
                .with_details(serde_json::json!({"path": to}))),
                Err(e) => Err(Error::new(ErrorCode::Io, format!("cannot move {from} to {to}")).with_cause(e.to_string())),
            }
        })
    }
    fn remove_file(&self, path: &str) -> LocalFuture<'_, Result<()>> {
        let path = path.to_string();
        Box::pin(async move {
            match tokio::fs::remove_file(&path).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::new(ErrorCode::Io, format!("cannot remove {path}")).with_cause(e.to_string())),
                _ => Ok(()),
            }
        })
    }
    fn write_file(&self, path: &str, bytes: &[u8]) -> LocalFuture<'_, Result<()>> {
        let path = path.to_string();
        let bytes = bytes.to_vec();
        Box::pin(async move {
            let io = |e: std::io::Error| Error::new(ErrorCode::Io, format!("cannot write {path}")).with_cause(e.to_string());
            if let Some(parent) = std::path::Path::new(&path).parent() {
                tokio::fs::create_dir_all(parent).await.map_err(io)?;
            }
            tokio::fs::write(&path, bytes).await.map_err(io)
        })
    }
}

/// A server that never completes the upgrade: no socket, the caller polls `/status`.
async fn ws_connect_within(url: String, ms: u64) -> Result<Option<Box<dyn WebSocket>>> {
    match tokio::time::timeout(Duration::from_millis(ms), NativeWs::connect(&url)).await {
        Ok(ws) => Ok(Some(Box::new(ws?) as Box<dyn WebSocket>)),
        Err(_) => Ok(None),
    }
}

/// A minimal WebSocket client: enough for `/stream/{id}` (text frames, server close).
struct NativeWs {
    stream: RefCell<Option<TcpStream>>,
    buf: RefCell<Vec<u8>>,
    closed: Rc<RefCell<bool>>,
}

impl NativeWs {
    async fn connect(url: &str) -> Result<NativeWs> {
        let http = url.replacen("ws://", "http://", 1);
        let (authority, path) = split_http_url(&http)?;
        let mut stream = connect(&authority).await?;
        // A fixed key is fine: the accept value is not a security feature for us.
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        let fail = |e: std::io::Error| Error::network(format!("WebSocket to {url} failed")).with_cause(e.to_string());
        stream.write_all(req.as_bytes()).await.map_err(fail)?;
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if stream.read(&mut byte).await.map_err(fail)? == 0 {
                return Err(Error::network(format!("WebSocket to {url}: closed during the handshake")));
            }
            head.push(byte[0]);
        }
        if !head.starts_with(b"HTTP/1.1 101") {
            return Err(Error::new(ErrorCode::Unsupported, format!("{url} did not upgrade to a WebSocket")));
        }
        Ok(NativeWs { stream: RefCell::new(Some(stream)), buf: RefCell::new(Vec::new()), closed: Rc::new(RefCell::new(false)) })
    }

    /// Parse one complete frame from the buffer: (opcode, payload); opcode 0xff for a
    /// frame longer than [`WS_MAX_FRAME_BYTES`], which is never buffered whole.
    fn take_frame(buf: &mut Vec<u8>) -> Option<(u8, Vec<u8>)> {
        if buf.len() < 2 {
            return None;
        }
        let opcode = buf[0] & 0x0f;
        let masked = buf[1] & 0x80 != 0;
        let mut len = (buf[1] & 0x7f) as usize;
        let mut at = 2;
        if len == 126 {
            if buf.len() < 4 {
                return None;
            }
            len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
            at = 4;
        } else if len == 127 {
            if buf.len() < 10 {
                return None;
            }
            let n = u64::from_be_bytes(buf[2..10].try_into().ok()?);
            if n > WS_MAX_FRAME_BYTES {
                return Some((0xff, Vec::new()));
            }
            len = n as usize;
            at = 10;
        }
        if len as u64 > WS_MAX_FRAME_BYTES {
            return Some((0xff, Vec::new()));
        }
        let mask_at = at;
        if masked {
            at += 4;
        }
        if buf.len() < at + len {
            return None;
        }
        let mut payload = buf[at..at + len].to_vec();
        if masked {
            let m: Vec<u8> = buf[mask_at..mask_at + 4].to_vec();
            payload.iter_mut().enumerate().for_each(|(i, b)| *b ^= m[i % 4]);
        }
        buf.drain(..at + len);
        Some((opcode, payload))
    }
}

impl WebSocket for NativeWs {
    fn next(&self) -> LocalFuture<'_, WsEvent> {
        Box::pin(async move {
            loop {
                if let Some((op, payload)) = Self::take_frame(&mut self.buf.borrow_mut()) {
                    match op {
                        0x1 | 0x0 => return WsEvent::Text(String::from_utf8_lossy(&payload).into_owned()),
                        // 0xff: a frame over WS_MAX_FRAME_BYTES; drop the socket.
                        0x8 | 0xff => {
                            *self.closed.borrow_mut() = true;
                            self.stream.borrow_mut().take();
                            return WsEvent::Closed;
                        }
                        _ => continue,
                    }
                }
                let mut stream = match self.stream.borrow_mut().take() {
                    Some(s) => s,
                    None => return WsEvent::Closed,
                };
                let mut chunk = [0u8; 8192];
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => {
                        *self.closed.borrow_mut() = true;
                        return WsEvent::Closed;
                    }
                    Ok(n) => self.buf.borrow_mut().extend_from_slice(&chunk[..n]),
                }
                *self.stream.borrow_mut() = Some(stream);
            }
        })
    }
    fn send(&self, text: &str) {
        if let Some(stream) = self.stream.borrow_mut().as_mut() {
            // Client frames must be masked; a zero mask keeps it simple and valid.
            let mut frame = vec![0x81u8];
            let n = text.len();
            if n < 126 {
                frame.push(0x80 | n as u8);
            } else {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            frame.extend_from_slice(&[0, 0, 0, 0]);
            frame.extend_from_slice(text.as_bytes());
            let _ = stream.try_write(&frame);
        }
    }
    fn close(&self) {
        self.stream.borrow_mut().take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_reference_responses_and_detects_truncation() {
        let raw = b"HTTP/1.1 429 Unknown\r\nAccess-Control-Allow-Origin: *\r\nContent-Type: application/json\r\nContent-Length: 25\r\n\r\n{\"error\":\"Job not found\"}";
        let r = parse_response(raw).unwrap();
        assert_eq!(r.status, 429);
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.body, b"{\"error\":\"Job not found\"}");
        let cut = &raw[..raw.len() - 3];
        assert_eq!(parse_response(cut).unwrap_err().code, ErrorCode::Network);
        assert_eq!(parse_response(b"HTTP/1.1 200 OK\r\n").unwrap_err().code, ErrorCode::MalformedResponse);
    }

    #[test]
    fn splits_urls() {
        assert_eq!(split_http_url("http://127.0.0.1:8/a/b").unwrap(), ("127.0.0.1:8".into(), "/a/b".into()));
        assert_eq!(split_http_url("http://h").unwrap(), ("h:80".into(), "/".into()));
        assert_eq!(split_http_url("https://h").unwrap_err().code, ErrorCode::Unsupported);
    }
}

#[cfg(test)]
mod bound_tests {
    //! Hostile servers, as test doubles on loopback: an endless body, a dripping one, a
    //! WebSocket that never upgrades or sends a huge frame.
    use super::*;
    use tokio::net::TcpListener;

    fn run<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
    }

    /// Serve one connection with `f`; returns the URL.
    async fn double<F, Fut>(f: F) -> String
    where
        F: FnOnce(TcpStream) -> Fut + 'static,
        Fut: std::future::Future<Output = ()> + 'static,
    {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        tokio::task::spawn_local(async move {
            let (s, _) = l.accept().await.unwrap();
            f(s).await;
        });
        url
    }

    async fn read_head(s: &mut TcpStream) {
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && s.read(&mut b).await.unwrap_or(0) == 1 {
            head.push(b[0]);
        }
    }

    #[test]
    fn an_endless_body_is_cut_off_at_the_cap() {
        let local = tokio::task::LocalSet::new();
        run(local.run_until(async {
            let url = double(|mut s| async move {
                read_head(&mut s).await;
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n").await;
                let chunk = vec![b'x'; 64 * 1024];
                while s.write_all(&chunk).await.is_ok() {}
            })
            .await;
            let e = send(HttpRequest::get(format!("{url}/status/x")).max_bytes(1024 * 1024)).await.unwrap_err();
            assert_eq!(e.code, ErrorCode::MalformedResponse, "{e}");
            assert_eq!(e.details.unwrap()["limit"], 1024 * 1024);
        }));
    }

    #[test]
    fn a_dripping_body_hits_the_total_deadline() {
        let local = tokio::task::LocalSet::new();
        run(local.run_until(async {
            let url = double(|mut s| async move {
                read_head(&mut s).await;
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n").await;
                // One byte every 50 ms: an idle timeout never fires.
                while s.write_all(b"x").await.is_ok() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
            .await;
            let t = Instant::now();
            let e = send(HttpRequest::get(format!("{url}/health")).timeout(400)).await.unwrap_err();
            assert_eq!(e.code, ErrorCode::Timeout, "{e}");
            assert!(t.elapsed() < Duration::from_millis(2000));
        }));
    }

    #[test]
    fn streams_to_a_file_with_its_hash_and_removes_it_past_the_cap() {
        use sha2::Digest;
        let local = tokio::task::LocalSet::new();
        let dir = std::env::temp_dir().join(format!("sandrun-native-stream-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let body: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
        let expect = crate::proof::recipe::hex(&sha2::Sha256::digest(&body));
        run(local.run_until(async {
            let b = body.clone();
            let url = double(move |mut s| async move {
                read_head(&mut s).await;
                let _ = s.write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", b.len()).as_bytes()).await;
                let _ = s.write_all(&b).await;
            })
            .await;
            let path = dir.join("ok.bin").to_string_lossy().into_owned();
            let r = send_to_file(HttpRequest::get(format!("{url}/download/j/ok.bin")).max_bytes(body.len() as u64), Some(path.clone())).await.unwrap();
            assert_eq!((r.status, r.size, r.sha256.as_str()), (200, body.len() as u64, expect.as_str()));
            assert_eq!(std::fs::read(&path).unwrap(), body);
            // The same body against a smaller declared size: cut off, nothing left.
            let b = body.clone();
            let url = double(move |mut s| async move {
                read_head(&mut s).await;
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await;
                let _ = s.write_all(&b).await;
            })
            .await;
            let path = dir.join("big.bin").to_string_lossy().into_owned();
            let e = send_to_file(HttpRequest::get(format!("{url}/download/j/big.bin")).max_bytes(1000), Some(path.clone())).await.unwrap_err();
            assert_eq!(e.code, ErrorCode::MalformedResponse, "{e}");
            assert!(!std::path::Path::new(&path).exists(), "a partial file is never left");
            // An existing file (or symlink) at the path is never written through.
            std::os::unix::fs::symlink("/etc/hostname", dir.join("link.bin")).unwrap();
            let url = double(|mut s| async move {
                read_head(&mut s).await;
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi").await;
            })
            .await;
            let e = send_to_file(HttpRequest::get(format!("{url}/d")), Some(dir.join("link.bin").to_string_lossy().into_owned())).await.unwrap_err();
            assert_eq!(e.code, ErrorCode::Io, "{e}");
        }));
    }

    #[test]
    fn a_websocket_that_never_upgrades_or_sends_a_huge_frame_is_dropped() {
        let local = tokio::task::LocalSet::new();
        run(local.run_until(async {
            let p = NativePlatform::default();
            // A huge frame: declared 2^40 bytes. The socket closes at its header.
            let url = double(|mut s| async move {
                read_head(&mut s).await;
                let _ = s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n").await;
                let mut frame = vec![0x81u8, 127];
                frame.extend_from_slice(&(1u64 << 40).to_be_bytes());
                let _ = s.write_all(&frame).await;
                let chunk = vec![b'x'; 64 * 1024];
                while s.write_all(&chunk).await.is_ok() {}
            })
            .await;
            let ws = p.websocket(&url.replacen("http://", "ws://", 1)).await.unwrap().unwrap();
            assert_eq!(ws.next().await, WsEvent::Closed);
        }));
        // An upgrade that never comes (the same code path, a shorter limit).
        let local = tokio::task::LocalSet::new();
        run(local.run_until(async {
            let url = double(|mut s| async move {
                read_head(&mut s).await;
                tokio::time::sleep(Duration::from_secs(3600)).await;
            })
            .await;
            let t = Instant::now();
            assert!(ws_connect_within(url.replacen("http://", "ws://", 1), 300).await.unwrap().is_none());
            assert!(t.elapsed() < Duration::from_secs(3));
        }));
    }
}
