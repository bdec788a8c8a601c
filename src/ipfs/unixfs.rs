//! UnixFS over DAG-PB: the `Data` message of each node, and reading files and
//! directories out of verified blocks.
//!
//! DAG-PB nodes are decoded by `ipld-dagpb`; the UnixFS `Data` message inside them
//! (seven fields) is read and written with `quick-protobuf`, the protobuf crate
//! `ipld-dagpb` is built on. Every block comes from [`super::block::Blocks`], so it was
//! checked against its CID first; this module checks the rest: the node is UnixFS, the
//! sizes it declares are the sizes its children really have, the DAG is not deeper or
//! larger than the limits, and directory entries are safe file names.

use super::block::{self, Blocks, DAG_PB, RAW};
use super::Limits;
use crate::error::{Error, ErrorCode, Result};
use crate::platform::{HttpRequest, Platform};
use cid::Cid;
use bytes::Bytes;
use quick_protobuf::{BytesReader, Writer};

/// UnixFS node types (the `Type` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Raw,
    Directory,
    File,
    Metadata,
    Symlink,
    HamtShard,
}

impl Kind {
    fn from_code(c: u64) -> Option<Kind> {
        Some(match c {
            0 => Kind::Raw,
            1 => Kind::Directory,
            2 => Kind::File,
            3 => Kind::Metadata,
            4 => Kind::Symlink,
            5 => Kind::HamtShard,
            _ => return None,
        })
    }
    fn code(self) -> u64 {
        match self {
            Kind::Raw => 0,
            Kind::Directory => 1,
            Kind::File => 2,
            Kind::Metadata => 3,
            Kind::Symlink => 4,
            Kind::HamtShard => 5,
        }
    }
}

/// The UnixFS `Data` message (fields the SDK reads or writes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Data {
    pub kind: Kind,
    pub data: Option<Bytes>,
    pub filesize: Option<u64>,
    pub blocksizes: Vec<u64>,
}

impl Data {
    /// Decode; `None` when the bytes are not a UnixFS `Data` message. `Data` is a slice
    /// of `buf`, not a copy.
    pub fn decode(buf: &Bytes) -> Option<Data> {
        let bytes: &[u8] = buf;
        let mut r = BytesReader::from_bytes(bytes);
        let mut kind = None;
        let mut data = None;
        let mut filesize = None;
        let mut blocksizes = Vec::new();
        while !r.is_eof() {
            match r.next_tag(bytes).ok()? {
                8 => kind = Some(Kind::from_code(r.read_uint64(bytes).ok()?)?),
                18 => data = Some(buf.slice_ref(r.read_bytes(bytes).ok()?)),
                24 => filesize = Some(r.read_uint64(bytes).ok()?),
                32 => blocksizes.push(r.read_uint64(bytes).ok()?),
                // Packed encoding of the same repeated field.
                34 => blocksizes.extend(r.read_packed(bytes, |r, b| r.read_uint64(b)).ok()?),
                t => r.read_unknown(bytes, t).ok()?,
            }
        }
        Some(Data { kind: kind?, data, filesize, blocksizes })
    }

    /// Encode as IPFS nodes do (Kubo, Helia): fields in order, `Data` left out when
    /// empty, `blocksizes` unpacked (proto2).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut w = Writer::new(&mut out);
        let ok = (|| -> quick_protobuf::Result<()> {
            w.write_with_tag(8, |w| w.write_uint64(self.kind.code()))?;
            if let Some(d) = self.data.as_ref().filter(|d| !d.is_empty()) {
                w.write_with_tag(18, |w| w.write_bytes(d))?;
            }
            if let Some(s) = self.filesize {
                w.write_with_tag(24, |w| w.write_uint64(s))?;
            }
            for b in &self.blocksizes {
                w.write_with_tag(32, |w| w.write_uint64(*b))?;
            }
            Ok(())
        })();
        debug_assert!(ok.is_ok(), "writing to a Vec cannot fail");
        out
    }
}

/// A link of a DAG-PB node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub cid: Cid,
    pub name: Option<String>,
    pub tsize: Option<u64>,
}

/// A decoded block.
#[derive(Debug, Clone)]
pub enum Node {
    /// A raw block: file bytes.
    Raw(Bytes),
    /// A UnixFS DAG-PB node.
    Pb { data: Data, links: Vec<Link> },
}

