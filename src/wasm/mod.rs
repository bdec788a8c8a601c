//! The `#[wasm_bindgen]` facade: JS classes over the core. Each method converts its
//! input, calls the core, converts the output and maps the error; nothing else.

mod convert;
mod ipfs;
mod gpu;
mod job;
mod plugin;
mod node;
mod pool;
mod proof;
mod wallet;

use crate::config::SandrunConfig;
use crate::execution::{JobExecution as CoreExecution, LogStream as CoreLogStream};
use crate::job::JobBuilder as CoreJob;
use crate::platform::js::{Host, JsPlatform};
use crate::Sandrun as CoreSandrun;
use convert::{err, from_js, host, to_js, Code};
use js_sys::Promise;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

pub use convert::set_host;
pub use ipfs::Ipfs;
pub use gpu::{set_gpu_host, LocalGpu};
pub use job::Job;
pub use node::{Node, NodeBuilder};
pub use pool::{Pool, PoolBuilder};
pub use proof::ProofBuilder;

use crate::client::Submitted;
use crate::pool::Pool as CorePool;
use std::cell::RefCell;
use std::collections::HashMap;

thread_local! {
    /// Joined pools by handle, so `JobBuilder.with(pool)` can find the Rust pool behind
    /// a JS `Pool` object without unsafe pointer games.
    static POOLS: RefCell<HashMap<u32, Rc<pool::PoolCell>>> = RefCell::new(HashMap::new());
}

#[wasm_bindgen(typescript_custom_section)]
const TS: &str = r#"
// ConsensusLevel stays written here: it is a template literal type (`${number}-of-${number}`),
// which tsify cannot derive from a Rust type. JobStatus, LogChunk and ErrorCode are generated
// from the Rust types (types.rs, execution.rs, error.rs).
/** How many workers must agree: `'none'` (1 worker, unchecked), `'low'` (1 worker,
 * signature and hashes checked), `'medium'` (2-of-3), `'high'` (3-of-5), or any `'k-of-n'`. */
export type ConsensusLevel = 'none' | 'low' | 'medium' | 'high' | '2-of-3' | '3-of-5' | `${number}-of-${number}`;
/** Code for `JobBuilder.code()`: text, bytes, or a Blob/File (a File's name becomes the entrypoint). */
export type CodeSource = string | Uint8Array | Blob;
/** The spec's base of every builder: immutable, `build()` gives the value it describes. */
export interface SandrunBuilder<T> {
  build(): T;
  use(plugin: Plugin): this;
  with(middleware: Middleware): this;
  configure(config: Partial<SandrunConfig>): this;
}
/** What `Sandrun.build()` gives: a configured, immutable client (the `Sandrun` itself). */
export type SandrunClient = Sandrun;
/** A pool's consensus strategy (spec: `ConsensusStrategy`): the same values as `ConsensusLevel`. */
export type ConsensusStrategy = ConsensusLevel;
"#;

/// The entry point: `Sandrun.create(config?)`.
#[wasm_bindgen(js_name = Sandrun)]
pub struct JsSandrun {
    core: CoreSandrun,
    /// JS plugins registered on this client, for `onBuild`.
    js_plugins: Rc<Vec<Rc<plugin::JsPlugin>>>,
}

impl JsSandrun {
    /// Hand a new builder to every plugin's `onBuild`, then to the caller.
    fn built(&self, builder: JsValue) -> Result<JsValue, JsValue> {
        for p in self.js_plugins.iter() {
            p.on_build(&builder)?;
        }
        Ok(builder)
    }
}

#[wasm_bindgen(js_class = Sandrun)]
impl JsSandrun {
    /// A client for `config` (every field optional; defaults to the local devnet).
    pub fn create(config: Option<convert::SandrunConfigArg>) -> Result<JsSandrun, JsValue> {
        let raw = config.map(JsValue::from);
        let parsed: SandrunConfig = convert::config(raw.clone())?;
        let core = CoreSandrun::new(parsed, Rc::new(JsPlatform::new(host()?))).map_err(err)?;
        Ok(JsSandrun { core: with_wallet(core, raw.as_ref())?, js_plugins: Rc::default() })
    }

