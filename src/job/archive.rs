//! tar.gz in and out: deterministic packing of a job, and unpacking that refuses
//! anything that would land outside the target (absolute paths, `..`, links).

use crate::error::{Error, ErrorCode, Result};
use flate2::read::GzDecoder;
use std::io::Read;

/// Largest archive we unpack (bytes after decompression), against zip bombs.
pub const MAX_UNPACKED_BYTES: u64 = 512 * 1024 * 1024;
/// Most bytes reserved for one entry before its data arrives.
const PREALLOCATE_BYTES: u64 = 64 * 1024;
/// Most bytes accepted after the tar's end-of-archive marker (GNU tar pads to 10 KiB).
const MAX_TRAILING_BYTES: u64 = 1024 * 1024;

// The Rust compressor lives below the platform seam, which falls back to it.
pub use crate::platform::gzip::{gzip_parts, GZIP_LEVEL};

/// The pieces of a deterministic tar, in order: header blocks and padding the packer
/// wrote (owned, small) between the files' own bytes (borrowed, never copied here). A
/// compressor reads them in turn, so the tar need not exist as one buffer.
pub type TarParts<'a> = Vec<std::borrow::Cow<'a, [u8]>>;

/// A file's tar header: fixed mode (0755 for `.sh`), mtime, owner, so equal inputs pack
/// to equal archives.
fn header(path: &str, len: usize) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_size(len as u64);
    h.set_mode(if path.ends_with(".sh") { 0o755 } else { 0o644 });
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_entry_type(tar::EntryType::Regular);
    h
}

/// Lay out files as a deterministic tar (mtime 0, uid/gid 0, mode 0644, 0755 for `.sh`),
/// byte for byte what `tar::Builder` writes, without copying the files' bytes.
pub fn tar_parts<'a>(files: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Result<TarParts<'a>> {
    use std::borrow::Cow;
    let fail = |what: String| move |e: std::io::Error| Error::new(ErrorCode::Io, what).with_cause(e.to_string());
    // tar::Builder writes the headers (and a GNU long-name entry for a long path): given
    // an empty reader it writes no data and no padding, which we add around the file.
    let mut tar = tar::Builder::new(Vec::new());
    let mut parts: TarParts<'a> = Vec::new();
    for (path, bytes) in files {
        check_relative_path(path)?;
        let mut h = header(path, bytes.len());
        tar.append_data(&mut h, path, std::io::empty()).map_err(fail(format!("cannot pack {path}")))?;
        parts.push(Cow::Owned(std::mem::take(tar.get_mut())));
        if !bytes.is_empty() {
            parts.push(Cow::Borrowed(bytes));
            let pad = (512 - bytes.len() % 512) % 512;
            if pad > 0 {
                parts.push(Cow::Owned(vec![0; pad]));
            }
        }
    }
    parts.push(Cow::Owned(tar.into_inner().map_err(fail("cannot finish the job archive".into()))?));
    Ok(parts)
}

/// Check what a compressor returned for `input_len` bytes: a gzip member (magic, deflate)
/// whose trailer counts every input byte (ISIZE, mod 2^32), no larger than deflate's
/// stored-block bound. A host that compressed a part of the input, or answered anything
/// else, fails here rather than uploading a job the worker cannot unpack.
pub fn check_gzip(out: &[u8], input_len: usize) -> Result<()> {
    let bound = input_len as u64 + input_len as u64 / 1000 + 1024;
    let bad = |why: &str| Err(Error::new(ErrorCode::Io, format!("cannot compress the job archive: the compressor's output {why}")));
    if out.len() < 18 || out[..3] != [0x1f, 0x8b, 8] {
        return bad("is not gzip");
    }
    if out.len() as u64 > bound {
        return bad(&format!("has {} bytes, more than gzip of {input_len} bytes can take", out.len()));
    }
    let isize = u32::from_le_bytes([out[out.len() - 4], out[out.len() - 3], out[out.len() - 2], out[out.len() - 1]]);
    if isize != input_len as u32 {
        return bad(&format!("says it holds {isize} bytes, not the {input_len} given"));
    }
    Ok(())
}

/// Pack files into a deterministic tar.gz with the Rust compressor (see [`tar_parts`]).
pub fn pack_tar_gz<'a>(files: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Result<Vec<u8>> {
    let parts = tar_parts(files)?;
    gzip_parts(&parts.iter().map(|p| &p[..]).collect::<Vec<_>>())
}

pub use crate::util::check_relative_path;

