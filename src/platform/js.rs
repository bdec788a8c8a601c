//! The wasm32 host: a JS object (`host`) that the package's entry installs.
//!
//! Node's entry gives one built on `node:http` (canonical header case, exact
//! `Content-Length`: Node's fetch cannot talk to a reference worker), `node:fs` and a
//! small WebSocket client; the browser entry gives one built on `fetch` and `WebSocket`.

use super::{HttpRequest, HttpResponse, LocalFuture, Platform, WebSocket, WsEvent};
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
    fn request(this: &Host, method: &str, url: &str, headers: Array, body: Uint8Array, timeout_ms: f64) -> std::result::Result<JsValue, JsValue>;
    /// `{ promise, cancel }`: a timer that `cancel()` stops, so an abandoned wait
    /// does not keep a Node process alive.
    #[wasm_bindgen(method)]
    fn timer(this: &Host, ms: f64) -> JsValue;
    #[wasm_bindgen(method)]
    fn now(this: &Host) -> f64;
    #[wasm_bindgen(method, catch)]
    fn websocket(this: &Host, url: &str) -> std::result::Result<Promise, JsValue>;
    #[wasm_bindgen(method, catch, js_name = readFile)]
    fn read_file(this: &Host, path: &str) -> std::result::Result<Promise, JsValue>;
    #[wasm_bindgen(method, catch, js_name = readDir)]
    fn read_dir(this: &Host, path: &str) -> std::result::Result<Promise, JsValue>;
    /// Native SHA-256 (WebCrypto / node:crypto): a Promise of lowercase hex.
    #[wasm_bindgen(method, catch, js_name = sha256)]
    fn sha256(this: &Host, bytes: Uint8Array) -> std::result::Result<Promise, JsValue>;
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
        "io" => ErrorCode::Io,
        "unsupported" => ErrorCode::Unsupported,
        _ => ErrorCode::Network,
    };
    Error::new(code, format!("{what}: {message}")).with_cause(message)
}

/// The platform over a JS host.
pub struct JsPlatform {
    host: Host,
}

impl JsPlatform {
    pub fn new(host: Host) -> Self {
        JsPlatform { host }
    }
}

async fn await_promise(p: std::result::Result<Promise, JsValue>, what: &str) -> Result<JsValue> {
    let p = p.map_err(|e| host_error(e, what))?;
    JsFuture::from(p).await.map_err(|e| host_error(e, what))
}

impl Platform for JsPlatform {
    fn http(&self, req: HttpRequest) -> LocalFuture<'_, Result<HttpResponse>> {
        Box::pin(async move {
            let headers = Array::new();
            for (k, v) in &req.headers {
                headers.push(&Array::of2(&JsValue::from_str(k), &JsValue::from_str(v)));
            }
            // Host messages already name the method and URL.
            let what = "request failed";
            let body = Uint8Array::from(&req.body[..]);
            let handle = self.host.request(&req.method, &req.url, headers, body, req.timeout_ms as f64).map_err(|e| host_error(e, what))?;
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
    fn sleep(&self, ms: u64) -> LocalFuture<'_, ()> {
        let t = self.host.timer(ms as f64);
        let fut = Cancellable::new(&t);
        Box::pin(async move {
            let _ = fut.await;
        })
    }
    fn now_ms(&self) -> f64 {
        self.host.now()
    }
    fn websocket(&self, url: &str) -> LocalFuture<'_, Result<Option<Box<dyn WebSocket>>>> {
        let url = url.to_string();
        Box::pin(async move {
            let v = await_promise(self.host.websocket(&url), &format!("WebSocket {url}")).await?;
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
    fn sha256_hex(&self, bytes: &[u8]) -> LocalFuture<'_, String> {
        if bytes.len() < HOST_SHA256_MIN_BYTES {
            let h = crate::proof::sha256_hex(bytes);
            return Box::pin(async move { h });
        }
        let fallback = bytes.to_vec();
        let p = self.host.sha256(Uint8Array::from(bytes));
        Box::pin(async move {
            match p {
                Ok(p) => match JsFuture::from(p).await.ok().and_then(|v| v.as_string()) {
                    Some(h) => h,
                    None => crate::proof::sha256_hex(&fallback),
                },
                Err(_) => crate::proof::sha256_hex(&fallback),
            }
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

/// Small inputs stay in wasm: crossing to the host costs more than hashing them.
const HOST_SHA256_MIN_BYTES: usize = 64 * 1024;

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