    /// A new client with `partial` merged over this one's config.
    pub fn configure(&self, #[wasm_bindgen(unchecked_param_type = "Partial<SandrunConfig>")] partial: JsValue) -> Result<JsSandrun, JsValue> {
        let parsed = convert::config(Some(partial.clone()))?;
        let core = with_wallet(self.core.configure(&parsed).map_err(err)?, Some(&partial))?;
        Ok(JsSandrun { core, js_plugins: self.js_plugins.clone() })
    }

    /// A new client with `plugin` after the ones it has (hooks run in registration order).
    #[wasm_bindgen(js_name = "use")]
    pub fn use_(&self, #[wasm_bindgen(unchecked_param_type = "Plugin")] plugin: JsValue) -> Result<JsSandrun, JsValue> {
        let (core, p) = plugin::use_plugin(&self.core, plugin)?;
        let mut js_plugins = (*self.js_plugins).clone();
        js_plugins.push(p);
        Ok(JsSandrun { core, js_plugins: Rc::new(js_plugins) })
    }

    /// A new client with `middleware` around every network operation (first is outermost).
    pub fn with(&self, #[wasm_bindgen(unchecked_param_type = "Middleware")] middleware: JsValue) -> Result<JsSandrun, JsValue> {
        Ok(JsSandrun { core: plugin::with_middleware(&self.core, middleware)?, js_plugins: self.js_plugins.clone() })
    }

    /// The effective configuration.
    #[wasm_bindgen(getter, unchecked_return_type = "SandrunConfig")]
    pub fn config(&self) -> Result<JsValue, JsValue> {
        to_js(self.core.config())
    }

    /// The configured client (spec: `build(): SandrunClient`). A `Sandrun` is already
    /// immutable, so this is an equal client.
    #[wasm_bindgen(unchecked_return_type = "SandrunClient")]
    pub fn build(&self) -> JsSandrun {
        JsSandrun { core: self.core.clone(), js_plugins: self.js_plugins.clone() }
    }

    /// A new, empty job.
    #[wasm_bindgen(unchecked_return_type = "JobBuilder")]
    pub fn job(&self) -> Result<JsValue, JsValue> {
        self.built(JobBuilder { client: self.core.clone(), core: CoreJob::new(), blob: None, pool: None }.into())
    }

    /// Check a result or a receipt: `sandrun.proof().from(result).verify()`.
    #[wasm_bindgen(unchecked_return_type = "ProofBuilder")]
    pub fn proof(&self) -> Result<JsValue, JsValue> {
        self.built(ProofBuilder { client: self.core.clone(), receipt: None, allow: None, job: None, files: Default::default() }.into())
    }

    /// The local GPU: `probe()` and batch `sha256()` (WebGPU where there is one, the CPU
    /// otherwise; the GPU module is loaded on first use).
    pub fn gpu(&self) -> gpu::LocalGpu {
        gpu::LocalGpu { client: self.core.clone() }
    }

    /// A new, empty pool description.
    #[wasm_bindgen(unchecked_return_type = "PoolBuilder")]
    pub fn pool(&self) -> Result<JsValue, JsValue> {
        self.built(PoolBuilder { client: self.core.clone(), core: Default::default() }.into())
    }

    /// Refund the escrow under `key` (a paid job's `error.details.escrow.key`, e.g. after a
    /// receipt timeout) to its payer, through this client's wallet and escrow. Resolves with
    /// `state: 'refunded'` (no transaction when it already was: calling twice is safe);
    /// rejects `PAYMENT_FAILED` with `details.state` `'released'` (the workers were paid) or
    /// `'none'` (no such escrow yet: its open may still be pending).
    #[wasm_bindgen(unchecked_return_type = "Promise<PaymentInfo>")]
    pub fn refund(&self, key: String) -> Promise {
        let client = self.core.clone();
        future_to_promise(async move { to_js(&crate::chain::pay::refund_key(&client, &key).await.map_err(err)?) })
    }

