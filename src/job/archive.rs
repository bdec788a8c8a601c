//! tar.gz in and out: deterministic packing of a job, and unpacking that refuses
//! anything that would land outside the target (absolute paths, `..`, links).

use crate::error::{Error, ErrorCode, Result};
use flate2::{read::GzDecoder, write::GzEncoder, Compression};
use std::io::Read;

/// Largest archive we unpack (bytes after decompression), against zip bombs.
pub const MAX_UNPACKED_BYTES: u64 = 512 * 1024 * 1024;
/// Most bytes reserved for one entry before its data arrives.
const PREALLOCATE_BYTES: u64 = 64 * 1024;
/// Most bytes accepted after the tar's end-of-archive marker (GNU tar pads to 10 KiB).
const MAX_TRAILING_BYTES: u64 = 1024 * 1024;

/// Pack files into a deterministic tar.gz (mtime 0, uid/gid 0, mode 0644, 0755 for `.sh`).
pub fn pack_tar_gz<'a>(files: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Result<Vec<u8>> {
    let enc = GzEncoder::new(Vec::new(), Compression::fast());
    let mut tar = tar::Builder::new(enc);
    for (path, bytes) in files {
        check_relative_path(path)?;
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(if path.ends_with(".sh") { 0o755 } else { 0o644 });
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, path, bytes)
            .map_err(|e| Error::new(ErrorCode::Io, format!("cannot pack {path}")).with_cause(e.to_string()))?;
    }
    let enc = tar.into_inner().map_err(|e| Error::new(ErrorCode::Io, "cannot finish the job archive").with_cause(e.to_string()))?;
    enc.finish().map_err(|e| Error::new(ErrorCode::Io, "cannot compress the job archive").with_cause(e.to_string()))
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

    #[test]
    fn strips_github_style_root() {
        let a = pack_tar_gz(vec![("repo-main/main.py", &b"x"[..]), ("repo-main/lib/a.py", &b"y"[..])]).unwrap();
        let files = unpack_tar_gz(&a, true).unwrap();
        assert_eq!(files[0].0, "main.py");
        assert_eq!(files[1].0, "lib/a.py");
    }
}
