//! IPFS: verified fetch from a trustless gateway, and adding through a Kubo RPC endpoint.
//!
//! - `ipfsGateway` is a trustless gateway: the SDK asks `GET /ipfs/{cid}[/path]?format=car`
//!   for a whole DAG at once and `?format=raw` for any single block the CAR lacked (or
//!   for everything, when the gateway serves no CARs). Every block is checked against
//!   its CID ([`block::verify`]) before it is read; a block that fails fails the whole
//!   fetch with `VERIFICATION_FAILED`, and nothing of it is returned or packed.
//! - `ipfsApi` is a Kubo RPC endpoint: `add` computes the UnixFS DAG locally ([`add`])
//!   with the nodes' defaults, posts the files to `/api/v0/add`, and fails with
//!   `VERIFICATION_FAILED` when the CIDs the node answers are not the ones computed here.
//! - Both go through the client's platform, so middleware (auth, retries, metrics),
//!   deadlines and body caps apply as to every other request.

pub mod add;
pub mod block;
pub mod unixfs;

use crate::error::{Error, ErrorCode, Result};
use crate::platform::{HttpRequest, Platform};
use crate::types::{PublishedFile, PublishedOutputs};
use add::{AddOptions, Added, Dag};
use block::Blocks;
use cid::Cid;
use std::rc::Rc;
use unixfs::{Entry, Reader};

/// Bounds of one verified fetch.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Content bytes (a file, or all files of a directory together). Default 100 MiB.
    pub max_bytes: u64,
    /// Bytes of one block (IPFS nodes make them up to 1 MiB, and exchange up to 2 MiB).
    pub max_block_bytes: usize,
    /// Levels of a file's DAG, or of nested directories.
    pub max_depth: u32,
    /// Blocks in one fetch.
    pub max_blocks: usize,
    /// Directory entries in one fetch.
    pub max_entries: usize,
    /// Deadline of each gateway request.
    pub timeout_ms: u64,
}

/// Default content limit of a fetch: the same as a job's input files.
pub const DEFAULT_MAX_BYTES: u64 = 100 * 1024 * 1024;

impl Default for Limits {
    fn default() -> Self {
        Limits { max_bytes: DEFAULT_MAX_BYTES, max_block_bytes: 2 * 1024 * 1024, max_depth: 32, max_blocks: 100_000, max_entries: 10_000, timeout_ms: 120_000 }
    }
}

impl Limits {
    /// The most block bytes a fetch may carry: content plus DAG-PB overhead.
    pub fn max_fetch_bytes(&self) -> u64 {
        self.max_bytes.saturating_add(self.max_bytes / 8).saturating_add(4 * 1024 * 1024)
    }
    /// With `maxBytes` from the caller, checked.
    pub fn with_max_bytes(mut self, max: Option<f64>) -> Result<Limits> {
        if let Some(m) = max {
            if !(m.is_finite() && m >= 0.0) {
                return Err(Error::invalid(format!("maxBytes must be a non-negative number of bytes, got {m}")));
            }
            self.max_bytes = m as u64;
        }
        Ok(self)
    }
}

/// Where the SDK packs the IPFS inputs of a job: `_ipfs/<root cid>/<path>`.
pub const PACK_DIR: &str = "_ipfs";

/// An `ipfs://CID[/path]` URL (a bare CID or `/ipfs/CID[/path]` is read the same way).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpfsUrl {
    pub root: Cid,
    /// Directory entry names from the root.
    pub path: Vec<String>,
}

