//! JS plugins and middleware behind the core's `Plugin` and `Middleware` traits.

use super::convert::{err, from_js, to_js};
use crate::error::{Error, ErrorCode, Result};
use crate::job::JobDescription;
use crate::platform::{HttpResponse, LocalFuture};
use crate::plugin::{Middleware, Next, OpContext, Plugin};
use crate::types::JobResult;
use js_sys::{Array, Function, Promise, Reflect, Uint8Array};
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{future_to_promise, JsFuture};

#[wasm_bindgen(typescript_custom_section)]
const TS: &str = r#"
import type { SandrunError } from './index.js';
/** What a middleware is told about the operation it wraps. */
export interface MiddlewareContext {
  /** `submit`, `status`, `logs`, `download`, `outputs`, `health`, `stats`, `registry.<path>`
   * (requests to `registryEndpoint`), `fetch`. For metrics and logs: partly from the path. */
  operation: string;
  /** Scheme, host and port of the server, as written in the URL. */
  endpoint: string;
  /** The normalised origin (`scheme://host[:port]`, lowercase, default port dropped), or
   * null for a URL that is not a plain `http(s)://host[:port]/...` (userinfo, `%`, ...). */
  origin: string | null;
  /** Which configured server the request goes to, by exact origin: the `apiEndpoint`
   * (`worker`), `registryEndpoint` (`registry`), `ipfsGateway` (`gateway`), or `other`
   * (pool workers, archive hosts, redirect targets, chains). Decide credentials on this. */
  service: 'worker' | 'registry' | 'gateway' | 'other';
  method: string;
  url: string;
  /** 1 for the first call of `next`, 2 for the first retry, ... */
  attempt: number;
  /** Set entries here before calling `next()` to add request headers (e.g. auth). */
  headers: Record<string, string>;
}
/** What `next()` resolves with inside a middleware: the HTTP answer. */
export interface OperationResponse { status: number; headers: [string, string][]; body: Uint8Array }
/** Wraps every network operation; the first registered is the outermost. */
export interface Middleware {
  name?: string;
  /** True when this middleware retries operations itself: while one is registered, the
   * SDK makes no retries of its own (`defaults.retries` is not used), so a server sees
   * exactly the attempts this middleware makes. `retryPlugin` sets it. */
  ownsRetries?: boolean;
  execute<T = OperationResponse>(next: () => Promise<T>, context: MiddlewareContext): Promise<T>;
}
/** Lifecycle hooks, run in registration order. */
export interface Plugin {
  name: string;
  version: string;
  onInit?(config: SandrunConfig): Promise<void> | void;
  /** Called with every builder the client creates (`job()`, `pool()`, `node()`, `proof()`). */
  onBuild?<T>(builder: SandrunBuilder<T>): void;
  /** May return the job, another `Job` or a `JobDescription` with changed settings (the
   * code and files stay as submitted). */
  onSubmit?(job: Job): Promise<Job | JobDescription | void> | Job | JobDescription | void;
  onResult?(result: JobResult): Promise<JobResult | void> | JobResult | void;
  onError?(error: SandrunError, context: { operation: string; jobId?: string; worker?: string }): Promise<Error | void> | Error | void;
  /** A middleware the plugin adds to every network operation. */
  middleware?: Middleware;
}
"#;

fn js_message(v: &JsValue) -> String {
    Reflect::get(v, &"message".into()).ok().and_then(|m| m.as_string()).or_else(|| v.as_string()).unwrap_or_else(|| format!("{v:?}"))
}

