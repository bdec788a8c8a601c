//! Turning a `JobSpec` into what a worker receives: files, manifest, job hash.
//!
//! Decisions (documented in the package README):
//! - Interpreter: `interpreter()` if given; else a script's extension; else for inline
//!   code a shebang (`#!/usr/bin/env node`); else JavaScript when the code shows a JS
//!   marker (`console.`, `require(`, `process.`, `=>`, `function `, `const `, `let `,
//!   `var `, `import ... from '`, `export `); else `python3`.
//! - The launcher: a worker hashes only the entrypoint file into `job_hash`, ignores the
//!   manifest's `env`, and reports stdout through the unsigned `/logs`. So a verified job
//!   (and any job with `environment()`) runs a small launcher as its entrypoint. Its text
//!   embeds the sha256 of every other input file and the environment, so the job hash
//!   commits to the whole program and its values; it checks those hashes before running
//!   (an honest worker then refuses a corrupted upload), sets the environment, runs the
//!   user's entrypoint with the job's args, and tees stdout into [`STDOUT_FILE`], which the
//!   worker hashes and signs like any output.

use super::{archive, JobSpec, Source};
use crate::config::SandrunConfig;
use crate::error::{Error, ErrorCode, Result};
use crate::platform::{HttpRequest, Platform};
use crate::proof::job_hash;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::rc::Rc;

/// A job ready to send: its files, manifest and the job hash workers must report.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedJob {
    /// Every input file, sorted by path.
    pub files: Vec<(String, Rc<[u8]>)>,
    /// The entrypoint the worker runs (the env launcher when `environment()` was used).
    pub entrypoint: String,
    /// The user's own entrypoint.
    pub user_entrypoint: String,
    pub interpreter: String,
    pub args: Vec<String>,
    pub outputs: Vec<String>,
    pub timeout_secs: f64,
    /// The manifest JSON as sent.
    pub manifest: String,
    /// `job_hash` recomputed from exactly what is sent.
    pub job_hash: String,
    /// The output file the launcher tees stdout into, when the job runs one.
    pub stdout_file: Option<String>,
    /// Worker keys allowed to sign the result (the job's `allow()`, else the client's
    /// `allowedWorkers`); `None`: any key.
    pub allowed: Option<Vec<String>>,
    /// `publish()`: `download()` adds the verified outputs to IPFS.
    pub publish: bool,
    /// The upload once packed: every replica, retry and `estimate()` of this job sends
    /// (or counts) the same bytes, compressed once.
    pub packed: PackedArchive,
}

/// A prepared job's tar.gz, packed on first use. Not part of the job's identity: equal
/// jobs compare equal whether packed or not, and a clone starts unpacked (its files are
/// public fields, and a changed copy must not send the original's archive).
#[derive(Default)]
pub struct PackedArchive(std::cell::RefCell<Packing>);

/// Where packing stands. Replicas are submitted at once, so a second caller can arrive
/// while the first packs: it waits for that one instead of packing again.
#[derive(Default, Clone)]
enum Packing {
    #[default]
    Idle,
    /// Being packed; set when it ends (packed, failed, or abandoned).
    Running(crate::util::CancelToken),
    Done(Rc<Vec<u8>>),
}

/// Puts a packing that did not finish (an error, or a caller that went away) back to
/// `Idle` and wakes whoever waited for it, so that one of them packs instead.
struct PackingGuard<'a> {
    slot: &'a PackedArchive,
    ended: crate::util::CancelToken,
}

impl Drop for PackingGuard<'_> {
    fn drop(&mut self) {
        let mut state = self.slot.0.borrow_mut();
        if !matches!(*state, Packing::Done(_)) {
            *state = Packing::Idle;
        }
        drop(state);
        self.ended.cancel();
    }
}

impl Clone for PackedArchive {
    fn clone(&self) -> Self {
        PackedArchive::default()
    }
}

impl PartialEq for PackedArchive {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for PackedArchive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &*self.0.borrow() {
            Packing::Done(a) => write!(f, "PackedArchive({} bytes)", a.len()),
            _ => f.write_str("PackedArchive(not yet)"),
        }
    }
}

/// Where the launcher tees the job's stdout; the worker hashes and signs it as an output.
pub const STDOUT_FILE: &str = "_sandrun_stdout.txt";
/// Exit code of a launcher that found an input file different from what was submitted.
pub const LAUNCHER_MISMATCH_EXIT: i64 = 97;

