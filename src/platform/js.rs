//! The wasm32 platform: a JS object (`host`) that the package's entry installs, and
//! gloo-net's fetch.
//!
//! Node's entry gives a host built on `node:http` (canonical header case, exact
//! `Content-Length`: Node's fetch cannot talk to a reference worker), `node:fs` and a
//! small WebSocket client; the browser entry gives one built on `fetch` (header pairs)
//! and `WebSocket`. [`JsPlatform::http`] sends a request to a Sandrun worker
//! ([`Transport::Host`]) through the host and every other request through gloo-net
//! ([`super::fetch`]); streamed downloads, WebSockets and files are always the host's.

use super::{FileResponse, HttpRequest, HttpResponse, LocalFuture, PathKind, Platform, Transport, WebSocket, WsEvent, HOST_SHA256_ASYNC_MIN_BYTES, MAX_TIMER_MS, WS_MAX_FRAME_BYTES, WS_UPGRADE_TIMEOUT_MS};
use crate::error::{Error, ErrorCode, Result};
use js_sys::{Array, Promise, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

#[wasm_bindgen]
extern "C" {
    /// The host object (see `pkg-template/host-*.js`).
    #[derive(Clone)]
    pub type Host;
    /// `{ promise, cancel }`; `cancel()` aborts the request (the SDK dropped it).
    #[wasm_bindgen(method, catch)]
    fn request(this: &Host, method: &str, url: &str, headers: Array, body: Uint8Array, timeout_ms: f64, max_bytes: f64) -> std::result::Result<JsValue, JsValue>;
    /// Like `request`, but a 2xx body streams into a new file at `path` (`null`: hash
    /// only) while it is hashed: `{ promise, cancel }` of `{status, headers, size,
    /// sha256, errorBody}`.
    #[wasm_bindgen(method, catch, js_name = requestToFile)]
    fn request_to_file(this: &Host, method: &str, url: &str, headers: Array, body: Uint8Array, timeout_ms: f64, max_bytes: f64, path: JsValue) -> std::result::Result<JsValue, JsValue>;
    /// `'missing' | 'file' | 'dir' | 'symlink' | 'other'`, without following a symlink.
    #[wasm_bindgen(method, catch)]
    fn lstat(this: &Host, path: &str) -> std::result::Result<Promise, JsValue>;
    #[wasm_bindgen(method, catch, js_name = makeDir)]
    fn make_dir(this: &Host, path: &str) -> std::result::Result<Promise, JsValue>;
    #[wasm_bindgen(method, catch, js_name = writeNewFile)]
    fn write_new_file(this: &Host, path: &str, bytes: Uint8Array) -> std::result::Result<Promise, JsValue>;
    #[wasm_bindgen(method, catch, js_name = commitFile)]
    fn commit_file(this: &Host, from: &str, to: &str, replace: bool) -> std::result::Result<Promise, JsValue>;
    #[wasm_bindgen(method, catch, js_name = removeFile)]
    fn remove_file(this: &Host, path: &str) -> std::result::Result<Promise, JsValue>;
    /// `{ promise, cancel }`: a timer that `cancel()` stops, so an abandoned wait
    /// does not keep a Node process alive.
    #[wasm_bindgen(method)]
    fn timer(this: &Host, ms: f64) -> JsValue;
    #[wasm_bindgen(method)]
    fn now(this: &Host) -> f64;
    /// Resolves with a socket, or `null` when there is none (no WebSocket, refused, or
    /// the upgrade took longer than `upgrade_timeout_ms`); frames over `max_frame_bytes`
    /// close the socket.
    #[wasm_bindgen(method, catch)]
    fn websocket(this: &Host, url: &str, upgrade_timeout_ms: f64, max_frame_bytes: f64) -> std::result::Result<Promise, JsValue>;
    #[wasm_bindgen(method, catch, js_name = readFile)]
    fn read_file(this: &Host, path: &str) -> std::result::Result<Promise, JsValue>;
    #[wasm_bindgen(method, catch, js_name = readDir)]
    fn read_dir(this: &Host, path: &str) -> std::result::Result<Promise, JsValue>;
    /// Native SHA-256, synchronous (Node: node:crypto): writes the 64 lowercase hex digits
    /// of the digest of `bytes` into `out`; both are views of wasm memory, made by the glue
    /// in the one call. Optional: a host without it leaves the property undefined. Written
    /// into wasm memory, not returned as a string: taking a returned string into wasm
    /// (wasm-bindgen's `as_string`: a second import, a `malloc` call back into wasm, a
    /// char-by-char copy, two `DataView` writes) was the largest cost left at 1 KiB
    /// (docs/decisions.md, "Host SHA-256 written into wasm memory").
    #[wasm_bindgen(method, catch, js_name = sha256Into)]
    fn sha256_into(this: &Host, bytes: &[u8], out: &mut [u8]) -> std::result::Result<(), JsValue>;
    /// Native SHA-256, asynchronous (browsers: WebCrypto): a Promise of the 32-byte digest
    /// (`ArrayBuffer`). The host must read `bytes` (a view into wasm memory) before it
    /// returns; `crypto.subtle.digest` copies its input synchronously. Optional.
    #[wasm_bindgen(method, catch, js_name = sha256Digest)]
    fn sha256_digest(this: &Host, bytes: &Uint8Array) -> std::result::Result<Promise, JsValue>;
    /// Native gzip (node:zlib) of `bytes` at `level` where the host
    /// can choose one: a Promise of the gzip bytes, or of `null` when the host has no
    /// compressor (the SDK then compresses in Rust). `bytes` is the host's to keep.
    #[wasm_bindgen(method, catch, js_name = gzip)]
    fn gzip(this: &Host, bytes: &Uint8Array, level: f64) -> std::result::Result<Promise, JsValue>;
    #[wasm_bindgen(method, catch, js_name = writeFile)]
    fn write_file(this: &Host, path: &str, bytes: Uint8Array) -> std::result::Result<Promise, JsValue>;

    /// A socket returned by `host.websocket`.
    pub type HostSocket;
    #[wasm_bindgen(method)]
    fn next(this: &HostSocket) -> Promise;
    #[wasm_bindgen(method)]
    fn send(this: &HostSocket, text: &str);
    #[wasm_bindgen(method)]
    fn close(this: &HostSocket);
}

fn prop(v: &JsValue, name: &str) -> JsValue {
    js_sys::Reflect::get(v, &JsValue::from_str(name)).unwrap_or(JsValue::UNDEFINED)
}

/// A host rejection -> SDK error. Hosts reject with `{kind, message}`.
fn host_error(v: JsValue, what: &str) -> Error {
    let kind = prop(&v, "kind").as_string().unwrap_or_default();
    let message = prop(&v, "message").as_string().unwrap_or_else(|| format!("{v:?}"));
    let code = match kind.as_str() {
        "timeout" => ErrorCode::Timeout,
        "unsupported" => ErrorCode::Unsupported,
        "too_large" => ErrorCode::MalformedResponse,
        "io" | "exists" => ErrorCode::Io,
        _ => ErrorCode::Network,
    };
    let e = Error::new(code, format!("{what}: {message}")).with_cause(message);
    match prop(&v, "details") {
        d if d.is_object() => match serde_wasm_bindgen::from_value::<serde_json::Value>(d) {
            Ok(d) => e.with_details(d),
            Err(_) => e,
        },
        _ => e,
    }
}

/// The platform over a JS host and gloo-net.
pub struct JsPlatform {
    host: Host,
    /// The runtime has a global `fetch`; without one every request goes to the host.
    fetch: bool,
    /// Which native SHA-256 the host offers (looked up once).
    sha: HostSha,
}

/// The host's native SHA-256.
#[derive(Clone, Copy, PartialEq, Eq)]
enum HostSha {
    /// `sha256Into` (Node): used at every size (bench/goals.mjs row 4: as fast as
    /// node:crypto from 64 KiB, and faster than sha2 in wasm at 1 KiB).
    Sync,
    /// `sha256Digest` (WebCrypto): used from [`HOST_SHA256_ASYNC_MIN_BYTES`].
    Async,
    /// None (e.g. a page outside a secure context has no `crypto.subtle`): sha2 in wasm.
    None,
}

impl JsPlatform {
    pub fn new(host: Host) -> Self {
        let has = |name: &str| prop(&host, name).is_function();
        let sha = if has("sha256Into") {
            HostSha::Sync
        } else if has("sha256Digest") {
            HostSha::Async
        } else {
            HostSha::None
        };
        JsPlatform { host, fetch: super::fetch::available(), sha }
    }
}

/// The host's synchronous digest of `bytes` as lowercase hex, written into `out`; `None`
/// when the host threw or wrote anything but 64 lowercase hex digits.
fn host_hex(host: &Host, bytes: &[u8], out: &mut [u8]) -> Option<()> {
    // Zeros are not hex digits: a host that writes nothing, or too little, leaves some, and
    // is not taken as a digest. Writing past the end of the 64-byte view throws, which
    // `catch` makes a failure.
    let out = out.get_mut(..64)?;
    out.fill(0);
    host.sha256_into(bytes, out).ok()?;
    let out: &[u8; 64] = (&*out).try_into().ok()?;
    crate::proof::recipe::is_lower_hex64(out).then_some(())
}

/// 64 lowercase hex digits as the 32 bytes they spell.
fn unhex(h: &[u8; 64]) -> Option<[u8; 32]> {
    let nib = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut d = [0u8; 32];
    for (i, out) in d.iter_mut().enumerate() {
        *out = nib(h[2 * i])? << 4 | nib(h[2 * i + 1])?;
    }
    Some(d)
}

/// A host digest from `sha256Digest`: 32 bytes (`ArrayBuffer` or `Uint8Array`).
fn digest_of(v: &JsValue) -> Option<[u8; 32]> {
    let mut d = [0u8; 32];
    let a = if v.is_instance_of::<js_sys::ArrayBuffer>() { Uint8Array::new(v) } else { v.clone().dyn_into::<Uint8Array>().ok()? };
    if a.length() != 32 {
        return None;
    }
    a.copy_to(&mut d);
    Some(d)
}

/// `parts` concatenated into one new JS array: each byte copied out of wasm memory once.
pub fn concat_to_js<'a>(parts: impl Iterator<Item = &'a [u8]> + Clone) -> Uint8Array {
    let total: usize = parts.clone().map(|p| p.len()).sum();
    let out = Uint8Array::new_with_length(total as u32);
    let mut at = 0u32;
    for p in parts {
        let end = at + p.len() as u32;
        out.subarray(at, end).copy_from(p);
        at = end;
    }
    out
}