/// A JS error back to a core error: a `SandrunError` keeps its code; anything else is the
/// plugin's own failure.
fn error_from_js(v: &JsValue, who: &str) -> Error {
    let code = Reflect::get(v, &"code".into()).ok().and_then(|c| c.as_string()).and_then(|c| ErrorCode::parse(&c));
    match code {
        Some(code) => {
            let mut e = Error::new(code, js_message(v));
            e.status = Reflect::get(v, &"status".into()).ok().and_then(|s| s.as_f64()).map(|s| s as u16);
            e.retry_after_ms = Reflect::get(v, &"retryAfterMs".into()).ok().and_then(|s| s.as_f64()).map(|s| s as u64);
            // An onError hook that returns the error it was given must not strip what the
            // caller needs to act on it (an escrow key to refund, every replica's outcome).
            e.details = Reflect::get(v, &"details".into())
                .ok()
                .filter(|d| !d.is_undefined() && !d.is_null())
                .and_then(|d| serde_wasm_bindgen::from_value::<serde_json::Value>(d).ok());
            e.cause = Reflect::get(v, &"cause".into()).ok().filter(|c| !c.is_undefined() && !c.is_null()).map(|c| {
                c.as_string().unwrap_or_else(|| js_message(&c))
            });
            e
        }
        None => Error::new(ErrorCode::PluginFailed, format!("{who} threw: {}", js_message(v))),
    }
}

/// Call `obj[hook](...args)` if it is a function, awaiting a returned promise.
async fn call_hook(obj: &JsValue, hook: &str, args: &[JsValue], who: &str) -> Result<Option<JsValue>> {
    let f = Reflect::get(obj, &hook.into()).unwrap_or(JsValue::UNDEFINED);
    let Some(f) = f.dyn_ref::<Function>() else { return Ok(None) };
    let arr = Array::new();
    for a in args {
        arr.push(a);
    }
    let ret = f.apply(obj, &arr).map_err(|e| error_from_js(&e, who))?;
    let v = JsFuture::from(Promise::resolve(&ret)).await.map_err(|e| error_from_js(&e, who))?;
    Ok(if v.is_undefined() || v.is_null() { None } else { Some(v) })
}

fn core<T>(r: std::result::Result<T, JsValue>) -> Result<T> {
    r.map_err(|e| error_from_js(&e, "conversion"))
}

/// A plugin written in JS: `{ name, version, onInit?, onBuild?, onSubmit?, onResult?, onError?, middleware? }`.
pub struct JsPlugin {
    obj: JsValue,
    name: String,
    version: String,
    middleware: Option<Rc<dyn Middleware>>,
}

impl JsPlugin {
    /// Check the shape now, at `use()`.
    pub fn new(obj: JsValue) -> std::result::Result<JsPlugin, JsValue> {
        let s = |k: &str| Reflect::get(&obj, &k.into()).ok().and_then(|v| v.as_string()).filter(|v| !v.is_empty());
        let (Some(name), Some(version)) = (s("name"), s("version")) else {
            return Err(err(Error::invalid("use() takes a Plugin: an object with string `name` and `version` and optional hooks")));
        };
        for hook in ["onInit", "onBuild", "onSubmit", "onResult", "onError"] {
            let v = Reflect::get(&obj, &hook.into())?;
            if !(v.is_undefined() || v.is_function()) {
                return Err(err(Error::invalid(format!("plugin {name:?}: {hook} must be a function"))));
            }
        }
        let m = Reflect::get(&obj, &"middleware".into())?;
        let middleware = if m.is_undefined() { None } else { Some(Rc::new(JsMiddleware::new(m, &name)?) as Rc<dyn Middleware>) };
        Ok(JsPlugin { obj, name, version, middleware })
    }

    /// `onBuild(builder)`, synchronously; a throw fails the builder call.
    pub fn on_build(&self, builder: &JsValue) -> std::result::Result<(), JsValue> {
        if let Some(f) = Reflect::get(&self.obj, &"onBuild".into())?.dyn_ref::<Function>() {
            f.call1(&self.obj, builder)
                .map_err(|e| err(crate::plugin::plugin_failed(&self.name, "onBuild", error_from_js(&e, "onBuild"))))?;
        }
        Ok(())
    }
}

