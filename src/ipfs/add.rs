//! Adding: the UnixFS DAG computed locally, with the defaults of IPFS nodes (Kubo,
//! Helia), so the root CID the node answers can be checked against our own.
//!
//! - Files are cut into 256 KiB chunks (`size-262144`); a file of one chunk is that
//!   chunk's leaf; more leaves are grouped 174 to a parent, level by level, until one
//!   node is left (the balanced layout).
//! - Leaves are DAG-PB UnixFS `File` nodes, or with `rawLeaves` raw blocks (always
//!   CIDv1); parents and directories are DAG-PB in the requested CID version.
//! - A parent declares its children's content sizes (`blocksizes`) and their sum
//!   (`filesize`); a link's `Tsize` is the child's whole DAG in bytes.
//! - Directory links are sorted by name; directories whose links would pass 256 KiB
//!   (which nodes shard into a HAMT) are refused.

use super::block::{DAG_PB, RAW, SHA2_256};
use super::unixfs::{Data, Kind};
use crate::error::{Error, ErrorCode, Result};
use crate::platform::Platform;
use cid::Cid;
use std::collections::BTreeMap;

/// The chunk size of IPFS nodes' default chunker (`size-262144`).
pub const CHUNK_SIZE: usize = 262_144;
/// Children per parent in the balanced layout (Kubo's and Helia's default).
pub const MAX_LINKS: usize = 174;
/// Above this estimate of its links (names + CIDs) a node shards a directory.
pub const SHARD_THRESHOLD: usize = 262_144;

/// How to build the DAG (`add(data, options)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddOptions {
    /// 0 (`Qm...`, Kubo's default) or 1 (`bafy...`).
    pub cid_version: u8,
    /// Leaves as raw blocks. Default: true with CIDv1, false with CIDv0 (as Kubo).
    pub raw_leaves: bool,
}

impl Default for AddOptions {
    fn default() -> Self {
        AddOptions { cid_version: 0, raw_leaves: false }
    }
}

impl AddOptions {
    /// From the optional values a caller gave, checked.
    pub fn new(cid_version: Option<u8>, raw_leaves: Option<bool>) -> Result<AddOptions> {
        let v = cid_version.unwrap_or(0);
        if v > 1 {
            return Err(Error::invalid(format!("cidVersion must be 0 or 1, got {v}")));
        }
        let raw = raw_leaves.unwrap_or(v == 1);
        if raw && v == 0 {
            return Err(Error::invalid("rawLeaves needs cidVersion 1 (a CIDv0 cannot name a raw block): pass { cidVersion: 1 }"));
        }
        Ok(AddOptions { cid_version: v, raw_leaves: raw })
    }
}

/// A node of the built DAG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    pub cid: Cid,
    /// Bytes of the whole DAG under it (a link's `Tsize`).
    pub tsize: u64,
    /// Content bytes of a file (0 for directories).
    pub file_size: u64,
}

/// Every block of a built DAG, and its root.
#[derive(Debug, Default)]
pub struct Dag {
    pub blocks: Vec<(Cid, Vec<u8>)>,
}

fn make_cid(version: u8, codec: u64, digest: &[u8]) -> Cid {
    let mh = cid::multihash::Multihash::<64>::wrap(SHA2_256, digest).expect("a 32-byte digest fits");
    if version == 0 && codec == DAG_PB {
        Cid::new_v0(mh).expect("sha2-256 is a valid CIDv0 hash")
    } else {
        Cid::new_v1(codec, mh)
    }
}

impl Dag {
    async fn put(&mut self, platform: &dyn Platform, version: u8, codec: u64, bytes: Vec<u8>) -> Cid {
        // A host hash that failed gives no digest (as an empty hex string did): the CID then
        // cannot match the node's and add() fails.
        let digest = platform.sha256(&bytes).await.map(|d| d.to_vec()).unwrap_or_default();
        let cid = make_cid(version, codec, &digest);
        self.blocks.push((cid, bytes));
        cid
    }

