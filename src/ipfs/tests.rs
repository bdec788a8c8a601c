//! Native tests of the IPFS core: CIDs against values IPFS nodes compute (Kubo's known
//! empty file and directory, and CIDs Helia's importer gave for the same bytes), and
//! the verification of blocks, CARs, DAG-PB and UnixFS against hostile data.

use super::add::{self, AddOptions, Dag};
use super::block::{self, Blocks, DAG_PB, RAW};
use super::unixfs::{Data, Kind, Reader};
use super::*;
use crate::platform::native::NativePlatform;
use sha2::Digest;

fn run<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

fn p() -> NativePlatform {
    NativePlatform::default()
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 & 255) as u8).collect()
}

/// Bytes without a period, so no two chunks are equal.
fn noise(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e3779b97f4a7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn cid_of(version: u8, codec: u64, bytes: &[u8]) -> Cid {
    let mh = cid::multihash::Multihash::<64>::wrap(block::SHA2_256, &sha2::Sha256::digest(bytes)).unwrap();
    if version == 0 {
        Cid::new_v0(mh).unwrap()
    } else {
        Cid::new_v1(codec, mh)
    }
}

/// A DAG-PB block of `data` and `links` (name, cid, tsize).
fn pb(data: &Data, links: &[(&str, Cid, u64)]) -> (Cid, Vec<u8>) {
    let node = ipld_dagpb::PbNode {
        links: links.iter().map(|(n, c, s)| ipld_dagpb::PbLink { cid: *c, name: Some(n.to_string()), size: Some(*s) }).collect(),
        data: Some(data.encode().into()),
    };
    let bytes = node.into_bytes();
    (cid_of(1, DAG_PB, &bytes), bytes)
}

fn file_data(data: Option<Vec<u8>>, filesize: u64, blocksizes: Vec<u64>) -> Data {
    Data { kind: Kind::File, data: data.map(bytes::Bytes::from), filesize: Some(filesize), blocksizes }
}

async fn built(bytes: &[u8], opts: AddOptions) -> (Cid, Blocks) {
    let platform = p();
    let mut dag = Dag::default();
    let root = dag.file(&platform, bytes, opts).await;
    let mut blocks = Blocks::default();
    for (c, b) in dag.blocks {
        blocks.insert(&platform, c, b, &Limits::default()).await.unwrap();
    }
    (root.cid, blocks)
}

async fn read(blocks: Blocks, root: &Cid, limits: Limits) -> Result<Vec<u8>> {
    let platform = p();
    let mut r = Reader::new(&platform, blocks, None, limits);
    r.file(root).await
}

/// Insert every block of `list`; the first failure, if any.
async fn first_failure(platform: &dyn Platform, list: Vec<(Cid, bytes::Bytes)>) -> Option<crate::error::Error> {
    let mut blocks = Blocks::default();
    for (c, b) in list {
        if let Err(e) = blocks.insert(platform, c, b, &Limits::default()).await {
            return Some(e);
        }
    }
    None
}

#[test]
fn cids_equal_the_ones_ipfs_nodes_compute() {
    run(async {
        let platform = p();
        let v0 = AddOptions::new(None, None).unwrap();
        let v1 = AddOptions::new(Some(1), None).unwrap();
        assert_eq!((v0.cid_version, v0.raw_leaves, v1.raw_leaves), (0, false, true));
        // Kubo's well-known empty file and empty directory.
        let mut dag = Dag::default();
        assert_eq!(dag.file(&platform, b"", v0).await.cid.to_string(), "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH");
        let empty = dag.dir(&platform, &Default::default(), v0).await.unwrap();
        assert_eq!(empty.cid.to_string(), "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn");
        let empty1 = dag.dir(&platform, &Default::default(), v1).await.unwrap();
        assert_eq!(empty1.cid.to_string(), "bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354");
        // 3 MiB (12 chunks): what Helia's importer (@helia/unixfs 8, profile unixfs-v0-2015,
        // 256 KiB chunks, 174 links) answered for these bytes.
        let big = pattern(3 * 1024 * 1024);
        assert_eq!(dag.file(&platform, &big, v0).await.cid.to_string(), "QmTLPXR3aiavabziD9BDcD3J3DenMUZ7UqyC7eWHFEA9qS");
        assert_eq!(dag.file(&platform, &big, v1).await.cid.to_string(), "bafybeid7ur45gnct4riyg5cojzd7pbjpoadubavkhgkw4b55retxojdq64");
        // A wrapped tree, every entry (Helia's addAll with wrapWithDirectory).
        let files = vec![("a.txt".to_string(), b"hi".to_vec()), ("d/b.txt".to_string(), vec![1, 2])];
        let (root, added) = add::tree(&platform, &files, v0, &mut Dag::default()).await.unwrap();
        assert_eq!(root.cid.to_string(), "QmbT7WoQbEVmQWTMgyQrh9QTKRZyXt8StQeXWFUTEypNz6");
        let got: Vec<(String, String)> = added.iter().map(|a| (a.path.clone(), a.cid.to_string())).collect();
        assert_eq!(
            got,
            vec![
                ("a.txt".into(), "QmdckCoPuhEtiNzREtqpYn8dBgY8ifcG82Q4eyEdGCLEiu".into()),
                ("d".into(), "QmVCxt6zxHEC8DvcboZJ43dtpfWvimW1W6uUE7Ctf22qbP".into()),
                ("d/b.txt".into(), "QmWuXdBn1Ffxf2PJGANPFNWquWRCERhQSP8B1vAaQdRicH".into()),
            ]
        );
        assert!(AddOptions::new(Some(0), Some(true)).is_err() && AddOptions::new(Some(2), None).is_err());
    });
}

#[test]
fn chunked_files_round_trip_through_verified_blocks() {
    run(async {
        for (n, opts) in [
            (0, AddOptions::default()),
            (10, AddOptions::default()),
            (add::CHUNK_SIZE, AddOptions::default()),
            (add::CHUNK_SIZE + 1, AddOptions::new(Some(1), None).unwrap()),
            (5 * 1024 * 1024 + 3, AddOptions::default()),
            // 175 chunks: two levels of parents (174 + 1).
            (add::CHUNK_SIZE * add::MAX_LINKS + 5, AddOptions::new(Some(1), None).unwrap()),
        ] {
            let bytes = noise(n);
            let (root, blocks) = built(&bytes, opts).await;
            assert_eq!(read(blocks, &root, Limits::default()).await.unwrap(), bytes, "{n} bytes {opts:?}");
        }
    });
}

#[test]
fn a_tampered_block_is_refused_and_nothing_is_kept() {
    run(async {
        let platform = p();
        let mut dag = Dag::default();
        let bytes = noise(3 * add::CHUNK_SIZE);
        let root = dag.file(&platform, &bytes, AddOptions::default()).await;
        let mut blocks = Blocks::default();
        for (i, (c, mut b)) in dag.blocks.into_iter().enumerate() {
            if i == 1 {
                b[100] ^= 1;
                let e = blocks.insert(&platform, c, b, &Limits::default()).await.unwrap_err();
                assert_eq!(e.code, ErrorCode::VerificationFailed, "{e}");
                assert!(e.message.contains(&c.to_string()) && e.message.contains("nothing from this fetch was used"), "{e}");
                assert_eq!(e.details.unwrap()["cid"], c.to_string());
                continue;
            }
            blocks.insert(&platform, c, b, &Limits::default()).await.unwrap();
        }
        // The tampered leaf never entered the set: the file cannot be read from it.
        let e = read(blocks, &root.cid, Limits::default()).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::VerificationFailed);
        assert!(e.message.contains("missing"), "{e}");
    });
}