    /// A new, empty provider-node description (`register()` needs `registryEndpoint`).
    #[wasm_bindgen(unchecked_return_type = "NodeBuilder")]
    pub fn node(&self) -> Result<JsValue, JsValue> {
        self.built(NodeBuilder { client: self.core.clone(), core: Default::default() }.into())
    }

    /// IPFS through this client's `ipfsGateway` (verified reads: `cat`, `ls`, `get`) and
    /// `ipfsApi` (`add`, CIDs checked against the node's).
    pub fn ipfs(&self) -> Ipfs {
        Ipfs { core: self.core.ipfs() }
    }
}

/// The client with the config's `web3Provider`, if it has one (else the wallet it had).
pub(crate) fn with_wallet(core: CoreSandrun, config: Option<&JsValue>) -> Result<CoreSandrun, JsValue> {
    let provider = config.filter(|c| c.is_object()).map(|c| js_sys::Reflect::get(c, &"web3Provider".into())).transpose()?;
    match provider.filter(|p| !p.is_undefined() && !p.is_null()) {
        Some(p) => Ok(core.with_wallet(Rc::new(wallet::JsWallet::new(p)?))),
        None => Ok(core),
    }
}

/// An immutable job description: every method returns a new builder.
#[wasm_bindgen]
#[derive(Clone)]
pub struct JobBuilder {
    client: CoreSandrun,
    core: CoreJob,
    /// A Blob given to `code()`, read at submit (reading a Blob is asynchronous).
    blob: Option<JsValue>,
    /// The pool given to `with(pool)` (joined on first use if it was only built).
    pool: Option<Rc<pool::PoolCell>>,
}

impl JobBuilder {
    fn next(&self, core: crate::Result<CoreJob>) -> Result<JobBuilder, JsValue> {
        Ok(JobBuilder { client: self.client.clone(), core: core.map_err(err)?, blob: self.blob.clone(), pool: self.pool.clone() })
    }

    /// The core job with a pending Blob read in.
    pub(crate) async fn resolved(self) -> Result<CoreJob, JsValue> {
        match &self.blob {
            None => Ok(self.core),
            Some(b) => convert::read_blob_into(&self.core, b).await,
        }
    }
}

