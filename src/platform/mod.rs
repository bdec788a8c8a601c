//! The seams to the host: HTTP, sleeping, the clock and files.
//!
//! The core only talks to the outside through [`Platform`]. On wasm32 it is
//! implemented over JS: requests to Sandrun workers through the hand-written host
//! (Node's `http` module in Node, because Node's fetch lowercases header names and a
//! reference worker rejects them; fetch with header pairs in browsers), every other
//! request through gloo-net's fetch (see [`Transport`]); natively over tokio, so the
//! core is tested with `cargo test` against the devnet.

use crate::error::{Error, ErrorCode, Result};
use std::future::Future;
use std::pin::Pin;

pub mod gzip;
pub mod target;
#[cfg(not(target_arch = "wasm32"))]
pub mod native;
#[cfg(target_arch = "wasm32")]
pub mod js;
#[cfg(target_arch = "wasm32")]
pub mod fetch;

/// A boxed, possibly `!Send` future (wasm is single-threaded).
pub type LocalFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// The total deadline of a request that names none: a reference worker holds
/// `/status`, `/logs`, `/submit` ... while a job runs, up to its 300 s job timeout.
pub const DEFAULT_TIMEOUT_MS: u64 = 330_000;
/// The most bytes a response body may have unless the request says otherwise: every
/// JSON answer of a worker, a registry or an RPC node is far below it, and a hostile
/// server that sends an endless body is cut off here (`MALFORMED_RESPONSE`).
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 16 * 1024 * 1024;
/// The longest timer a JS host can arm: `setTimeout` fires at once for more than
/// 2^31-1 ms, so longer waits are clamped (hosts) or chained (the core).
pub const MAX_TIMER_MS: u64 = (1 << 31) - 1;
/// How long a WebSocket upgrade may take before the SDK gives up on it and polls
/// `/status` instead.
pub const WS_UPGRADE_TIMEOUT_MS: u64 = 10_000;
/// The largest WebSocket frame (and the most bytes queued unread) a host accepts; a
/// larger one closes the socket, and the SDK reads the rest from `/status` and `/logs`.
/// A reference worker sends a job's whole stdout in one frame, up to its output cap.
pub const WS_MAX_FRAME_BYTES: u64 = 16 * 1024 * 1024;
/// Where a host's SHA-256 is asynchronous (WebCrypto's `crypto.subtle.digest` in
/// browsers), inputs below this many bytes are hashed in wasm instead: the Promise round
/// trip costs more than hashing them. Measured in headless Chromium through the check's
/// own path: sha2 in wasm 4.5-10 us at 1 KiB vs WebCrypto 10-18 us, even at 2 KiB, and
/// WebCrypto ahead from 4 KiB (10-23 us vs 14-34 us; docs/decisions.md, "Host SHA-256").
/// A host with a synchronous hash (node:crypto) is used at every size.
pub const HOST_SHA256_ASYNC_MIN_BYTES: usize = 4 * 1024;

/// Which transport carries a request on wasm32 (natively there is one, and this is
/// ignored). The base platform routes on it, below the middleware chain, so middleware
/// sees every request whichever way it goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Transport {
    /// `fetch` through gloo-net (`platform::fetch`): registries and brokers, chain
    /// JSON-RPC, IPFS gateways and Kubo RPC, archive and script hosts. Header names may
    /// reach the server lowercased (Node's fetch, Chromium's `Headers`); these servers
    /// read them case-insensitively, as HTTP says.
    #[default]
    Fetch,
    /// The hand-written JS host (`pkg-template/host-*.js`): requests to Sandrun workers.
    /// A reference worker reads `Content-Type`/`Content-Length` case-sensitively and
    /// refuses a multipart submit without them (`400 No files uploaded`), which only the
    /// host's `node:http` (Node) and header pairs (browsers) send as spelled.
    Host,
}