    async fn pb(&mut self, platform: &dyn Platform, version: u8, data: Data, links: Vec<(String, &Built)>) -> Built {
        let node = ipld_dagpb::PbNode {
            links: links.iter().map(|(n, b)| ipld_dagpb::PbLink { cid: b.cid, name: Some(n.clone()), size: Some(b.tsize) }).collect(),
            data: Some(data.encode().into()),
        };
        let bytes = node.into_bytes();
        let tsize = bytes.len() as u64 + links.iter().map(|(_, b)| b.tsize).sum::<u64>();
        let file_size = data.filesize.unwrap_or(0);
        let cid = self.put(platform, version, DAG_PB, bytes).await;
        Built { cid, tsize, file_size }
    }

    /// Add a file's DAG; returns its root.
    pub async fn file(&mut self, platform: &dyn Platform, bytes: &[u8], opts: AddOptions) -> Built {
        let mut level = Vec::new();
        let chunks: Vec<&[u8]> = if bytes.is_empty() { vec![&[][..]] } else { bytes.chunks(CHUNK_SIZE).collect() };
        for c in chunks {
            let leaf = if opts.raw_leaves {
                let cid = self.put(platform, 1, RAW, c.to_vec()).await;
                Built { cid, tsize: c.len() as u64, file_size: c.len() as u64 }
            } else {
                let data = Data { kind: Kind::File, data: Some(bytes::Bytes::copy_from_slice(c)), filesize: Some(c.len() as u64), blocksizes: vec![] };
                self.pb(platform, opts.cid_version, data, vec![]).await
            };
            level.push(leaf);
        }
        if level.len() == 1 {
            return level.pop().expect("one leaf");
        }
        while level.len() > 1 {
            let mut next = Vec::with_capacity(level.len() / MAX_LINKS + 1);
            for group in level.chunks(MAX_LINKS) {
                let data = Data {
                    kind: Kind::File,
                    data: None,
                    filesize: Some(group.iter().map(|b| b.file_size).sum()),
                    blocksizes: group.iter().map(|b| b.file_size).collect(),
                };
                next.push(self.pb(platform, opts.cid_version, data, group.iter().map(|b| (String::new(), b)).collect()).await);
            }
            level = next;
        }
        level.pop().expect("a root")
    }

    /// Add a directory of already built entries (name -> node).
    pub async fn dir(&mut self, platform: &dyn Platform, entries: &BTreeMap<String, Built>, opts: AddOptions) -> Result<Built> {
        let estimate: usize = entries.iter().map(|(n, b)| n.len() + b.cid.to_bytes().len()).sum();
        if estimate > SHARD_THRESHOLD {
            return Err(Error::new(
                ErrorCode::Unsupported,
                format!("a directory of {} entries would be sharded (HAMT) by IPFS nodes, which the SDK does not build: split it into subdirectories", entries.len()),
            ));
        }
        let data = Data { kind: Kind::Directory, data: None, filesize: None, blocksizes: vec![] };
        // BTreeMap order is byte order of the names, as DAG-PB requires.
        Ok(self.pb(platform, opts.cid_version, data, entries.iter().map(|(n, b)| (n.clone(), b)).collect()).await)
    }
}

/// One file or directory of a tree to add, by path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Added {
    pub path: String,
    pub cid: Cid,
    pub size: u64,
    pub is_dir: bool,
}