impl PreparedJob {
    /// The upload: the files' deterministic tar, gzipped by the platform (the host's
    /// native zlib where it has one, else Rust's), packed once per prepared job.
    ///
    /// Which compressor ran changes the bytes, not the files: no hash covers the
    /// archive (the job hash covers the entrypoint, the launcher the other files), and a
    /// worker inflates any standard gzip. What is checked is that the output is gzip and
    /// counts every tar byte ([`archive::check_gzip`]).
    pub async fn archive(&self, platform: &dyn Platform) -> Result<Rc<Vec<u8>>> {
        loop {
            let state = self.packed.0.borrow().clone();
            match state {
                Packing::Done(a) => return Ok(a),
                Packing::Running(ended) => ended.cancelled().await,
                Packing::Idle => break,
            }
        }
        let ended = crate::util::CancelToken::default();
        *self.packed.0.borrow_mut() = Packing::Running(ended.clone());
        let _guard = PackingGuard { slot: &self.packed, ended };
        let parts = archive::tar_parts(self.files.iter().map(|(p, b)| (p.as_str(), &b[..])))?;
        let parts: Vec<&[u8]> = parts.iter().map(|p| &p[..]).collect();
        let len = parts.iter().map(|p| p.len()).sum();
        let out = platform.gzip(&parts).await?;
        archive::check_gzip(&out, len)?;
        let out = Rc::new(out);
        *self.packed.0.borrow_mut() = Packing::Done(out.clone());
        Ok(out)
    }
    /// Whether `path` is one of the job's own outputs: selected by its `outputs()`
    /// patterns, and not the SDK's launcher or stdout capture.
    pub fn is_user_output(&self, path: &str) -> bool {
        let launcher = (self.entrypoint != self.user_entrypoint).then_some(self.entrypoint.as_str());
        self.stdout_file.as_deref() != Some(path) && launcher != Some(path) && crate::util::selected_by(&self.outputs, path)
    }
    /// The files worth publishing of a job's downloaded outputs: its own outputs, less
    /// inputs returned unchanged.
    pub fn publishable(&self, files: Vec<(String, Vec<u8>)>) -> Vec<(String, Vec<u8>)> {
        files.into_iter().filter(|(p, b)| self.is_user_output(p) && !self.files.iter().any(|(q, c)| q == p && c[..] == b[..])).collect()
    }
    /// Total bytes of input files.
    pub fn input_bytes(&self) -> u64 {
        self.files.iter().map(|(_, b)| b.len() as u64).sum()
    }
}

/// The interpreter an extension implies.
pub fn interpreter_for_extension(path: &str) -> Option<&'static str> {
    let name = path.rsplit('/').next().unwrap_or(path);
    let name = name.split(['?', '#']).next().unwrap_or(name);
    match name.rsplit_once('.')?.1 {
        "py" => Some("python3"),
        "js" | "mjs" | "cjs" => Some("node"),
        "sh" | "bash" => Some("bash"),
        _ => None,
    }
}

/// The default entrypoint name for an interpreter (the reference's defaults).
pub fn default_entrypoint(interpreter: &str) -> &'static str {
    match interpreter {
        "node" => "index.js",
        "bash" | "sh" => "run.sh",
        _ => "main.py",
    }
}

/// Pick the interpreter of inline code: shebang, then JavaScript markers, else python3.
pub fn detect_interpreter(code: &[u8]) -> &'static str {
    let text = String::from_utf8_lossy(&code[..code.len().min(64 * 1024)]);
    if let Some(first) = text.lines().next().filter(|l| l.starts_with("#!")) {
        if first.contains("node") {
            return "node";
        }
        if first.contains("python") {
            return "python3";
        }
        if first.contains("bash") || first.ends_with("/sh") || first.contains("env sh") {
            return "bash";
        }
    }
    const JS: [&str; 10] = ["console.", "require(", "process.", "=>", "function ", "const ", "let ", "var ", "export ", "import {"];
    let js_import = text.lines().any(|l| l.trim_start().starts_with("import ") && (l.contains(" from '") || l.contains(" from \"")));
    if js_import || JS.iter().any(|m| text.contains(m)) {
        "node"
    } else {
        "python3"
    }
}

const SKIP_DIRS: [&str; 5] = ["node_modules", "__pycache__", "target", "venv", ".git"];
const MAX_FILES: usize = 1000;
const MAX_BYTES: u64 = 100 * 1024 * 1024;

async fn fetch(platform: &dyn Platform, url: &str, what: &str) -> Result<Vec<u8>> {
    let mut url = url.to_string();
    for _ in 0..6 {
        let resp = platform.http(HttpRequest::get(url.clone()).timeout(120_000).max_bytes(MAX_BYTES)).await?;
        if (300..400).contains(&resp.status) {
            if let Some(loc) = resp.header("location") {
                url = if loc.starts_with("http") { loc.to_string() } else { join_url(&url, loc) };
                continue;
            }
        }
        if resp.status != 200 {
            return Err(Error::new(ErrorCode::HttpStatus, format!("{what}: GET {url} answered HTTP {}", resp.status)).with_status(resp.status));
        }
        return Ok(resp.body);
    }
    Err(Error::new(ErrorCode::HttpStatus, format!("{what}: too many redirects from {url}")))
}

fn join_url(base: &str, path: &str) -> String {
    let origin_end = base.find("://").map(|i| i + 3).and_then(|i| base[i..].find('/').map(|j| i + j)).unwrap_or(base.len());
    format!("{}{}", &base[..origin_end], path)
}

/// Where to download a repository's tar.gz at a ref.
pub fn archive_url(url: &str, reference: Option<&str>) -> String {
    let r = reference.unwrap_or("HEAD");
    let trimmed = url.trim_end_matches('/').trim_end_matches(".git");
    if let Some(path) = trimmed.strip_prefix("https://github.com/") {
        return format!("https://codeload.github.com/{path}/tar.gz/{r}");
    }
    if let Some(path) = trimmed.strip_prefix("https://gitlab.com/") {
        let name = path.rsplit('/').next().unwrap_or(path);
        return format!("https://gitlab.com/{path}/-/archive/{r}/{name}-{r}.tar.gz");
    }
    if trimmed.ends_with(".tar.gz") || trimmed.ends_with(".tgz") {
        return trimmed.to_string();
    }
    format!("{trimmed}/archive/{}.tar.gz", reference.unwrap_or("main"))
}