impl Plugin for JsPlugin {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn version(&self) -> String {
        self.version.clone()
    }
    fn on_init(self: Rc<Self>, config: crate::config::SandrunConfig) -> LocalFuture<'static, Result<()>> {
        Box::pin(async move {
            let c = core(to_js(&config))?;
            call_hook(&self.obj, "onInit", &[c], &self.name).await.map(|_| ())
        })
    }
    fn on_submit(self: Rc<Self>, job: JobDescription) -> LocalFuture<'static, Result<JobDescription>> {
        Box::pin(async move {
            // The spec's `onSubmit(job: Job)`: the plugin sees a `Job` value and returns a
            // `Job` (this one, or one with changed settings) or a plain description.
            let j: JsValue = super::job::Job::described(job.clone()).into();
            match call_hook(&self.obj, "onSubmit", &[j], &self.name).await? {
                Some(v) => {
                    let to_json = Reflect::get(&v, &"toJSON".into()).ok().and_then(|f| f.dyn_into::<Function>().ok());
                    let v = match to_json {
                        Some(f) => f.call0(&v).map_err(|e| error_from_js(&e, &self.name))?,
                        None => v,
                    };
                    core(from_js(v, "onSubmit's returned job"))
                }
                None => Ok(job),
            }
        })
    }
    fn on_result(self: Rc<Self>, result: JobResult) -> LocalFuture<'static, Result<JobResult>> {
        Box::pin(async move {
            let r = core(to_js(&result))?;
            match call_hook(&self.obj, "onResult", &[r], &self.name).await? {
                Some(v) => core(from_js(v, "onResult's returned result")),
                None => Ok(result),
            }
        })
    }
    fn on_error(self: Rc<Self>, error: Error, context: serde_json::Value) -> LocalFuture<'static, Result<Error>> {
        Box::pin(async move {
            let (e, c) = (err(error.clone()), core(to_js(&context))?);
            match call_hook(&self.obj, "onError", &[e, c], &self.name).await? {
                Some(v) => {
                    // A plain Error keeps the original code; a SandrunError brings its own.
                    let mut replaced = error_from_js(&v, &self.name);
                    if replaced.code == ErrorCode::PluginFailed {
                        replaced = Error { message: js_message(&v), ..error };
                    }
                    Ok(replaced)
                }
                None => Ok(error),
            }
        })
    }
    fn middleware(&self) -> Option<Rc<dyn Middleware>> {
        self.middleware.clone()
    }
}

/// A middleware written in JS: `{ execute(next, context) }`.
pub struct JsMiddleware {
    obj: JsValue,
    name: String,
    owns_retries: bool,
}

impl JsMiddleware {
    pub fn new(obj: JsValue, owner: &str) -> std::result::Result<JsMiddleware, JsValue> {
        let exec = Reflect::get(&obj, &"execute".into()).unwrap_or(JsValue::UNDEFINED);
        if !exec.is_function() {
            return Err(err(Error::invalid(format!("{owner}: a Middleware needs an execute(next, context) function"))));
        }
        let name = Reflect::get(&obj, &"name".into()).ok().and_then(|v| v.as_string()).unwrap_or_else(|| owner.to_string());
        let owns_retries = Reflect::get(&obj, &"ownsRetries".into()).ok().and_then(|v| v.as_bool()) == Some(true);
        Ok(JsMiddleware { obj, name, owns_retries })
    }
}

fn response_to_js(r: &HttpResponse) -> JsValue {
    let o = js_sys::Object::new();
    let headers = Array::new();
    for (k, v) in &r.headers {
        headers.push(&Array::of2(&k.into(), &v.into()));
    }
    let _ = Reflect::set(&o, &"status".into(), &JsValue::from(r.status));
    let _ = Reflect::set(&o, &"headers".into(), &headers);
    let _ = Reflect::set(&o, &"body".into(), &Uint8Array::from(&r.body[..]));
    o.into()
}

fn response_from_js(v: &JsValue, who: &str) -> Result<HttpResponse> {
    let status = Reflect::get(v, &"status".into()).ok().and_then(|s| s.as_f64());
    let body = Reflect::get(v, &"body".into()).unwrap_or(JsValue::UNDEFINED);
    let Some(status) = status else {
        return Err(Error::new(ErrorCode::PluginFailed, format!("middleware {who} resolved with something that is not a response ({{ status, headers, body }})")));
    };
    let body = if body.is_instance_of::<Uint8Array>() { Uint8Array::new(&body).to_vec() } else { body.as_string().unwrap_or_default().into_bytes() };
    let mut headers = Vec::new();
    if let Ok(h) = Reflect::get(v, &"headers".into()) {
        if Array::is_array(&h) {
            for pair in Array::from(&h).iter() {
                let p = Array::from(&pair);
                headers.push((p.get(0).as_string().unwrap_or_default(), p.get(1).as_string().unwrap_or_default()));
            }
        }
    }
    Ok(HttpResponse { status: status as u16, headers, body })
}

