//! Plugins and middleware: the extensibility layer.
//!
//! - A [`Middleware`] wraps every network operation (each HTTP request and WebSocket the
//!   SDK makes, to workers, registries, chains or gateways). The first registered is the
//!   outermost. It gets `next` (callable more than once, to retry), and the context:
//!   which operation, which endpoint, which attempt. It may short-circuit, retry or
//!   decorate the response.
//! - A [`Plugin`] has lifecycle hooks, run in registration order: `on_init` once per client
//!   configuration, `on_submit` (may rewrite the job), `on_result` (may rewrite the
//!   result), `on_error` (may replace the error). A failing hook fails the operation with
//!   `PLUGIN_FAILED` naming the plugin. A plugin may also bring a middleware.

use crate::error::{Error, ErrorCode, Result};
use crate::platform::{HttpRequest, HttpResponse, LocalFuture, Platform, WebSocket};
use crate::types::JobResult;
use serde::Serialize;
use std::cell::Cell;
use std::rc::Rc;

/// What a middleware is told about the operation it wraps.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OpContext {
    /// `submit`, `status`, `logs`, `download`, `health`, `outputs`, `stream`,
    /// `registry.<path>` (requests to the configured `registryEndpoint` only), `fetch`
    /// (anything else). A name for metrics and logs: it comes partly from the path, so
    /// decisions about credentials use [`Self::service`], which comes from the origin.
    pub operation: String,
    /// The server's base URL (scheme, host and port) as written in the request URL.
    pub endpoint: String,
    /// The request's origin normalised (`scheme://host[:port]`, lowercase, default port
    /// dropped); `None` when the URL is not a plain `http(s)://host[:port]` one (userinfo,
    /// backslashes, percent-encoded or non-ASCII hosts), which then matches no origin.
    pub origin: Option<String>,
    /// Which configured server the request goes to, by exact origin: `worker` (the
    /// `apiEndpoint`), `registry` (`registryEndpoint`), `gateway` (`ipfsGateway`) or
    /// `other` (pool workers, archive and script hosts, redirect targets, chains, ...).
    /// The apiEndpoint wins when origins coincide.
    pub service: String,
    pub method: String,
    pub url: String,
    /// 1 for the first call of `next`, 2 for the first retry, ...
    pub attempt: u32,
    /// Headers a middleware adds to the request before calling `next` (e.g. auth).
    pub headers: std::collections::BTreeMap<String, String>,
}

/// `scheme://host[:port]` of an `http(s)` URL, normalised as a browser's URL parser
/// does for plain URLs (lowercase scheme and host, default port dropped, empty port
/// ignored). `None` for anything unusual (userinfo, `\\`, `%`, non-ASCII or empty host,
/// a port that is not a number): such a URL matches no configured origin, so no check
/// can be fooled by a parser that reads it differently from the transport.
pub fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']')?;
        if h.is_empty() || !h.chars().all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.') {
            return None;
        }
        let port = match after {
            "" => None,
            a => Some(a.strip_prefix(':')?),
        };
        (format!("[{}]", h.to_ascii_lowercase()), port)
    } else {
        let (h, p) = match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        if h.is_empty() || !h.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_') {
            return None;
        }
        (h.to_ascii_lowercase(), p)
    };
    let port = match port {
        None | Some("") => default_port,
        Some(p) if p.len() <= 5 && p.chars().all(|c| c.is_ascii_digit()) => p.parse::<u16>().ok()?,
        Some(_) => return None,
    };
    Some(if port == default_port { format!("{scheme}://{host}") } else { format!("{scheme}://{host}:{port}") })
}

/// The origins a client is configured with, to say where a request goes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KnownOrigins {
    pub worker: Option<String>,
    pub registry: Option<String>,
    pub gateway: Option<String>,
}

impl KnownOrigins {
    pub fn of(config: &crate::config::SandrunConfig) -> KnownOrigins {
        KnownOrigins {
            worker: origin_of(&config.endpoint()),
            registry: config.registry_endpoint.as_deref().and_then(origin_of),
            gateway: config.ipfs_gateway.as_deref().and_then(origin_of),
        }
    }

    /// `worker`, `registry`, `gateway` or `other` (see [`OpContext::service`]).
    pub fn service(&self, origin: Option<&str>) -> &'static str {
        let Some(o) = origin else { return "other" };
        let is = |k: &Option<String>| k.as_deref() == Some(o);
        if is(&self.worker) {
            "worker"
        } else if is(&self.registry) {
            "registry"
        } else if is(&self.gateway) {
            "gateway"
        } else {
            "other"
        }
    }
}