#[test]
fn cars_are_read_and_a_tampered_car_fails_as_a_whole() {
    run(async {
        let platform = p();
        let mut dag = Dag::default();
        let root = dag.file(&platform, &noise(2 * add::CHUNK_SIZE + 7), AddOptions::new(Some(1), None).unwrap()).await;
        let write = |blocks: &[(Cid, Vec<u8>)]| {
            let blocks = blocks.to_vec();
            async move {
                let mut out = Vec::new();
                let mut w = iroh_car::CarWriter::new(iroh_car::CarHeader::new_v1(vec![root.cid]), &mut out);
                for (c, b) in &blocks {
                    w.write(*c, b).await.unwrap();
                }
                w.finish().await.unwrap();
                out
            }
        };
        let car = write(&dag.blocks).await;
        let (roots, list) = block::read_car(car.clone().into(), &Limits::default()).unwrap();
        assert_eq!(roots, vec![root.cid]);
        assert_eq!(list.len(), 4);
        // Flip one byte of the last block inside the CAR.
        let mut bad = car.clone();
        let n = bad.len();
        bad[n - 10] ^= 0x80;
        let (_, list) = block::read_car(bad.into(), &Limits::default()).unwrap();
        let failed = first_failure(&platform, list).await;
        assert_eq!(failed.expect("the tampered block is caught").code, ErrorCode::VerificationFailed);
        // Not a CAR at all; a CAR cut short.
        assert_eq!(block::read_car(bytes::Bytes::from_static(b"<html>nope</html>"), &Limits::default()).unwrap_err().code, ErrorCode::MalformedResponse);
        assert_eq!(block::read_car(bytes::Bytes::copy_from_slice(&car[..car.len() - 3]), &Limits::default()).unwrap_err().code, ErrorCode::MalformedResponse);
        // Over the block-count limit.
        let small = Limits { max_blocks: 2, ..Limits::default() };
        assert_eq!(block::read_car(car.clone().into(), &small).unwrap_err().code, ErrorCode::MalformedResponse);
    });
}