/// One HTTP request. Header names are sent exactly as spelled here on the
/// [`Transport::Host`] path; on [`Transport::Fetch`] the runtime may lowercase them.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Total deadline from the first byte sent to the last byte received, however
    /// slowly the bytes drip (0: [`DEFAULT_TIMEOUT_MS`]).
    pub timeout_ms: u64,
    /// The most response-body bytes accepted (0: [`DEFAULT_MAX_RESPONSE_BYTES`]); more
    /// fails the request with `MALFORMED_RESPONSE` without reading further.
    pub max_bytes: u64,
    /// Which transport carries it on wasm32 (see [`Transport`]); set by
    /// [`HttpRequest::to_worker`] for requests to Sandrun workers.
    pub transport: Transport,
}

impl HttpRequest {
    pub fn get(url: impl Into<String>) -> Self {
        HttpRequest { method: "GET".into(), url: url.into(), headers: vec![], body: vec![], timeout_ms: DEFAULT_TIMEOUT_MS, max_bytes: DEFAULT_MAX_RESPONSE_BYTES, transport: Transport::Fetch }
    }
    pub fn post(url: impl Into<String>, content_type: &str, body: Vec<u8>) -> Self {
        HttpRequest {
            method: "POST".into(),
            url: url.into(),
            headers: vec![("Content-Type".into(), content_type.into())],
            body,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            max_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            transport: Transport::Fetch,
        }
    }
    /// A request to a Sandrun worker: sent by the hand-written host, which keeps header
    /// names as spelled and sends an exact `Content-Length` ([`Transport::Host`]).
    pub fn to_worker(mut self) -> Self {
        self.transport = Transport::Host;
        self
    }
    pub fn timeout(mut self, ms: u64) -> Self {
        self.timeout_ms = ms;
        self
    }
    /// Accept at most `n` response-body bytes.
    pub fn max_bytes(mut self, n: u64) -> Self {
        self.max_bytes = n;
        self
    }
    /// The deadline in force (never unbounded).
    pub fn deadline_ms(&self) -> u64 {
        if self.timeout_ms == 0 { DEFAULT_TIMEOUT_MS } else { self.timeout_ms }
    }
    /// The body cap in force (never unbounded).
    pub fn body_cap(&self) -> u64 {
        if self.max_bytes == 0 { DEFAULT_MAX_RESPONSE_BYTES } else { self.max_bytes }
    }
}

/// The error for a response body over its cap.
pub fn too_large(url: &str, cap: u64) -> Error {
    Error::malformed(format!("{url} answered more than {cap} bytes; the SDK stopped reading (a broken or hostile server)"))
        .with_details(serde_json::json!({"url": url, "limit": cap}))
}

/// What is at a path, without following a final symbolic link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    Missing,
    File,
    Dir,
    Symlink,
    Other,
}

/// A response whose body went to a file (see [`Platform::http_to_file`]).
#[derive(Debug, Clone, PartialEq)]
pub struct FileResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// Bytes written (2xx) or read (other statuses).
    pub size: u64,
    /// Lowercase hex SHA-256 of the body, computed while it streamed (2xx only).
    pub sha256: String,
    /// A non-2xx answer's body (capped); nothing is written to the file then.
    pub error_body: Vec<u8>,
}

