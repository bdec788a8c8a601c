//! Server side of the tiny WebSocket subset the reference speaks: handshake, unmasked
//! text frames out, masked frames in (only to notice that one arrived), a bare close frame.

use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `Sec-WebSocket-Accept` for a client key.
pub fn accept_key(key: &str) -> String {
    let mut h = sha1_smol::Sha1::new();
    h.update(key.as_bytes());
    h.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(h.digest().bytes())
}

/// The 101 response.
pub fn handshake_response(key: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        accept_key(key)
    )
    .into_bytes()
}

fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x80 | opcode];
    let n = payload.len();
    if n < 126 {
        f.push(n as u8);
    } else if n < 65536 {
        f.push(126);
        f.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        f.push(127);
        f.extend_from_slice(&(n as u64).to_be_bytes());
    }
    f.extend_from_slice(payload);
    f
}

/// Sends one text frame.
pub async fn send_text(s: &mut TcpStream, payload: &[u8]) -> std::io::Result<()> {
    s.write_all(&frame(0x1, payload)).await
}

/// Sends a close frame without a status code (the client reports 1005).
pub async fn send_close(s: &mut TcpStream) -> std::io::Result<()> {
    s.write_all(&frame(0x8, &[])).await
}

/// Reads one client frame and returns its opcode (payload discarded).
pub async fn read_frame(s: &mut TcpStream) -> std::io::Result<u8> {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).await?;
    let opcode = h[0] & 0x0f;
    let masked = h[1] & 0x80 != 0;
    let mut len = (h[1] & 0x7f) as u64;
    if len == 126 {
        let mut b = [0u8; 2];
        s.read_exact(&mut b).await?;
        len = u16::from_be_bytes(b) as u64;
    } else if len == 127 {
        let mut b = [0u8; 8];
        s.read_exact(&mut b).await?;
        len = u64::from_be_bytes(b);
    }
    if masked {
        let mut m = [0u8; 4];
        s.read_exact(&mut m).await?;
    }
    let mut left = len;
    let mut buf = [0u8; 4096];
    while left > 0 {
        let n = s.read(&mut buf[..left.min(4096) as usize]).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        left -= n as u64;
    }
    Ok(opcode)
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc6455_example() {
        assert_eq!(super::accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }
}