impl IpfsUrl {
    /// Parse and check: the CID must be one the SDK can verify, and every path segment a
    /// plain name.
    pub fn parse(s: &str) -> Result<IpfsUrl> {
        let t = s.trim();
        let rest = t.strip_prefix("ipfs://").or_else(|| t.strip_prefix("/ipfs/")).unwrap_or(t);
        let rest = rest.split(['?', '#']).next().unwrap_or_default();
        let mut parts = rest.split('/').filter(|p| !p.is_empty());
        let cid = parts.next().ok_or_else(|| Error::invalid(format!("{s:?} names no CID: write ipfs://<cid>[/path]")))?;
        let root = block::parse_cid(cid)?;
        let mut path = Vec::new();
        for p in parts {
            let p = percent_decode(p).ok_or_else(|| Error::invalid(format!("{s:?}: bad percent-encoding in {p:?}")))?;
            if p == "." || p == ".." || p.contains(['/', '\\', '\0']) {
                return Err(Error::invalid(format!("{s:?}: path segment {p:?} is not a file name")));
            }
            path.push(p);
        }
        Ok(IpfsUrl { root, path })
    }

    /// Whether `s` is meant as an IPFS URL (`ipfs://...`).
    pub fn is_ipfs(s: &str) -> bool {
        s.trim_start().starts_with("ipfs://")
    }

    /// The gateway path `/ipfs/{cid}[/path]`, segments percent-encoded.
    pub fn gateway_path(&self) -> String {
        let mut p = format!("/ipfs/{}", self.root);
        for seg in &self.path {
            p.push('/');
            p.push_str(&percent_encode(seg));
        }
        p
    }

    /// Where this input lands inside a job: `_ipfs/<cid>[/path]`.
    pub fn packed_path(&self) -> String {
        let mut p = format!("{PACK_DIR}/{}", self.root);
        for seg in &self.path {
            p.push('/');
            p.push_str(seg);
        }
        p
    }
}

impl std::fmt::Display for IpfsUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ipfs://{}", self.root)?;
        for seg in &self.path {
            write!(f, "/{seg}")?;
        }
        Ok(())
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The error for a gateway's non-200 answer.
pub fn gateway_status(url: &str, status: u16) -> Error {
    let hint = if status == 404 { " (the gateway has no such CID or path: check the URL, add the data first, or use a gateway that can find it)" } else { "" };
    Error::new(ErrorCode::HttpStatus, format!("IPFS gateway: GET {url} answered HTTP {status}{hint}")).with_status(status)
}

/// The IPFS side of a client: its gateway, its RPC endpoint, its platform.
#[derive(Clone)]
pub struct Ipfs {
    platform: Rc<dyn Platform>,
    gateway: Option<String>,
    api: Option<String>,
}

impl Ipfs {
    pub fn with(platform: Rc<dyn Platform>, gateway: Option<String>, api: Option<String>) -> Ipfs {
        let trim = |s: String| s.trim_end_matches('/').to_string();
        Ipfs { platform, gateway: gateway.map(trim), api: api.map(trim) }
    }

    /// The platform it fetches and hashes on (the client's, middleware included).
    pub fn platform(&self) -> &Rc<dyn Platform> {
        &self.platform
    }

    fn gateway(&self) -> Result<&str> {
        need_gateway(self.gateway.as_deref())
    }

    fn api(&self) -> Result<&str> {
        self.api.as_deref().ok_or_else(|| Error::invalid("adding to IPFS needs a Kubo RPC endpoint: configure ipfsApi (e.g. the devnet's \"ipfs.api\")"))
    }

    /// The verified bytes of the file at `url` (`ipfs://CID[/path]` or a CID).
    pub async fn cat(&self, url: &str, limits: Limits) -> Result<Vec<u8>> {
        Ok(self.cat_parts(url, limits).await?.concat())
    }

    /// [`Ipfs::cat`] as the file's pieces in order (slices of verified blocks), returned
    /// only once the whole file verified: whoever hands the file on copies it once.
    pub async fn cat_parts(&self, url: &str, limits: Limits) -> Result<Vec<bytes::Bytes>> {
        let u = IpfsUrl::parse(url)?;
        let mut r = fetch(&*self.platform, self.gateway()?, &u, "all", limits).await?;
        let cid = r.resolve(&u.root, &u.path).await?;
        r.file_parts(&cid).await
    }

