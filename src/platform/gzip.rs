//! The Rust gzip compressor: what the platform seam falls back to (natively, and on
//! hosts without a native compressor). Here, below `job`, so the platform need not import
//! the job layer.

use crate::error::{Error, ErrorCode, Result};
use flate2::{write::GzEncoder, Compression};

/// The gzip level every packer uses: 1, the fastest. The worker inflates any level
/// alike (standard gzip); level 6 would save about 8% of the upload at about 3x the time.
pub const GZIP_LEVEL: u32 = 1;

/// Gzip the concatenation of `parts` at [`GZIP_LEVEL`] in Rust (flate2 + miniz_oxide):
/// the path of hosts without native compression, and natively.
pub fn gzip_parts(parts: &[&[u8]]) -> Result<Vec<u8>> {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let fail = |e: std::io::Error| Error::new(ErrorCode::Io, "cannot compress the job archive").with_cause(e.to_string());
    // Level 1 output of compressible input is far smaller; reserve a fraction.
    let mut enc = GzEncoder::new(Vec::with_capacity(total / 4 + 64), Compression::new(GZIP_LEVEL));
    for p in parts {
        std::io::Write::write_all(&mut enc, p).map_err(fail)?;
    }
    enc.finish().map_err(fail)
}