#[test]
fn codecs_and_hashes_the_sdk_cannot_check_are_refused() {
    run(async {
        let platform = p();
        // dag-cbor (0x71) with a correct sha2-256 digest.
        let cbor = cid_of(1, 0x71, b"\xa0");
        let e = Blocks::default().insert(&platform, cbor, b"\xa0".to_vec(), &Limits::default()).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::Unsupported, "{e}");
        // An identity multihash, and sha2-512.
        let id = Cid::new_v1(RAW, cid::multihash::Multihash::<64>::wrap(0x00, b"hi").unwrap());
        assert_eq!(block::parse_cid(&id.to_string()).unwrap_err().code, ErrorCode::Unsupported);
        let sha512 = Cid::new_v1(RAW, cid::multihash::Multihash::<64>::wrap(0x13, &[0u8; 64]).unwrap());
        assert_eq!(block::parse_cid(&sha512.to_string()).unwrap_err().code, ErrorCode::Unsupported);
        // Bytes that hash right but are not DAG-PB/UnixFS under a dag-pb CID.
        let junk = b"\xff\xff\xff junk".to_vec();
        let c = cid_of(1, DAG_PB, &junk);
        let mut blocks = Blocks::default();
        blocks.insert(&platform, c, junk, &Limits::default()).await.unwrap();
        let e = read(blocks, &c, Limits::default()).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::VerificationFailed);
        assert!(e.message.contains("not readable UnixFS"), "{e}");
        // The same bytes under a raw CID are a file of those bytes (the CID decides).
        let bytes = b"\xff\xff\xff junk".to_vec();
        let raw = cid_of(1, RAW, &bytes);
        let mut blocks = Blocks::default();
        blocks.insert(&platform, raw, bytes.clone(), &Limits::default()).await.unwrap();
        assert_eq!(read(blocks, &raw, Limits::default()).await.unwrap(), bytes);
        // A raw block served where a dag-pb CID with the same digest is asked for.
        let leaf = b"leaf".to_vec();
        let as_pb = cid_of(1, DAG_PB, &leaf);
        let mut blocks = Blocks::default();
        blocks.insert(&platform, as_pb, leaf, &Limits::default()).await.unwrap();
        assert_eq!(read(blocks, &as_pb, Limits::default()).await.unwrap_err().code, ErrorCode::VerificationFailed);
        // Bad CID text.
        assert_eq!(IpfsUrl::parse("ipfs://notacid").unwrap_err().code, ErrorCode::InvalidArgument);
    });
}