    /// The entries of the directory at `url`.
    pub async fn ls(&self, url: &str, limits: Limits) -> Result<Vec<Entry>> {
        let u = IpfsUrl::parse(url)?;
        let mut r = fetch(&*self.platform, self.gateway()?, &u, "entity", limits).await?;
        let cid = r.resolve(&u.root, &u.path).await?;
        r.list(&cid).await
    }

    /// Every file under `url` as (path relative to it, bytes); a file gives one entry
    /// with an empty path. Nothing is returned unless all of it verified.
    pub async fn get(&self, url: &IpfsUrl, limits: Limits) -> Result<Vec<(String, Vec<u8>)>> {
        get_files(&*self.platform, self.gateway()?, url, limits).await
    }

    /// Add one file; resolves with its CID once the node's answer matched ours.
    pub async fn add_bytes(&self, bytes: &[u8], opts: AddOptions) -> Result<String> {
        let api = self.api()?.to_string();
        let mut dag = Dag::default();
        let local = dag.file(&*self.platform, bytes, opts).await;
        let answer = self.post(&api, &[("data".to_string(), bytes.to_vec())], opts, false).await?;
        let node = answer.last().map(|(_, h)| h.clone()).unwrap_or_default();
        check_same(&local.cid, &node, "the file")?;
        Ok(local.cid.to_string())
    }

    /// Add files (relative paths) as one directory; resolves with the root and every
    /// file and directory under it, once the node's CIDs matched ours.
    pub async fn add_files(&self, files: &[(String, Vec<u8>)], opts: AddOptions) -> Result<(String, Vec<Added>)> {
        let api = self.api()?.to_string();
        if files.is_empty() {
            return Err(Error::invalid("add() got an empty set of files: pass { 'name.txt': bytes, ... }"));
        }
        let mut dag = Dag::default();
        let (root, added) = add::tree(&*self.platform, files, opts, &mut dag).await?;
        let answer = self.post(&api, files, opts, true).await?;
        let node_root = answer.iter().find(|(n, _)| n.is_empty()).map(|(_, h)| h.clone()).unwrap_or_default();
        check_same(&root.cid, &node_root, "the directory")?;
        for a in &added {
            if let Some((_, h)) = answer.iter().find(|(n, _)| *n == a.path) {
                check_same(&a.cid, h, &a.path)?;
            }
        }
        Ok((root.cid.to_string(), added))
    }

    async fn post(&self, api: &str, files: &[(String, Vec<u8>)], opts: AddOptions, wrap: bool) -> Result<Vec<(String, String)>> {
        let boundary = format!("sandrun-{:016x}", (self.platform.now_ms() * 1000.0) as u64 ^ files.len() as u64);
        let body = add::multipart(files, &boundary);
        let url = format!(
            "{api}/api/v0/add?cid-version={}&raw-leaves={}&chunker=size-{}&wrap-with-directory={wrap}&pin=true&progress=false",
            opts.cid_version,
            opts.raw_leaves,
            add::CHUNK_SIZE
        );
        let req = HttpRequest::post(url.clone(), &format!("multipart/form-data; boundary={boundary}"), body).timeout(300_000);
        let resp = self.platform.http(req).await?;
        if resp.status != 200 {
            let text = String::from_utf8_lossy(&resp.body[..resp.body.len().min(300)]).to_string();
            return Err(Error::new(ErrorCode::HttpStatus, format!("IPFS node: POST {url} answered HTTP {}: {text}", resp.status)).with_status(resp.status));
        }
        add::parse_answer(&resp.body)
    }

