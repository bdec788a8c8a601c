//! Blocks, checked against their CIDs before anything reads them.
//!
//! A [`Blocks`] set only ever holds blocks whose bytes hashed to the digest their CID
//! names: a block that fails enters nothing, and the whole operation fails with
//! `VERIFICATION_FAILED`. CIDs come from the `cid` crate (v0 and v1); a CAR's header is
//! decoded by `iroh-car`, its sections' lengths by `unsigned-varint` and their CIDs by
//! `cid`, and every block stays a slice of the response body ([`read_car`]: nothing is
//! copied). Hashing goes through the host ([`Platform::sha256`]: node:crypto
//! synchronously in Node, WebCrypto in browsers, about 6x faster than SHA-256 compiled to
//! wasm at `opt-level=z`) over a view of the block, and compares raw digests.

use super::Limits;
use crate::error::{Error, ErrorCode, Result};
use crate::platform::Platform;
use cid::Cid;
use bytes::Bytes;
use std::collections::HashMap;

/// Multicodec of raw bytes.
pub const RAW: u64 = 0x55;
/// Multicodec of DAG-PB (UnixFS files and directories).
pub const DAG_PB: u64 = 0x70;
/// Multihash code of SHA2-256, the only hash the SDK verifies.
pub const SHA2_256: u64 = 0x12;

/// A CID as text (CIDv0 `Qm...` or CIDv1 multibase), checked to be one the SDK can verify.
pub fn parse_cid(s: &str) -> Result<Cid> {
    let cid = Cid::try_from(s).map_err(|e| Error::invalid(format!("{s:?} is not a CID (CIDv0 'Qm...' or CIDv1 'bafy...'): {e}")))?;
    check_supported(&cid)?;
    Ok(cid)
}

/// Refuse CIDs the SDK cannot check: only SHA2-256 digests of raw or DAG-PB blocks.
pub fn check_supported(cid: &Cid) -> Result<()> {
    let mh = cid.hash();
    if mh.code() != SHA2_256 || mh.size() != 32 {
        return Err(Error::new(ErrorCode::Unsupported, format!("CID {cid} uses multihash 0x{:x}; the SDK verifies sha2-256 only", mh.code()))
            .with_details(serde_json::json!({"cid": cid.to_string()})));
    }
    if cid.codec() != RAW && cid.codec() != DAG_PB {
        return Err(Error::new(
            ErrorCode::Unsupported,
            format!("CID {cid} has codec 0x{:x}; the SDK reads raw (0x55) and dag-pb (0x70) UnixFS data only", cid.codec()),
        )
        .with_details(serde_json::json!({"cid": cid.to_string()})));
    }
    Ok(())
}

/// The error for bytes that are not what their CID names.
pub fn mismatch(cid: &Cid, why: &str) -> Error {
    Error::new(
        ErrorCode::VerificationFailed,
        format!("IPFS block {cid} failed verification: {why}; nothing from this fetch was used (the gateway is broken or hostile: try another ipfsGateway)"),
    )
    .with_details(serde_json::json!({"cid": cid.to_string(), "reason": why}))
}

/// Check `bytes` against `cid`: supported CID, size within the limit, and the SHA2-256
/// digest equal to the one the CID names. `hashed`: the digest of these very bytes, if
/// already computed ([`Prehashed`]); otherwise they are hashed here.
pub async fn verify(platform: &dyn Platform, cid: &Cid, bytes: &[u8], hashed: Option<[u8; 32]>, limits: &Limits) -> Result<()> {
    check_supported(cid)?;
    if bytes.len() > limits.max_block_bytes {
        return Err(mismatch(cid, &format!("the block has {} bytes, more than the {} a block may have", bytes.len(), limits.max_block_bytes)));
    }
    let got = match hashed {
        Some(d) => d,
        None => platform.sha256(bytes).await?,
    };
    check_digest(cid, &got)
}

/// Whether `got` is the digest `cid` names.
fn check_digest(cid: &Cid, got: &[u8; 32]) -> Result<()> {
    let want = cid.hash().digest();
    if got[..] != want[..] {
        return Err(mismatch(cid, &format!("its bytes hash to sha2-256 {}, the CID names {}", crate::proof::recipe::hex(got), crate::proof::recipe::hex(want))));
    }
    Ok(())
}

/// The blocks of a CAR hashed while it downloads ([`Platform::http_streamed`]), so that
/// hashing overlaps the transfer: by the last byte only the last block is left
/// (bench/ipfs.mjs). Digests are kept by the byte range they cover; [`read_car`] still
/// parses the finished body, and each block it finds uses the digest of exactly its
/// range, or is hashed then. A block whose digest is not its CID's fails the fetch at
/// once, before the rest is downloaded. Hosts that hash only asynchronously
/// ([`Platform::sha256_now`] `None`: WebCrypto) leave every block to after the body.
#[derive(Default)]
pub struct Prehashed {
    /// Where the next unread section starts.
    at: usize,
    /// Past the header section.
    header: bool,
    /// Nothing more to hash here (a section that does not parse, or a host that cannot
    /// hash now): the rest is left to the checks after the body.
    done: bool,
    digests: HashMap<(usize, usize), [u8; 32]>,
}

