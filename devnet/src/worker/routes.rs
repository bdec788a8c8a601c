//! HTTP: the connection handler (the reference's 413, the `slow` fault, the WebSocket
//! upgrade, relayed jobs) and the router, with the exact response bodies of the
//! reference's endpoints (`/`, `/health`, `/environments`, `/stats`, `/status`, `/logs`,
//! `/outputs`, `/download`) and the devnet's admin endpoints (`/_devnet/...`).

use super::fault::Fault;
use super::files::{file_type, mime_type, output_candidates, percent_decode, size_formatted};
use super::jobs::Phase;
use super::registration::DEFAULT_CHAIN_ID;
use super::Worker;
use crate::http::{read_request, send_and_close, worker_json, worker_response, ReadOutcome, Request};
use crate::sign;
use crate::util::{fmt_2f, fmt_g, json_escape, json_escape_bytes};
use std::net::IpAddr;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

const ROOT_BODY: &str = "{\n            \"service\": \"sandrun\",\n            \"status\": \"running\",\n            \"description\": \"Batch job execution with directory upload\",\n            \"privacy\": \"Jobs auto-delete after download\",\n            \"limits\": \"10 CPU-sec/min, 512MB RAM, 5 min timeout\"\n        }";

const ENV_BODY: &str = "{\n  \"templates\": [\n    \"data-science\",\n    \"ml-basic\",\n    \"nlp\",\n    \"scientific\",\n    \"vision\"\n  ],\n  \"stats\": {\n    \"total_templates\": 5,\n    \"cached_environments\": 0,\n    \"total_uses\": 0,\n    \"disk_usage_mb\": 0\n  }\n}";

pub(super) fn err(code: u16, msg: &str) -> Vec<u8> {
    worker_json(code, &format!("{{\"error\":\"{}\"}}", json_escape(msg)))
}

impl Worker {
    pub(super) async fn handle_conn(self: Arc<Self>, mut s: TcpStream, peer: IpAddr) {
        let req = match read_request(&mut s, peer, self.cfg.max_body, true).await {
            Ok(ReadOutcome::Req(r)) => r,
            Ok(ReadOutcome::TooLarge) => {
                // The reference's 413: no CORS header, and a Content-Length one byte
                // shorter than the body it writes.
                let body = "{\"error\":\"Request body too large\"}";
                let resp = format!(
                    "HTTP/1.1 413 Unknown\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
                    body.len() - 1,
                    body
                );
                send_and_close(&mut s, resp.as_bytes()).await;
                return;
            }
            _ => return,
        };
        let admin = req.path.starts_with("/_devnet/");
        if !admin && self.fault() == Some(Fault::Slow) {
            tokio::time::sleep(Duration::from_millis(self.cfg.slow_ms)).await;
        }
        if req.method == "GET"
            && req.path.starts_with("/stream/")
            && req.header_exact("Upgrade").map(|v| v.eq_ignore_ascii_case("websocket")).unwrap_or(false)
        {
            if let Some(key) = req.header_exact("Sec-WebSocket-Key").map(str::to_string) {
                let id = &req.path["/stream/".len()..];
                if self.is_relayed(id) {
                    self.relay_ws(s, &req).await;
                } else {
                    self.serve_ws(s, id, &key).await;
                }
                return;
            }
        }
        if let Some(resp) = self.relay(&req).await {
            send_and_close(&mut s, &resp).await;
            return;
        }
        let resp = self.route(&req).await;
        send_and_close(&mut s, &resp).await;
    }