    /// Publish a verified job's output files (those its `outputs()` patterns select, not
    /// the SDK's launcher or stdout capture, not inputs returned unchanged) as one
    /// directory; every CID is computed here and checked against the node's.
    /// Add a job's chosen output files (see `PreparedJob::publishable`) as one directory.
    pub async fn publish(&self, chosen: Vec<(String, Vec<u8>)>, opts: AddOptions) -> Result<PublishedOutputs> {
        if chosen.is_empty() {
            return Err(Error::invalid("publish(): the job produced no output files to publish (inputs returned unchanged are not published)"));
        }
        let (root, added) = self.add_files(&chosen, opts).await?;
        Ok(PublishedOutputs {
            root,
            files: added.into_iter().filter(|a| !a.is_dir).map(|a| PublishedFile { path: a.path, cid: a.cid.to_string(), size: a.size }).collect(),
        })
    }
}

/// The configured gateway, or the error that says to configure one.
pub fn need_gateway(gateway: Option<&str>) -> Result<&str> {
    gateway.ok_or_else(|| {
        Error::invalid("reading IPFS data needs a trustless gateway: configure ipfsGateway (e.g. the devnet's \"ipfs.gateway\", or https://trustless-gateway.link)")
    })
}

/// Fetch the DAG under `url` from the trustless gateway `gw` as a CAR (`scope`: `all` or
/// `entity`), verify every block, and return a reader over them that fetches any missing
/// block raw.
pub async fn fetch<'p>(platform: &'p dyn Platform, gw: &str, url: &IpfsUrl, scope: &str, limits: Limits) -> Result<Reader<'p>> {
    let gw = gw.trim_end_matches('/');
    let target = format!("{gw}{}?format=car&dag-scope={scope}", url.gateway_path());
    let cap = limits.max_fetch_bytes().saturating_add(limits.max_blocks as u64 * 100);
    let mut req = HttpRequest::get(target.clone()).timeout(limits.timeout_ms).max_bytes(cap);
    req.headers.push(("Accept".into(), "application/vnd.ipld.car".into()));
    // Blocks are hashed while the CAR downloads; a wrong one stops the download.
    let mut pre = block::Prehashed::default();
    let resp = {
        let mut sink = |body: &[u8]| pre.feed(platform, body, &limits);
        platform.http_streamed(req, &mut sink).await?
    };
    let mut blocks = Blocks::default();
    match resp.status {
        200 => {
            // The body is held once: every block is a slice of it.
            let car = bytes::Bytes::from(resp.body);
            let (_roots, list) = block::read_car(car.clone(), &limits)?;
            // Every block is checked before any is read; one bad block fails them all.
            for (cid, bytes) in list {
                let hashed = pre.digest(&car, &bytes);
                blocks.insert_hashed(platform, cid, bytes, hashed, &limits).await?;
            }
        }
        // A gateway without CAR support: every block is fetched raw instead.
        400 | 406 | 415 | 501 => {}
        s => return Err(gateway_status(&target, s)),
    }
    Ok(Reader::new(platform, blocks, Some(format!("{gw}/ipfs/")), limits))
}

/// Every file under `url` as (path relative to it, bytes), all verified; a file gives one
/// entry with an empty path.
pub async fn get_files(platform: &dyn Platform, gw: &str, url: &IpfsUrl, limits: Limits) -> Result<Vec<(String, Vec<u8>)>> {
    let mut r = fetch(platform, gw, url, "all", limits).await?;
    let cid = r.resolve(&url.root, &url.path).await?;
    r.files(&cid).await
}

fn check_same(local: &Cid, node: &str, what: &str) -> Result<()> {
    let parsed = Cid::try_from(node).ok();
    if parsed.as_ref() != Some(local) {
        return Err(Error::new(
            ErrorCode::VerificationFailed,
            format!("the IPFS node answered CID {node:?} for {what}, but its bytes hash to {local}; the node stored something else (or uses other settings): do not share its CID"),
        )
        .with_details(serde_json::json!({"local": local.to_string(), "node": node, "path": what})));
    }
    Ok(())
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests;
