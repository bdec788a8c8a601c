//! The seams to the host: HTTP, sleeping, the clock and files.
//!
//! The core only talks to the outside through [`Platform`]. On wasm32 it is
//! implemented over JS (fetch in browsers, Node's `http` module in Node, because
//! Node's fetch lowercases header names and a reference worker rejects them); natively
//! over tokio, so the core is tested with `cargo test` against the devnet.

use crate::error::Result;
use std::future::Future;
use std::pin::Pin;

#[cfg(not(target_arch = "wasm32"))]
pub mod native;
#[cfg(target_arch = "wasm32")]
pub mod js;

/// A boxed, possibly `!Send` future (wasm is single-threaded).
pub type LocalFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// One HTTP request. Header names are sent exactly as spelled here.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Give up after this long (0: no limit).
    pub timeout_ms: u64,
}

impl HttpRequest {
    pub fn get(url: impl Into<String>) -> Self {
        HttpRequest { method: "GET".into(), url: url.into(), headers: vec![], body: vec![], timeout_ms: 0 }
    }
    pub fn post(url: impl Into<String>, content_type: &str, body: Vec<u8>) -> Self {
        HttpRequest {
            method: "POST".into(),
            url: url.into(),
            headers: vec![("Content-Type".into(), content_type.into())],
            body,
            timeout_ms: 0,
        }
    }
    pub fn timeout(mut self, ms: u64) -> Self {
        self.timeout_ms = ms;
        self
    }
}

/// One HTTP response, body complete.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// A header value by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A WebSocket event as the SDK needs it: text frames and the end.
#[derive(Debug, Clone, PartialEq)]
pub enum WsEvent {
    Text(String),
    Closed,
}

/// An open WebSocket.
pub trait WebSocket {
    /// The next event; `Closed` once the socket ended, however it ended.
    fn next(&self) -> LocalFuture<'_, WsEvent>;
    /// Send a text frame (ignored once closed).
    fn send(&self, text: &str);
    /// Close the socket from our side.
    fn close(&self);
}

/// Everything the core needs from its host.
pub trait Platform {
    /// Send one HTTP request (one request per connection).
    fn http(&self, req: HttpRequest) -> LocalFuture<'_, Result<HttpResponse>>;
    /// Resolve after `ms` milliseconds.
    fn sleep(&self, ms: u64) -> LocalFuture<'_, ()>;
    /// Milliseconds since some fixed point (for durations only).
    fn now_ms(&self) -> f64;
    /// Open a WebSocket, or `None` where the host has none.
    fn websocket(&self, url: &str) -> LocalFuture<'_, Result<Option<Box<dyn WebSocket>>>>;
    /// Read a local file (Node, native); `Unsupported` in browsers.
    fn read_file(&self, path: &str) -> LocalFuture<'_, Result<Vec<u8>>>;
    /// List a directory's entries as (name, is_dir).
    fn read_dir(&self, path: &str) -> LocalFuture<'_, Result<Vec<(String, bool)>>>;
    /// Write a file, creating its parent directories.
    fn write_file(&self, path: &str, bytes: &[u8]) -> LocalFuture<'_, Result<()>>;
    /// Lowercase hex SHA-256. Hosts with native crypto (WebCrypto, node:crypto) override
    /// this: it is about 5x faster than SHA-256 compiled to wasm, and output checks hash
    /// every byte a job produced.
    fn sha256_hex(&self, bytes: &[u8]) -> LocalFuture<'_, String> {
        let h = crate::proof::sha256_hex(bytes);
        Box::pin(async move { h })
    }
}