async fn walk(platform: &dyn Platform, root: &str, rel: &str, out: &mut Vec<(String, Rc<[u8]>)>, total: &mut u64) -> Result<()> {
    let dir = if rel.is_empty() { root.to_string() } else { format!("{root}/{rel}") };
    let mut entries = platform.read_dir(&dir).await?;
    entries.sort();
    for (name, is_dir) in entries {
        if name.starts_with('.') || SKIP_DIRS.contains(&name.as_str()) {
            continue;
        }
        let path = if rel.is_empty() { name.clone() } else { format!("{rel}/{name}") };
        if is_dir {
            Box::pin(walk(platform, root, &path, out, total)).await?;
        } else {
            let bytes = platform.read_file(&format!("{root}/{path}")).await?;
            *total += bytes.len() as u64;
            out.push((path, bytes.into()));
            if out.len() > MAX_FILES || *total > MAX_BYTES {
                return Err(Error::invalid(format!(
                    "script directory {root} holds more than {MAX_FILES} files or {MAX_BYTES} bytes: move the script to a directory with only the job's files"
                )));
            }
        }
    }
    Ok(())
}

/// The URL of `code('ipfs://...')`: code that is one `ipfs://` URL and nothing else.
pub fn ipfs_code_url(code: &[u8]) -> Option<&str> {
    let t = std::str::from_utf8(code).ok()?.trim();
    (crate::ipfs::IpfsUrl::is_ipfs(t) && !t.contains(char::is_whitespace)).then_some(t)
}

/// Fetch and verify `url` from the configured gateway, within what is left of the job's
/// input budget: its files as (path relative to the URL, bytes); a file gives one entry
/// with an empty path.
async fn ipfs_fetch(platform: &dyn Platform, config: &SandrunConfig, url: &crate::ipfs::IpfsUrl, used: u64) -> Result<Vec<(String, Vec<u8>)>> {
    let gw = crate::ipfs::need_gateway(config.ipfs_gateway.as_deref())?;
    let limits = crate::ipfs::Limits { max_bytes: MAX_BYTES.saturating_sub(used), ..Default::default() };
    crate::ipfs::get_files(platform, gw, url, limits).await
}

/// The single file an `ipfs://` URL must name (for `code()` and `script()`).
fn one_file(mut got: Vec<(String, Vec<u8>)>, url: &crate::ipfs::IpfsUrl, what: &str) -> Result<Vec<u8>> {
    match got.len() {
        1 if got[0].0.is_empty() => Ok(got.pop().map(|(_, b)| b).unwrap_or_default()),
        _ => Err(Error::invalid(format!("{what}({url}) names a directory: name a file in it (ipfs://<cid>/<file>), or use repository() for the whole directory"))),
    }
}

/// Put `files` at `base/<path>` (the file itself at `base`), refusing a path the job
/// already holds with other bytes.
fn pack(files: &mut BTreeMap<String, Rc<[u8]>>, base: &str, got: Vec<(String, Vec<u8>)>) -> Result<()> {
    for (p, b) in got {
        let path = match (base.is_empty(), p.is_empty()) {
            (true, _) => p,
            (false, true) => base.to_string(),
            (false, false) => format!("{base}/{p}"),
        };
        if files.get(&path).is_some_and(|old| old[..] != b[..]) {
            return Err(Error::invalid(format!("two inputs land on {path:?} with different bytes: rename one")));
        }
        files.insert(path, b.into());
    }
    Ok(())
}

fn used(files: &BTreeMap<String, Rc<[u8]>>) -> u64 {
    files.values().map(|b| b.len() as u64).sum()
}

/// The values a `job.json` in the upload provides.
fn job_json(files: &[(String, Rc<[u8]>)]) -> Option<Value> {
    let (_, bytes) = files.iter().find(|(p, _)| p == "job.json")?;
    serde_json::from_slice(bytes).ok()
}