#[test]
fn depth_size_and_declared_sizes_are_checked() {
    run(async {
        let platform = p();
        // A chain of single-child file nodes, 40 deep.
        let leaf = b"x".to_vec();
        let leaf_cid = cid_of(1, RAW, &leaf);
        let mut all = vec![(leaf_cid, leaf)];
        let mut at = leaf_cid;
        for _ in 0..40 {
            let (c, b) = pb(&file_data(None, 1, vec![1]), &[("", at, 1)]);
            all.push((c, b));
            at = c;
        }
        let mut blocks = Blocks::default();
        for (c, b) in all.clone() {
            blocks.insert(&platform, c, b, &Limits::default()).await.unwrap();
        }
        let e = read(blocks, &at, Limits::default()).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::MalformedResponse);
        assert!(e.message.contains("deeper than 32"), "{e}");
        let mut blocks = Blocks::default();
        for (c, b) in all {
            blocks.insert(&platform, c, b, &Limits::default()).await.unwrap();
        }
        assert_eq!(read(blocks, &at, Limits { max_depth: 64, ..Limits::default() }).await.unwrap(), b"x");

        // Size limit: refused from the declared size, before any leaf is read.
        let (root, blocks) = built(&pattern(3 * add::CHUNK_SIZE), AddOptions::default()).await;
        let e = read(blocks, &root, Limits { max_bytes: add::CHUNK_SIZE as u64, ..Limits::default() }).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::MalformedResponse);
        assert_eq!(e.details.unwrap()["maxBytes"], add::CHUNK_SIZE as u64);
        // A parent that lies about its children's sizes (hash-valid, so only the sizes tell).
        let a = b"aaaa".to_vec();
        let ca = cid_of(1, RAW, &a);
        for (data, why) in [
            (file_data(None, 4, vec![3]), "declares 3"),
            (file_data(None, 5, vec![4]), "filesize says 5"),
            (file_data(None, 4, vec![]), "1 links but 0 block sizes"),
        ] {
            let (c, b) = pb(&data, &[("", ca, 4)]);
            let mut blocks = Blocks::default();
            blocks.insert(&platform, ca, a.clone(), &Limits::default()).await.unwrap();
            blocks.insert(&platform, c, b, &Limits::default()).await.unwrap();
            let e = read(blocks, &c, Limits::default()).await.unwrap_err();
            assert_eq!(e.code, ErrorCode::VerificationFailed, "{why}");
            assert!(e.message.contains(why), "{e}");
        }
        // A block over the per-block limit.
        let big = vec![0u8; 100];
        let e = Blocks::default().insert(&platform, cid_of(1, RAW, &big), big, &Limits { max_block_bytes: 99, ..Limits::default() }).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::VerificationFailed);
    });
}

#[test]
fn directories_list_resolve_and_refuse_unsafe_names() {
    run(async {
        let platform = p();
        let files = vec![
            ("a.txt".to_string(), b"hi".to_vec()),
            ("d/b.bin".to_string(), noise(add::CHUNK_SIZE + 9)),
            ("d/e/c.txt".to_string(), b"deep".to_vec()),
        ];
        let mut dag = Dag::default();
        let (root, _) = add::tree(&platform, &files, AddOptions::default(), &mut dag).await.unwrap();
        let mut blocks = Blocks::default();
        for (c, b) in dag.blocks.clone() {
            blocks.insert(&platform, c, b, &Limits::default()).await.unwrap();
        }
        let mut r = Reader::new(&platform, blocks, None, Limits::default());
        let listed = r.list(&root.cid).await.unwrap();
        let names: Vec<(&str, unixfs::EntryKind, u64)> = listed.iter().map(|e| (e.name.as_str(), e.kind, e.size)).collect();
        assert_eq!(names, vec![("a.txt", unixfs::EntryKind::File, 2), ("d", unixfs::EntryKind::Directory, 0)]);
        let got = r.files(&root.cid).await.unwrap();
        assert_eq!(got, files);
        let c = r.resolve(&root.cid, &["d".into(), "e".into(), "c.txt".into()]).await.unwrap();
        assert_eq!(r.file(&c).await.unwrap(), b"deep");
        assert_eq!(r.resolve(&root.cid, &["nope".into()]).await.unwrap_err().code, ErrorCode::InvalidArgument);
        assert_eq!(r.file(&root.cid).await.unwrap_err().code, ErrorCode::InvalidArgument);
        // Entry limit.
        let mut small = Reader::new(&platform, Blocks::default(), None, Limits { max_entries: 2, ..Limits::default() });
        for (c, b) in dag.blocks {
            small.blocks.insert(&platform, c, b, &Limits::default()).await.unwrap();
        }
        assert_eq!(small.files(&root.cid).await.unwrap_err().code, ErrorCode::MalformedResponse);

        // A directory whose entry name would escape the job directory.
        let x = b"x".to_vec();
        let cx = cid_of(1, RAW, &x);
        for name in ["..", "a/b", ""] {
            let (dc, db) = pb(&Data { kind: Kind::Directory, data: None, filesize: None, blocksizes: vec![] }, &[(name, cx, 1)]);
            let mut blocks = Blocks::default();
            blocks.insert(&platform, cx, x.clone(), &Limits::default()).await.unwrap();
            blocks.insert(&platform, dc, db, &Limits::default()).await.unwrap();
            let e = Reader::new(&platform, blocks, None, Limits::default()).files(&dc).await.unwrap_err();
            assert_eq!(e.code, ErrorCode::VerificationFailed, "{name:?}");
            assert!(e.message.contains("not a usable file name"), "{e}");
        }
    });
}