/// Build a directory tree from `files` (relative paths, `/`-separated): returns the root
/// and every file and directory under it (paths without the root).
pub async fn tree(platform: &dyn Platform, files: &[(String, Vec<u8>)], opts: AddOptions, dag: &mut Dag) -> Result<(Built, Vec<Added>)> {
    #[derive(Default)]
    struct DirNode {
        dirs: BTreeMap<String, DirNode>,
        files: BTreeMap<String, usize>,
    }
    let mut root = DirNode::default();
    for (i, (path, _)) in files.iter().enumerate() {
        crate::util::check_relative_path(path).map_err(|e| Error::invalid(format!("add(): {}", e.message)))?;
        let parts: Vec<&str> = path.split('/').collect();
        let mut at = &mut root;
        for d in &parts[..parts.len() - 1] {
            if at.files.contains_key(*d) {
                return Err(Error::invalid(format!("add(): {path:?} puts a file under {d:?}, which is a file too")));
            }
            at = at.dirs.entry(d.to_string()).or_default();
        }
        let name = parts[parts.len() - 1].to_string();
        if at.dirs.contains_key(&name) || at.files.insert(name, i).is_some() {
            return Err(Error::invalid(format!("add(): {path:?} is given twice, or as both a file and a directory")));
        }
    }
    fn build<'a>(
        platform: &'a dyn Platform,
        node: &'a DirNode,
        prefix: String,
        files: &'a [(String, Vec<u8>)],
        opts: AddOptions,
        dag: &'a mut Dag,
        added: &'a mut Vec<Added>,
    ) -> crate::platform::LocalFuture<'a, Result<Built>> {
        Box::pin(async move {
            let mut entries = BTreeMap::new();
            let join = |n: &str| if prefix.is_empty() { n.to_string() } else { format!("{prefix}/{n}") };
            for (name, d) in &node.dirs {
                let b = build(platform, d, join(name), files, opts, dag, added).await?;
                added.push(Added { path: join(name), cid: b.cid, size: b.tsize, is_dir: true });
                entries.insert(name.clone(), b);
            }
            for (name, i) in &node.files {
                let b = dag.file(platform, &files[*i].1, opts).await;
                added.push(Added { path: join(name), cid: b.cid, size: b.file_size, is_dir: false });
                entries.insert(name.clone(), b);
            }
            dag.dir(platform, &entries, opts).await
        })
    }
    let mut added = Vec::new();
    let b = build(platform, &root, String::new(), files, opts, dag, &mut added).await?;
    added.sort_by(|a, b| a.path.cmp(&b.path));
    Ok((b, added))
}

/// A multipart/form-data body as Kubo's `/api/v0/add` reads it: one part per directory
/// (`application/x-directory`) and file, names percent-encoded, parents first.
pub fn multipart(files: &[(String, Vec<u8>)], boundary: &str) -> Vec<u8> {
    let enc = |p: &str| -> String {
        p.bytes()
            .map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
            .collect()
    };
    let mut dirs: Vec<String> = Vec::new();
    for (p, _) in files {
        let parts: Vec<&str> = p.split('/').collect();
        for i in 1..parts.len() {
            let d = parts[..i].join("/");
            if !dirs.contains(&d) {
                dirs.push(d);
            }
        }
    }
    dirs.sort();
    let mut body = Vec::new();
    for d in &dirs {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{}\"\r\nContent-Type: application/x-directory\r\n\r\n\r\n", enc(d)).as_bytes(),
        );
    }
    for (p, bytes) in files {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{}\"\r\nContent-Type: application/octet-stream\r\n\r\n", enc(p)).as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    body
}

/// The `(Name, Hash)` lines of an `/api/v0/add` answer (newline-delimited JSON).
pub fn parse_answer(body: &[u8]) -> Result<Vec<(String, String)>> {
    let text = std::str::from_utf8(body).map_err(|_| Error::malformed("the IPFS node's add answer is not UTF-8"))?;
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| Error::malformed(format!("the IPFS node's add answer has a line that is not JSON: {e}")))?;
        // Progress lines (`Bytes`) carry no Hash.
        if let (Some(name), Some(hash)) = (v["Name"].as_str(), v["Hash"].as_str()) {
            out.push((name.to_string(), hash.to_string()));
        }
    }
    Ok(out)
}
