//! The native host: tokio sockets and files. Used by `cargo test` and native tools.
//!
//! HTTP is written by hand on purpose: a reference worker matches header names
//! case-sensitively and serves one request per connection, so we send exactly the
//! bytes we mean and read until the server closes.

use super::{HttpRequest, HttpResponse, LocalFuture, Platform, WebSocket, WsEvent};
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

async fn connect(authority: &str) -> Result<TcpStream> {
    TcpStream::connect(authority)
        .await
        .map_err(|e| Error::network(format!("cannot connect to {authority}: is the server running?")).with_cause(e.to_string()))
}

fn parse_response(raw: &[u8]) -> Result<HttpResponse> {
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| Error::malformed("the server closed the connection before a complete HTTP head"))?;
    let head = String::from_utf8_lossy(&raw[..head_end]);
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

async fn send(req: HttpRequest) -> Result<HttpResponse> {
    let (authority, path) = split_http_url(&req.url)?;
    let mut stream = connect(&authority).await?;
    let mut head = format!("{} {} HTTP/1.1\r\nHost: {}\r\n", req.method, path, authority);
    for (k, v) in &req.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !req.body.is_empty() || req.method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", req.body.len()));
    }
    head.push_str("Connection: close\r\n\r\n");
    let io = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&req.body).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(raw)
    };
    let raw = if req.timeout_ms > 0 {
        tokio::time::timeout(Duration::from_millis(req.timeout_ms), io).await.map_err(|_| {
            Error::new(ErrorCode::Timeout, format!("no answer from {} within {} ms", req.url, req.timeout_ms))
        })?
    } else {
        io.await
    }
    .map_err(|e| Error::network(format!("connection to {authority} failed")).with_cause(e.to_string()))?;
    parse_response(&raw)
}

impl Platform for NativePlatform {
    fn http(&self, req: HttpRequest) -> LocalFuture<'_, Result<HttpResponse>> {
        Box::pin(send(req))
    }
    fn sleep(&self, ms: u64) -> LocalFuture<'_, ()> {
        Box::pin(tokio::time::sleep(Duration::from_millis(ms)))
    }
    fn now_ms(&self) -> f64 {
        self.start.elapsed().as_secs_f64() * 1000.0
    }
    fn websocket(&self, url: &str) -> LocalFuture<'_, Result<Option<Box<dyn WebSocket>>>> {
        let url = url.to_string();
        Box::pin(async move { Ok(Some(Box::new(NativeWs::connect(&url).await?) as Box<dyn WebSocket>)) })
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

    /// Parse one complete frame from the buffer: (opcode, payload).
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
            len = u64::from_be_bytes(buf[2..10].try_into().ok()?) as usize;
            at = 10;
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
                        0x8 => {
                            *self.closed.borrow_mut() = true;
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
