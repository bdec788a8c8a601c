//! `JobBuilder`: an immutable description of a job. Every method returns a new
//! builder; the old one stays usable and unchanged. Byte payloads are `Rc`-shared,
//! so a chain of twenty calls copies no code.

pub mod archive;
pub mod prepare;

use crate::error::{Error, Result};
use crate::types::{ConsensusLevel, GPURequirements, PaymentRequest};
use std::collections::BTreeMap;
use std::rc::Rc;

pub use prepare::{detect_interpreter, PreparedJob};

/// Interpreters a Sandrun worker runs.
pub const INTERPRETERS: [&str; 4] = ["python3", "node", "bash", "sh"];

/// Where the job's code comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// Inline code (string or bytes), saved as the entrypoint file.
    Code(Rc<[u8]>),
    /// A local file (Node: its directory's files come along) or, in browsers, a URL.
    Script(String),
    /// An archive of a repository at a ref.
    Repository { url: String, reference: Option<String> },
}

/// Everything a job is, before it is prepared for a worker.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JobSpec {
    pub source: Option<Source>,
    /// Extra input files (`file(path, bytes)`).
    pub files: Vec<(String, Rc<[u8]>)>,
    pub interpreter: Option<String>,
    pub entrypoint: Option<String>,
    pub gpu: Option<GPURequirements>,
    pub memory_mb: Option<f64>,
    pub timeout_secs: Option<f64>,
    pub env: BTreeMap<String, String>,
    pub args: Vec<String>,
    pub outputs: Vec<String>,
    pub payment: Option<PaymentRequest>,
    pub consensus: Option<ConsensusLevel>,
    /// Worker keys allowed to sign the result (`allow()`); `None`: the client's
    /// `allowedWorkers`, else any key.
    pub allow: Option<Vec<String>>,
    /// `publish()`: after `download()` verified the outputs, add them to IPFS.
    pub publish: bool,
    /// `ipfsInputs(false)`: environment values that are `ipfs://` URLs reach the job as
    /// text instead of being fetched, verified and packed.
    pub keep_ipfs_urls: bool,
}

pub use crate::proof::verify::check_worker_keys;

/// A job as plugins see it (spec: `Job`): what `onSubmit` may read and rewrite. The code
/// and files themselves are read-only (`files` lists their paths).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, Default)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
#[serde(rename_all = "camelCase")]
pub struct JobDescription {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub interpreter: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub entrypoint: Option<String>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// Seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub timeout: Option<f64>,
    /// Megabytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub memory: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub gpu: Option<GPURequirements>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional, type = "ConsensusLevel"))]
    pub consensus: Option<String>,
    #[serde(default)]
    pub outputs: Vec<String>,
    /// `{ amount, token }` when `payment()` was called.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional, type = "{ amount: string; token: string }"))]
    pub payment: Option<serde_json::Value>,
    /// Paths of the extra input files (read-only).
    #[serde(default)]
    pub files: Vec<String>,
}

/// The immutable job builder.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobBuilder {
    spec: Rc<JobSpec>,
}

