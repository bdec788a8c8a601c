//! Hand-rolled multipart parsing and upload extraction (tar.gz), with the path checks
//! the reference lacks: no absolute paths, no `..`, no links escaping the job dir.

use crate::util::find;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// One multipart part; `data` borrows from the request body.
pub struct Part<'a> {
    pub name: String,
    pub filename: Option<String>,
    pub data: &'a [u8],
}

/// Boundary from a `Content-Type: multipart/form-data; boundary=...` value.
pub fn boundary(content_type: &str) -> Option<String> {
    if !content_type.to_ascii_lowercase().starts_with("multipart/form-data") {
        return None;
    }
    let i = content_type.find("boundary=")?;
    let b = content_type[i + 9..].split(';').next()?.trim().trim_matches('"');
    if b.is_empty() {
        None
    } else {
        Some(b.to_string())
    }
}

fn disposition_param(v: &str, key: &str) -> Option<String> {
    for p in v.split(';') {
        let p = p.trim();
        if let Some((k, val)) = p.split_once('=') {
            if k.trim().eq_ignore_ascii_case(key) {
                return Some(val.trim().trim_matches('"').to_string());
            }
        }
    }
    None
}

/// Parses every complete part; a truncated part and anything after it are dropped.
pub fn parse<'a>(body: &'a [u8], boundary: &str) -> Vec<Part<'a>> {
    let delim = format!("--{boundary}").into_bytes();
    let mut next_delim = b"\r\n".to_vec();
    next_delim.extend_from_slice(&delim);
    let mut parts = Vec::new();
    let Some(mut pos) = find(body, &delim, 0) else { return parts };
    loop {
        pos += delim.len();
        if body.get(pos..pos + 2) == Some(b"--") {
            break;
        }
        if body.get(pos..pos + 2) == Some(b"\r\n") {
            pos += 2;
        }
        let Some(hend) = find(body, b"\r\n\r\n", pos) else { break };
        let head = String::from_utf8_lossy(&body[pos..hend]).into_owned();
        let dstart = hend + 4;
        let Some(dend) = find(body, &next_delim, dstart) else { break };
        let mut name = None;
        let mut filename = None;
        for line in head.split("\r\n") {
            if let Some((k, v)) = line.split_once(':') {
                if k.trim().eq_ignore_ascii_case("content-disposition") {
                    name = disposition_param(v, "name");
                    filename = disposition_param(v, "filename");
                }
            }
        }
        if let Some(name) = name {
            parts.push(Part { name, filename, data: &body[dstart..dend] });
        }
        pos = dend + 2;
    }
    parts
}

/// A relative path with only normal components, or `None` (absolute, `..`, empty).
pub fn safe_rel(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(x) => out.push(x),
            Component::CurDir => {}
            _ => return None,
        }
    }
    if out.as_os_str().is_empty() {
        None
    } else {
        Some(out)
    }
}

/// Refuses writing through a symlink planted by an earlier entry or part.
fn no_symlink_parents(dir: &Path, rel: &Path) -> Result<(), UploadError> {
    let mut cur = dir.to_path_buf();
    for c in rel.components() {
        cur.push(c);
        if std::fs::symlink_metadata(&cur).map(|m| m.file_type().is_symlink()).unwrap_or(false) {
            return Err(format!("Invalid path in upload: {}", rel.display()));
        }
    }
    Ok(())
}

/// Upload errors, reported as 400 with this text.
pub type UploadError = String;

/// Saves one uploaded file part into `dir`.
pub fn save_file(dir: &Path, filename: &str, data: &[u8], limit: u64) -> Result<(), UploadError> {
    let lower = filename.to_ascii_lowercase();
    if lower.ends_with(".tar.gz") || lower.ends_with(".tgz") {
        return extract_tar_gz(dir, data, limit);
    }
    if lower.ends_with(".zip") {
        return extract_zip(dir, data, limit);
    }
    let rel = safe_rel(Path::new(filename)).ok_or_else(|| format!("Invalid file path: {filename}"))?;
    no_symlink_parents(dir, &rel)?;
    let dest = dir.join(rel);
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("Cannot save {filename}: {e}"))?;
    }
    std::fs::write(&dest, data).map_err(|e| format!("Cannot save {filename}: {e}"))
}