fn not_unixfs(cid: &Cid, why: &str) -> Error {
    Error::new(ErrorCode::VerificationFailed, format!("IPFS block {cid} is not readable UnixFS: {why}; nothing from this fetch was used"))
        .with_details(serde_json::json!({"cid": cid.to_string(), "reason": why}))
}

/// Decode a verified block as its CID's codec says.
pub fn decode(cid: &Cid, bytes: Bytes) -> Result<Node> {
    match cid.codec() {
        RAW => Ok(Node::Raw(bytes)),
        DAG_PB => {
            let pb = ipld_dagpb::PbNode::from_bytes(bytes).map_err(|e| not_unixfs(cid, &format!("not DAG-PB ({e})")))?;
            let raw = pb.data.ok_or_else(|| not_unixfs(cid, "a DAG-PB node without UnixFS data"))?;
            let data = Data::decode(&raw).ok_or_else(|| not_unixfs(cid, "its UnixFS data does not decode"))?;
            let links = pb.links.into_iter().map(|l| Link { cid: l.cid, name: l.name, tsize: l.size }).collect();
            Ok(Node::Pb { data, links })
        }
        other => Err(Error::new(ErrorCode::Unsupported, format!("CID {cid} has codec 0x{other:x}; only raw and dag-pb are read"))),
    }
}

/// What a directory entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    File,
    Directory,
    Symlink,
    Other,
}

/// One entry of a directory (`ls`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Entry {
    pub name: String,
    pub cid: String,
    #[serde(rename = "type")]
    pub kind: EntryKind,
    /// Content bytes of a file (0 for anything else).
    pub size: u64,
}

/// Is `name` usable as one path segment of a job's files?
fn safe_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0']) && name.len() <= 255
}

/// Reads UnixFS out of a verified block set, fetching missing blocks one by one from the
/// gateway (`?format=raw`), each verified before it is kept.
pub struct Reader<'a> {
    pub platform: &'a dyn Platform,
    pub blocks: Blocks,
    /// `{gateway}/ipfs/` base for single-block fetches; `None`: the set is all there is.
    pub gateway: Option<String>,
    pub limits: Limits,
    /// Blocks fetched one by one so far (bounded by `limits.max_blocks`).
    pub raw_fetches: usize,
    /// Directory entries seen (bounded by `limits.max_entries`).
    entries: usize,
}

/// A file being assembled: its pieces and their total length.
#[derive(Default)]
struct Parts {
    parts: Vec<Bytes>,
    len: u64,
}

impl<'a> Reader<'a> {
    pub fn new(platform: &'a dyn Platform, blocks: Blocks, gateway: Option<String>, limits: Limits) -> Self {
        Reader { platform, blocks, gateway, limits, raw_fetches: 0, entries: 0 }
    }

    /// A verified block: from the set, else fetched and verified.
    pub async fn block(&mut self, cid: &Cid) -> Result<Bytes> {
        if let Some(b) = self.blocks.get(cid) {
            return Ok(b);
        }
        block::check_supported(cid)?;
        let Some(base) = self.gateway.clone() else {
            return Err(Error::new(ErrorCode::VerificationFailed, format!("IPFS block {cid} is missing from the data"))
                .with_details(serde_json::json!({"cid": cid.to_string(), "reason": "missing"})));
        };
        self.raw_fetches += 1;
        if self.raw_fetches > self.limits.max_blocks {
            return Err(block::too_much(&self.limits));
        }
        let url = format!("{base}{cid}?format=raw");
        let mut req = HttpRequest::get(url.clone()).timeout(self.limits.timeout_ms).max_bytes(self.limits.max_block_bytes as u64);
        req.headers.push(("Accept".into(), "application/vnd.ipld.raw".into()));
        let resp = self.platform.http(req).await?;
        if resp.status != 200 {
            return Err(super::gateway_status(&url, resp.status));
        }
        self.blocks.insert(self.platform, *cid, Bytes::from(resp.body), &self.limits).await?;
        Ok(self.blocks.get(cid).expect("just inserted"))
    }

    /// The decoded node of `cid`.
    pub async fn node(&mut self, cid: &Cid) -> Result<Node> {
        let b = self.block(cid).await?;
        decode(cid, b)
    }