impl Prehashed {
    /// Hash the blocks of `car` (the body so far) not hashed yet.
    pub fn feed(&mut self, platform: &dyn Platform, car: &[u8], limits: &Limits) -> Result<()> {
        while !self.done {
            // A section not complete yet waits for more bytes; one that does not parse is
            // reported by `read_car` once the body is complete.
            let Ok(Some((start, end))) = section(car, self.at) else { return Ok(()) };
            self.at = end;
            if !std::mem::replace(&mut self.header, true) {
                continue;
            }
            let mut r = &car[start..end];
            let Ok(cid) = Cid::read_bytes(&mut r) else {
                self.done = true;
                return Ok(());
            };
            let data = (end - r.len(), end);
            if check_supported(&cid).is_err() || data.1 - data.0 > limits.max_block_bytes {
                continue;
            }
            if self.digests.len() >= limits.max_blocks {
                return Err(too_much(limits));
            }
            match platform.sha256_now(&car[data.0..data.1]) {
                Some(d) => {
                    check_digest(&cid, &d)?;
                    self.digests.insert(data, d);
                }
                None => self.done = true,
            }
        }
        Ok(())
    }

    /// The digest of `block`, a slice of `car` (the finished body the hashes were taken
    /// of), if it was hashed while downloading.
    pub fn digest(&self, car: &Bytes, block: &Bytes) -> Option<[u8; 32]> {
        let start = (block.as_ptr() as usize).checked_sub(car.as_ptr() as usize)?;
        self.digests.get(&(start, start + block.len())).copied()
    }
}

/// Verified blocks by CID.
#[derive(Default)]
pub struct Blocks {
    map: HashMap<Cid, Bytes>,
    bytes: u64,
}

impl Blocks {
    /// Verify `bytes` against `cid` and keep them. Over the limits of the whole fetch
    /// (block count, bytes) fails with `MALFORMED_RESPONSE`.
    pub async fn insert(&mut self, platform: &dyn Platform, cid: Cid, bytes: impl Into<Bytes>, limits: &Limits) -> Result<()> {
        self.insert_hashed(platform, cid, bytes.into(), None, limits).await
    }
    /// [`Blocks::insert`] of bytes whose digest may already be known (`hashed`).
    pub async fn insert_hashed(&mut self, platform: &dyn Platform, cid: Cid, bytes: Bytes, hashed: Option<[u8; 32]>, limits: &Limits) -> Result<()> {
        verify(platform, &cid, &bytes, hashed, limits).await?;
        if self.map.contains_key(&cid) {
            return Ok(());
        }
        self.bytes += bytes.len() as u64;
        if self.map.len() >= limits.max_blocks || self.bytes > limits.max_fetch_bytes() {
            return Err(too_much(limits));
        }
        // Bytes: decoding slices it, nothing is copied until the file is handed out.
        self.map.insert(cid, bytes);
        Ok(())
    }
    /// A verified block.
    pub fn get(&self, cid: &Cid) -> Option<Bytes> {
        self.map.get(cid).cloned()
    }
    pub fn len(&self) -> usize {
        self.map.len()
    }
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// The error for a fetch over its limits.
pub fn too_much(limits: &Limits) -> Error {
    Error::malformed(format!(
        "the IPFS data is larger than the limits ({} blocks, {} bytes of content); raise maxBytes if you meant to fetch this much",
        limits.max_blocks, limits.max_bytes
    ))
    .with_details(serde_json::json!({"maxBytes": limits.max_bytes, "maxBlocks": limits.max_blocks}))
}

/// The most bytes of one CAR section (header, or CID and block), as in `iroh-car`.
const MAX_SECTION_BYTES: usize = 4 * 1024 * 1024;

/// The roots and blocks of a CARv1, every block a slice of `car` (not copied, not yet
/// verified: see [`Blocks::insert`]). `iroh-car` decodes the header (version 1, roots);
/// its `CarReader` is not used for the sections because it copies every block twice
/// (docs/decisions.md, "Host SHA-256").
pub fn read_car(car: Bytes, limits: &Limits) -> Result<(Vec<Cid>, Vec<(Cid, Bytes)>)> {
    let bad = |why: String| Error::malformed(format!("the gateway's CAR could not be read: {why}")).with_cause(why);
    let Some((start, end)) = section(&car, 0).map_err(bad)? else {
        return Err(bad("the body is empty".into()));
    };
    let header = iroh_car::CarHeader::decode(&car[start..end]).map_err(|e| bad(e.to_string()))?;
    let roots = header.roots().to_vec();
    let mut blocks = Vec::new();
    let mut total = 0u64;
    let mut at = end;
    while let Some((start, end)) = section(&car, at).map_err(bad)? {
        let mut r = &car[start..end];
        let cid = Cid::read_bytes(&mut r).map_err(|e| bad(format!("bad CID at byte {start}: {e}")))?;
        let bytes = car.slice(end - r.len()..end);
        total += bytes.len() as u64;
        blocks.push((cid, bytes));
        if blocks.len() > limits.max_blocks || total > limits.max_fetch_bytes() {
            return Err(too_much(limits));
        }
        at = end;
    }
    Ok((roots, blocks))
}

/// The section of `car` at byte `at` (its varint length, then that many bytes) as the
/// byte range after the length; `None` at the end.
fn section(car: &[u8], at: usize) -> std::result::Result<Option<(usize, usize)>, String> {
    if at >= car.len() {
        return Ok(None);
    }
    let (len, rest) = unsigned_varint::decode::usize(&car[at..]).map_err(|e| format!("bad section length at byte {at}: {e}"))?;
    if len > MAX_SECTION_BYTES {
        return Err(format!("a section of {len} bytes at byte {at}, more than {MAX_SECTION_BYTES}"));
    }
    if rest.len() < len {
        return Err(format!("the body ends inside a section: {len} bytes at byte {at}, {} left", rest.len()));
    }
    let start = car.len() - rest.len();
    Ok(Some((start, start + len)))
}