/// Extracts a tar.gz into `dir`, refusing unsafe entries and more than `limit` bytes.
pub fn extract_tar_gz(dir: &Path, data: &[u8], limit: u64) -> Result<(), UploadError> {
    let gz = flate2::read::GzDecoder::new(data);
    let mut ar = tar::Archive::new(gz);
    let entries = ar.entries().map_err(|e| format!("Invalid archive: {e}"))?;
    let mut total: u64 = 0;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("Invalid archive: {e}"))?;
        let raw = entry.path().map_err(|e| format!("Invalid archive: {e}"))?.into_owned();
        let kind = entry.header().entry_type();
        if raw.components().all(|c| matches!(c, Component::CurDir)) {
            continue;
        }
        let rel = safe_rel(&raw).ok_or_else(|| format!("Invalid path in archive: {}", raw.display()))?;
        let dest = dir.join(&rel);
        no_symlink_parents(dir, &rel)?;
        if kind.is_dir() {
            std::fs::create_dir_all(&dest).map_err(|e| format!("Cannot extract: {e}"))?;
        } else if kind.is_file() || kind == tar::EntryType::Continuous {
            total += entry.header().size().unwrap_or(0);
            if total > limit {
                return Err("Archive too large".into());
            }
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent).map_err(|e| format!("Cannot extract: {e}"))?;
            }
            let mut buf = Vec::new();
            entry.read_to_end(&mut buf).map_err(|e| format!("Invalid archive: {e}"))?;
            let _ = std::fs::remove_file(&dest);
            std::fs::write(&dest, &buf).map_err(|e| format!("Cannot extract: {e}"))?;
            if let Ok(mode) = entry.header().mode() {
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(&dest, std::fs::Permissions::from_mode((mode & 0o755) | 0o600));
            }
        } else if kind.is_symlink() {
            let target = entry
                .link_name()
                .ok()
                .flatten()
                .ok_or_else(|| format!("Invalid link in archive: {}", raw.display()))?
                .into_owned();
            // The target, resolved from the link's directory, must stay inside the job dir.
            let base = rel.parent().map(Path::to_path_buf).unwrap_or_default();
            let mut depth: i64 = base.components().count() as i64;
            let mut ok = !target.is_absolute();
            for c in target.components() {
                match c {
                    Component::ParentDir => depth -= 1,
                    Component::Normal(_) => depth += 1,
                    Component::CurDir => {}
                    _ => ok = false,
                }
                if depth < 0 {
                    ok = false;
                }
            }
            if !ok {
                return Err(format!("Invalid link in archive: {}", raw.display()));
            }
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent).map_err(|e| format!("Cannot extract: {e}"))?;
            }
            let _ = std::fs::remove_file(&dest);
            std::os::unix::fs::symlink(&target, &dest).map_err(|e| format!("Cannot extract: {e}"))?;
        } else if kind.is_hard_link() {
            return Err(format!("Hard links are not supported in uploads: {}", raw.display()));
        }
        // Other entry types (pax headers are consumed by the tar crate; fifos, devices) are skipped.
    }
    Ok(())
}

fn le16(d: &[u8], at: usize) -> Option<usize> {
    d.get(at..at + 2).map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
}