    /// The entries of a directory node (`None`: not a directory).
    fn dir_links(cid: &Cid, node: &Node) -> Result<Option<Vec<(String, Cid)>>> {
        match node {
            Node::Pb { data, links } if data.kind == Kind::Directory => {
                let mut out = Vec::with_capacity(links.len());
                for l in links {
                    let name = l.name.clone().unwrap_or_default();
                    if !safe_name(&name) {
                        return Err(not_unixfs(cid, &format!("directory entry {name:?} is not a usable file name")));
                    }
                    if out.iter().any(|(n, _): &(String, Cid)| *n == name) {
                        return Err(not_unixfs(cid, &format!("directory entry {name:?} appears twice")));
                    }
                    out.push((name, l.cid));
                }
                Ok(Some(out))
            }
            Node::Pb { data, .. } if data.kind == Kind::HamtShard => Err(Error::new(
                ErrorCode::Unsupported,
                format!("{cid} is a sharded (HAMT) directory; the SDK reads plain UnixFS directories only (up to about 10,000 entries)"),
            )),
            _ => Ok(None),
        }
    }

    /// Follow `path` (directory entry names) from `root`.
    pub async fn resolve(&mut self, root: &Cid, path: &[String]) -> Result<Cid> {
        let mut at = *root;
        for (i, seg) in path.iter().enumerate() {
            let node = self.node(&at).await?;
            let Some(entries) = Self::dir_links(&at, &node)? else {
                return Err(Error::invalid(format!("ipfs://{root}/{}: {at} is not a directory", path[..i].join("/"))));
            };
            at = entries.into_iter().find(|(n, _)| n == seg).map(|(_, c)| c).ok_or_else(|| {
                Error::invalid(format!("ipfs://{root}/{}: the directory has no entry {seg:?}", path[..=i].join("/")))
                    .with_details(serde_json::json!({"cid": root.to_string(), "path": path.join("/")}))
            })?;
        }
        Ok(at)
    }

    /// Whether `cid` is a directory (reads its root block).
    pub async fn is_dir(&mut self, cid: &Cid) -> Result<bool> {
        let node = self.node(cid).await?;
        Ok(Self::dir_links(cid, &node)?.is_some())
    }

    /// The whole content of a file, every block verified, sizes checked against what
    /// the nodes declare. Fails without returning any of it if anything is wrong.
    pub async fn file(&mut self, cid: &Cid) -> Result<Vec<u8>> {
        Ok(self.file_parts(cid).await?.concat())
    }

    /// [`Reader::file`] as its pieces in order: slices of the verified blocks, not copied.
    pub async fn file_parts(&mut self, cid: &Cid) -> Result<Vec<Bytes>> {
        // The declared size first: a file over the limit fails before it is fetched.
        if let Node::Pb { data, .. } = self.node(cid).await? {
            if let Some(s) = data.filesize {
                if s > self.limits.max_bytes {
                    return Err(block::too_much(&self.limits));
                }
            }
        }
        let mut out = Parts::default();
        self.append_file(cid, 0, &mut out).await?;
        Ok(out.parts)
    }