impl JobBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// The job as described so far.
    pub fn spec(&self) -> &JobSpec {
        &self.spec
    }

    fn with(&self, f: impl FnOnce(&mut JobSpec)) -> JobBuilder {
        let mut spec = (*self.spec).clone();
        f(&mut spec);
        JobBuilder { spec: Rc::new(spec) }
    }

    /// Inline code, run as the entrypoint. See [`detect_interpreter`] for the language.
    pub fn code(&self, source: impl Into<Vec<u8>>) -> Result<JobBuilder> {
        let bytes: Vec<u8> = source.into();
        if bytes.iter().all(|b| b.is_ascii_whitespace()) {
            return Err(Error::invalid("code() got empty source: pass the program text or bytes to run"));
        }
        // `code('ipfs://...')` is fetched at submit: check the URL now.
        if let Some(url) = prepare::ipfs_code_url(&bytes) {
            crate::ipfs::IpfsUrl::parse(url)?;
        }
        Ok(self.with(|s| s.source = Some(Source::Code(bytes.into()))))
    }

    /// A script file (Node: a path; browsers: a URL). Its extension picks the interpreter.
    pub fn script(&self, path: &str) -> Result<JobBuilder> {
        if path.trim().is_empty() {
            return Err(Error::invalid("script() needs a file path (Node) or URL (browser)"));
        }
        // An IPFS script may have no extension: its interpreter is detected at submit.
        if crate::ipfs::IpfsUrl::is_ipfs(path) {
            crate::ipfs::IpfsUrl::parse(path)?;
            return Ok(self.with(|s| s.source = Some(Source::Script(path.trim().to_string()))));
        }
        prepare::interpreter_for_extension(path).ok_or_else(|| {
            Error::invalid(format!(
                "script({path:?}): cannot tell the interpreter from the extension; use .py, .js, .mjs, .cjs or .sh, or call interpreter()"
            ))
        })?;
        Ok(self.with(|s| s.source = Some(Source::Script(path.to_string()))))
    }

    /// A repository archive (`https://github.com/owner/repo`, or any URL of a .tar.gz) at `reference`.
    pub fn repository(&self, url: &str, reference: Option<&str>) -> Result<JobBuilder> {
        if crate::ipfs::IpfsUrl::is_ipfs(url) {
            crate::ipfs::IpfsUrl::parse(url)?;
        } else if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(Error::invalid(format!("repository({url:?}) needs an http(s) or ipfs:// URL")));
        }
        if let Some(r) = reference {
            if r.is_empty() || r.contains("..") || r.contains(char::is_whitespace) {
                return Err(Error::invalid(format!("repository ref {r:?} is not a branch, tag or commit")));
            }
        }
        let (url, reference) = (url.to_string(), reference.map(str::to_string));
        Ok(self.with(|s| s.source = Some(Source::Repository { url, reference })))
    }

    /// Add an input file beside the code (an SDK extension).
    pub fn file(&self, path: &str, bytes: impl Into<Vec<u8>>) -> Result<JobBuilder> {
        archive::check_relative_path(path).map_err(|e| Error::invalid(e.message))?;
        let bytes: Rc<[u8]> = bytes.into().into();
        let path = path.to_string();
        Ok(self.with(|s| {
            s.files.retain(|(p, _)| *p != path);
            s.files.push((path, bytes));
        }))
    }

    /// The interpreter (`python3`, `node`, `bash`, `sh`), overriding detection.
    pub fn interpreter(&self, name: &str) -> Result<JobBuilder> {
        let name = if name == "python" { "python3" } else { name };
        if !INTERPRETERS.contains(&name) {
            return Err(Error::invalid(format!("interpreter {name:?} is not one of {}", INTERPRETERS.join(", "))));
        }
        let name = name.to_string();
        Ok(self.with(|s| s.interpreter = Some(name)))
    }

    /// The file to run, relative to the job directory.
    pub fn entrypoint(&self, path: &str) -> Result<JobBuilder> {
        archive::check_relative_path(path).map_err(|e| Error::invalid(e.message))?;
        if path.contains('"') {
            return Err(Error::invalid("entrypoint must not contain '\"'"));
        }
        let path = path.to_string();
        Ok(self.with(|s| s.entrypoint = Some(path)))
    }

    /// GPU requirements (sent in the manifest for servers that schedule GPUs).
    pub fn gpu(&self, req: GPURequirements) -> Result<JobBuilder> {
        req.validate()?;
        Ok(self.with(|s| s.gpu = Some(req)))
    }

    /// Memory limit in MB.
    pub fn memory(&self, mb: f64) -> Result<JobBuilder> {
        if !(mb.is_finite() && mb > 0.0) {
            return Err(Error::invalid(format!("memory({mb}) must be a positive number of megabytes")));
        }
        Ok(self.with(|s| s.memory_mb = Some(mb)))
    }

    /// Timeout in seconds, enforced by the SDK (and sent to servers that honour it).
    pub fn timeout(&self, seconds: f64) -> Result<JobBuilder> {
        if !(seconds.is_finite() && seconds > 0.0) {
            return Err(Error::invalid(format!("timeout({seconds}) must be a positive number of seconds")));
        }
        Ok(self.with(|s| s.timeout_secs = Some(seconds)))
    }

    /// Environment variables the job sees (merged over earlier calls).
    pub fn environment(&self, vars: BTreeMap<String, String>) -> Result<JobBuilder> {
        for (k, v) in &vars {
            let ok = !k.is_empty()
                && !k.as_bytes()[0].is_ascii_digit()
                && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !ok {
                return Err(Error::invalid(format!("environment variable name {k:?} must match [A-Za-z_][A-Za-z0-9_]*")));
            }
            if v.contains('\0') {
                return Err(Error::invalid(format!("environment variable {k} contains a NUL byte")));
            }
        }
        Ok(self.with(|s| s.env.extend(vars)))
    }

    /// Command-line arguments for the entrypoint (replaces earlier ones).
    pub fn args(&self, args: Vec<String>) -> Result<JobBuilder> {
        for a in &args {
            if a.contains('"') || a.contains('\\') || a.contains('\0') {
                return Err(Error::invalid(format!(
                    "argument {a:?} contains '\"', '\\' or NUL, which Sandrun workers cannot read from a manifest; pass such values through environment() or a file()"
                )));
            }
        }
        Ok(self.with(|s| s.args = args))
    }

    /// Output patterns (`*`, `*.ext`, `prefix*`, `dir/*`, exact names) to keep (an SDK extension).
    pub fn outputs(&self, patterns: Vec<String>) -> Result<JobBuilder> {
        for p in &patterns {
            if p.is_empty() || p.contains('"') || p.contains('\\') {
                return Err(Error::invalid(format!("output pattern {p:?} must be non-empty, without '\"' or '\\'")));
            }
        }
        Ok(self.with(|s| s.outputs = patterns))
    }

    /// Publish the verified outputs to IPFS (`ipfsApi`) when `download()` fetched them; the
    /// result's `ipfs` then holds the root CID and each file's (an SDK extension).
    pub fn publish(&self) -> JobBuilder {
        self.with(|s| s.publish = true)
    }

    /// Whether environment values that are `ipfs://` URLs are fetched, verified and packed
    /// into the job (default `true`); `false` passes them through as text (an SDK extension).
    pub fn ipfs_inputs(&self, pack: bool) -> JobBuilder {
        self.with(|s| s.keep_ipfs_urls = !pack)
    }

    /// Only accept a result signed by one of these worker keys (base64 Ed25519, as
    /// `/health` shows them); overrides the client's `allowedWorkers`.
    pub fn allow(&self, worker_ids: Vec<String>) -> Result<JobBuilder> {
        check_worker_keys("allow()", &worker_ids)?;
        Ok(self.with(|s| s.allow = Some(worker_ids)))
    }

    /// Pay `amount` of `token` (default ETH) into escrow for this job.
    pub fn payment(&self, amount: &str, token: Option<&str>) -> Result<JobBuilder> {
        let p = PaymentRequest::new(amount, token)?;
        Ok(self.with(|s| s.payment = Some(p)))
    }

    /// The job as plugins see it.
    pub fn describe(&self) -> JobDescription {
        let s = &self.spec;
        JobDescription {
            interpreter: s.interpreter.clone(),
            entrypoint: s.entrypoint.clone(),
            args: s.args.clone(),
            environment: s.env.clone(),
            timeout: s.timeout_secs,
            memory: s.memory_mb,
            gpu: s.gpu.clone(),
            consensus: s.consensus.map(|c| c.to_string()),
            outputs: s.outputs.clone(),
            payment: s.payment.as_ref().map(|p| serde_json::json!({"amount": p.amount, "token": p.token})),
            files: s.files.iter().map(|(p, _)| p.clone()).collect(),
        }
    }

    /// This job with a (possibly rewritten) description applied, through the same checks
    /// as the builder methods.
    pub fn apply(&self, d: &JobDescription) -> Result<JobBuilder> {
        let mut j = self.with(|s| {
            s.interpreter = None;
            s.entrypoint = None;
            s.env.clear();
            s.timeout_secs = None;
            s.memory_mb = None;
            s.gpu = None;
            s.consensus = None;
            s.payment = None;
        });
        if let Some(i) = &d.interpreter {
            j = j.interpreter(i)?;
        }
        if let Some(e) = &d.entrypoint {
            j = j.entrypoint(e)?;
        }
        j = j.args(d.args.clone())?.environment(d.environment.clone())?.outputs(d.outputs.clone())?;
        if let Some(t) = d.timeout {
            j = j.timeout(t)?;
        }
        if let Some(m) = d.memory {
            j = j.memory(m)?;
        }
        if let Some(g) = &d.gpu {
            j = j.gpu(g.clone())?;
        }
        if let Some(c) = &d.consensus {
            j = j.consensus(c)?;
        }
        if let Some(p) = &d.payment {
            j = j.payment(p["amount"].as_str().unwrap_or_default(), p["token"].as_str())?;
        }
        Ok(j)
    }

    /// How many workers must agree, and whether results are verified.
    pub fn consensus(&self, level: &str) -> Result<JobBuilder> {
        let c = ConsensusLevel::parse(level)?;
        Ok(self.with(|s| s.consensus = Some(c)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_are_persistent() {
        let a = JobBuilder::new().code("print(1)").unwrap();
        let b = a.args(vec!["x".into()]).unwrap();
        let c = b.timeout(5.0).unwrap();
        assert!(a.spec().args.is_empty() && a.spec().timeout_secs.is_none());
        assert_eq!(b.spec().args, ["x"]);
        assert_eq!(c.spec().timeout_secs, Some(5.0));
        // The code bytes are shared, not copied.
        match (&a.spec().source, &c.spec().source) {
            (Some(Source::Code(x)), Some(Source::Code(y))) => assert!(Rc::ptr_eq(x, y)),
            _ => panic!(),
        }
    }

    #[test]
    fn bad_arguments_fail_at_the_call() {
        let j = JobBuilder::new();
        assert!(j.code("  ").is_err());
        assert!(j.memory(-1.0).is_err());
        assert!(j.timeout(f64::NAN).is_err());
        assert!(j.args(vec!["a\"b".into()]).is_err());
        assert!(j.environment([("1X".to_string(), "v".to_string())].into()).is_err());
        assert!(j.interpreter("ruby").is_err());
        assert!(j.script("x.rb").is_err());
        assert!(j.file("../x", "y").is_err());
        assert!(j.consensus("most").is_err());
        assert!(j.payment("abc", None).is_err());
        assert!(j.repository("git@github.com:a/b", None).is_err());
    }
}