fn le32(d: &[u8], at: usize) -> Option<usize> {
    d.get(at..at + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
}

/// Extracts a .zip (stored and deflate entries, no zip64, no encryption) into `dir`,
/// reading the central directory like `unzip` does.
pub fn extract_zip(dir: &Path, data: &[u8], limit: u64) -> Result<(), UploadError> {
    let bad = |what: &str| format!("Invalid zip: {what}");
    let min = data.len().saturating_sub(22 + 65_535);
    let eocd = (min..=data.len().saturating_sub(22))
        .rev()
        .find(|&i| data[i..].starts_with(b"PK\x05\x06"))
        .ok_or_else(|| bad("no end of central directory"))?;
    let count = le16(data, eocd + 10).ok_or_else(|| bad("truncated"))?;
    let mut p = le32(data, eocd + 16).ok_or_else(|| bad("truncated"))?;
    let mut total: u64 = 0;
    for _ in 0..count {
        if !data.get(p..).map(|d| d.starts_with(b"PK\x01\x02")).unwrap_or(false) {
            return Err(bad("central directory"));
        }
        let flags = le16(data, p + 8).ok_or_else(|| bad("truncated"))?;
        let method = le16(data, p + 10).ok_or_else(|| bad("truncated"))?;
        let csize = le32(data, p + 20).ok_or_else(|| bad("truncated"))?;
        let usize_ = le32(data, p + 24).ok_or_else(|| bad("truncated"))?;
        let nlen = le16(data, p + 28).ok_or_else(|| bad("truncated"))?;
        let elen = le16(data, p + 30).ok_or_else(|| bad("truncated"))?;
        let clen = le16(data, p + 32).ok_or_else(|| bad("truncated"))?;
        let attrs = le32(data, p + 38).ok_or_else(|| bad("truncated"))?;
        let local = le32(data, p + 42).ok_or_else(|| bad("truncated"))?;
        let name_b = data.get(p + 46..p + 46 + nlen).ok_or_else(|| bad("truncated"))?;
        let name = String::from_utf8_lossy(name_b).into_owned();
        p += 46 + nlen + elen + clen;
        if flags & 1 != 0 {
            return Err(bad("encrypted entries are not supported"));
        }
        if csize == 0xffff_ffff || usize_ == 0xffff_ffff || local == 0xffff_ffff {
            return Err(bad("zip64 is not supported"));
        }
        if (attrs >> 16) & 0o170000 == 0o120000 {
            return Err(format!("Links are not supported in zip uploads: {name}"));
        }
        if name.ends_with('/') {
            if let Some(rel) = safe_rel(Path::new(&name)) {
                std::fs::create_dir_all(dir.join(rel)).map_err(|e| format!("Cannot extract: {e}"))?;
                continue;
            }
        }
        let rel = safe_rel(Path::new(&name)).ok_or_else(|| format!("Invalid path in archive: {name}"))?;
        total += usize_ as u64;
        if total > limit {
            return Err("Archive too large".into());
        }
        if !data.get(local..).map(|d| d.starts_with(b"PK\x03\x04")).unwrap_or(false) {
            return Err(bad("local header"));
        }
        let start = local + 30 + le16(data, local + 26).ok_or_else(|| bad("truncated"))? + le16(data, local + 28).ok_or_else(|| bad("truncated"))?;
        let raw = data.get(start..start + csize).ok_or_else(|| bad("truncated entry"))?;
        let content = match method {
            0 => raw.to_vec(),
            8 => {
                let mut out = Vec::with_capacity(usize_);
                flate2::read::DeflateDecoder::new(raw)
                    .take(usize_ as u64 + 1)
                    .read_to_end(&mut out)
                    .map_err(|e| bad(&e.to_string()))?;
                out
            }
            m => return Err(bad(&format!("compression method {m} is not supported (stored and deflate are)"))),
        };
        if content.len() != usize_ {
            return Err(bad("size mismatch"));
        }
        no_symlink_parents(dir, &rel)?;
        let dest = dir.join(&rel);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("Cannot extract: {e}"))?;
        }
        let _ = std::fs::remove_file(&dest);
        std::fs::write(&dest, &content).map_err(|e| format!("Cannot extract: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_multipart() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"files\"; filename=\"main.py\"\r\nContent-Type: text/x-python\r\n\r\nprint(1)\n\r\n--XyZ\r\nContent-Disposition: form-data; name=\"manifest\"\r\n\r\n{\"entrypoint\":\"main.py\"}\r\n--XyZ--\r\n";
        let parts = parse(body, "XyZ");
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].name, "files");
        assert_eq!(parts[0].filename.as_deref(), Some("main.py"));
        assert_eq!(parts[0].data, b"print(1)\n");
        assert_eq!(parts[1].name, "manifest");
        assert_eq!(parts[1].filename, None);
        // Truncated: the second part has no closing delimiter.
        assert_eq!(parse(&body[..120], "XyZ").len(), 1);
        assert_eq!(boundary("multipart/form-data; boundary=XyZ").as_deref(), Some("XyZ"));
        assert_eq!(boundary("application/json"), None);
    }

    #[test]
    fn safe_paths() {
        assert!(safe_rel(Path::new("../x")).is_none());
        assert!(safe_rel(Path::new("/etc/passwd")).is_none());
        assert!(safe_rel(Path::new("a/../../x")).is_none());
        assert_eq!(safe_rel(Path::new("./a/b")).unwrap(), PathBuf::from("a/b"));
    }
}