#[wasm_bindgen]
impl JobBuilder {
    /// The code to run: a string, bytes, or a Blob/File. See the README for how the
    /// interpreter is chosen.
    pub fn code(&self, #[wasm_bindgen(unchecked_param_type = "CodeSource")] source: JsValue) -> Result<JobBuilder, JsValue> {
        match convert::code(&source)? {
            Code::Bytes(b) => Ok(JobBuilder { blob: None, ..self.next(self.core.code(b))? }),
            Code::Blob => Ok(JobBuilder { blob: Some(source), ..self.clone() }),
        }
    }
    /// A script file (Node: a path, with its directory's files) or a URL (browser).
    pub fn script(&self, path: &str) -> Result<JobBuilder, JsValue> {
        self.next(self.core.script(path))
    }
    /// A repository archive at `ref` (`https://github.com/owner/repo`, or a .tar.gz URL).
    pub fn repository(&self, url: &str, r#ref: Option<String>) -> Result<JobBuilder, JsValue> {
        self.next(self.core.repository(url, r#ref.as_deref()))
    }
    /// GPU requirements.
    pub fn gpu(&self, #[wasm_bindgen(unchecked_param_type = "GPURequirements")] requirements: JsValue) -> Result<JobBuilder, JsValue> {
        if !requirements.is_object() || js_sys::Array::is_array(&requirements) {
            return Err(err(crate::Error::invalid(format!(
                "gpu() takes an object like {{ type: 'a100', memory: '40GB', count: 1 }}, got {}",
                convert::describe_js(&requirements)
            ))));
        }
        convert::check_keys(&requirements, &["type", "memory", "count", "compute"], "gpu()")?;
        self.next(self.core.gpu(from_js(requirements, "gpu()")?))
    }
    /// Memory limit in megabytes.
    pub fn memory(&self, #[wasm_bindgen(unchecked_param_type = "number")] mb: JsValue) -> Result<JobBuilder, JsValue> {
        self.next(self.core.memory(convert::number_arg(&mb, "memory()", "a number of megabytes, e.g. memory(2048) for 2 GB")?))
    }
    /// Timeout in seconds, enforced by the SDK.
    pub fn timeout(&self, #[wasm_bindgen(unchecked_param_type = "number")] seconds: JsValue) -> Result<JobBuilder, JsValue> {
        self.next(self.core.timeout(convert::number_arg(&seconds, "timeout()", "a number of seconds, e.g. timeout(60)")?))
    }
    /// Environment variables for the job.
    pub fn environment(&self, #[wasm_bindgen(unchecked_param_type = "Record<string, string>")] vars: JsValue) -> Result<JobBuilder, JsValue> {
        self.next(self.core.environment(from_js(vars, "environment()")?))
    }
    /// Command-line arguments.
    pub fn args(&self, #[wasm_bindgen(unchecked_param_type = "string[]")] args: JsValue) -> Result<JobBuilder, JsValue> {
        self.next(self.core.args(from_js(args, "args()")?))
    }
    /// Only accept a result signed by one of `workerIds` (base64 Ed25519 keys, as
    /// `/health` shows them); overrides the client's `allowedWorkers` (SDK extension).
    pub fn allow(&self, #[wasm_bindgen(js_name = workerIds, unchecked_param_type = "string[]")] worker_ids: JsValue) -> Result<JobBuilder, JsValue> {
        self.next(self.core.allow(from_js(worker_ids, "allow()")?))
    }
    /// Pay `amount` of `token` (default `'ETH'`) into escrow for this job.
    pub fn payment(&self, amount: &str, token: Option<String>) -> Result<JobBuilder, JsValue> {
        self.next(self.core.payment(amount, token.as_deref()))
    }
    /// How many workers must agree, and whether results are verified.
    pub fn consensus(&self, #[wasm_bindgen(unchecked_param_type = "ConsensusLevel")] level: &str) -> Result<JobBuilder, JsValue> {
        self.next(self.core.consensus(level))
    }
    /// The interpreter: `'python3' | 'node' | 'bash' | 'sh'` (SDK extension).
    pub fn interpreter(&self, #[wasm_bindgen(unchecked_param_type = "'python3' | 'node' | 'bash' | 'sh'")] name: &str) -> Result<JobBuilder, JsValue> {
        self.next(self.core.interpreter(name))
    }
    /// The file to run, relative to the job directory (SDK extension).
    pub fn entrypoint(&self, path: &str) -> Result<JobBuilder, JsValue> {
        self.next(self.core.entrypoint(path))
    }
    /// An extra input file (SDK extension).
    pub fn file(&self, path: &str, #[wasm_bindgen(unchecked_param_type = "string | Uint8Array")] content: JsValue) -> Result<JobBuilder, JsValue> {
        match convert::code(&content)? {
            Code::Bytes(b) => self.next(self.core.file(path, b)),
            Code::Blob => Err(err(crate::Error::invalid("file() takes a string or Uint8Array"))),
        }
    }
    /// Output patterns to keep: `*`, `*.ext`, `prefix*`, `dir/*`, names (SDK extension).
    pub fn outputs(&self, #[wasm_bindgen(unchecked_param_type = "string[]")] patterns: JsValue) -> Result<JobBuilder, JsValue> {
        self.next(self.core.outputs(from_js(patterns, "outputs()")?))
    }
    /// After `download()` verified the outputs, add them to IPFS (`ipfsApi`); the result's
    /// `ipfs` holds the root CID and each file's, all checked against the node's (SDK extension).
    pub fn publish(&self) -> Result<JobBuilder, JsValue> {
        self.next(Ok(self.core.publish()))
    }
    /// `false`: environment values that are `ipfs://` URLs reach the job as text instead of
    /// being fetched, verified and packed under `_ipfs/` (default `true`; SDK extension).
    #[wasm_bindgen(js_name = ipfsInputs)]
    pub fn ipfs_inputs(&self, pack: bool) -> Result<JobBuilder, JsValue> {
        self.next(Ok(self.core.ipfs_inputs(pack)))
    }
    /// Run through a pool (`with(pool)`): the job goes to several workers and resolves
    /// with the agreed result.
    pub fn with(&self, #[wasm_bindgen(unchecked_param_type = "Pool | Middleware")] target: JsValue) -> Result<JobBuilder, JsValue> {
        let handle = js_sys::Reflect::get(&target, &"__sandrunPool".into()).ok().and_then(|h| h.as_f64());
        if let Some(h) = handle {
            let pool = POOLS.with(|p| p.borrow().get(&(h as u32)).cloned());
            let pool = pool.ok_or_else(|| err(crate::Error::invalid("with(): this Pool was freed")))?;
            return Ok(JobBuilder { pool: Some(pool), ..self.clone() });
        }
        if js_sys::Reflect::get(&target, &"execute".into()).map(|e| e.is_function()).unwrap_or(false) {
            return Ok(JobBuilder { client: plugin::with_middleware(&self.client, target)?, ..self.clone() });
        }
        Err(err(crate::Error::invalid("with() takes a Pool (from sandrun.pool()...join()) or a Middleware ({ execute(next, context) })")))
    }
    /// A new builder with `plugin` after the ones it has.
    #[wasm_bindgen(js_name = "use")]
    pub fn use_(&self, #[wasm_bindgen(unchecked_param_type = "Plugin")] plugin: JsValue) -> Result<JobBuilder, JsValue> {
        Ok(JobBuilder { client: plugin::use_plugin(&self.client, plugin)?.0, ..self.clone() })
    }
    /// A new builder whose client has `partial` merged over its config.
    pub fn configure(&self, #[wasm_bindgen(unchecked_param_type = "Partial<SandrunConfig>")] partial: JsValue) -> Result<JobBuilder, JsValue> {
        let parsed = convert::config(Some(partial.clone()))?;
        Ok(JobBuilder { client: with_wallet(self.client.configure(&parsed).map_err(err)?, Some(&partial))?, ..self.clone() })
    }
    /// The job as an immutable, inspectable value (spec: `build(): Job`), for
    /// `Pool.distribute(job)` and for keeping.
    pub fn build(&self) -> Job {
        Job::new(self.clone())
    }
    /// Submit the job; resolves once the worker (or every replica's worker) accepted it.
    #[wasm_bindgen(unchecked_return_type = "Promise<JobExecution>")]
    pub fn submit(&self) -> Promise {
        let this = self.clone();
        future_to_promise(async move {
            let (client, pool) = (this.client.clone(), this.pool.clone());
            let job = this.resolved().await?;
            let pool = match pool {
                Some(cell) => Some(cell.get().await.map_err(err)?),
                None => None,
            };
            match client.submit_paid(&job, pool.as_ref()).await {
                Ok((core, payment)) => Ok(JobExecution { core, client, payment, quorum: None }.into()),
                Err(e) => Err(failed(&client, e, "submit").await),
            }
        })
    }
    /// Workers, time bound, upload size, job hash and cost bound, without submitting.
    #[wasm_bindgen(unchecked_return_type = "Promise<JobEstimate>")]
    pub fn estimate(&self) -> Promise {
        let this = self.clone();
        future_to_promise(async move {
            let (client, pool) = (this.client.clone(), this.pool.clone());
            let job = this.resolved().await?;
            let estimate = async {
                let pool = match pool {
                    Some(cell) => Some(cell.get().await?),
                    None => None,
                };
                client.estimate_with(&job, pool.as_ref()).await
            };
            match estimate.await {
                Ok(e) => to_js(&e),
                Err(e) => Err(failed(&client, e, "estimate").await),
            }
        })
    }
}

/// A submitted job: on one worker, or replicated over a pool.
#[wasm_bindgen]
pub struct JobExecution {
    core: Submitted,
    /// For the plugins' `onResult` / `onError`.
    client: CoreSandrun,
    /// The escrow of a paid job: released or refunded when the job settles.
    payment: Option<Rc<crate::chain::pay::PaidJob>>,
    /// For one replica of a distributed job: the pooled run whose consensus settles the
    /// escrow (`Pool.distribute()`).
    quorum: Option<crate::pool::PooledRun>,
}

impl JobExecution {
    fn context(&self, operation: &str) -> serde_json::Value {
        let p = self.primary();
        serde_json::json!({"operation": operation, "jobId": p.id(), "worker": p.worker()})
    }
    /// The execution that stands for the job: the only one, or the first replica.
    fn primary(&self) -> CoreExecution {
        match &self.core {
            Submitted::Single(e) => e.clone(),
            Submitted::Pooled(r) => r.executions()[0].clone(),
        }
    }
}

#[wasm_bindgen]
impl JobExecution {
    /// The worker's job id (unique together with `worker`); the first replica's in a pool.
    #[wasm_bindgen(getter)]
    pub fn id(&self) -> String {
        self.primary().id().to_string()
    }
    /// Last known status.
    #[wasm_bindgen(getter, unchecked_return_type = "JobStatus")]
    pub fn status(&self) -> String {
        match &self.core {
            Submitted::Single(e) => e.status(),
            Submitted::Pooled(r) => match r.settled() {
                Some(Ok(res)) => serde_json::to_value(res.status).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(),
                Some(Err(e)) if e.code == crate::ErrorCode::Cancelled => "cancelled".into(),
                Some(Err(_)) => "failed".into(),
                None => self.primary().status(),
            },
        }
    }
    /// The worker's base URL; the first replica's in a pool.
    #[wasm_bindgen(getter)]
    pub fn worker(&self) -> String {
        self.primary().worker().to_string()
    }
    /// Every replica as `{ worker, id }` (one entry outside pools).
    #[wasm_bindgen(getter, unchecked_return_type = "{ worker: string; id: string }[]")]
    pub fn replicas(&self) -> Result<JsValue, JsValue> {
        let list: Vec<serde_json::Value> = match &self.core {
            Submitted::Single(e) => vec![e.clone()],
            Submitted::Pooled(r) => r.executions(),
        }
        .iter()
        .map(|e| serde_json::json!({"worker": e.worker(), "id": e.id()}))
        .collect();
        to_js(&list)
    }
    /// Wait for the end; the result is checked as the job's consensus level asks.
    #[wasm_bindgen(unchecked_return_type = "Promise<JobResult>")]
    pub fn wait(&self) -> Promise {
        let (core, client, ctx, payment, quorum) = (self.core.clone(), self.client.clone(), self.context("wait"), self.payment.clone(), self.quorum.clone());
        future_to_promise(async move {
            let r = match core {
                Submitted::Single(e) => e.wait().await,
                Submitted::Pooled(r) => r.wait().await,
            };
            let r = settled(payment, quorum, &client, r).await;
            to_js(&client.hook_outcome(r, ctx).await.map_err(err)?)
        })
    }
    /// The live log, as an async iterable of chunks (the first replica's in a pool).
    #[wasm_bindgen(unchecked_return_type = "Promise<LogStream>")]
    pub fn logs(&self) -> Promise {
        let stream: JsValue = LogStream { core: Rc::new(self.primary().logs()) }.into();
        Promise::resolve(&stream)
    }
    /// Stop waiting: `wait()` rejects with `CANCELLED`.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn cancel(&self) -> Promise {
        match &self.core {
            Submitted::Single(e) => e.cancel(),
            Submitted::Pooled(r) => r.cancel(),
        }
        // A paid job is refunded; the promise resolves once the refund is mined.
        let payment = self.payment.clone();
        future_to_promise(async move {
            if let Some(p) = payment {
                p.refund().await.map_err(err)?;
            }
            Ok(JsValue::UNDEFINED)
        })
    }
    /// Wait, then fetch every output file, checked against its signed sha256 (in a pool:
    /// from a worker whose result agreed).
    #[wasm_bindgen(unchecked_return_type = "Promise<JobResult>")]
    pub fn download(&self) -> Promise {
        let job = self.primary().job().clone();
        let (core, client, ctx, payment, quorum) = (self.core.clone(), self.client.clone(), self.context("download"), self.payment.clone(), self.quorum.clone());
        future_to_promise(async move {
            let r = downloaded(core).await.map(convert::with_bytes);
            let r = settled(payment, quorum, &client, r).await;
            // Published after the payment settled: the work was verified either way.
            let r = client.publish_result(&job, r).await;
            to_js(&client.hook_outcome(r, ctx).await.map_err(err)?)
        })
    }
    /// Node: wait, check and write the job's output files under `path` (only those
    /// matching its `outputs()` patterns; each streamed to disk while it is hashed).
    /// Nothing lands outside `path`, no symlink under it is followed, and an existing
    /// file fails the call (before anything is written) unless `options.overwrite`.
    /// A paid job is settled, and `onResult`/`onError` run, as for `download()`.
    #[wasm_bindgen(js_name = downloadTo, unchecked_return_type = "Promise<void>")]
    pub fn download_to(&self, path: String, #[wasm_bindgen(unchecked_optional_param_type = "DownloadToOptions")] options: Option<js_sys::Object>) -> Promise {
        let (core, client, ctx, payment, quorum) = (self.core.clone(), self.client.clone(), self.context("downloadTo"), self.payment.clone(), self.quorum.clone());
        future_to_promise(async move {
            let opts = download_to_options(options)?;
            // A target that cannot be used is the caller's to fix: reject at once; the
            // job and its payment are untouched (wait() or download() still settle it).
            crate::platform::target::check_root(&**client.platform(), &path).await.map_err(err)?;
            let (outcome, staged) = match downloaded_to(core, &path, opts).await {
                Ok((r, s)) => (Ok(r), Some(s)),
                Err(e) => (Err(e), None),
            };
            // Settled on the job's own outcome: a local write problem is not the worker's.
            let outcome = settled(payment, quorum, &client, outcome).await;
            let outcome = match (outcome, staged) {
                (Ok(r), Some(Ok(s))) => s.commit().await.map(|_| r),
                (Ok(_), Some(Err(e))) => Err(e),
                (Err(e), Some(Ok(s))) => {
                    s.discard().await;
                    Err(e)
                }
                (o, _) => o,
            };
            client.hook_outcome(outcome, ctx).await.map_err(err)?;
            Ok(JsValue::UNDEFINED)
        })
    }
}

#[wasm_bindgen(typescript_custom_section)]
const TS_DOWNLOAD_TO: &str = r#"
/** Options of `JobExecution.downloadTo()`. */
export interface DownloadToOptions {
  /** Replace existing regular files (never a symlink or a directory). Default false. */
  overwrite?: boolean;
}
"#;

fn download_to_options(options: Option<js_sys::Object>) -> Result<crate::platform::target::WriteOptions, JsValue> {
    let Some(o) = options else { return Ok(Default::default()) };
    let v: JsValue = o.into();
    if v.is_undefined() || v.is_null() {
        return Ok(Default::default());
    }
    convert::check_keys(&v, &["overwrite"], "downloadTo() options")?;
    let ow = js_sys::Reflect::get(&v, &"overwrite".into())?;
    if !(ow.is_undefined() || ow.as_bool().is_some()) {
        return Err(err(crate::Error::invalid("downloadTo(): options.overwrite must be a boolean")));
    }
    Ok(crate::platform::target::WriteOptions { overwrite: ow.as_bool().unwrap_or(false) })
}

/// The job's checked result and its files staged under `path` (see
/// `JobExecution::download_staged`): in a pool, the agreed replica's, with the pool's proof.
async fn downloaded_to(core: Submitted, path: &str, opts: crate::platform::target::WriteOptions) -> crate::Result<(crate::types::JobResult, crate::Result<crate::platform::target::Staged>)> {
    let agreed = match &core {
        Submitted::Pooled(r) => Some(r.wait().await?),
        Submitted::Single(_) => None,
    };
    let (mut f, staged) = agreed_execution(core).await?.download_staged(path, opts).await?;
    if let Some(a) = agreed {
        f.result.proof = a.proof;
    }
    Ok((f.result, staged))
}

/// The execution whose result is the job's: the only one, or the agreed replica.
async fn agreed_execution(core: Submitted) -> crate::Result<CoreExecution> {
    match core {
        Submitted::Single(e) => Ok(e),
        Submitted::Pooled(r) => {
            let res = r.wait().await?;
            Ok(r.executions().into_iter().find(|e| e.id() == res.id && e.worker() == res.worker).expect("the agreed replica is one of the pool's executions"))
        }
    }
}

async fn downloaded(core: Submitted) -> crate::Result<crate::execution::Finished> {
    let agreed = match &core {
        Submitted::Pooled(r) => Some(r.wait().await?),
        Submitted::Single(_) => None,
    };
    let mut f = agreed_execution(core).await?.download().await?;
    if let Some(a) = agreed {
        f.result.proof = a.proof;
    }
    Ok(f)
}

/// Settle a paid job's escrow on `outcome` (once; later calls only read its state). For a
/// replica of a distributed job the escrow follows the pool's consensus, not the replica.
async fn settled(
    payment: Option<Rc<crate::chain::pay::PaidJob>>,
    quorum: Option<crate::pool::PooledRun>,
    client: &CoreSandrun,
    outcome: crate::Result<crate::types::JobResult>,
) -> crate::Result<crate::types::JobResult> {
    let Some(p) = payment else { return outcome };
    let Some(run) = quorum else { return p.settle(client, outcome).await };
    if let Err(e) = p.settle(client, run.wait().await).await {
        if e.code == crate::ErrorCode::PaymentFailed {
            return Err(e);
        }
    }
    let cost = p.info();
    match outcome {
        Ok(mut r) => {
            r.cost = cost;
            Ok(r)
        }
        Err(e) => Err(crate::chain::pay::merge_details(e, serde_json::json!({ "cost": cost }))),
    }
}

/// An operation's failure after the plugins' `onError` (which may replace it), as JS.
pub(crate) async fn failed(client: &CoreSandrun, e: crate::Error, operation: &str) -> JsValue {
    let ctx = serde_json::json!({ "operation": operation });
    err(client.hook_outcome(Err(e), ctx).await.err().expect("an error stays an error"))
}

/// `Pool.distribute(job)`: the same lifecycle as `job.with(pool).submit()` (plugins'
/// `onSubmit`, the escrow opened before anything is sent, the job's consensus), one
/// `JobExecution` per replica. A paid job is settled once, on the pool's consensus,
/// whichever replica is awaited first.
pub(crate) async fn distribute(pool: &CorePool, job: JobBuilder) -> Result<JsValue, JsValue> {
    let client = job.client.clone();
    let core = job.resolved().await?;
    // distribute() hands back one execution per replica: all n start now.
    let mut pool = pool.clone();
    pool.replication = crate::pool::Replication::Eager;
    match client.submit_paid(&core, Some(&pool)).await {
        Ok((submitted, payment)) => {
            let list = js_sys::Array::new();
            let (executions, quorum) = match submitted {
                Submitted::Single(e) => (vec![e], None),
                Submitted::Pooled(run) => (run.executions(), Some(run)),
            };
            for e in executions {
                list.push(&JobExecution { core: Submitted::Single(e), client: client.clone(), payment: payment.clone(), quorum: quorum.clone() }.into());
            }
            Ok(list.into())
        }
        Err(e) => Err(failed(&client, e, "distribute").await),
    }
}

/// A job's log: `for await (const chunk of await execution.logs())`.
#[wasm_bindgen]
pub struct LogStream {
    core: Rc<CoreLogStream>,
}

#[wasm_bindgen]
impl LogStream {
    /// The next chunk, or `undefined` at the end.
    #[wasm_bindgen(js_name = nextChunk, unchecked_return_type = "Promise<LogChunk | undefined>")]
    pub fn next_chunk(&self) -> Promise {
        let core = self.core.clone();
        future_to_promise(async move {
            match core.next().await.map_err(err)? {
                Some(c) => to_js(&c),
                None => Ok(JsValue::UNDEFINED),
            }
        })
    }
}

/// Installs the host object. Called by the package's entry modules, not by users.
#[wasm_bindgen(js_name = __setHost)]
pub fn install_host(h: Host) {
    set_host(h);
}
