//! The fetch transport of the wasm platform, through gloo-net: every request that is not
//! addressed to a Sandrun worker (registries and brokers, chain JSON-RPC, IPFS gateways and
//! Kubo RPC, archive and script hosts). Requests to workers keep the hand-written JS host
//! ([`super::Transport::Host`]); docs/decisions.md ("Host seam") says why.
//!
//! The hosts' guarantees hold here too:
//! - a total deadline: a timer aborts an `AbortController` whose signal the request
//!   carries, which also stops a body that drips forever;
//! - a body cap: a declared `Content-Length` over the cap fails before any byte is read,
//!   then the body is read chunk by chunk from its stream and reading stops past the cap
//!   (never `arrayBuffer()`, which would hold an endless body);
//! - typed errors shaped like the hosts' (`request failed: METHOD URL: reason`, codes
//!   `NETWORK`, `TIMEOUT`, `MALFORMED_RESPONSE`);
//! - nothing added: no cookies or HTTP auth entries (`credentials: 'omit'`), no headers
//!   beyond the request's own (middleware set those), and a request carrying
//!   `Authorization`/`X-API-Key` never follows a redirect in a browser.
//! - dropping the future (a lost race, a cancelled job) aborts the request and clears
//!   the timer, so nothing keeps a Node process alive.

use super::{HttpRequest, HttpResponse};
use crate::error::{Error, ErrorCode, Result};
use gloo_net::http::{Headers, RequestBuilder};
use js_sys::{Reflect, Uint8Array};
use std::cell::Cell;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{AbortController, ReadableStreamDefaultReader, RequestCredentials, RequestRedirect, ResponseType};

#[wasm_bindgen]
extern "C" {
    /// The global scope's `fetch` (window, a Web Worker, or Node's globalThis).
    type FetchScope;
    #[wasm_bindgen(method, js_name = fetch)]
    fn fetch_with_request(this: &FetchScope, request: &web_sys::Request) -> js_sys::Promise;
    // The global timer functions: `window` does not exist in Node or in a Web Worker.
    #[wasm_bindgen(js_name = setTimeout)]
    fn set_timeout(f: &js_sys::Function, ms: f64) -> JsValue;
    #[wasm_bindgen(js_name = clearTimeout)]
    fn clear_timeout(id: &JsValue);
}

/// Headers `fetch` sets itself (and refuses or ignores when given), as in host-browser.js.
const FORBIDDEN: [&str; 3] = ["content-length", "host", "connection"];

fn global(path: &[&str]) -> JsValue {
    let mut v: JsValue = js_sys::global().into();
    for p in path {
        if v.is_undefined() || v.is_null() {
            return JsValue::UNDEFINED;
        }
        v = Reflect::get(&v, &JsValue::from_str(p)).unwrap_or(JsValue::UNDEFINED);
    }
    v
}

/// Whether this JS runtime has a global `fetch` (Node >= 18, every browser): without one
/// the platform sends everything through the host.
pub fn available() -> bool {
    global(&["fetch"]).is_function()
}

/// Node (not a browser): there is no CORS, and `redirect: 'manual'` hands back the real
/// 3xx answer, which the SDK follows itself (as it does over `node:http`).
fn in_node() -> bool {
    global(&["process", "versions", "node"]).is_string()
}

/// The error the hosts would give: `request failed: METHOD URL: reason`.
fn failure(code: ErrorCode, message: String) -> Error {
    Error::new(code, format!("request failed: {message}")).with_cause(message)
}

/// The request's deadline: a timer that aborts the controller. Dropping it (the request
/// finished, failed or was abandoned) clears the timer and aborts whatever is in flight.
struct Deadline {
    ctrl: AbortController,
    timer: JsValue,
    fired: Rc<Cell<bool>>,
    /// Resolves when the timer fires: every wait races it, so the deadline holds even
    /// where an abort does not reject a pending read (seen with Node's fetch mid-body).
    expired: js_sys::Promise,
    _on_fire: Closure<dyn FnMut()>,
}

impl Deadline {
    fn arm(ms: u64) -> Result<Self> {
        let ctrl = AbortController::new().map_err(|_| Error::new(ErrorCode::Unsupported, "AbortController is not available in this JS runtime"))?;
        let fired = Rc::new(Cell::new(false));
        let mut resolve: Option<js_sys::Function> = None;
        let expired = js_sys::Promise::new(&mut |res, _| resolve = Some(res));
        let on_fire = {
            let (ctrl, fired) = (ctrl.clone(), fired.clone());
            Closure::<dyn FnMut()>::new(move || {
                fired.set(true);
                ctrl.abort();
                if let Some(r) = &resolve {
                    let _ = r.call1(&JsValue::NULL, &JsValue::symbol(Some("sandrun-deadline")));
                }
            })
        };
        // setTimeout fires at once past 2^31-1 ms: clamp like the hosts do.
        let timer = set_timeout(on_fire.as_ref().unchecked_ref(), ms.min(super::MAX_TIMER_MS) as f64);
        Ok(Deadline { ctrl, timer, fired, expired, _on_fire: on_fire })
    }