impl Middleware for JsMiddleware {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn owns_retries(&self) -> bool {
        self.owns_retries
    }
    fn execute(self: Rc<Self>, next: Next, ctx: OpContext) -> LocalFuture<'static, Result<HttpResponse>> {
        Box::pin(async move {
            let ctx = core(to_js(&ctx))?;
            let ctx_for_next = ctx.clone();
            let next_fn = Closure::wrap(Box::new(move || -> Promise {
                // Headers the middleware put in `context.headers` go on the request.
                let extra = Reflect::get(&ctx_for_next, &"headers".into()).ok().and_then(|h| serde_wasm_bindgen::from_value(h).ok()).unwrap_or_default();
                let f = next.with_headers(&extra).run();
                future_to_promise(async move { Ok(response_to_js(&f.await.map_err(err)?)) })
            }) as Box<dyn FnMut() -> Promise>);
            let exec: Function = Reflect::get(&self.obj, &"execute".into()).map_err(|e| error_from_js(&e, &self.name))?.into();
            let ret = exec.call2(&self.obj, next_fn.as_ref(), &ctx).map_err(|e| error_from_js(&e, &format!("middleware {}", self.name)));
            let out = match ret {
                Ok(p) => JsFuture::from(Promise::resolve(&p)).await.map_err(|e| error_from_js(&e, &format!("middleware {}", self.name))),
                Err(e) => Err(e),
            };
            drop(next_fn);
            response_from_js(&out?, &self.name)
        })
    }
}

/// `use(plugin)`: a JS plugin object (its shape checked now).
pub fn use_plugin(client: &crate::Sandrun, plugin: JsValue) -> std::result::Result<(crate::Sandrun, Rc<JsPlugin>), JsValue> {
    let p = Rc::new(JsPlugin::new(plugin)?);
    Ok((client.use_plugin(p.clone()), p))
}

/// `with(middleware)`: a JS middleware object (its shape checked now).
pub fn with_middleware(client: &crate::Sandrun, m: JsValue) -> std::result::Result<crate::Sandrun, JsValue> {
    Ok(client.with_middleware(Rc::new(JsMiddleware::new(m, "with()")?)))
}

/// `use`, `with` and `configure` for a builder holding a `client`; each returns a new
/// builder and leaves this one unchanged.
macro_rules! layered_builder {
    ($t:ident) => {
        #[wasm_bindgen]
        impl $t {
            /// A new builder with `plugin` after the ones it has.
            #[wasm_bindgen(js_name = "use")]
            pub fn use_(&self, #[wasm_bindgen(unchecked_param_type = "Plugin")] plugin: JsValue) -> Result<$t, JsValue> {
                Ok($t { client: crate::wasm::plugin::use_plugin(&self.client, plugin)?.0, ..self.clone() })
            }
            /// A new builder with `middleware` around its network operations.
            pub fn with(&self, #[wasm_bindgen(unchecked_param_type = "Middleware")] middleware: JsValue) -> Result<$t, JsValue> {
                Ok($t { client: crate::wasm::plugin::with_middleware(&self.client, middleware)?, ..self.clone() })
            }
            /// A new builder whose client has `partial` merged over its config.
            pub fn configure(&self, #[wasm_bindgen(unchecked_param_type = "Partial<SandrunConfig>")] partial: JsValue) -> Result<$t, JsValue> {
                let parsed = crate::wasm::convert::config(Some(partial.clone()))?;
                let client = self.client.configure(&parsed).map_err(crate::wasm::convert::err)?;
                // A `web3Provider` in `partial` replaces the wallet; without one it is kept.
                Ok($t { client: crate::wasm::with_wallet(client, Some(&partial))?, ..self.clone() })
            }
        }
    };
}
pub(crate) use layered_builder;