    async fn route(self: &Arc<Self>, req: &Request) -> Vec<u8> {
        let p = req.path.as_str();
        match req.method.as_str() {
            "GET" => {
                if p == "/health" {
                    let id = match self.public_id() {
                        Some(id) => format!("\"{id}\""),
                        None => "null".into(),
                    };
                    worker_json(200, &format!("{{\"status\":\"healthy\",\"worker_id\":{id}}}"))
                } else if p == "/environments" {
                    worker_json(200, ENV_BODY)
                } else if p == "/stats" {
                    self.wait_unlocked().await;
                    self.stats(req.peer)
                } else if let Some(id) = p.strip_prefix("/status/") {
                    self.wait_unlocked().await;
                    self.status(id)
                } else if let Some(id) = p.strip_prefix("/logs/") {
                    self.wait_unlocked().await;
                    match self.job(id) {
                        None => err(404, "Job not found"),
                        Some(j) => {
                            let so = json_escape_bytes(&self.shown_stdout(&j.stdout.lock().unwrap()));
                            let se = json_escape_bytes(&j.stderr.lock().unwrap());
                            worker_json(200, &format!("{{\"stdout\":\"{so}\",\"stderr\":\"{se}\"}}"))
                        }
                    }
                } else if let Some(id) = p.strip_prefix("/outputs/") {
                    self.wait_unlocked().await;
                    self.outputs(id)
                } else if let Some(rest) = p.strip_prefix("/download/") {
                    self.wait_unlocked().await;
                    self.download(rest).await
                } else if p == "/_devnet/jobs" {
                    let st = self.st.lock().unwrap();
                    let running = *self.running.borrow();
                    worker_json(
                        200,
                        &format!(
                            "{{\"accepted\":{},\"stored\":{},\"queued\":{},\"running\":{}}}",
                            self.accepted.load(Ordering::SeqCst),
                            st.jobs.len(),
                            st.queue.len(),
                            running
                        ),
                    )
                } else if let Some(id) = p.strip_prefix("/_devnet/jobs/") {
                    // Devnet-only: the exact CPU figure (the reference only shows it in the
                    // WebSocket [DONE] frame), so tests can rebuild the signed string cheaply.
                    match self.job(id) {
                        None => err(404, "Job not found"),
                        Some(j) => {
                            let o = j.out.lock().unwrap();
                            worker_json(
                                200,
                                &format!(
                                    "{{\"job_id\":\"{}\",\"phase\":\"{:?}\",\"cpu_seconds_exact\":\"{}\"}}",
                                    json_escape(&j.id),
                                    j.phase(),
                                    fmt_g(o.cpu)
                                ),
                            )
                        }
                    }
                } else if p == "/_devnet/fault" {
                    self.fault_body()
                } else if p == "/_devnet/hijack" {
                    let h = self.hijack.lock().unwrap();
                    worker_json(200, &serde_json::json!({"done": h.done, "attempts": h.attempts}).to_string())
                } else {
                    // Prefix routing: any other GET is the service info.
                    worker_json(200, ROOT_BODY)
                }
            }
            "POST" if p == "/submit" => {
                if self.fault() == Some(Fault::Reject429) {
                    return err(429, "Rate limit exceeded");
                }
                self.wait_unlocked().await;
                self.submit(req).await
            }
            "POST" if p == "/_devnet/fault" => {
                let v: serde_json::Value = match serde_json::from_slice(&req.body) {
                    Ok(v) => v,
                    Err(_) => return err(400, "Body must be JSON like {\"mode\":\"slow\"} or {\"mode\":null}"),
                };
                let new = match &v["mode"] {
                    serde_json::Value::Null => None,
                    serde_json::Value::String(s) if s == "none" || s.is_empty() => None,
                    serde_json::Value::String(s) => match Fault::parse(s) {
                        Some(f) => Some(f),
                        None => return err(400, &format!("Unknown fault mode: {s}")),
                    },
                    _ => return err(400, "mode must be a string or null"),
                };
                if let Some(f) = new {
                    if let Err(e) = self.fault_allowed(f) {
                        return err(400, &e);
                    }
                }
                *self.fault.lock().unwrap() = new;
                eprintln!("worker {}: fault set to {:?}", self.cfg.index, new.map(Fault::name));
                if new == Some(Fault::HijackPayout) {
                    self.start_hijack();
                }
                self.fault_body()
            }
            "POST" if p == "/_devnet/payout-signature" => {
                // Devnet-only: what an operator does offline with the worker's key.
                let v: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
                let Some(payout) = v["payout"].as_str().filter(|p| sign::is_address(p)) else {
                    return err(400, "Body must be JSON like {\"payout\":\"0x<40 hex>\",\"chain_id\":31337}");
                };
                let chain = v["chain_id"].as_u64().unwrap_or(DEFAULT_CHAIN_ID);
                worker_json(
                    200,
                    &serde_json::json!({
                        "worker_id": self.worker_id,
                        "payout": payout,
                        "payout_chain_id": chain,
                        "payout_signature": sign::payout_signature(&self.key, chain, payout),
                    })
                    .to_string(),
                )
            }
            _ => err(404, "Not found"),
        }
    }