    /// `wait`, unless the deadline passes first (then an error the caller maps to TIMEOUT).
    /// Raced in JS (`Promise.race`): one future per wait rather than two, which for a body
    /// read in hundreds of chunks made closures and garbage that showed in profiles.
    async fn within(&self, wait: js_sys::Promise) -> std::result::Result<JsValue, JsValue> {
        let raced = js_sys::Promise::race(&js_sys::Array::of2(&wait, &self.expired));
        let v = JsFuture::from(raced).await?;
        // `expired` resolves with its own promise's sentinel: nothing a read resolves with.
        if self.fired.get() && v.is_symbol() {
            return Err(JsValue::from_str("the deadline passed"));
        }
        Ok(v)
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        clear_timeout(&self.timer);
        self.ctrl.abort();
    }
}

enum Stop {
    TooLarge,
    Failed(String),
    /// The sink refused the body so far.
    Sink(Error),
    /// wasm memory could not hold the body.
    NoMemory,
}

/// Copy `chunk` to the end of `body`: one copy, out of JS into wasm memory. Room grows
/// to twice the bytes received, but no further than `expect` (the declared length,
/// `u64::MAX` if none) while more than that is due: an honest body ends in a buffer of
/// its exact size, and a lying Content-Length reserves no more than twice the bytes
/// actually sent (reserving it up front let a 10-byte answer declaring 130 MB grow wasm
/// memory, which never shrinks, by 130 MB, and one declaring more than 2 GiB trap). A
/// body past its declared length (decompressed by fetch) keeps doubling. Memory that
/// cannot be had is an error, never a trap.
fn append(body: &mut Vec<u8>, chunk: &Uint8Array, expect: u64) -> std::result::Result<(), Stop> {
    let (at, n) = (body.len(), chunk.length() as usize);
    let need = at.checked_add(n).ok_or(Stop::NoMemory)?;
    if need > body.capacity() {
        let double = (need as u64).saturating_mul(2);
        let to = (if expect >= need as u64 { expect.min(double) } else { double }).min(isize::MAX as u64) as usize;
        body.try_reserve_exact(to.max(need) - at).map_err(|_| Stop::NoMemory)?;
    }
    // SAFETY: the capacity is at least `at + n` (checked above); `raw_copy_to_ptr` writes
    // exactly `chunk.length()` bytes there, and only then does `set_len` count them.
    unsafe {
        chunk.raw_copy_to_ptr(body.as_mut_ptr().add(at));
        body.set_len(need);
    }
    Ok(())
}

/// Send `req` with fetch (gloo-net), under its deadline and body cap.
pub async fn send(req: &HttpRequest) -> Result<HttpResponse> {
    send_streamed(req, None).await
}

