//! Faults `relay` and `relay-key`: a submit forwarded to worker 0 (a real HTTP request
//! with the same bytes), and every endpoint of a forwarded job (HTTP and the WebSocket
//! stream) answered with worker 0's bytes, so the result carries worker 0's signature.

use super::fault::Fault;
use super::routes::err;
use super::Worker;
use crate::http::{self, Request};
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::net::TcpStream;

impl Worker {
    pub(super) fn is_relayed(&self, id: &str) -> bool {
        self.relayed.lock().unwrap().contains(id)
    }

    /// Fault `relay`: a submit is forwarded to worker 0 (the same request bytes), and
    /// every job endpoint of a forwarded job answers with worker 0's response. `None`:
    /// not relayed, serve locally.
    pub(super) async fn relay(&self, req: &Request) -> Option<Vec<u8>> {
        let w0 = self.cfg.worker0.clone()?;
        let p = req.path.as_str();
        let fault = self.fault();
        let relaying = fault.map(Fault::relays).unwrap_or(false);
        let forward = if req.method == "POST" && p == "/submit" {
            relaying
        } else if req.method == "GET" && p == "/health" {
            fault == Some(Fault::RelayKey)
        } else if req.method == "GET" {
            let id = ["/status/", "/logs/", "/outputs/", "/download/", "/_devnet/jobs/"]
                .iter()
                .find_map(|pre| p.strip_prefix(pre))
                .map(|rest| rest.split('/').next().unwrap_or(""));
            id.map(|id| self.is_relayed(id)).unwrap_or(false)
        } else {
            false
        };
        if !forward {
            return None;
        }
        // Long enough for the reference-timing blocking endpoints and big downloads.
        let timeout = self.cfg.job_timeout + Duration::from_secs(60);
        let resp = match http::forward(&w0, req, timeout).await {
            Ok(r) => r,
            Err(e) => return Some(err(502, &format!("Relay: worker 0 at {w0} did not answer: {e}"))),
        };
        if req.method == "POST" {
            let (code, body) = http::split_response(&resp);
            if code == 200 {
                if let Some(id) = serde_json::from_slice::<serde_json::Value>(body).ok().and_then(|v| v["job_id"].as_str().map(str::to_string)) {
                    eprintln!("worker {}: fault relay: job {id} forwarded to worker 0", self.cfg.index);
                    self.relayed.lock().unwrap().insert(id);
                    self.accepted.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
        Some(resp)
    }

    /// Fault `relay`, WebSocket: replays the client's handshake to worker 0 and then
    /// copies bytes both ways, like a TCP-level proxy.
    pub(super) async fn relay_ws(&self, mut s: TcpStream, req: &Request) {
        let Some(w0) = self.cfg.worker0.clone() else { return };
        let Ok(mut up) = TcpStream::connect(&w0).await else { return };
        use tokio::io::AsyncWriteExt;
        if up.write_all(&http::request_bytes(req)).await.is_err() {
            return;
        }
        let _ = tokio::io::copy_bidirectional(&mut s, &mut up).await;
    }
}