fn unsupported<T: 'static>(what: &str) -> LocalFuture<'static, Result<T>> {
    let e = Error::new(ErrorCode::Unsupported, format!("{what} is not available on this platform"));
    Box::pin(async move { Err(e) })
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
    /// [`Platform::http`], handing a 2xx body to `sink` while it arrives, so that work on
    /// it (hashing IPFS blocks) overlaps the transfer instead of following it. `sink` is
    /// called with the body received so far, a prefix that only grows, of exactly the
    /// bytes the returned response holds (the last call sees the whole body); an error
    /// from it stops reading and fails the request with that error. The default sends
    /// the request whole through [`Platform::http`] and calls `sink` once: so does any
    /// platform whose responses pass through code that may change them (middleware).
    fn http_streamed<'a>(&'a self, req: HttpRequest, sink: BodySink<'a>) -> LocalFuture<'a, Result<HttpResponse>> {
        whole_then_sink(self.http(req), sink)
    }
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
    /// What is at `path` (lstat: a symlink is reported, not followed).
    fn lstat(&self, path: &str) -> LocalFuture<'_, Result<PathKind>> {
        let _ = path;
        unsupported("inspecting local paths")
    }
    /// Create one directory (its parent must exist); an existing directory is fine.
    fn make_dir(&self, path: &str) -> LocalFuture<'_, Result<()>> {
        let _ = path;
        unsupported("creating local directories")
    }
    /// Send `req` and stream a 2xx body into a new file at `path` (created exclusively:
    /// an existing file or symlink there fails the call), hashing it on the way and
    /// never holding it whole in memory. With `path` `None` the body is hashed and
    /// dropped. More than `req.max_bytes` bytes, the deadline, or any error removes the
    /// file before failing. A non-2xx answer writes nothing.
    fn http_to_file(&self, req: HttpRequest, path: Option<&str>) -> LocalFuture<'_, Result<FileResponse>> {
        let _ = (req, path);
        unsupported("streaming downloads to files")
    }
    /// Write `bytes` to a new file at `path`, created exclusively (an existing file or
    /// symlink there fails the call; nothing is followed).
    fn write_new_file(&self, path: &str, bytes: &[u8]) -> LocalFuture<'_, Result<()>> {
        let _ = (path, bytes);
        unsupported("writing local files")
    }
    /// Move a finished file to its final name. Without `replace`, an existing entry at
    /// `to` (file, symlink, anything) fails the call with `IO` and nothing moves; with
    /// it, a regular file there is replaced atomically (a symlink is replaced itself,
    /// never followed).
    fn commit_file(&self, from: &str, to: &str, replace: bool) -> LocalFuture<'_, Result<()>> {
        let _ = (from, to, replace);
        unsupported("moving local files")
    }
    /// Remove a file (a missing one is fine).
    fn remove_file(&self, path: &str) -> LocalFuture<'_, Result<()>> {
        let _ = path;
        unsupported("removing local files")
    }
    /// SHA-256 of `bytes`: the hash every verification uses (IPFS blocks against their
    /// CIDs, job outputs against their signed hashes). Hosts with native crypto override
    /// it (src/platform/js.rs: node:crypto synchronously at every size, WebCrypto in
    /// browsers from [`HOST_SHA256_ASYNC_MIN_BYTES`]): SHA-256 compiled to wasm runs at
    /// about 0.15x of them. The returned future never borrows `bytes`: an override reads
    /// them before it returns. Fails only when the host's hash failed (never a digest
    /// that was not computed).
    fn sha256(&self, bytes: &[u8]) -> LocalFuture<'_, Result<[u8; 32]>> {
        let d = crate::proof::sha256(bytes);
        Box::pin(async move { Ok(d) })
    }
    /// [`Platform::sha256`] when the host can answer without waiting (node:crypto, or
    /// sha2 in wasm); `None` where only an asynchronous hash would be fast (WebCrypto),
    /// for callers that hash speculatively and can hash later instead. The default is
    /// `None` ("ask `sha256` later"), so a platform that overrides only `sha256` is never
    /// bypassed; platforms whose `sha256` is the default override this too.
    fn sha256_now(&self, bytes: &[u8]) -> Option<[u8; 32]> {
        let _ = bytes;
        None
    }
    /// Lowercase hex of [`Platform::sha256`]; an empty string if the host's hash failed,
    /// which equals no digest, so a check comparing it fails closed.
    fn sha256_hex(&self, bytes: &[u8]) -> LocalFuture<'_, String> {
        let f = self.sha256(bytes);
        Box::pin(async move { f.await.map(|d| crate::proof::recipe::hex(&d)).unwrap_or_default() })
    }
    /// [`Platform::sha256_hex`] without a future, where the host hashes synchronously
    /// (node:crypto); `None` means "ask `sha256_hex`", never "no digest". The default is
    /// `None`, so a platform that overrides `sha256` or `sha256_hex` is never bypassed.
    /// Why: per output at 1 KiB, the boxed future of `sha256_hex` was a measurable share
    /// of what the check adds to the host's hash (issue 14 row 4a).
    fn sha256_hex_now(&self, bytes: &[u8]) -> Option<String> {
        let _ = bytes;
        None
    }
    /// Gzip the concatenation of `parts` (a job's tar: headers between the files' own
    /// bytes) at [`gzip::GZIP_LEVEL`]. Hosts with native compression
    /// (node:zlib) override this: zlib runs at about 2.5x
    /// miniz_oxide compiled to wasm. An override reads `parts` before it returns (the
    /// future does not borrow them). Any level or implementation will do: the worker
    /// inflates standard gzip, and no hash covers the compressed bytes (the job hash
    /// covers the files).
    fn gzip(&self, parts: &[&[u8]]) -> LocalFuture<'_, Result<Vec<u8>>> {
        let r = gzip::gzip_parts(parts);
        Box::pin(async move { r })
    }
}

