//! The WebSocket `/stream/{id}`: the reference's frames for a finished, queued or running
//! job (status, stdout, stderr, `[DONE]` with the CPU and memory figures), and its way of
//! ending the connection.

use super::jobs::Phase;
use super::Worker;
use crate::util::fmt_f;
use crate::ws;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

impl Worker {
    pub(super) async fn serve_ws(self: Arc<Self>, mut s: TcpStream, id: &str, key: &str) {
        self.wait_unlocked().await;
        use tokio::io::AsyncWriteExt;
        if s.write_all(&ws::handshake_response(key)).await.is_err() {
            return;
        }
        let Some(job) = self.job(id) else {
            let _ = ws::send_text(&mut s, format!("[ERROR] Job not found: {id}\n").as_bytes()).await;
            close_ws(&mut s).await;
            return;
        };
        let stdout = || self.shown_stdout(&job.stdout.lock().unwrap());
        if job.phase() == Phase::Done {
            let out = stdout();
            if !out.is_empty() {
                let _ = ws::send_text(&mut s, &out).await;
            }
            let _ = ws::send_text(&mut s, format!("[STATUS] Job status: {}\n", job.status_str()).as_bytes()).await;
            if !out.is_empty() {
                let _ = ws::send_text(&mut s, &out).await;
            }
            let _ = ws::send_text(&mut s, b"[DONE] Job completed\n").await;
            close_ws(&mut s).await;
            return;
        }
        if ws::send_text(&mut s, b"[STATUS] Job status: queued\n").await.is_err() {
            return;
        }
        let mut rx = job.phase.subscribe();
        let p = rx.wait_for(|p| *p != Phase::Queued).await.map(|p| *p).unwrap_or(Phase::Deleted);
        if p == Phase::Deleted {
            let _ = ws::send_text(&mut s, format!("[ERROR] Job not found: {id}\n").as_bytes()).await;
            close_ws(&mut s).await;
            return;
        }
        if ws::send_text(&mut s, b"[STATUS] Job started\n").await.is_err() {
            return;
        }
        let p = rx.wait_for(|p| matches!(p, Phase::Done | Phase::Deleted)).await.map(|p| *p).unwrap_or(Phase::Deleted);
        if p == Phase::Deleted {
            let _ = ws::send_text(&mut s, format!("[ERROR] Job not found: {id}\n").as_bytes()).await;
            close_ws(&mut s).await;
            return;
        }
        let out = stdout();
        if !out.is_empty() {
            let _ = ws::send_text(&mut s, &out).await;
        }
        let err_out = job.stderr.lock().unwrap().clone();
        if !err_out.is_empty() {
            let mut f = b"[STDERR]\n".to_vec();
            f.extend_from_slice(&err_out);
            let _ = ws::send_text(&mut s, &f).await;
        }
        let (exit, cpu, mem) = {
            let o = job.out.lock().unwrap();
            (o.exit_code, o.cpu, o.mem_mb)
        };
        let done = format!("[DONE] Job completed (exit={}, CPU={}s, Mem={}MB)\n", exit, fmt_f(cpu), mem);
        if ws::send_text(&mut s, done.as_bytes()).await.is_err() {
            return;
        }
        // Like the reference: wait for any client frame, answer, drop TCP without a close frame.
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(3600), ws::read_frame(&mut s)).await {
            let _ = ws::send_text(&mut s, b"[DONE] Job completed\n").await;
        }
        let _ = s.shutdown().await;
    }
}

async fn close_ws(s: &mut TcpStream) {
    use tokio::io::AsyncWriteExt;
    let _ = ws::send_close(s).await;
    // Give the client a moment to answer with its own close frame.
    let _ = tokio::time::timeout(Duration::from_secs(1), ws::read_frame(s)).await;
    let _ = s.shutdown().await;
}