/// Name an HTTP request as an SDK operation, for a client configured with `known`.
pub fn operation_of(req: &HttpRequest, known: &KnownOrigins) -> OpContext {
    let after_scheme = req.url.find("://").map(|i| i + 3).unwrap_or(0);
    let path_at = req.url[after_scheme..].find(['/', '?', '#']).map(|i| i + after_scheme).unwrap_or(req.url.len());
    let endpoint = req.url[..path_at].to_string();
    let path = &req.url[path_at..];
    let first = path.trim_start_matches('/').split(['/', '?', '#']).next().unwrap_or("");
    let origin = origin_of(&req.url);
    let service = known.service(origin.as_deref());
    let worker_op = matches!(first, "submit" | "status" | "logs" | "download" | "outputs" | "health" | "stats" | "stream");
    let operation = if service == "registry" {
        format!("registry.{first}")
    } else if worker_op {
        first.to_string()
    } else {
        "fetch".to_string()
    };
    OpContext { operation, endpoint, origin, service: service.to_string(), method: req.method.clone(), url: req.url.clone(), attempt: 1, headers: Default::default() }
}

/// Wraps network operations.
pub trait Middleware {
    /// For error messages.
    fn name(&self) -> String;
    fn execute(self: Rc<Self>, next: Next, ctx: OpContext) -> LocalFuture<'static, Result<HttpResponse>>;
    /// True for a middleware that retries operations itself (`retryPlugin`): while one is
    /// registered the core makes no retries of its own (`defaults.retries` is not
    /// used), so the attempts a server sees are the ones that middleware allows.
    fn owns_retries(&self) -> bool {
        false
    }
}

/// `SandrunConfig.authentication` applied to every request to the configured registry
/// and gateway (matched by exact origin), and to nothing else: never a worker, an
/// archive host, a chain RPC or a redirect target on another origin.
pub struct ConfigAuth {
    headers: std::collections::BTreeMap<String, String>,
}

impl ConfigAuth {
    /// `None` when the config carries no credentials.
    pub fn of(config: &crate::config::SandrunConfig) -> Option<ConfigAuth> {
        let a = config.authentication.as_ref()?;
        let mut headers = std::collections::BTreeMap::new();
        if let Some(t) = &a.token {
            headers.insert("Authorization".to_string(), format!("Bearer {t}"));
        }
        if let Some(k) = &a.api_key {
            headers.insert("X-API-Key".to_string(), k.clone());
        }
        (!headers.is_empty()).then_some(ConfigAuth { headers })
    }
}

impl Middleware for ConfigAuth {
    fn name(&self) -> String {
        "authentication".into()
    }
    fn execute(self: Rc<Self>, next: Next, ctx: OpContext) -> LocalFuture<'static, Result<HttpResponse>> {
        let covered = ctx.service == "registry" || ctx.service == "gateway";
        Box::pin(async move { if covered { next.with_headers(&self.headers).run().await } else { next.run().await } })
    }
}

/// The rest of the chain; `run()` may be called several times: the layer below sees
/// each call as its next attempt.
#[derive(Clone)]
pub struct Next {
    chain: Rc<[Rc<dyn Middleware>]>,
    index: usize,
    base: Rc<dyn Platform>,
    req: Rc<HttpRequest>,
    calls: Rc<Cell<u32>>,
    known: Rc<KnownOrigins>,
}

impl Next {
    /// The same `next` with extra request headers (replacing same-named ones).
    pub fn with_headers(&self, headers: &std::collections::BTreeMap<String, String>) -> Next {
        if headers.is_empty() {
            return self.clone();
        }
        let mut req = (*self.req).clone();
        for (k, v) in headers {
            req.headers.retain(|(h, _)| !h.eq_ignore_ascii_case(k));
            req.headers.push((k.clone(), v.clone()));
        }
        Next { req: Rc::new(req), ..self.clone() }
    }

    pub fn run(&self) -> LocalFuture<'static, Result<HttpResponse>> {
        self.calls.set(self.calls.get() + 1);
        let attempt = self.calls.get();
        let this = self.clone();
        Box::pin(async move {
            match this.chain.get(this.index) {
                Some(m) => {
                    let mut ctx = operation_of(&this.req, &this.known);
                    ctx.attempt = attempt;
                    let inner = Next { index: this.index + 1, calls: Rc::new(Cell::new(0)), ..this.clone() };
                    m.clone().execute(inner, ctx).await
                }
                None => this.base.http((*this.req).clone()).await,
            }
        })
    }
}