fn host_hash_failed(why: &str) -> Error {
    Error::new(ErrorCode::Unsupported, format!("the host's SHA-256 failed: {why}"))
}

async fn await_promise(p: std::result::Result<Promise, JsValue>, what: &str) -> Result<JsValue> {
    let p = p.map_err(|e| host_error(e, what))?;
    JsFuture::from(p).await.map_err(|e| host_error(e, what))
}

impl Platform for JsPlatform {
    fn http(&self, req: HttpRequest) -> LocalFuture<'_, Result<HttpResponse>> {
        // Routed here, in the base platform: the middleware chain above has already seen
        // the request, whichever transport carries it.
        if req.transport == Transport::Fetch && self.fetch {
            return Box::pin(async move { super::fetch::send(&req).await });
        }
        Box::pin(async move {
            let headers = Array::new();
            for (k, v) in &req.headers {
                headers.push(&Array::of2(&JsValue::from_str(k), &JsValue::from_str(v)));
            }
            // Host messages already name the method and URL.
            let what = "request failed";
            let body = Uint8Array::from(&req.body[..]);
            let handle = self
                .host
                .request(&req.method, &req.url, headers, body, req.deadline_ms() as f64, req.body_cap() as f64)
                .map_err(|e| host_error(e, what))?;
            let v = Cancellable::new(&handle).await.map_err(|e| host_error(e, what))?;
            let status = prop(&v, "status").as_f64().unwrap_or(0.0) as u16;
            let mut out_headers = Vec::new();
            for h in Array::from(&prop(&v, "headers")).iter() {
                let pair = Array::from(&h);
                out_headers.push((pair.get(0).as_string().unwrap_or_default(), pair.get(1).as_string().unwrap_or_default()));
            }
            let body = Uint8Array::new(&prop(&v, "body")).to_vec();
            Ok(HttpResponse { status, headers: out_headers, body })
        })
    }
    fn http_streamed<'a>(&'a self, req: HttpRequest, sink: super::BodySink<'a>) -> LocalFuture<'a, Result<HttpResponse>> {
        // Streaming pays where a sink can work while the body arrives, i.e. hash at once
        // (node:crypto); with WebCrypto the body is read whole, in one copy, as before.
        if req.transport == Transport::Fetch && self.fetch && self.sha != HostSha::Async {
            return Box::pin(async move { super::fetch::send_streamed(&req, Some(sink)).await });
        }
        super::whole_then_sink(self.http(req), sink)
    }
    fn sleep(&self, ms: u64) -> LocalFuture<'_, ()> {
        // setTimeout fires at once past 2^31-1 ms: chain timers of at most that long.
        Box::pin(async move {
            let mut left = ms;
            loop {
                let step = left.min(MAX_TIMER_MS);
                let _ = Cancellable::new(&self.host.timer(step as f64)).await;
                left -= step;
                if left == 0 {
                    break;
                }
            }
        })
    }
    fn now_ms(&self) -> f64 {
        self.host.now()
    }
    fn websocket(&self, url: &str) -> LocalFuture<'_, Result<Option<Box<dyn WebSocket>>>> {
        let url = url.to_string();
        Box::pin(async move {
            let v = await_promise(self.host.websocket(&url, WS_UPGRADE_TIMEOUT_MS as f64, WS_MAX_FRAME_BYTES as f64), &format!("WebSocket {url}")).await?;
            if v.is_null() || v.is_undefined() {
                return Ok(None);
            }
            Ok(Some(Box::new(JsSocket(v.unchecked_into())) as Box<dyn WebSocket>))
        })
    }
    fn read_file(&self, path: &str) -> LocalFuture<'_, Result<Vec<u8>>> {
        let path = path.to_string();
        Box::pin(async move {
            let v = await_promise(self.host.read_file(&path), &format!("read {path}")).await?;
            Ok(Uint8Array::new(&v).to_vec())
        })
    }
    fn read_dir(&self, path: &str) -> LocalFuture<'_, Result<Vec<(String, bool)>>> {
        let path = path.to_string();
        Box::pin(async move {
            let v = await_promise(self.host.read_dir(&path), &format!("list {path}")).await?;
            Ok(Array::from(&v)
                .iter()
                .map(|e| {
                    let pair = Array::from(&e);
                    (pair.get(0).as_string().unwrap_or_default(), pair.get(1).as_bool().unwrap_or(false))
                })
                .collect())
        })
    }
    fn sha256(&self, bytes: &[u8]) -> LocalFuture<'_, Result<[u8; 32]>> {
        // A view, not a copy: the host reads the bytes before it returns (node:crypto
        // synchronously; WebCrypto's digest() copies its input before returning its
        // Promise), and nothing runs in wasm in between. Copying out cost more than
        // hashing (docs/decisions.md, "Host SHA-256").
        match self.sha {
            HostSha::Sync => {
                let mut h = [0u8; 64];
                let d = host_hex(&self.host, bytes, &mut h).and_then(|()| unhex(&h));
                // The bytes are still here: a host that failed is replaced by sha2.
                let d = d.unwrap_or_else(|| crate::proof::sha256(bytes));
                Box::pin(async move { Ok(d) })
            }
            HostSha::Async if bytes.len() >= HOST_SHA256_ASYNC_MIN_BYTES => {
                let view = unsafe { Uint8Array::view(bytes) };
                let p = self.host.sha256_digest(&view);
                drop(view);
                Box::pin(async move {
                    let p = p.map_err(|e| host_hash_failed(&format!("{e:?}")))?;
                    let v = JsFuture::from(p).await.map_err(|e| host_hash_failed(&format!("{e:?}")))?;
                    digest_of(&v).ok_or_else(|| host_hash_failed("sha256Digest did not resolve to 32 bytes"))
                })
            }
            _ => {
                let d = crate::proof::sha256(bytes);
                Box::pin(async move { Ok(d) })
            }
        }
    }
    fn sha256_now(&self, bytes: &[u8]) -> Option<[u8; 32]> {
        // WebCrypto answers only asynchronously, and sha2 in wasm would run at a sixth of
        // its speed: such callers hash later, through `sha256`.
        if self.sha == HostSha::Async && bytes.len() >= HOST_SHA256_ASYNC_MIN_BYTES {
            return None;
        }
        super::ready_now(self.sha256(bytes)).and_then(Result::ok)
    }
    fn sha256_hex(&self, bytes: &[u8]) -> LocalFuture<'_, String> {
        if let Some(h) = self.sha256_hex_now(bytes) {
            return Box::pin(async move { h });
        }
        let f = self.sha256(bytes);
        Box::pin(async move { f.await.map(|d| crate::proof::recipe::hex(&d)).unwrap_or_default() })
    }
    fn sha256_hex_now(&self, bytes: &[u8]) -> Option<String> {
        // Node's host answers hex already: hand it on rather than decode and re-encode.
        if self.sha != HostSha::Sync {
            return None;
        }
        // Written straight into the String's buffer: one allocation per digest.
        let mut h = vec![0u8; 64];
        Some(match host_hex(&self.host, bytes, &mut h) {
            // ASCII hex digits only (checked), so this never fails.
            Some(()) => String::from_utf8(h).unwrap_or_default(),
            None => crate::proof::sha256_hex(bytes),
        })
    }
    fn gzip(&self, parts: &[&[u8]]) -> LocalFuture<'_, Result<Vec<u8>>> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        // Looked up per archive: a host may take its compressor away (tests/js/archive.test.mjs).
        let native = total >= HOST_GZIP_MIN_BYTES && prop(&self.host, "gzip").is_function();
        if !native {
            let r = super::gzip::gzip_parts(parts);
            return Box::pin(async move { r });
        }
        // The tar is laid out once, straight into a JS buffer the host owns: the files'
        // bytes are copied out of wasm memory here and nowhere else, and an asynchronous
        // compressor may read the buffer after this returns (a view into wasm memory
        // would be detached if the memory grew meanwhile).
        let buf = concat_to_js(parts.iter().copied());
        let p = self.host.gzip(&buf, super::gzip::GZIP_LEVEL as f64);
        Box::pin(async move {
            // Whatever the host says went wrong, nothing was sent: IO, never NETWORK.
            let v = await_promise(p, "cannot compress the job archive").await.map_err(|e| Error { code: ErrorCode::Io, ..e })?;
            if v.is_null() || v.is_undefined() {
                // The host has a gzip but declined this time.
                return super::gzip::gzip_parts(&[&buf.to_vec()]);
            }
            Ok(Uint8Array::new(&v).to_vec())
        })
    }
    fn lstat(&self, path: &str) -> LocalFuture<'_, Result<PathKind>> {
        let path = path.to_string();
        Box::pin(async move {
            let v = await_promise(self.host.lstat(&path), &format!("inspect {path}")).await?;
            Ok(match v.as_string().as_deref() {
                Some("missing") => PathKind::Missing,
                Some("file") => PathKind::File,
                Some("dir") => PathKind::Dir,
                Some("symlink") => PathKind::Symlink,
                _ => PathKind::Other,
            })
        })
    }
    fn make_dir(&self, path: &str) -> LocalFuture<'_, Result<()>> {
        let path = path.to_string();
        Box::pin(async move {
            await_promise(self.host.make_dir(&path), &format!("create directory {path}")).await?;
            Ok(())
        })
    }
    fn http_to_file(&self, req: HttpRequest, path: Option<&str>) -> LocalFuture<'_, Result<FileResponse>> {
        let path = path.map(str::to_string);
        Box::pin(async move {
            let headers = Array::new();
            for (k, v) in &req.headers {
                headers.push(&Array::of2(&JsValue::from_str(k), &JsValue::from_str(v)));
            }
            let what = "download failed";
            let body = Uint8Array::from(&req.body[..]);
            let target = path.as_deref().map(JsValue::from_str).unwrap_or(JsValue::NULL);
            let handle = self
                .host
                .request_to_file(&req.method, &req.url, headers, body, req.deadline_ms() as f64, req.body_cap() as f64, target)
                .map_err(|e| host_error(e, what))?;
            let v = Cancellable::new(&handle).await.map_err(|e| host_error(e, what))?;
            let mut out_headers = Vec::new();
            for h in Array::from(&prop(&v, "headers")).iter() {
                let pair = Array::from(&h);
                out_headers.push((pair.get(0).as_string().unwrap_or_default(), pair.get(1).as_string().unwrap_or_default()));
            }
            let error_body = prop(&v, "errorBody");
            Ok(FileResponse {
                status: prop(&v, "status").as_f64().unwrap_or(0.0) as u16,
                headers: out_headers,
                size: prop(&v, "size").as_f64().unwrap_or(0.0) as u64,
                sha256: prop(&v, "sha256").as_string().unwrap_or_default(),
                error_body: if error_body.is_object() { Uint8Array::new(&error_body).to_vec() } else { Vec::new() },
            })
        })
    }
    fn write_new_file(&self, path: &str, bytes: &[u8]) -> LocalFuture<'_, Result<()>> {
        let path = path.to_string();
        let bytes = Uint8Array::from(bytes);
        Box::pin(async move {
            await_promise(self.host.write_new_file(&path, bytes), &format!("write {path}")).await?;
            Ok(())
        })
    }
    fn commit_file(&self, from: &str, to: &str, replace: bool) -> LocalFuture<'_, Result<()>> {
        let (from, to) = (from.to_string(), to.to_string());
        Box::pin(async move {
            await_promise(self.host.commit_file(&from, &to, replace), &format!("write {to}")).await?;
            Ok(())
        })
    }
    fn remove_file(&self, path: &str) -> LocalFuture<'_, Result<()>> {
        let path = path.to_string();
        Box::pin(async move {
            await_promise(self.host.remove_file(&path), &format!("remove {path}")).await?;
            Ok(())
        })
    }
    fn write_file(&self, path: &str, bytes: &[u8]) -> LocalFuture<'_, Result<()>> {
        let path = path.to_string();
        let bytes = Uint8Array::from(bytes);
        Box::pin(async move {
            await_promise(self.host.write_file(&path, bytes), &format!("write {path}")).await?;
            Ok(())
        })
    }
}