    fn stats(&self, ip: IpAddr) -> Vec<u8> {
        let mut st = self.st.lock().unwrap();
        let (used, avail, active, can, reason) = self.quota(&mut st, ip);
        let queue_len = st.queue.len();
        let running = *self.running.borrow();
        worker_json(
            200,
            &format!(
                "{{\"your_quota\":{{\"used\":{},\"limit\":{},\"available\":{},\"active_jobs\":{},\"can_submit\":{},\"reason\":\"{}\"}},\"system\":{{\"queue_length\":{},\"active_jobs\":{}}}}}",
                fmt_g(used),
                fmt_g(self.cfg.cpu_per_minute),
                fmt_g(avail),
                active,
                can,
                json_escape(&reason),
                queue_len,
                running
            ),
        )
    }

    fn status(&self, id: &str) -> Vec<u8> {
        let Some(job) = self.job(id) else { return err(404, "Job not found") };
        let pos = {
            let st = self.st.lock().unwrap();
            st.queue.iter().position(|j| Arc::ptr_eq(j, &job)).map(|i| i + 1).unwrap_or(0)
        };
        let status = job.status_str();
        let o = job.out.lock().unwrap();
        let files = if o.files.is_empty() {
            String::new()
        } else {
            let v: Vec<String> = o
                .files
                .iter()
                .map(|f| {
                    format!(
                        "    \"{}\": {{\n      \"size_bytes\": {},\n      \"sha256\": \"{}\",\n      \"type\": \"{}\"\n    }}",
                        json_escape_bytes(&f.path),
                        f.size,
                        f.sha,
                        file_type(&f.path)
                    )
                })
                .collect();
            v.join(",\n")
        };
        let q = |v: &Option<String>| match v {
            Some(s) => format!("\"{s}\""),
            None => "null".into(),
        };
        let body = format!(
            "{{\n  \"job_id\": \"{}\",\n  \"status\": \"{}\",\n  \"queue_position\": {},\n  \"execution_metadata\": {{\n    \"cpu_seconds\": {},\n    \"memory_peak_bytes\": {},\n    \"memory_peak_mb\": {},\n    \"wall_time_ms\": 0,\n    \"exit_code\": {},\n    \"environment\": \"{}\",\n    \"interpreter\": \"{}\"\n  }},\n  \"job_hash\": \"{}\",\n  \"output_files\": {{\n{}\n  }},\n  \"worker_metadata\": {{\n    \"worker_id\": {},\n    \"signature\": {}\n  }}\n}}",
            json_escape(&job.id),
            status,
            pos,
            fmt_2f(o.cpu),
            o.mem_mb * 1_048_576,
            o.mem_mb,
            o.exit_code,
            json_escape(&job.environment),
            json_escape(&job.interpreter),
            job.job_hash,
            files,
            q(&o.worker_id),
            q(&o.signature)
        );
        worker_json(200, &body)
    }