/// Resolve sources, pick interpreter and entrypoint, add the launcher, hash.
///
/// `verified`: the result will be checked (any level but `'none'`), so the job runs the
/// launcher even without environment variables, for its commitments and signed stdout.
pub async fn prepare(spec: &JobSpec, platform: &dyn Platform, config: &SandrunConfig, verified: bool) -> Result<PreparedJob> {
    let mut files: BTreeMap<String, Rc<[u8]>> = BTreeMap::new();
    let mut interpreter = spec.interpreter.clone();
    let mut entrypoint = spec.entrypoint.clone();
    let mut args = spec.args.clone();
    match &spec.source {
        None => {
            if spec.files.is_empty() {
                return Err(Error::invalid("the job has no code: call code(), script(), repository() or file() first"));
            }
        }
        Some(Source::Code(code)) => {
            // `code('ipfs://CID[/file]')`: the file's verified bytes are the code.
            let (bytes, ext) = match ipfs_code_url(code) {
                Some(u) => {
                    let url = crate::ipfs::IpfsUrl::parse(u)?;
                    let b: Rc<[u8]> = one_file(ipfs_fetch(platform, config, &url, 0).await?, &url, "code")?.into();
                    (b, url.path.last().and_then(|n| interpreter_for_extension(n)))
                }
                None => (code.clone(), None),
            };
            let bytes = &bytes;
            let i = interpreter.clone().or(ext.map(str::to_string)).unwrap_or_else(|| detect_interpreter(bytes).to_string());
            let e = entrypoint.clone().unwrap_or_else(|| default_entrypoint(&i).to_string());
            files.insert(e.clone(), bytes.clone());
            interpreter = Some(i);
            entrypoint = Some(e);
        }
        Some(Source::Script(path)) => {
            let name = path.rsplit('/').next().unwrap_or(path).split(['?', '#']).next().unwrap_or_default().to_string();
            if crate::ipfs::IpfsUrl::is_ipfs(path) {
                // `ipfs://CID/dir/run.py`: the file's directory comes along, as with a local
                // script; `ipfs://CID`: the file alone, its interpreter read from its text.
                let url = crate::ipfs::IpfsUrl::parse(path)?;
                match url.path.split_last() {
                    Some((file, dir)) => {
                        let parent = crate::ipfs::IpfsUrl { root: url.root, path: dir.to_vec() };
                        pack(&mut files, "", ipfs_fetch(platform, config, &parent, 0).await?)?;
                        if !files.contains_key(file) {
                            return Err(Error::invalid(format!("script({url}): {file:?} is not a file of that directory")));
                        }
                        interpreter = interpreter.or_else(|| files.get(file).map(|b| detect_interpreter(b).to_string()));
                        entrypoint = entrypoint.or(Some(file.clone()));
                    }
                    None => {
                        let b = one_file(ipfs_fetch(platform, config, &url, 0).await?, &url, "script")?;
                        let i = interpreter.clone().unwrap_or_else(|| detect_interpreter(&b).to_string());
                        let e = entrypoint.clone().unwrap_or_else(|| default_entrypoint(&i).to_string());
                        files.insert(e.clone(), b.into());
                        interpreter = Some(i);
                        entrypoint = Some(e);
                    }
                }
            } else if path.starts_with("http://") || path.starts_with("https://") {
                files.insert(name.clone(), fetch(platform, path, "script()").await?.into());
            } else {
                let dir = match path.rsplit_once('/') {
                    Some((d, _)) if !d.is_empty() => d.to_string(),
                    Some(_) => "/".to_string(),
                    None => ".".to_string(),
                };
                // Read the script itself first so a wrong path fails with its own name.
                platform.read_file(path).await?;
                let mut found = Vec::new();
                walk(platform, &dir, "", &mut found, &mut 0).await?;
                files.extend(found);
            }
            interpreter = interpreter.or_else(|| interpreter_for_extension(path).map(str::to_string));
            entrypoint = entrypoint.or(Some(name));
        }
        Some(Source::Repository { url, reference }) => {
            if crate::ipfs::IpfsUrl::is_ipfs(url) {
                // A directory's files are the repository; a single file is its tar.gz.
                let u = crate::ipfs::IpfsUrl::parse(url)?;
                let got = ipfs_fetch(platform, config, &u, 0).await?;
                if got.len() == 1 && got[0].0.is_empty() {
                    for (p, b) in archive::unpack_tar_gz(&got[0].1, true)? {
                        files.insert(p, b.into());
                    }
                } else {
                    pack(&mut files, "", got)?;
                }
            } else {
                let archive_url = archive_url(url, reference.as_deref());
                let tgz = fetch(platform, &archive_url, "repository()").await?;
                for (p, b) in archive::unpack_tar_gz(&tgz, true)? {
                    files.insert(p, b.into());
                }
            }
            if entrypoint.is_none() {
                if let Some(j) = job_json(&files.iter().map(|(p, b)| (p.clone(), b.clone())).collect::<Vec<_>>()) {
                    // The archive host wrote these: they pass the same checks as the
                    // builder methods, so a hostile job.json cannot break the manifest.
                    let from_repo = |e: Error| Error::invalid(format!("repository {url}: its job.json is not usable: {}", e.message));
                    let mut b = super::JobBuilder::new();
                    if let Some(e) = j["entrypoint"].as_str() {
                        b = b.entrypoint(e).map_err(from_repo)?;
                    }
                    if interpreter.is_none() {
                        if let Some(i) = j["interpreter"].as_str() {
                            b = b.interpreter(i).map_err(from_repo)?;
                        }
                    }
                    if args.is_empty() {
                        if let Some(a) = j["args"].as_array() {
                            b = b.args(a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect()).map_err(from_repo)?;
                        }
                    }
                    entrypoint = b.spec().entrypoint.clone();
                    interpreter = interpreter.or_else(|| b.spec().interpreter.clone());
                    if args.is_empty() {
                        args = b.spec().args.clone();
                    }
                }
            }
            if entrypoint.is_none() {
                entrypoint = ["main.py", "index.js", "run.sh"].iter().find(|n| files.contains_key(**n)).map(|s| s.to_string());
            }
            if entrypoint.is_none() {
                return Err(Error::invalid(format!(
                    "repository {url}: no job.json, main.py, index.js or run.sh at its root; call entrypoint() to name the file to run"
                )));
            }
            if interpreter.is_none() {
                interpreter = entrypoint.as_deref().and_then(interpreter_for_extension).map(str::to_string);
            }
        }
    }
    for (p, b) in &spec.files {
        files.insert(p.clone(), b.clone());
    }
    // Environment values that are `ipfs://` URLs: fetched, verified, packed at
    // `_ipfs/<cid>[/path]`, and the variable names that path (relative to the job's
    // directory). The launcher embeds the packed files' hashes, so the job hash covers them.
    let mut env = spec.env.clone();
    if !spec.keep_ipfs_urls {
        for v in env.values_mut() {
            if crate::ipfs::IpfsUrl::is_ipfs(v) {
                let url = crate::ipfs::IpfsUrl::parse(v)?;
                let got = ipfs_fetch(platform, config, &url, used(&files)).await?;
                pack(&mut files, &url.packed_path(), got)?;
                *v = url.packed_path();
            }
        }
    }
    let interpreter = interpreter.unwrap_or_else(|| "python3".into());
    let user_entrypoint = match entrypoint {
        Some(e) => e,
        None => ["main.py", "index.js", "run.sh"]
            .iter()
            .find(|n| files.contains_key(**n))
            .map(|s| s.to_string())
            .ok_or_else(|| Error::invalid("no entrypoint: call entrypoint(path) to name the file to run"))?,
    };
    if !files.contains_key(&user_entrypoint) {
        return Err(Error::invalid(format!("entrypoint {user_entrypoint:?} is not among the job's files")));
    }

    let mut entry = user_entrypoint.clone();
    let mut stdout_file = None;
    let mut outputs = spec.outputs.clone();
    if verified || !env.is_empty() {
        if files.keys().any(|p| p.starts_with("_sandrun_")) {
            return Err(Error::invalid("input file names starting with _sandrun_ are reserved for the SDK's launcher: rename them"));
        }
        let mut hashes = BTreeMap::new();
        for (p, b) in &files {
            hashes.insert(p.clone(), platform.sha256_hex(b).await);
        }
        let (name, content) = launcher(&interpreter, &user_entrypoint, &env, &hashes);
        files.insert(name.clone(), content.into_bytes().into());
        entry = name;
        stdout_file = Some(STDOUT_FILE.to_string());
        // With output patterns the worker lists only matches: name the stdout file too.
        if !outputs.is_empty() {
            outputs.push(STDOUT_FILE.to_string());
        }
    }

    let timeout_secs = spec.timeout_secs.unwrap_or_else(|| config.default_timeout());
    // Field order matters: the reference reads the manifest with a substring scan, so
    // the fields it reads come first (serde_json's Map would sort them).
    let mut fields: Vec<(&str, Value)> = vec![
        ("entrypoint", json!(entry)),
        ("interpreter", json!(interpreter)),
        ("args", json!(args)),
    ];
    if !outputs.is_empty() {
        fields.push(("outputs", json!(outputs)));
    }
    fields.push(("timeout", json!(timeout_secs)));
    if let Some(mb) = spec.memory_mb {
        fields.push(("memory_mb", json!(mb)));
    }
    if let Some(g) = &spec.gpu {
        fields.push(("gpu", serde_json::to_value(g).unwrap_or(Value::Null)));
    }
    if !env.is_empty() {
        // Keys that share a name with a field the reference scans for would confuse its
        // substring scanner; they still reach the job through the launcher.
        const SCANNED: [&str; 5] = ["entrypoint", "interpreter", "environment", "args", "outputs"];
        let env: Map<String, Value> =
            env.iter().filter(|(k, _)| !SCANNED.contains(&k.as_str())).map(|(k, v)| (k.clone(), json!(v))).collect();
        fields.push(("env", Value::Object(env)));
    }
    let body: Vec<String> = fields.iter().map(|(k, v)| format!("{}:{v}", json!(k))).collect();
    let manifest = format!("{{{}}}", body.join(","));
    let content = files.get(&entry).map(|b| &b[..]);
    let hash = job_hash(&entry, &interpreter, "", &args, content);
    Ok(PreparedJob {
        files: files.into_iter().collect(),
        entrypoint: entry,
        user_entrypoint,
        interpreter,
        args,
        outputs: spec.outputs.clone(),
        timeout_secs,
        manifest,
        job_hash: hash,
        stdout_file,
        allowed: spec.allow.clone().or_else(|| config.allowed_workers.clone()),
        publish: spec.publish,
        packed: PackedArchive::default(),
    })
}