/// [`send`], handing a 2xx body to `sink` as it arrives ([`super::Platform::http_streamed`]).
pub async fn send_streamed(req: &HttpRequest, sink: Option<super::BodySink<'_>>) -> Result<HttpResponse> {
    let (method, url, cap, ms) = (req.method.as_str(), req.url.as_str(), req.body_cap(), req.deadline_ms());
    let deadline = Deadline::arm(ms)?;
    let too_large = || failure(ErrorCode::MalformedResponse, format!("{method} {url}: the answer is larger than {cap} bytes; stopped reading (a broken or hostile server)"));
    let node = in_node();
    let fail = |reason: String| {
        if deadline.fired.get() {
            failure(ErrorCode::Timeout, format!("{method} {url}: no answer within {ms} ms"))
        } else if node {
            failure(ErrorCode::Network, format!("{method} {url}: {reason} (is the server running?)"))
        } else {
            failure(ErrorCode::Network, format!("{method} {url}: {reason} (server down, or blocked by CORS)"))
        }
    };

    let headers = Headers::new();
    for (k, v) in &req.headers {
        if !FORBIDDEN.contains(&k.to_ascii_lowercase().as_str()) {
            headers.append(k, v);
        }
    }
    // A request carrying credentials must not be redirected by a browser (fetch keeps
    // X-API-Key across origins); in Node every redirect comes back to the SDK, which
    // follows the ones it needs as requests of their own that middleware sees.
    let credentials = req.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("authorization") || k.eq_ignore_ascii_case("x-api-key"));
    let redirect = if node || credentials { RequestRedirect::Manual } else { RequestRedirect::Follow };
    let builder = RequestBuilder::new(url)
        .method(method.parse().map_err(|_| Error::invalid(format!("not an HTTP method: {method:?}")))?)
        .headers(headers)
        .credentials(RequestCredentials::Omit)
        .redirect(redirect)
        .abort_signal(Some(&deadline.ctrl.signal()));
    let request = if method == "GET" || method == "HEAD" {
        builder.build()
    } else {
        builder.body(Uint8Array::from(&req.body[..]))
    }
    .map_err(|e| fail(e.to_string()))?;
    // gloo-net builds the request; the send is raced against the deadline too (a server
    // that never sends headers), so it goes through the scope's fetch directly.
    let raw: web_sys::Request = request.into();
    let sent: web_sys::Response = deadline
        .within(js_sys::global().unchecked_into::<FetchScope>().fetch_with_request(&raw))
        .await
        .map_err(|e| fail(js_reason(&e)))?
        .unchecked_into();
    let res = gloo_net::http::Response::from(sent);
    if res.type_() == ResponseType::Opaqueredirect {
        return Err(failure(
            ErrorCode::Network,
            format!("{method} {url}: answered a redirect, which a request carrying credentials does not follow in a browser (the browser would send them to the new origin)"),
        ));
    }
    let status = res.status();
    let out_headers: Vec<(String, String)> = res.headers().entries().collect();
    let declared = out_headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("content-length")).and_then(|(_, v)| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > cap) {
        return Err(too_large());
    }
    // Without a sink, the chunks stay in JS until the body is complete, then are copied
    // into wasm memory once, into a buffer of the exact size: copying each chunk as it
    // came (to_vec, then into a growing Vec) cost three copies of a 32 MiB IPFS CAR
    // (bench/ipfs.mjs). A sink needs the bytes in wasm memory as they come: each chunk
    // is copied once, straight into the body.
    let mut sink = sink.filter(|_| (200..300).contains(&status));
    let mut chunks: Vec<Uint8Array> = Vec::new();
    let mut body: Vec<u8> = Vec::new();
    let no_memory = |size: u64| failure(ErrorCode::MalformedResponse, format!("{method} {url}: the answer ({size} bytes so far) does not fit in memory; stopped reading"));
    let mut size = 0u64;
    if let Some(stream) = res.body() {
        let reader: ReadableStreamDefaultReader = stream.get_reader().unchecked_into();
        let read = async {
            loop {
                let chunk = deadline.within(reader.read()).await.map_err(|e| Stop::Failed(js_reason(&e)))?;
                if Reflect::get(&chunk, &JsValue::from_str("done")).ok().and_then(|d| d.as_bool()).unwrap_or(true) {
                    return Ok(());
                }
                // The chunk itself, not `new Uint8Array(chunk)` (a copy of every chunk).
                let value: Uint8Array = match Reflect::get(&chunk, &JsValue::from_str("value")).ok().and_then(|v| v.dyn_into().ok()) {
                    Some(v) => v,
                    None => return Err(Stop::Failed("the body stream gave a chunk that is not a Uint8Array".into())),
                };
                size += value.length() as u64;
                if size > cap {
                    return Err(Stop::TooLarge);
                }
                match sink.as_mut() {
                    Some(sink) => {
                        append(&mut body, &value, declared.unwrap_or(u64::MAX))?;
                        sink(&body).map_err(Stop::Sink)?;
                    }
                    None => chunks.push(value),
                }
            }
        };
        match read.await {
            Ok(()) => {}
            Err(Stop::TooLarge) => return Err(too_large()),
            Err(Stop::Failed(reason)) => return Err(fail(reason)),
            Err(Stop::Sink(e)) => return Err(e),
            Err(Stop::NoMemory) => return Err(no_memory(size)),
        }
    }
    if !chunks.is_empty() {
        body.try_reserve_exact(usize::try_from(size).unwrap_or(usize::MAX)).map_err(|_| no_memory(size))?;
        for c in &chunks {
            append(&mut body, c, size).map_err(|_| no_memory(size))?;
        }
    }
    drop(chunks);
    // Dropping `deadline` here clears the timer; the abort it sends to a finished request
    // does nothing.
    drop(deadline);
    Ok(HttpResponse { status, headers: out_headers, body })
}

/// A JS rejection's message, for the error text.
fn js_reason(e: &JsValue) -> String {
    Reflect::get(e, &JsValue::from_str("message")).ok().and_then(|m| m.as_string()).unwrap_or_else(|| format!("{e:?}"))
}