/// Unpack a tar.gz into (path, bytes) pairs. Regular files only; directories are
/// implied. Refuses the whole archive on any absolute path, `..`, or link, rather than
/// skipping it, so nothing partial is presented as complete.
pub fn unpack_tar_gz(bytes: &[u8], strip_common_root: bool) -> Result<Vec<(String, Vec<u8>)>> {
    let mut ar = tar::Archive::new(GzDecoder::new(bytes));
    let fail = |e: std::io::Error| Error::new(ErrorCode::Io, "the archive is not a readable tar.gz").with_cause(e.to_string());
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    let mut total = 0u64;
    for entry in ar.entries().map_err(fail)? {
        let mut entry = entry.map_err(fail)?;
        let raw_path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let path = raw_path.trim_start_matches("./").trim_end_matches('/').to_string();
        let kind = entry.header().entry_type();
        if path.is_empty() && kind.is_dir() {
            continue;
        }
        if raw_path.starts_with('/') {
            return Err(Error::new(ErrorCode::Io, format!("refusing archive: entry {raw_path:?} has an absolute path")));
        }
        check_relative_path(&path).map_err(|e| Error::new(ErrorCode::Io, format!("refusing archive: {}", e.message)))?;
        match kind {
            tar::EntryType::Directory => continue,
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {}
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => continue,
            other => {
                return Err(Error::new(ErrorCode::Io, format!("refusing archive: entry {path:?} is a {other:?}, not a regular file")));
            }
        }
        // The declared size is the archive's word: a base-256 size field can say anything
        // up to 2^64, so the sum saturates instead of wrapping under the cap.
        let declared = entry.size();
        total = total.saturating_add(declared);
        if total > MAX_UNPACKED_BYTES {
            return Err(Error::new(ErrorCode::Io, format!("refusing archive: more than {MAX_UNPACKED_BYTES} bytes unpacked")));
        }
        // Reserve a little and grow with the bytes that really arrive: a 60-byte archive
        // declaring a 500 MB entry must not allocate 500 MB.
        let mut buf = Vec::with_capacity(declared.min(PREALLOCATE_BYTES) as usize);
        entry.read_to_end(&mut buf).map_err(fail)?;
        if kind != tar::EntryType::GNUSparse && buf.len() as u64 != declared {
            return Err(Error::new(
                ErrorCode::Io,
                format!("refusing archive: entry {path:?} declares {declared} bytes but {} arrived (truncated archive)", buf.len()),
            ));
        }
        out.push((path, buf));
    }
    // tar stops at its end marker, or quietly at an end of input between two entries, so
    // read on to the end of the gzip stream: its length and CRC trailer make a cut archive
    // an error instead of a smaller whole. Bytes after the tar's end are padding; bounded.
    let mut gz = ar.into_inner();
    let trailing = std::io::copy(&mut (&mut gz).take(MAX_TRAILING_BYTES + 1), &mut std::io::sink()).map_err(fail)?;
    if trailing > MAX_TRAILING_BYTES {
        return Err(Error::new(ErrorCode::Io, format!("refusing archive: more than {MAX_TRAILING_BYTES} bytes after the end of the tar")));
    }
    if strip_common_root {
        let root = out.first().and_then(|(p, _)| p.split_once('/').map(|(r, _)| format!("{r}/")));
        if let Some(root) = root {
            if out.iter().all(|(p, _)| p.starts_with(&root)) {
                for (p, _) in out.iter_mut() {
                    *p = p[root.len()..].to_string();
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{write::GzEncoder, Compression};

    #[test]
    fn round_trip_is_deterministic() {
        let files: Vec<(&str, &[u8])> = vec![("main.py", b"print(1)\n"), ("data/x.csv", b"a,b\n")];
        let a = pack_tar_gz(files.clone()).unwrap();
        assert_eq!(a, pack_tar_gz(files).unwrap());
        let back = unpack_tar_gz(&a, false).unwrap();
        assert_eq!(back, vec![("main.py".to_string(), b"print(1)\n".to_vec()), ("data/x.csv".to_string(), b"a,b\n".to_vec())]);
    }

    /// A raw ustar header, so we can write paths the `tar` crate refuses to write.
    fn evil_tar(path: &str, kind: u8) -> Vec<u8> {
        let mut h = [0u8; 512];
        h[..path.len()].copy_from_slice(path.as_bytes());
        h[100..107].copy_from_slice(b"0000644");
        h[124..135].copy_from_slice(b"00000000004");
        h[136..147].copy_from_slice(b"00000000000");
        h[156] = kind;
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| b as u32).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        let mut t = h.to_vec();
        let mut data = [0u8; 512];
        data[..4].copy_from_slice(b"evil");
        t.extend_from_slice(&data);
        t.extend_from_slice(&[0u8; 1024]);
        let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
        std::io::Write::write_all(&mut enc, &t).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn refuses_escapes_and_links() {
        assert!(unpack_tar_gz(&evil_tar("ok.txt", b'0'), false).is_ok());
        for (p, k) in [("../evil.txt", b'0'), ("/etc/evil", b'0'), ("a/../../evil", b'0'), ("link", b'2'), ("hard", b'1')] {
            let e = unpack_tar_gz(&evil_tar(p, k), false).unwrap_err();
            assert_eq!(e.code, ErrorCode::Io, "{p}");
            assert!(e.message.starts_with("refusing archive"), "{p}: {e}");
        }
        assert!(unpack_tar_gz(b"not gzip", false).is_err());
    }

    /// Found by tests/fuzz.rs: a cut archive was read as a smaller whole, and a declared
    /// size was reserved before any byte of it arrived.
    #[test]
    fn refuses_cut_archives_and_lying_sizes() {
        let a = pack_tar_gz(vec![("a.txt", &[1u8; 3000][..]), ("b.txt", &b"x"[..])]).unwrap();
        for cut in [0, a.len() / 2, a.len() - 1] {
            assert_eq!(unpack_tar_gz(&a[..cut], false).unwrap_err().code, ErrorCode::Io, "cut at {cut}");
        }
        let mut t = evil_tar("big", b'0');
        let raw = {
            let mut d = GzDecoder::new(&t[..]);
            let mut v = Vec::new();
            d.read_to_end(&mut v).unwrap();
            v
        };
        let mut h = raw[..512].to_vec();
        h[124..135].copy_from_slice(format!("{:011o}", MAX_UNPACKED_BYTES - 1).as_bytes());
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| b as u32).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
        std::io::Write::write_all(&mut enc, &[&h[..], &raw[512..]].concat()).unwrap();
        t = enc.finish().unwrap();
        let e = unpack_tar_gz(&t, false).unwrap_err();
        assert!(e.message.contains("truncated"), "{e}");
    }

    /// The parts are byte for byte the tar `tar::Builder` writes with the data copied in:
    /// an empty file, a `.sh` (mode 0755), sizes on and off the 512-byte block, and a path
    /// too long for the header (a GNU long-name entry).
    #[test]
    fn tar_parts_are_the_builders_tar() {
        let long = format!("{}/deep.txt", "d".repeat(140));
        let big = vec![7u8; 70_000];
        let files: Vec<(&str, &[u8])> = vec![("a.txt", b"x"), ("empty", b""), ("run.sh", &[1u8; 512][..]), (long.as_str(), &big[..])];
        let mut reference = tar::Builder::new(Vec::new());
        for (path, bytes) in &files {
            let mut h = header(path, bytes.len());
            reference.append_data(&mut h, path, *bytes).unwrap();
        }
        let reference = reference.into_inner().unwrap();
        let parts = tar_parts(files.clone()).unwrap();
        assert_eq!(parts.concat(), reference);
        // The files' bytes are borrowed, not copied.
        assert!(parts.iter().any(|p| matches!(p, std::borrow::Cow::Borrowed(b) if b.as_ptr() == big.as_ptr())));
        assert!(tar_parts(vec![("../x", &b"x"[..])]).is_err());
    }

    /// The Rust fallback: what a host without native compression (and native code) sends.
    /// It is one gzip member of the whole tar, at level 1, that unpacks to the files.
    #[test]
    fn rust_fallback_gzips_the_parts() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let files: Vec<(&str, &[u8])> = vec![("main.py", b"print(1)\n"), ("data.bin", &data[..])];
        let parts = tar_parts(files.clone()).unwrap();
        let views: Vec<&[u8]> = parts.iter().map(|p| &p[..]).collect();
        let tar = parts.concat();
        let gz = gzip_parts(&views).unwrap();
        check_gzip(&gz, tar.len()).unwrap();
        let mut whole = GzEncoder::new(Vec::new(), Compression::new(GZIP_LEVEL));
        std::io::Write::write_all(&mut whole, &tar).unwrap();
        assert_eq!(gz, whole.finish().unwrap(), "compressing in parts differs from compressing the tar");
        assert_eq!(gz, pack_tar_gz(files).unwrap());
        let back = unpack_tar_gz(&gz, false).unwrap();
        assert_eq!((back[1].0.as_str(), back[1].1.len()), ("data.bin", data.len()));
        assert_eq!(back[1].1, data);
        assert!(gz.len() < tar.len() / 10, "level {GZIP_LEVEL} did not compress: {} of {}", gz.len(), tar.len());
    }

    /// A compressor's answer is refused unless it is gzip counting every input byte.
    #[test]
    fn check_gzip_refuses_what_is_not_the_whole_input() {
        let tar = vec![5u8; 100_000];
        let gz = gzip_parts(&[&tar]).unwrap();
        check_gzip(&gz, tar.len()).unwrap();
        let half = gzip_parts(&[&tar[..50_000]]).unwrap();
        let cases: [(&[u8], &str); 4] =
            [(&half, "not the 100000"), (b"PK\x03\x04 not gzip at all", "is not gzip"), (&gz[..10], "is not gzip"), (&[&gz[..10], &vec![0u8; 200_000][..]].concat(), "more than gzip")];
        for (out, why) in cases {
            let e = check_gzip(out, tar.len()).unwrap_err();
            assert_eq!(e.code, ErrorCode::Io);
            assert!(e.message.contains(why), "{e}");
        }
    }

    #[test]
    fn strips_github_style_root() {
        let a = pack_tar_gz(vec![("repo-main/main.py", &b"x"[..]), ("repo-main/lib/a.py", &b"y"[..])]).unwrap();
        let files = unpack_tar_gz(&a, true).unwrap();
        assert_eq!(files[0].0, "main.py");
        assert_eq!(files[1].0, "lib/a.py");
    }
}