    fn append_file<'s>(&'s mut self, cid: &'s Cid, depth: u32, out: &'s mut Parts) -> crate::platform::LocalFuture<'s, Result<u64>> {
        Box::pin(async move {
            if depth > self.limits.max_depth {
                return Err(Error::malformed(format!("the IPFS file's DAG is deeper than {} levels at {cid}", self.limits.max_depth))
                    .with_details(serde_json::json!({"cid": cid.to_string(), "maxDepth": self.limits.max_depth})));
            }
            let start = out.len;
            let grow = |out: &mut Parts, bytes: &Bytes, limits: &Limits| -> Result<()> {
                if out.len + bytes.len() as u64 > limits.max_bytes {
                    return Err(block::too_much(limits));
                }
                out.len += bytes.len() as u64;
                if !bytes.is_empty() {
                    out.parts.push(bytes.clone());
                }
                Ok(())
            };
            match self.node(cid).await? {
                Node::Raw(bytes) => grow(out, &bytes, &self.limits)?,
                Node::Pb { data, links } => {
                    match data.kind {
                        Kind::File | Kind::Raw => {}
                        Kind::Directory | Kind::HamtShard => {
                            return Err(Error::invalid(format!("{cid} is a directory, not a file: list it with ls() or fetch its files with get()")))
                        }
                        k => return Err(Error::new(ErrorCode::Unsupported, format!("{cid} is a UnixFS {k:?} node, not a file"))),
                    }
                    if !links.is_empty() && data.blocksizes.len() != links.len() {
                        return Err(not_unixfs(cid, &format!("{} links but {} block sizes", links.len(), data.blocksizes.len())));
                    }
                    if let Some(d) = &data.data {
                        grow(out, d, &self.limits)?;
                    }
                    for (i, l) in links.iter().enumerate() {
                        let n = self.append_file(&l.cid, depth + 1, out).await?;
                        if n != data.blocksizes[i] {
                            return Err(not_unixfs(cid, &format!("child {} holds {n} bytes, the node declares {}", l.cid, data.blocksizes[i])));
                        }
                    }
                    let total = out.len - start;
                    if let Some(s) = data.filesize {
                        if s != total {
                            return Err(not_unixfs(cid, &format!("it holds {total} bytes, its filesize says {s}")));
                        }
                    }
                }
            }
            Ok(out.len - start)
        })
    }

    /// A directory's entries with their types and sizes (reads each entry's root block).
    pub async fn list(&mut self, cid: &Cid) -> Result<Vec<Entry>> {
        let node = self.node(cid).await?;
        let entries = Self::dir_links(cid, &node)?.ok_or_else(|| Error::invalid(format!("{cid} is a file, not a directory: fetch it with cat()")))?;
        self.count_entries(entries.len())?;
        let mut out = Vec::with_capacity(entries.len());
        for (name, c) in entries {
            let (kind, size) = match self.node(&c).await? {
                Node::Raw(b) => (EntryKind::File, b.len() as u64),
                Node::Pb { data, .. } => match data.kind {
                    Kind::File | Kind::Raw => (EntryKind::File, data.filesize.unwrap_or(0)),
                    Kind::Directory | Kind::HamtShard => (EntryKind::Directory, 0),
                    Kind::Symlink => (EntryKind::Symlink, 0),
                    Kind::Metadata => (EntryKind::Other, 0),
                },
            };
            out.push(Entry { name, cid: c.to_string(), kind, size });
        }
        Ok(out)
    }

    fn count_entries(&mut self, n: usize) -> Result<()> {
        self.entries += n;
        if self.entries > self.limits.max_entries {
            return Err(Error::malformed(format!("the IPFS directory has more than {} entries in all", self.limits.max_entries))
                .with_details(serde_json::json!({"maxEntries": self.limits.max_entries})));
        }
        Ok(())
    }

    /// Every file under a directory as (relative path, bytes), paths sorted; a file CID
    /// gives one entry with an empty path. Symlinks are refused (they could point
    /// anywhere once written to disk).
    pub async fn files(&mut self, cid: &Cid) -> Result<Vec<(String, Vec<u8>)>> {
        let mut out = Vec::new();
        let mut total = 0u64;
        self.collect(cid, String::new(), 0, &mut out, &mut total).await?;
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    fn collect<'s>(&'s mut self, cid: &'s Cid, prefix: String, depth: u32, out: &'s mut Vec<(String, Vec<u8>)>, total: &'s mut u64) -> crate::platform::LocalFuture<'s, Result<()>> {
        Box::pin(async move {
            if depth > self.limits.max_depth {
                return Err(Error::malformed(format!("the IPFS directory is nested deeper than {} levels", self.limits.max_depth)));
            }
            let node = self.node(cid).await?;
            match Self::dir_links(cid, &node)? {
                Some(entries) => {
                    self.count_entries(entries.len())?;
                    for (name, c) in entries {
                        let path = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
                        self.collect(&c, path, depth + 1, out, total).await?;
                    }
                }
                None => {
                    if let Node::Pb { data, .. } = &node {
                        if data.kind == Kind::Symlink {
                            return Err(Error::new(ErrorCode::Unsupported, format!("{prefix:?} ({cid}) is a symbolic link; the SDK fetches files and directories only")));
                        }
                    }
                    // The limit holds for the sum of all files.
                    let saved = self.limits.max_bytes;
                    self.limits.max_bytes = saved.saturating_sub(*total);
                    let r = self.file(cid).await;
                    self.limits.max_bytes = saved;
                    let bytes = r?;
                    *total += bytes.len() as u64;
                    out.push((prefix, bytes));
                }
            }
            Ok(())
        })
    }
}