#[test]
fn urls_multipart_and_answers() {
    let u = IpfsUrl::parse("ipfs://QmbT7WoQbEVmQWTMgyQrh9QTKRZyXt8StQeXWFUTEypNz6/d/my%20file.txt").unwrap();
    assert_eq!(u.path, vec!["d".to_string(), "my file.txt".to_string()]);
    assert_eq!(u.gateway_path(), "/ipfs/QmbT7WoQbEVmQWTMgyQrh9QTKRZyXt8StQeXWFUTEypNz6/d/my%20file.txt");
    assert_eq!(u.packed_path(), "_ipfs/QmbT7WoQbEVmQWTMgyQrh9QTKRZyXt8StQeXWFUTEypNz6/d/my file.txt");
    assert_eq!(u.to_string(), "ipfs://QmbT7WoQbEVmQWTMgyQrh9QTKRZyXt8StQeXWFUTEypNz6/d/my file.txt");
    assert_eq!(IpfsUrl::parse("bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354").unwrap().path.len(), 0);
    for bad in ["ipfs://", "ipfs://Qm123", "ipfs://QmbT7WoQbEVmQWTMgyQrh9QTKRZyXt8StQeXWFUTEypNz6/../x", "ipfs://QmbT7WoQbEVmQWTMgyQrh9QTKRZyXt8StQeXWFUTEypNz6/%2e%2e"] {
        assert_eq!(IpfsUrl::parse(bad).unwrap_err().code, ErrorCode::InvalidArgument, "{bad}");
    }
    let body = add::multipart(&[("d/b c.txt".into(), b"x".to_vec())], "BB");
    let text = String::from_utf8(body).unwrap();
    assert!(text.starts_with("--BB\r\nContent-Disposition: form-data; name=\"file\"; filename=\"d\"\r\nContent-Type: application/x-directory\r\n\r\n\r\n"), "{text}");
    assert!(text.contains("filename=\"d%2Fb%20c.txt\"\r\nContent-Type: application/octet-stream\r\n\r\nx\r\n--BB--\r\n"), "{text}");
    let a = add::parse_answer(b"{\"Name\":\"a\",\"Hash\":\"Qm1\",\"Size\":\"3\"}\n{\"Bytes\":5}\n{\"Name\":\"\",\"Hash\":\"Qm2\"}\n").unwrap();
    assert_eq!(a, vec![("a".into(), "Qm1".into()), ("".into(), "Qm2".into())]);
    assert_eq!(add::parse_answer(b"<html>").unwrap_err().code, ErrorCode::MalformedResponse);
}

/// A platform whose native SHA-256 is the host's (as on wasm, where node:crypto or
/// WebCrypto override [`Platform::sha256`]): counts what it hashed, and with `lie` set
/// answers a wrong digest (a test double for a broken host, which cannot be caused for
/// real).
struct HostHash {
    base: NativePlatform,
    calls: std::cell::Cell<usize>,
    lie: bool,
}

impl Platform for HostHash {
    fn http(&self, req: crate::platform::HttpRequest) -> crate::platform::LocalFuture<'_, Result<crate::platform::HttpResponse>> {
        self.base.http(req)
    }
    crate::platform::delegate_to_base!();
    fn sha256(&self, bytes: &[u8]) -> crate::platform::LocalFuture<'_, Result<[u8; 32]>> {
        self.calls.set(self.calls.get() + 1);
        let mut d: [u8; 32] = sha2::Sha256::digest(bytes).into();
        if self.lie {
            d[0] ^= 1;
        }
        Box::pin(async move { Ok(d) })
    }
}