    fn outputs(&self, id: &str) -> Vec<u8> {
        let Some(job) = self.job(id) else { return err(404, "Job not found") };
        let files = output_candidates(&job.dir, &job.outputs);
        let entries = if files.is_empty() {
            String::new()
        } else {
            let v: Vec<String> = files
                .iter()
                .map(|(p, size)| {
                    let name = json_escape_bytes(p);
                    format!(
                        "    {{\n      \"name\": \"{}\",\n      \"size\": {},\n      \"size_formatted\": \"{}\",\n      \"type\": \"{}\",\n      \"mime_type\": \"{}\",\n      \"download_url\": \"/download/{}/{}\"\n    }}",
                        name,
                        size,
                        size_formatted(*size),
                        file_type(p),
                        mime_type(p),
                        json_escape(&job.id),
                        name
                    )
                })
                .collect();
            v.join(",\n")
        };
        let body = format!(
            "{{\n  \"job_id\": \"{}\",\n  \"status\": \"{}\",\n  \"total_files\": {},\n  \"files\": [\n{}\n  ]\n}}",
            json_escape(&job.id),
            job.status_str(),
            files.len(),
            entries
        );
        worker_json(200, &body)
    }

    async fn download(self: &Arc<Self>, rest: &str) -> Vec<u8> {
        let (id, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        let Some(job) = self.job(id) else { return err(404, "Job not found") };
        if path.is_empty() {
            if matches!(job.phase(), Phase::Queued | Phase::Running) {
                // The reference crashes here; the devnet answers instead.
                return err(400, "Job not finished");
            }
            let dir = job.dir.clone();
            let tgz = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
                let enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                let mut b = tar::Builder::new(enc);
                b.follow_symlinks(false);
                b.append_dir_all(".", &dir)?;
                b.into_inner()?.finish()
            })
            .await;
            let data = match tgz {
                Ok(Ok(d)) => d,
                Ok(Err(e)) => return err(500, &format!("Cannot archive job: {e}")),
                Err(e) => return err(500, &format!("Cannot archive job: {e}")),
            };
            self.delete_job(&job);
            return worker_response(
                200,
                "application/gzip",
                &[("Content-Disposition", format!("attachment; filename=\"{}.tar.gz\"", job.id))],
                &data,
            );
        }
        let canon_dir = match std::fs::canonicalize(&job.dir) {
            Ok(d) => d,
            Err(_) => return err(404, "Job not found"),
        };
        let mut target = std::fs::canonicalize(job.dir.join(path));
        if target.is_err() && path.contains('%') {
            let dec = percent_decode(path);
            target = std::fs::canonicalize(job.dir.join(std::ffi::OsStr::from_bytes(&dec)));
        }
        let target = match target {
            Ok(t) => t,
            Err(_) => {
                return err(
                    500,
                    &format!("filesystem error: cannot make canonical path: No such file or directory [{}/{}]", job.id, path),
                )
            }
        };
        if !target.starts_with(&canon_dir) {
            return err(403, "Access denied: path traversal detected");
        }
        if target.is_dir() {
            return err(404, "File not found");
        }
        match tokio::task::block_in_place(|| std::fs::read(&target)) {
            Ok(data) => {
                let name = target.file_name().map(|n| n.as_bytes().to_vec()).unwrap_or_default();
                worker_response(
                    200,
                    mime_type(&name),
                    &[("Content-Disposition", format!("attachment; filename=\"{}\"", String::from_utf8_lossy(&name)))],
                    &data,
                )
            }
            Err(e) => err(500, &format!("Cannot read file: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn capture_body(name: &str) -> String {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/captures/http").join(name);
        let d = std::fs::read_to_string(p).unwrap();
        let (head, body) = d.split_once("\n\n").unwrap();
        let cl: usize = head.lines().find_map(|l| l.strip_prefix("Content-Length: ")).unwrap().parse().unwrap();
        body[..cl].to_string()
    }

    #[test]
    fn static_bodies_match_captures() {
        assert_eq!(ROOT_BODY, capture_body("01-get-root.http"));
        assert_eq!(ENV_BODY, capture_body("03-environments.http"));
    }
}