/// (launcher path, launcher source). The source embeds everything the job runs with:
/// the entrypoint, the environment and the sha256 of every other input file, so that
/// the job hash (which covers only the entrypoint's bytes) commits to all of it.
fn launcher(interpreter: &str, entry: &str, env: &BTreeMap<String, String>, hashes: &BTreeMap<String, String>) -> (String, String) {
    // A JSON string literal is also a valid Python and JavaScript string literal, and a
    // JSON object of strings a valid Python dict display: the Python launcher embeds `spec`
    // as code, so it need not import json (nor hashlib, whose OpenSSL import costs a few
    // ms per job: Python's builtin SHA-256 module is tried first).
    let spec = json!({ "entrypoint": entry, "env": env, "files": hashes, "stdout": STDOUT_FILE }).to_string();
    match interpreter {
        "node" => (
            "_sandrun_run.cjs".into(),
            format!(
                "// Written by @sandrun/wasm: checks the job's files against the hashes it was submitted with,\n\
// sets its environment, runs its entrypoint and tees stdout into a file the worker signs.\n\
const fs = require('fs'), path = require('path'), url = require('url'), crypto = require('crypto');\n\
const spec = JSON.parse({literal});\n\
for (const [p, digest] of Object.entries(spec.files)) {{\n\
  if (crypto.createHash('sha256').update(fs.readFileSync(path.join(__dirname, p))).digest('hex') !== digest) {{\n\
    process.stderr.write(`sandrun launcher: ${{p}} differs from the file that was submitted\\n`);\n\
    process.exit({LAUNCHER_MISMATCH_EXIT});\n\
  }}\n\
}}\n\
Object.assign(process.env, spec.env);\n\
const out = fs.openSync(path.join(__dirname, spec.stdout), 'w');\n\
const write = process.stdout.write.bind(process.stdout);\n\
process.stdout.write = (chunk, encoding, cb) => {{\n\
  fs.writeSync(out, typeof chunk === 'string' ? Buffer.from(chunk, typeof encoding === 'string' ? encoding : 'utf8') : chunk);\n\
  return write(chunk, encoding, cb);\n\
}};\n\
const entry = path.join(__dirname, spec.entrypoint);\n\
process.argv[1] = entry;\n\
import(url.pathToFileURL(entry).href).catch((e) => {{ console.error(e); process.exit(1); }});\n",
                literal = Value::String(spec).to_string()
            ),
        ),
        "bash" | "sh" => {
            let q = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
            let mut s = String::from(
                "# Written by @sandrun/wasm: checks the job's files against the hashes it was submitted with,\n\
# sets its environment, runs its entrypoint and copies stdout into a file the worker signs.\n\
cd \"$(dirname \"$0\")\" || exit 1\n\
check() { command -v sha256sum >/dev/null || return 0; [ \"$(sha256sum < \"$1\" | cut -d' ' -f1)\" = \"$2\" ] || { echo \"sandrun launcher: $1 differs from the file that was submitted\" >&2; exit 97; }; }\n",
            );
            for (p, h) in hashes {
                s.push_str(&format!("check {} {h}\n", q(p)));
            }
            for (k, v) in env {
                s.push_str(&format!("export {k}={}\n", q(v)));
            }
            // Run, then replay: the file is complete before the worker hashes it.
            s.push_str(&format!("{interpreter} {} \"$@\" > {STDOUT_FILE}\ncode=$?\ncat {STDOUT_FILE}\nexit $code\n", q(entry)));
            ("_sandrun_run.sh".into(), s)
        }
        _ => (
            "_sandrun_run.py".into(),
            format!(
                r#"# Written by @sandrun/wasm: checks the job's files against the hashes it was submitted with,
# sets its environment, runs its entrypoint and tees stdout into a file the worker signs.
import io, os, runpy, sys
try:
    from _sha2 import sha256
except ImportError:
    try:
        from _sha256 import sha256
    except ImportError:
        from hashlib import sha256
spec = {spec}
here = os.path.dirname(os.path.abspath(__file__))
for p, digest in spec['files'].items():
    with open(os.path.join(here, p), 'rb') as f:
        if sha256(f.read()).hexdigest() != digest:
            sys.stderr.write('sandrun launcher: %s differs from the file that was submitted\n' % p)
            sys.exit({LAUNCHER_MISMATCH_EXIT})
os.environ.update(spec['env'])
class Tee(io.BufferedIOBase):
    def __init__(self, a, b):
        self.a, self.b = a, b
    def writable(self):
        return True
    def write(self, data):
        self.a.write(data); self.a.flush(); self.b.write(data); self.b.flush()
        return len(data)
    def flush(self):
        self.a.flush(); self.b.flush()
sys.stdout.flush()
sys.stdout = io.TextIOWrapper(Tee(sys.stdout.buffer, open(os.path.join(here, spec['stdout']), 'wb')), encoding='utf-8', errors='backslashreplace', write_through=True)
sys.argv = [spec['entrypoint']] + sys.argv[1:]
runpy.run_path(os.path.join(here, spec['entrypoint']), run_name='__main__')
"#
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::JobBuilder;
    use crate::platform::native::NativePlatform;

    fn run<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
    }

    #[test]
    fn detects_languages() {
        assert_eq!(detect_interpreter(b"console.log(\"Hello from GPU!\")"), "node");
        assert_eq!(detect_interpreter(b"print('hi')"), "python3");
        assert_eq!(detect_interpreter(b"#!/usr/bin/env bash\necho hi"), "bash");
        assert_eq!(detect_interpreter(b"#!/usr/bin/env python3\nx = 1"), "python3");
        assert_eq!(detect_interpreter(b"import { x } from './y.js'\n"), "node");
        assert_eq!(detect_interpreter(b"import os\nprint(os.getcwd())"), "python3");
    }

    #[test]
    fn prepares_the_worked_example_exactly() {
        let j = JobBuilder::new().code("print(\"Hello from Sandrun!\")\n").unwrap();
        let p = run(prepare(j.spec(), &NativePlatform::default(), &SandrunConfig::default(), false)).unwrap();
        assert_eq!((p.entrypoint.as_str(), p.interpreter.as_str()), ("main.py", "python3"));
        assert_eq!(p.job_hash, "4132144496a5939f391660586dfdd2d9c1439011828c0534b66025896829b9ed");
        let m: Value = serde_json::from_str(&p.manifest).unwrap();
        assert_eq!(m["entrypoint"], "main.py");
        assert!(p.manifest.starts_with("{\"entrypoint\":\"main.py\",\"interpreter\":\"python3\",\"args\":[]"));
    }

    fn prepared(j: &JobBuilder, verified: bool) -> PreparedJob {
        run(prepare(j.spec(), &NativePlatform::default(), &SandrunConfig::default(), verified)).unwrap()
    }

    #[test]
    fn env_uses_a_launcher() {
        let j = JobBuilder::new().code("console.log(process.env.A)").unwrap().environment([("A".into(), "b'c".into())].into()).unwrap();
        let p = prepared(&j, false);
        assert_eq!((p.entrypoint.as_str(), p.user_entrypoint.as_str()), ("_sandrun_run.cjs", "index.js"));
        let b = JobBuilder::new().code("#!/bin/bash\necho $A").unwrap().environment([("A".into(), "b'c".into())].into()).unwrap();
        let p = prepared(&b, false);
        let launcher = String::from_utf8(p.files.iter().find(|(n, _)| n == "_sandrun_run.sh").unwrap().1.to_vec()).unwrap();
        assert!(launcher.contains("export A='b'\\''c'"), "{launcher}");
    }

    /// Before the launcher embedded the environment and the files' hashes, every job with
    /// `environment()` had the same job hash, so one receipt "proved" any such program.
    #[test]
    fn the_job_hash_commits_to_env_args_and_every_file() {
        let base = JobBuilder::new().code("import os\nprint(os.environ['A'])").unwrap();
        let a = prepared(&base.environment([("A".into(), "1".into())].into()).unwrap(), true);
        let b = prepared(&base.environment([("A".into(), "2".into())].into()).unwrap(), true);
        assert_ne!(a.job_hash, b.job_hash, "jobs differing in one env value share a job hash");
        let c = prepared(&base.file("data.txt", b"x".to_vec()).unwrap(), true);
        let d = prepared(&base.file("data.txt", b"y".to_vec()).unwrap(), true);
        assert_ne!(c.job_hash, d.job_hash, "jobs differing in a non-entrypoint file share a job hash");
        let e = prepared(&base.args(vec!["1".into()]).unwrap(), true);
        let f = prepared(&base.args(vec!["2".into()]).unwrap(), true);
        assert_ne!(e.job_hash, f.job_hash);
        // Verified jobs always run the launcher and sign their stdout.
        let plain = prepared(&base, true);
        assert_eq!((plain.entrypoint.as_str(), plain.stdout_file.as_deref()), ("_sandrun_run.py", Some(STDOUT_FILE)));
        assert!(prepared(&base, false).stdout_file.is_none());
        // With output patterns the stdout file is named so the worker lists and signs it.
        let o = prepared(&base.outputs(vec!["*.csv".into()]).unwrap(), true);
        assert!(o.manifest.contains(&format!("\"outputs\":[\"*.csv\",\"{STDOUT_FILE}\"]")), "{}", o.manifest);
        let reserved = base.file("_sandrun_x", b"x".to_vec()).unwrap();
        assert!(run(prepare(reserved.spec(), &NativePlatform::default(), &SandrunConfig::default(), true)).is_err());
    }

    /// Run each launcher for real with its interpreter: environment and args reach the
    /// program, stdout reaches both the process's stdout and the signed file, the exit
    /// code passes through, and a changed input file stops the job.
    #[test]
    fn launchers_run_and_tee_stdout() {
        let cases = [
            ("python3", "import os, sys\nprint('é', os.environ['A'], sys.argv[1:])\nsys.exit(3)\n", "é x y ['1', '2']\n"),
            ("node", "console.log('é', process.env.A, process.argv.slice(2).join(','))\nprocess.exitCode = 3\n", "é x y 1,2\n"),
            ("bash", "echo \"é $A $1,$2\"\nexit 3\n", "é x y 1,2\n"),
        ];
        for (interp, code, expected) in cases {
            if std::process::Command::new(interp).arg("--version").output().is_err() {
                panic!("{interp} is needed for this test");
            }
            let j = JobBuilder::new()
                .code(code)
                .unwrap()
                .interpreter(interp)
                .unwrap()
                .environment([("A".into(), "x y".into())].into())
                .unwrap()
                .args(vec!["1".into(), "2".into()])
                .unwrap()
                .file("data.bin", vec![1, 2, 3])
                .unwrap();
            let p = prepared(&j, true);
            let dir = job_dir(&p, interp);
            let out = std::process::Command::new(interp).arg(&p.entrypoint).args(&p.args).current_dir(&dir).output().unwrap();
            assert_eq!(out.status.code(), Some(3), "{interp}: {}", String::from_utf8_lossy(&out.stderr));
            assert_eq!(String::from_utf8_lossy(&out.stdout), expected, "{interp}");
            assert_eq!(std::fs::read(dir.join(STDOUT_FILE)).unwrap(), out.stdout, "{interp}: the signed stdout file differs");
            std::fs::write(dir.join("data.bin"), [9]).unwrap();
            let out = std::process::Command::new(interp).arg(&p.entrypoint).current_dir(&dir).output().unwrap();
            assert_eq!(out.status.code(), Some(LAUNCHER_MISMATCH_EXIT as i32), "{interp}: a changed input file still ran");
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }

    /// A fresh directory holding `p`'s files, as a worker lays them out.
    fn job_dir(p: &PreparedJob, name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("sandrun-launcher-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (path, bytes) in &p.files {
            std::fs::write(dir.join(path), bytes).unwrap();
        }
        dir
    }

    /// The Python launcher embeds its spec as a dict display: values that would break out
    /// of a string literal (quotes, backslashes, newlines, braces) arrive unchanged.
    #[test]
    fn python_launcher_spec_survives_hostile_values() {
        let hostile = "a\"b'c\\d\n\"\"\"e{}\té\u{2028}$(x)";
        let j = JobBuilder::new()
            .code("import os, sys\nsys.stdout.write(os.environ['B'])\n")
            .unwrap()
            .environment([("B".into(), hostile.into())].into())
            .unwrap();
        let p = prepared(&j, true);
        let dir = job_dir(&p, "hostile");
        let out = std::process::Command::new("python3").arg(&p.entrypoint).current_dir(&dir).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8(out.stdout).unwrap(), hostile);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The upload is packed once per prepared job (every replica and retry sends the
    /// same bytes), unpacks to exactly the job's files, and a clone packs its own.
    #[test]
    fn archive_is_packed_once_and_holds_the_files() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 97) as u8).collect();
        let j = JobBuilder::new().code("print(1)").unwrap().file("data.bin", data.clone()).unwrap();
        let p = prepared(&j, true);
        let platform = NativePlatform::default();
        let a = run(p.archive(&platform)).unwrap();
        let b = run(p.archive(&platform)).unwrap();
        assert!(Rc::ptr_eq(&a, &b), "the second call packed again");
        let files = archive::unpack_tar_gz(&a, false).unwrap();
        assert_eq!(files.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(), p.files.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>());
        assert!(files.iter().zip(&p.files).all(|((_, x), (_, y))| x[..] == y[..]));
        let mut changed = p.clone();
        assert_eq!(changed, p);
        changed.files.retain(|(n, _)| n != "data.bin");
        let c = run(changed.archive(&platform)).unwrap();
        assert_eq!(archive::unpack_tar_gz(&c, false).unwrap().len(), p.files.len() - 1, "a changed clone sent the original's archive");
    }

    #[test]
    fn archive_urls() {
        assert_eq!(archive_url("https://github.com/user/ml-training", None), "https://codeload.github.com/user/ml-training/tar.gz/HEAD");
        assert_eq!(archive_url("https://github.com/u/r.git", Some("v1")), "https://codeload.github.com/u/r/tar.gz/v1");
        assert_eq!(archive_url("http://127.0.0.1:9/x.tar.gz", Some("v1")), "http://127.0.0.1:9/x.tar.gz");
        assert_eq!(archive_url("http://127.0.0.1:9/repo", Some("dev")), "http://127.0.0.1:9/repo/archive/dev.tar.gz");
    }

    /// A compressor that takes a while (it sleeps first) and counts its calls: two
    /// callers overlap only if the compressor yields. A test double: the host's real
    /// node:zlib is exercised by tests/js/archive.test.mjs.
    struct SlowGzip {
        base: NativePlatform,
        calls: std::cell::Cell<usize>,
    }

    impl Platform for SlowGzip {
        fn http(&self, req: crate::platform::HttpRequest) -> crate::platform::LocalFuture<'_, Result<crate::platform::HttpResponse>> {
            self.base.http(req)
        }
        crate::platform::delegate_to_base!();
        fn gzip(&self, parts: &[&[u8]]) -> crate::platform::LocalFuture<'_, Result<Vec<u8>>> {
            self.calls.set(self.calls.get() + 1);
            let out = crate::platform::gzip::gzip_parts(parts);
            Box::pin(async move {
                self.base.sleep(20).await;
                out
            })
        }
    }

    #[test]
    fn concurrent_callers_pack_once_and_an_abandoned_packing_is_taken_over() {
        let (job, job2) = (prepared(&JobBuilder::new().code("print(1)").unwrap(), true), prepared(&JobBuilder::new().code("print(2)").unwrap(), true));
        run(async {
            let p = SlowGzip { base: NativePlatform::default(), calls: Default::default() };
            // Two replicas submitted at once: one packing, the same bytes for both.
            let (a, b) = crate::util::join(job.archive(&p), job.archive(&p)).await;
            assert_eq!(p.calls.get(), 1);
            assert!(Rc::ptr_eq(&a.unwrap(), &b.unwrap()));
            // A caller that goes away mid-packing (a cancelled submit) does not leave the
            // others waiting: the next one packs.
            let job = job2;
            let before = p.calls.get();
            let first = async { crate::util::race(job.archive(&p), p.base.sleep(5)).await };
            let waiter = async { crate::util::race(job.archive(&p), p.base.sleep(2_000)).await };
            let (first, second) = crate::util::join(first, waiter).await;
            assert!(matches!(first, crate::util::Either::Right(())), "the first caller was dropped mid-packing");
            assert!(matches!(second, crate::util::Either::Left(Ok(_))), "the waiting caller packed instead of waiting forever");
            assert_eq!(p.calls.get() - before, 2);
            assert!(format!("{:?}", job.packed).contains("bytes"));
        });
    }
}