/// A platform whose HTTP goes through a middleware chain.
pub struct MiddlewarePlatform {
    base: Rc<dyn Platform>,
    chain: Rc<[Rc<dyn Middleware>]>,
    known: Rc<KnownOrigins>,
}

impl MiddlewarePlatform {
    /// `known`: the origins of the client this platform serves, for
    /// [`OpContext::service`].
    pub fn new(base: Rc<dyn Platform>, chain: Vec<Rc<dyn Middleware>>, known: KnownOrigins) -> Self {
        MiddlewarePlatform { base, chain: chain.into(), known: Rc::new(known) }
    }
}

/// Whether any middleware in `chain` owns retries (see [`Middleware::owns_retries`]).
pub fn retries_owned(chain: &[Rc<dyn Middleware>]) -> bool {
    chain.iter().any(|m| m.owns_retries())
}

impl Platform for MiddlewarePlatform {
    fn http(&self, req: HttpRequest) -> LocalFuture<'_, Result<HttpResponse>> {
        let next = Next { chain: self.chain.clone(), index: 0, base: self.base.clone(), req: Rc::new(req), calls: Rc::new(Cell::new(0)), known: self.known.clone() };
        next.run()
    }
    fn http_streamed<'a>(&'a self, req: HttpRequest, sink: crate::platform::BodySink<'a>) -> LocalFuture<'a, Result<HttpResponse>> {
        // Middleware may answer with other bytes than the server's (a cache, a rewrite):
        // only a body no middleware can touch is streamed to the sink.
        if self.chain.is_empty() {
            return self.base.http_streamed(req, sink);
        }
        crate::platform::whole_then_sink(self.http(req), sink)
    }
    fn sleep(&self, ms: u64) -> LocalFuture<'_, ()> {
        self.base.sleep(ms)
    }
    fn now_ms(&self) -> f64 {
        self.base.now_ms()
    }
    fn websocket(&self, url: &str) -> LocalFuture<'_, Result<Option<Box<dyn WebSocket>>>> {
        self.base.websocket(url)
    }
    fn read_file(&self, path: &str) -> LocalFuture<'_, Result<Vec<u8>>> {
        self.base.read_file(path)
    }
    fn read_dir(&self, path: &str) -> LocalFuture<'_, Result<Vec<(String, bool)>>> {
        self.base.read_dir(path)
    }
    fn write_file(&self, path: &str, bytes: &[u8]) -> LocalFuture<'_, Result<()>> {
        self.base.write_file(path, bytes)
    }
    fn sha256(&self, bytes: &[u8]) -> LocalFuture<'_, Result<[u8; 32]>> {
        self.base.sha256(bytes)
    }
    fn sha256_hex(&self, bytes: &[u8]) -> LocalFuture<'_, String> {
        self.base.sha256_hex(bytes)
    }
    fn sha256_hex_now(&self, bytes: &[u8]) -> Option<String> {
        self.base.sha256_hex_now(bytes)
    }
    fn sha256_now(&self, bytes: &[u8]) -> Option<[u8; 32]> {
        self.base.sha256_now(bytes)
    }
    fn gzip(&self, parts: &[&[u8]]) -> LocalFuture<'_, Result<Vec<u8>>> {
        self.base.gzip(parts)
    }
    // Files, and output downloads streamed into them, go straight to the host: the
    // middleware chain sees whole responses only, and a streamed download is not one.
    fn lstat(&self, path: &str) -> LocalFuture<'_, Result<crate::platform::PathKind>> {
        self.base.lstat(path)
    }
    fn make_dir(&self, path: &str) -> LocalFuture<'_, Result<()>> {
        self.base.make_dir(path)
    }
    fn http_to_file(&self, req: HttpRequest, path: Option<&str>) -> LocalFuture<'_, Result<crate::platform::FileResponse>> {
        self.base.http_to_file(req, path)
    }
    fn write_new_file(&self, path: &str, bytes: &[u8]) -> LocalFuture<'_, Result<()>> {
        self.base.write_new_file(path, bytes)
    }
    fn commit_file(&self, from: &str, to: &str, replace: bool) -> LocalFuture<'_, Result<()>> {
        self.base.commit_file(from, to, replace)
    }
    fn remove_file(&self, path: &str) -> LocalFuture<'_, Result<()>> {
        self.base.remove_file(path)
    }
}