/// The output of `f` if it is ready at its first poll (a host that answered without
/// waiting); `None` otherwise, and `f` is dropped.
pub fn ready_now<F: Future>(f: F) -> Option<F::Output> {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
        std::task::Poll::Ready(v) => Some(v),
        std::task::Poll::Pending => None,
    }
}

/// What [`Platform::http_streamed`] hands a body to: the bytes received so far.
pub type BodySink<'a> = &'a mut dyn FnMut(&[u8]) -> Result<()>;

/// [`Platform::http_streamed`] for a platform that only has whole responses: the
/// response of `sent`, its 2xx body handed to `sink` once.
pub fn whole_then_sink<'a>(sent: LocalFuture<'a, Result<HttpResponse>>, sink: BodySink<'a>) -> LocalFuture<'a, Result<HttpResponse>> {
    Box::pin(async move {
        let resp = sent.await?;
        if (200..300).contains(&resp.status) {
            sink(&resp.body)?;
        }
        Ok(resp)
    })
}

/// An EIP-1193 provider: `request({ method, params })`. A host seam like HTTP: the
/// browser's wallet, a JS provider, or `localWallet`'s signer over an RPC URL.
pub trait Wallet {
    fn request(&self, method: &str, params: serde_json::Value) -> LocalFuture<'_, crate::error::Result<serde_json::Value>>;
}

#[cfg(all(test, not(target_arch = "wasm32")))]
/// The `Platform` methods a native test double leaves to its `base` field (a
/// `NativePlatform`).
macro_rules! delegate_to_base {
    () => {
        fn sleep(&self, ms: u64) -> crate::platform::LocalFuture<'_, ()> {
            self.base.sleep(ms)
        }
        fn now_ms(&self) -> f64 {
            self.base.now_ms()
        }
        fn websocket(&self, url: &str) -> crate::platform::LocalFuture<'_, Result<Option<Box<dyn crate::platform::WebSocket>>>> {
            self.base.websocket(url)
        }
        fn read_file(&self, path: &str) -> crate::platform::LocalFuture<'_, Result<Vec<u8>>> {
            self.base.read_file(path)
        }
        fn read_dir(&self, path: &str) -> crate::platform::LocalFuture<'_, Result<Vec<(String, bool)>>> {
            self.base.read_dir(path)
        }
        fn write_file(&self, path: &str, bytes: &[u8]) -> crate::platform::LocalFuture<'_, Result<()>> {
            self.base.write_file(path, bytes)
        }
    };
}
#[cfg(all(test, not(target_arch = "wasm32")))]
pub(crate) use delegate_to_base;
