//! A deliberately quirky HTTP/1.1 layer: one request per connection, request header
//! names matched case-sensitively (worker side), values taken from two characters after
//! the colon, bodies only via `Content-Length`. Hyper/axum would "fix" all of that.

use crate::util::find;
use std::net::IpAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One parsed request.
pub struct Request {
    pub method: String,
    /// Raw request target, query string included (the reference keeps it in the id).
    pub path: String,
    /// Header lines as (name, value) with the name as sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub peer: IpAddr,
}

impl Request {
    /// Header value, name matched exactly like the reference worker does.
    pub fn header_exact(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
    /// Header value, name matched case-insensitively (registry side, like Werkzeug).
    pub fn header_ci(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Result of reading one request.
pub enum ReadOutcome {
    Req(Request),
    /// Declared body larger than the limit; the request line and headers are kept.
    TooLarge,
    /// Nothing usable arrived (closed, garbage, timeout).
    Bad,
}

const MAX_HEAD: usize = 64 * 1024;

/// Reads one request. `exact_names` selects the worker's case-sensitive header lookup
/// for `Content-Length`; the registry passes `false`.
pub async fn read_request(
    stream: &mut TcpStream,
    peer: IpAddr,
    max_body: usize,
    exact_names: bool,
) -> std::io::Result<ReadOutcome> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 64 * 1024];
    let head_end = loop {
        if let Some(p) = find(&buf, b"\r\n\r\n", 0) {
            break p;
        }
        if buf.len() > MAX_HEAD {
            return Ok(ReadOutcome::Bad);
        }
        let n = match tokio::time::timeout(Duration::from_secs(30), stream.read(&mut chunk)).await {
            Ok(r) => r?,
            Err(_) => return Ok(ReadOutcome::Bad),
        };
        if n == 0 {
            return Ok(ReadOutcome::Bad);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let reqline = lines.next().unwrap_or("");
    let mut parts = reqline.split(' ');
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    if method.is_empty() || path.is_empty() {
        return Ok(ReadOutcome::Bad);
    }
    let mut headers = Vec::new();
    for l in lines {
        if let Some(c) = l.find(':') {
            // The reference skips exactly ": " after the name.
            let v = l.get(c + 2..).unwrap_or("").to_string();
            headers.push((l[..c].to_string(), v));
        }
    }
    let mut req = Request { method, path, headers, body: Vec::new(), peer };
    let cl = if exact_names { req.header_exact("Content-Length") } else { req.header_ci("Content-Length") };
    let cl: Option<usize> = cl.and_then(|v| v.trim().parse().ok());
    let mut body = buf.split_off(head_end + 4);
    if let Some(len) = cl {
        if len > max_body {
            return Ok(ReadOutcome::TooLarge);
        }
        body.reserve(len.saturating_sub(body.len()));
        while body.len() < len {
            let n = match tokio::time::timeout(Duration::from_secs(60), stream.read(&mut chunk)).await {
                Ok(r) => r?,
                Err(_) => break,
            };
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
        body.truncate(len);
    }
    req.body = body;
    Ok(ReadOutcome::Req(req))
}

/// Reason phrase as the reference prints it: only four are known, the rest `Unknown`.
pub fn worker_reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "Unknown",
    }
}

/// A worker response: CORS header, optional extra headers, Content-Type, Content-Length.
pub fn worker_response(code: u16, content_type: &str, extra: &[(&str, String)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {} {}\r\nAccess-Control-Allow-Origin: *\r\n", code, worker_reason(code));
    for (n, v) in extra {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str(&format!("Content-Type: {}\r\nContent-Length: {}\r\n\r\n", content_type, body.len()));
    let mut v = out.into_bytes();
    v.extend_from_slice(body);
    v
}

/// JSON worker response.
pub fn worker_json(code: u16, body: &str) -> Vec<u8> {
    worker_response(code, "application/json", &[], body.as_bytes())
}

/// Writes, flushes and half-closes; then drains briefly so that the peer reads the
/// response instead of a TCP reset when it is still sending.
pub async fn send_and_close(stream: &mut TcpStream, data: &[u8]) {
    let _ = stream.write_all(data).await;
    let _ = stream.flush().await;
    let _ = stream.shutdown().await;
    let mut sink = vec![0u8; 64 * 1024];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut sink)).await {
            Ok(Ok(n)) if n > 0 => continue,
            _ => break,
        }
    }
}

/// Minimal client used by the orchestrator and workers (health checks, self-registration).
/// Returns (status, body).
pub async fn client_request(
    addr: &str,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
    timeout: Duration,
) -> std::io::Result<(u16, Vec<u8>)> {
    let fut = async {
        let mut s = TcpStream::connect(addr).await?;
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n");
        if let Some(ct) = content_type {
            req.push_str(&format!("Content-Type: {ct}\r\n"));
        }
        req.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n", body.len()));
        let mut data = req.into_bytes();
        data.extend_from_slice(body);
        s.write_all(&data).await?;
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).await?;
        let head_end = find(&resp, b"\r\n\r\n", 0)
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "no header end"))?;
        let status: u16 = String::from_utf8_lossy(&resp[..head_end])
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        Ok((status, resp[head_end + 4..].to_vec()))
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "timeout")),
    }
}

/// A received request as bytes again: request line, the header lines as received, the
/// blank line, the body (what a proxy sends on).
pub fn request_bytes(req: &Request) -> Vec<u8> {
    let mut out = format!("{} {} HTTP/1.1\r\n", req.method, req.path);
    for (n, v) in &req.headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut b = out.into_bytes();
    b.extend_from_slice(&req.body);
    b
}

/// Sends `req` unchanged to `addr` and returns the whole raw response (status line,
/// headers and body, read to EOF: workers close after each response).
pub async fn forward(addr: &str, req: &Request, timeout: Duration) -> std::io::Result<Vec<u8>> {
    let fut = async {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(&request_bytes(req)).await?;
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).await?;
        if find(&resp, b"\r\n\r\n", 0).is_none() {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "no response head"));
        }
        Ok(resp)
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "timeout")),
    }
}

/// (status, body) of a raw response; (0, empty) when it has no head.
pub fn split_response(resp: &[u8]) -> (u16, &[u8]) {
    let Some(end) = find(resp, b"\r\n\r\n", 0) else { return (0, &[]) };
    let code = String::from_utf8_lossy(&resp[..end]).split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, &resp[end + 4..])
}