pub use crate::job::JobDescription;

/// Lifecycle hooks. Every hook has a default that changes nothing.
pub trait Plugin {
    fn name(&self) -> String;
    fn version(&self) -> String;
    fn on_init(self: Rc<Self>, _config: crate::config::SandrunConfig) -> LocalFuture<'static, Result<()>> {
        Box::pin(async { Ok(()) })
    }
    fn on_submit(self: Rc<Self>, job: JobDescription) -> LocalFuture<'static, Result<JobDescription>> {
        Box::pin(async move { Ok(job) })
    }
    fn on_result(self: Rc<Self>, result: JobResult) -> LocalFuture<'static, Result<JobResult>> {
        Box::pin(async move { Ok(result) })
    }
    fn on_error(self: Rc<Self>, error: Error, _context: serde_json::Value) -> LocalFuture<'static, Result<Error>> {
        Box::pin(async move { Ok(error) })
    }
    /// A middleware this plugin adds to every network operation.
    fn middleware(&self) -> Option<Rc<dyn Middleware>> {
        None
    }
}

/// A hook failure, naming the plugin.
pub fn plugin_failed(plugin: &str, hook: &str, e: Error) -> Error {
    if e.code == ErrorCode::PluginFailed && e.message.starts_with("plugin ") {
        return e;
    }
    Error::new(ErrorCode::PluginFailed, format!("plugin {plugin:?} failed in {hook}: {}", e.message)).with_cause(e.message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_operations() {
        let known = KnownOrigins { worker: Some("http://127.0.0.1:7".into()), registry: Some("http://127.0.0.1:8".into()), gateway: None };
        let op = |m: &str, u: &str, json: bool| {
            let mut r = HttpRequest::get(u);
            r.method = m.into();
            if json {
                r.headers.push(("Content-Type".into(), "application/json".into()));
            }
            operation_of(&r, &known)
        };
        assert_eq!(op("POST", "http://127.0.0.1:7/submit", false).operation, "submit");
        assert_eq!(op("GET", "http://127.0.0.1:7/status/job_1_1", false).operation, "status");
        assert_eq!(op("POST", "http://127.0.0.1:8/claim", true).operation, "registry.claim");
        assert_eq!(op("POST", "http://127.0.0.1:8/submit", true).operation, "registry.submit");
        assert_eq!(op("GET", "http://127.0.0.1:8/health", false).operation, "registry.health");
        assert_eq!(op("GET", "http://h:1/archive/x.tar.gz", false).operation, "fetch");
        assert_eq!(op("GET", "http://h:1/download/j/a.txt", false).endpoint, "http://h:1");
        // A registry-looking path on another origin is not the registry.
        let c = op("POST", "http://127.0.0.1:9/claim/x", true);
        assert_eq!((c.operation.as_str(), c.service.as_str()), ("fetch", "other"));
        assert_eq!(op("POST", "http://127.0.0.1:9/register", true).service, "other");
        assert_eq!(op("POST", "http://127.0.0.1:7/submit", false).service, "worker");
        assert_eq!(op("GET", "http://127.0.0.1:8/nodes", false).service, "registry");
    }

    #[test]
    fn origins_are_exact_and_normalised() {
        assert_eq!(origin_of("HTTP://Registry.Example.COM:80/nodes").as_deref(), Some("http://registry.example.com"));
        assert_eq!(origin_of("https://r.example.com:443").as_deref(), Some("https://r.example.com"));
        assert_eq!(origin_of("https://r.example.com:8443/x?y#z").as_deref(), Some("https://r.example.com:8443"));
        assert_eq!(origin_of("http://r.example.com:/x").as_deref(), Some("http://r.example.com"));
        assert_eq!(origin_of("http://[::1]:7703/nodes").as_deref(), Some("http://[::1]:7703"));
        assert_eq!(origin_of("http://r.example.com?q").as_deref(), Some("http://r.example.com"));
        // What a different parser could read as another host matches nothing.
        for odd in [
            "http://r.example.com@evil.com/",
            "http://r.example.com\\@evil.com/",
            "http://user:pw@r.example.com/",
            "http://r.example.com:7703.evil.com/",
            "http://%72.example.com/",
            "http://r\u{e9}.example.com/",
            "http:///nodes",
            "ftp://r.example.com/",
            "http://r.example.com:99999/",
            "r.example.com/nodes",
        ] {
            assert_eq!(origin_of(odd), None, "{odd}");
        }
        let known = KnownOrigins::of(&crate::config::SandrunConfig {
            api_endpoint: Some("http://127.0.0.1:7700".into()),
            registry_endpoint: Some("http://LOCALHOST:7703/".into()),
            ipfs_gateway: Some("https://gw.example.com:443/ipfs".into()),
            ..Default::default()
        });
        assert_eq!(known.service(origin_of("http://localhost:7703/nodes").as_deref()), "registry");
        assert_eq!(known.service(origin_of("https://gw.example.com/ipfs/x").as_deref()), "gateway");
        assert_eq!(known.service(origin_of("http://127.0.0.1:7700/submit").as_deref()), "worker");
        // Same host, another port or scheme: another origin.
        assert_eq!(known.service(origin_of("http://localhost:7704/nodes").as_deref()), "other");
        assert_eq!(known.service(origin_of("https://localhost:7703/nodes").as_deref()), "other");
        assert_eq!(known.service(origin_of("http://localhost:7703.evil.com/nodes").as_deref()), "other");
        assert_eq!(known.service(None), "other");
    }
}

#[cfg(test)]
mod rust_plugin_tests {
    //! Plugins and middleware written in Rust, against the core (no JS involved).
    use super::*;
    use crate::platform::native::NativePlatform;
    use crate::{JobBuilder, Sandrun, SandrunConfig};
    use std::cell::RefCell;

    fn run<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
    }

    /// Answers `/health` itself and records what passed through, outermost first.
    struct Canned(Rc<RefCell<Vec<String>>>, &'static str);
    impl Middleware for Canned {
        fn name(&self) -> String {
            self.1.into()
        }
        fn execute(self: Rc<Self>, next: Next, ctx: OpContext) -> LocalFuture<'static, Result<HttpResponse>> {
            Box::pin(async move {
                self.0.borrow_mut().push(format!("{}:{}#{}", self.1, ctx.operation, ctx.attempt));
                if self.1 == "inner" {
                    return Ok(HttpResponse { status: 200, headers: vec![], body: br#"{"status":"healthy","worker_id":"canned"}"#.to_vec() });
                }
                // Retry once, to show `next` can be called again.
                let _ = next.run().await;
                next.run().await
            })
        }
    }

    struct AddArg;
    impl Plugin for AddArg {
        fn name(&self) -> String {
            "add-arg".into()
        }
        fn version(&self) -> String {
            "1".into()
        }
        fn on_submit(self: Rc<Self>, mut job: JobDescription) -> LocalFuture<'static, Result<JobDescription>> {
            Box::pin(async move {
                job.args.push("added".into());
                Ok(job)
            })
        }
    }

    #[test]
    fn rust_middleware_short_circuits_and_retries_in_order() {
        let seen = Rc::new(RefCell::new(Vec::new()));
        let s = Sandrun::new(SandrunConfig { api_endpoint: Some("http://127.0.0.1:9".into()), ..Default::default() }, Rc::new(NativePlatform::default()))
            .unwrap()
            .with_middleware(Rc::new(Canned(seen.clone(), "outer")))
            .with_middleware(Rc::new(Canned(seen.clone(), "inner")));
        let id = run(s.worker().health()).unwrap();
        assert_eq!(id.as_deref(), Some("canned"));
        assert_eq!(*seen.borrow(), ["outer:health#1", "inner:health#1", "inner:health#2"]);
    }

    #[test]
    fn rust_plugin_rewrites_the_job_and_a_bad_rewrite_names_it() {
        let s = Sandrun::new(SandrunConfig::default(), Rc::new(NativePlatform::default())).unwrap().use_plugin(Rc::new(AddArg));
        let job = JobBuilder::new().code("print(1)").unwrap().args(vec!["given".into()]).unwrap();
        let rewritten = run(s.hook_submit(&job)).unwrap();
        assert_eq!(rewritten.spec().args, ["given", "added"]);
        assert_eq!(job.spec().args, ["given"], "the original job is unchanged");
        let bad = JobBuilder::new().code("print(1)").unwrap().args(vec!["a\"b".into()]);
        assert!(bad.is_err());
        let e = plugin_failed("add-arg", "onSubmit", Error::invalid("x"));
        assert_eq!(e.code, ErrorCode::PluginFailed);
        assert!(e.message.contains("add-arg"));
    }
}