/// Output checks (`gpu::sha256_for_proof`) take the synchronous hex path only where the
/// platform offers one: a platform that overrides only `sha256` (here, one answering wrong
/// digests) is still what decides, never bypassed by a default that hashes itself.
#[test]
fn output_hashes_come_from_a_platform_that_overrides_only_sha256() {
    run(async {
        let bytes: std::rc::Rc<[u8]> = noise(1024).into();
        let honest = crate::proof::sha256_hex(&bytes);
        let liar = HostHash { base: p(), calls: Default::default(), lie: true };
        assert_eq!(liar.sha256_hex_now(&bytes), None);
        let (got, _) = crate::gpu::sha256_for_proof(&liar, std::slice::from_ref(&bytes)).await;
        assert_eq!(liar.calls.get(), 1);
        assert_ne!(got[0], honest);
        assert_eq!(got[0][2..], honest[2..]);
    });
}

#[test]
fn blocks_are_checked_with_the_platforms_hash_and_a_tampered_car_fails_on_it() {
    run(async {
        let host = HostHash { base: p(), calls: Default::default(), lie: false };
        let mut dag = Dag::default();
        let bytes = noise(3 * add::CHUNK_SIZE + 11);
        let root = dag.file(&host, &bytes, AddOptions::new(Some(1), None).unwrap()).await;
        let mut car = Vec::new();
        let mut w = iroh_car::CarWriter::new(iroh_car::CarHeader::new_v1(vec![root.cid]), &mut car);
        for (c, b) in &dag.blocks {
            w.write(*c, b).await.unwrap();
        }
        w.finish().await.unwrap();
        let body = bytes::Bytes::from(car.clone());
        let (roots, list) = block::read_car(body.clone(), &Limits::default()).unwrap();
        assert_eq!((roots, list.len()), (vec![root.cid], dag.blocks.len()));
        // Every block is a slice of the body, not a copy.
        let range = body.as_ptr() as usize..body.as_ptr() as usize + body.len();
        assert!(list.iter().all(|(_, b)| range.contains(&(b.as_ptr() as usize))));
        host.calls.set(0);
        let mut blocks = Blocks::default();
        for (c, b) in list {
            blocks.insert(&host, c, b, &Limits::default()).await.unwrap();
        }
        assert_eq!(host.calls.get(), dag.blocks.len(), "every block went through the platform's hash");
        let mut r = Reader::new(&host, blocks, None, Limits::default());
        let parts = r.file_parts(&root.cid).await.unwrap();
        assert_eq!(parts.concat(), bytes);
        assert!(parts.iter().all(|b| range.contains(&(b.as_ptr() as usize))), "the file's pieces are slices of the body");

        // One flipped byte in a leaf inside the CAR: refused on the platform's hash.
        let mut bad = car.clone();
        let n = bad.len();
        bad[n - 100] ^= 0x01;
        let (_, list) = block::read_car(bad.into(), &Limits::default()).unwrap();
        let failed = first_failure(&host, list).await;
        let e = failed.expect("the tampered block is caught");
        assert_eq!(e.code, ErrorCode::VerificationFailed, "{e}");
        assert!(e.message.contains("hash to sha2-256"), "{e}");

        // The platform's digest decides: a host answering wrong digests fails honest bytes.
        let liar = HostHash { base: p(), calls: Default::default(), lie: true };
        let (c, b) = &dag.blocks[0];
        let e = Blocks::default().insert(&liar, *c, b.clone(), &Limits::default()).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::VerificationFailed);
    });
}

#[test]
fn streaming_never_hashes_around_a_platform_that_overrides_only_sha256() {
    // HostHash overrides sha256 only (a liar here): streaming must not hash around it with
    // sha2, so even an honest CAR fails on its digests.
    run(async {
        let (car, _, _, _) = car_of(2 * add::CHUNK_SIZE).await;
        let host = HostHash { base: p(), calls: Default::default(), lie: true };
        let mut pre = block::Prehashed::default();
        pre.feed(&host, &car, &Limits::default()).unwrap();
        let body = bytes::Bytes::from(car);
        let (_, list) = block::read_car(body.clone(), &Limits::default()).unwrap();
        assert!(list.iter().all(|(_, b)| pre.digest(&body, b).is_none()), "no digest was taken around the platform's hash");
        let failed = first_failure(&host, list).await.expect("the liar's digests fail honest bytes");
        assert_eq!(failed.code, ErrorCode::VerificationFailed);
    });
}