/// A host operation `{ promise, cancel }` whose `cancel()` runs if it is dropped
/// before it settled (a timed-out race, a cancelled job).
struct Cancellable {
    fut: JsFuture,
    cancel: JsValue,
    done: bool,
}

impl Cancellable {
    fn new(handle: &JsValue) -> Self {
        Cancellable { fut: JsFuture::from(Promise::from(prop(handle, "promise"))), cancel: prop(handle, "cancel"), done: false }
    }
}

impl std::future::Future for Cancellable {
    type Output = std::result::Result<JsValue, JsValue>;
    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        let r = std::pin::Pin::new(&mut self.fut).poll(cx);
        if r.is_ready() {
            self.done = true;
        }
        r
    }
}

impl Drop for Cancellable {
    fn drop(&mut self) {
        if !self.done {
            if let Some(f) = self.cancel.dyn_ref::<js_sys::Function>() {
                let _ = f.call0(&JsValue::NULL);
            }
        }
    }
}

/// Small archives are compressed in wasm: under this, a round trip to the host costs more
/// than miniz_oxide takes.
const HOST_GZIP_MIN_BYTES: usize = 64 * 1024;

struct JsSocket(HostSocket);

impl WebSocket for JsSocket {
    fn next(&self) -> LocalFuture<'_, WsEvent> {
        let p = self.0.next();
        Box::pin(async move {
            match JsFuture::from(p).await {
                Ok(v) => v.as_string().map(WsEvent::Text).unwrap_or(WsEvent::Closed),
                Err(_) => WsEvent::Closed,
            }
        })
    }
    fn send(&self, text: &str) {
        self.0.send(text);
    }
    fn close(&self) {
        self.0.close();
    }
}