#[test]
fn car_framing_is_checked() {
    let header = iroh_car::CarHeader::new_v1(vec![cid_of(1, RAW, b"x")]).encode().unwrap();
    let mut car = Vec::new();
    car.push(header.len() as u8);
    car.extend_from_slice(&header);
    // A header and no blocks: nothing to verify, no error here (the reader then finds
    // the root missing).
    let (roots, list) = block::read_car(bytes::Bytes::from(car.clone()), &Limits::default()).unwrap();
    assert_eq!((roots.len(), list.len()), (1, 0));
    let bad = |extra: &[u8]| {
        let mut c = car.clone();
        c.extend_from_slice(extra);
        block::read_car(bytes::Bytes::from(c), &Limits::default()).unwrap_err()
    };
    // A section longer than the body, a length that is not a varint, a section over 4 MiB,
    // a section whose CID does not parse.
    for e in [bad(&[50, 1, 2]), bad(&[0xff; 11]), bad(&[0x80, 0x80, 0x80, 0x04]), bad(&[3, 9, 9, 9])] {
        assert_eq!(e.code, ErrorCode::MalformedResponse, "{e}");
    }
    // No header at all.
    assert_eq!(block::read_car(bytes::Bytes::new(), &Limits::default()).unwrap_err().code, ErrorCode::MalformedResponse);
}

/// A gateway answering one CAR through [`Platform::http_streamed`] in chunks of `chunk`
/// bytes, as fetch hands them over on wasm; counts the blocks hashed while streaming
/// (`sha256_now`) and after the body (`sha256`), and how much of the body was handed to
/// the sink. With `now` unset it hashes only "asynchronously", like WebCrypto. A test
/// double: native code has no streamed fetch to run for real (the Node and Chromium
/// tests run the real one).
struct Streamed {
    base: NativePlatform,
    car: Vec<u8>,
    chunk: usize,
    now: bool,
    now_calls: std::cell::Cell<usize>,
    later_calls: std::cell::Cell<usize>,
    delivered: std::cell::Cell<usize>,
}

impl Streamed {
    fn new(car: Vec<u8>, chunk: usize, now: bool) -> Self {
        Streamed { base: p(), car, chunk, now, now_calls: Default::default(), later_calls: Default::default(), delivered: Default::default() }
    }
}

impl Platform for Streamed {
    fn http(&self, _req: crate::platform::HttpRequest) -> crate::platform::LocalFuture<'_, Result<crate::platform::HttpResponse>> {
        let body = self.car.clone();
        Box::pin(async move { Ok(crate::platform::HttpResponse { status: 200, headers: vec![], body }) })
    }
    fn http_streamed<'a>(&'a self, _req: crate::platform::HttpRequest, sink: crate::platform::BodySink<'a>) -> crate::platform::LocalFuture<'a, Result<crate::platform::HttpResponse>> {
        Box::pin(async move {
            let mut body = Vec::new();
            for piece in self.car.chunks(self.chunk) {
                body.extend_from_slice(piece);
                self.delivered.set(body.len());
                sink(&body)?;
            }
            Ok(crate::platform::HttpResponse { status: 200, headers: vec![], body })
        })
    }
    crate::platform::delegate_to_base!();
    fn sha256(&self, bytes: &[u8]) -> crate::platform::LocalFuture<'_, Result<[u8; 32]>> {
        self.later_calls.set(self.later_calls.get() + 1);
        self.base.sha256(bytes)
    }
    fn sha256_now(&self, bytes: &[u8]) -> Option<[u8; 32]> {
        if !self.now {
            return None;
        }
        self.now_calls.set(self.now_calls.get() + 1);
        self.base.sha256_now(bytes)
    }
}

/// A CAR of a file of `n` noise bytes, its root, its block count, and the bytes.
async fn car_of(n: usize) -> (Vec<u8>, Cid, usize, Vec<u8>) {
    let mut dag = Dag::default();
    let bytes = noise(n);
    let root = dag.file(&p(), &bytes, AddOptions::new(Some(1), None).unwrap()).await;
    let mut car = Vec::new();
    let mut w = iroh_car::CarWriter::new(iroh_car::CarHeader::new_v1(vec![root.cid]), &mut car);
    for (c, b) in &dag.blocks {
        w.write(*c, b).await.unwrap();
    }
    w.finish().await.unwrap();
    (car, root.cid, dag.blocks.len(), bytes)
}

#[test]
fn blocks_are_hashed_while_the_car_streams_and_a_wrong_one_stops_it() {
    run(async {
        let (car, root, n, bytes) = car_of(5 * add::CHUNK_SIZE + 3).await;
        let url = IpfsUrl::parse(&format!("ipfs://{root}")).unwrap();
        // Whatever the chunking, every block is hashed while streaming, none after, and
        // the file reads back whole.
        for chunk in [1, 7, 4096, 65536, car.len()] {
            let gw = Streamed::new(car.clone(), chunk, true);
            let mut r = fetch(&gw, "http://gw", &url, "all", Limits::default()).await.unwrap();
            assert_eq!(r.file(&root).await.unwrap(), bytes, "chunk {chunk}");
            assert_eq!((gw.now_calls.get(), gw.later_calls.get()), (n, 0), "chunk {chunk}");
        }
        // A host that hashes only asynchronously: every block is hashed after the body.
        let gw = Streamed::new(car.clone(), 65536, false);
        let mut r = fetch(&gw, "http://gw", &url, "all", Limits::default()).await.unwrap();
        assert_eq!(r.file(&root).await.unwrap(), bytes);
        assert_eq!(gw.later_calls.get(), n);

        // One flipped byte in the CAR's second block: the fetch fails with
        // VERIFICATION_FAILED as soon as that block is complete, the rest of the body
        // unread.
        let (list_start, first_leaf_end) = {
            let body = bytes::Bytes::from(car.clone());
            let (_, list) = block::read_car(body.clone(), &Limits::default()).unwrap();
            let at = list[1].1.as_ptr() as usize - body.as_ptr() as usize;
            (at, at + list[1].1.len())
        };
        let mut bad = car.clone();
        bad[list_start + 10] ^= 1;
        let gw = Streamed::new(bad.clone(), 4096, true);
        let e = fetch(&gw, "http://gw", &url, "all", Limits::default()).await.err().expect("a tampered block fails the fetch");
        assert_eq!(e.code, ErrorCode::VerificationFailed, "{e}");
        assert!(e.message.contains("hash to sha2-256"), "{e}");
        assert!(gw.delivered.get() < first_leaf_end + 4096 && gw.delivered.get() < bad.len(), "stopped at the bad block: {} of {}", gw.delivered.get(), bad.len());
        // The same tampering with nothing hashed while streaming is still caught after.
        let gw = Streamed::new(bad, 4096, false);
        let e = fetch(&gw, "http://gw", &url, "all", Limits::default()).await.err().expect("a tampered block fails the fetch");
        assert_eq!(e.code, ErrorCode::VerificationFailed, "{e}");
        assert_eq!(gw.delivered.get(), car.len());
    });
}

#[test]
fn a_digest_taken_while_streaming_is_used_only_for_its_exact_bytes() {
    run(async {
        let (car, _, n, _) = car_of(2 * add::CHUNK_SIZE).await;
        let mut pre = block::Prehashed::default();
        pre.feed(&p(), &car, &Limits::default()).unwrap();
        let body = bytes::Bytes::from(car);
        let (_, list) = block::read_car(body.clone(), &Limits::default()).unwrap();
        assert_eq!(list.len(), n);
        for (_, b) in &list {
            assert!(pre.digest(&body, b).is_some());
            // A slice starting at the same byte but shorter or longer has no digest.
            assert!(pre.digest(&body, &b.slice(..b.len() - 1)).is_none());
            let at = b.as_ptr() as usize - body.as_ptr() as usize;
            if at + b.len() < body.len() {
                assert!(pre.digest(&body, &body.slice(at..at + b.len() + 1)).is_none());
            }
        }
        // Slices of another buffer (at the same offsets) have none either.
        let other = bytes::Bytes::from(body.to_vec());
        let (_, list2) = block::read_car(other.clone(), &Limits::default()).unwrap();
        assert!(list2.iter().all(|(_, b)| pre.digest(&body, b).is_none()));
    });
}
