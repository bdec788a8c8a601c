//! A broker-compatible registry (the reference broker is a small Flask app): sorted-key
//! compact JSON with a trailing newline, Werkzeug-style reason phrases, JSON-only POSTs
//! (415 otherwise), CORS preflights, nodes that go inactive without heartbeats.

use crate::http::{read_request, send_and_close, ReadOutcome, Request};
use crate::util::{fmt_http_date, fmt_timestamp, sha256_hex, unix_now};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

struct Node {
    id: String,
    endpoint: String,
    capabilities: Value,
    last_heartbeat: u64,
    jobs_completed: u64,
    jobs_failed: u64,
}

struct BJob {
    id: String,
    code: String,
    interpreter: String,
    args: Value,
    status: &'static str,
    node_id: Option<String>,
    created_at: u64,
    completed_at: Option<u64>,
    output: String,
    error: String,
    exit_code: i64,
}

#[derive(Default)]
struct State {
    nodes: Vec<Node>,
    jobs: Vec<BJob>,
}

/// The registry service.
pub struct Registry {
    st: Mutex<State>,
    node_timeout: u64,
    /// Devnet extension: refuse registrations that bind a payout without the worker's
    /// signature or take over another worker's record (see [`Registry::check_register`]).
    checks: bool,
}

const HTML_415: &str = "<!doctype html>\n<html lang=en>\n<title>415 Unsupported Media Type</title>\n<h1>Unsupported Media Type</h1>\n<p>Did not attempt to load JSON data because the request Content-Type was not &#39;application/json&#39;.</p>\n";
const HTML_404: &str = "<!doctype html>\n<html lang=en>\n<title>404 Not Found</title>\n<h1>Not Found</h1>\n<p>The requested URL was not found on the server. If you entered the URL manually please check your spelling and try again.</p>\n";
const HTML_405: &str = "<!doctype html>\n<html lang=en>\n<title>405 Method Not Allowed</title>\n<h1>Method Not Allowed</h1>\n<p>The method is not allowed for the requested URL.</p>\n";
const HTML_400: &str = "<!doctype html>\n<html lang=en>\n<title>400 Bad Request</title>\n<h1>Bad Request</h1>\n<p>Failed to decode JSON object</p>\n";

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        202 => "ACCEPTED",
        400 => "BAD REQUEST",
        403 => "FORBIDDEN",
        404 => "NOT FOUND",
        405 => "METHOD NOT ALLOWED",
        415 => "UNSUPPORTED MEDIA TYPE",
        _ => "UNKNOWN",
    }
}

/// Python `json.dumps(sort_keys=True, separators=(",", ":"))` with `ensure_ascii`.
pub fn py_json(v: &Value) -> String {
    let mut s = String::new();
    write_py(v, &mut s);
    s
}

fn write_py(v: &Value, s: &mut String) {
    match v {
        Value::Null => s.push_str("null"),
        Value::Bool(b) => s.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => s.push_str(&n.to_string()),
        Value::String(t) => write_py_str(t, s),
        Value::Array(a) => {
            s.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                write_py(x, s);
            }
            s.push(']');
        }
        Value::Object(o) => {
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            s.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                write_py_str(k, s);
                s.push(':');
                write_py(&o[k.as_str()], s);
            }
            s.push('}');
        }
    }
}

fn write_py_str(t: &str, s: &mut String) {
    s.push('"');
    for c in t.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            '\u{8}' => s.push_str("\\b"),
            '\u{c}' => s.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for u in c.encode_utf16(&mut buf) {
                    let _ = write!(s, "\\u{:04x}", u);
                }
            }
            c => s.push(c),
        }
    }
    s.push('"');
}

fn response(code: u16, ctype: &str, extra: &[(&str, String)], body: &str) -> Vec<u8> {
    let mut h = format!(
        "HTTP/1.1 {} {}\r\nServer: sandrun-devnet\r\nDate: {}\r\nContent-Type: {}\r\n",
        code,
        reason(code),
        fmt_http_date(unix_now()),
        ctype
    );
    for (n, v) in extra {
        let _ = write!(h, "{n}: {v}\r\n");
    }
    let _ = write!(h, "Content-Length: {}\r\nAccess-Control-Allow-Origin: *\r\nConnection: close\r\n\r\n", body.len());
    let mut out = h.into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

fn json_resp(code: u16, v: Value) -> Vec<u8> {
    let mut body = py_json(&v);
    body.push('\n');
    response(code, "application/json", &[], &body)
}

fn html(code: u16, body: &str) -> Vec<u8> {
    response(code, "text/html; charset=utf-8", &[], body)
}

fn ts(v: Option<u64>) -> Value {
    v.map(|t| Value::String(fmt_timestamp(t))).unwrap_or(Value::Null)
}

fn new_job_id() -> String {
    use rand_core::RngCore;
    let mut b = [0u8; 8];
    rand_core::OsRng.fill_bytes(&mut b);
    crate::util::hex(&b)
}

impl Registry {
    /// A registry whose nodes go inactive after `node_timeout` seconds without a heartbeat.
    /// `checks`: the devnet's registration checks (off: plays the reference broker, which
    /// accepts any registration).
    pub fn new(node_timeout: u64, checks: bool) -> Arc<Registry> {
        Arc::new(Registry { st: Mutex::new(State::default()), node_timeout, checks })
    }

    /// Number of registered nodes (the orchestrator waits for its workers).
    pub fn node_count(&self) -> usize {
        self.st.lock().unwrap().nodes.len()
    }

    /// Serves forever.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        let r = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                r.sweep();
            }
        });
        loop {
            let Ok((mut s, addr)) = listener.accept().await else { continue };
            let r = self.clone();
            tokio::spawn(async move {
                if let Ok(ReadOutcome::Req(req)) = read_request(&mut s, addr.ip(), 16 << 20, false).await {
                    let resp = r.route(&req);
                    send_and_close(&mut s, &resp).await;
                }
            });
        }
    }

    fn active(&self, n: &Node, now: u64) -> bool {
        now.saturating_sub(n.last_heartbeat) <= self.node_timeout
    }

    /// Returns assigned jobs of inactive nodes to pending; drops finished jobs after an hour.
    fn sweep(&self) {
        let now = unix_now();
        let mut st = self.st.lock().unwrap();
        let dead: Vec<String> = st.nodes.iter().filter(|n| !self.active(n, now)).map(|n| n.id.clone()).collect();
        for j in st.jobs.iter_mut() {
            if j.status == "assigned" && j.node_id.as_ref().map(|n| dead.contains(n)).unwrap_or(false) {
                j.status = "pending";
                j.node_id = None;
            }
        }
        st.jobs.retain(|j| j.completed_at.map(|t| now.saturating_sub(t) < 3600).unwrap_or(true));
    }

    fn route(&self, req: &Request) -> Vec<u8> {
        let path = req.path.split('?').next().unwrap_or("");
        let (allowed, known): (&str, bool) = match path {
            "/health" | "/nodes" => ("GET, HEAD, OPTIONS", true),
            "/submit" | "/register" | "/heartbeat" | "/claim" | "/complete" => ("POST, OPTIONS", true),
            p if (p.starts_with("/status/") || p.starts_with("/results/")) && p.matches('/').count() == 2 => {
                ("GET, HEAD, OPTIONS", true)
            }
            _ => ("", false),
        };
        if !known {
            return html(404, HTML_404);
        }
        if req.method == "OPTIONS" {
            // Flask-CORS style preflight answer (capture 112).
            let origin = req.header_ci("Origin").unwrap_or("*").to_string();
            let mut h = format!(
                "HTTP/1.1 200 OK\r\nServer: sandrun-devnet\r\nDate: {}\r\nContent-Type: text/html; charset=utf-8\r\nAllow: {}\r\nAccess-Control-Allow-Origin: {}\r\n",
                fmt_http_date(unix_now()),
                allowed,
                origin
            );
            if let Some(rh) = req.header_ci("Access-Control-Request-Headers") {
                let _ = write!(h, "Access-Control-Allow-Headers: {rh}\r\n");
            }
            h.push_str("Access-Control-Allow-Methods: DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT\r\nVary: Origin\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            return h.into_bytes();
        }
        let method_ok = if allowed.starts_with("GET") { req.method == "GET" || req.method == "HEAD" } else { req.method == "POST" };
        if !method_ok {
            return html(405, HTML_405);
        }
        if req.method == "POST" {
            let ct = req.header_ci("Content-Type").unwrap_or("");
            if !ct.trim().to_ascii_lowercase().starts_with("application/json") {
                return html(415, HTML_415);
            }
            let body: Value = match serde_json::from_slice(&req.body) {
                Ok(v) => v,
                Err(_) => return html(400, HTML_400),
            };
            return self.post(path, &body);
        }
        self.get(path)
    }

    fn get(&self, path: &str) -> Vec<u8> {
        let now = unix_now();
        let st = self.st.lock().unwrap();
        if path == "/health" {
            let active = st.nodes.iter().filter(|n| self.active(n, now)).count();
            return json_resp(200, json!({"active_nodes": active, "jobs": st.jobs.len(), "status": "healthy"}));
        }
        if path == "/nodes" {
            let nodes: Vec<Value> = st
                .nodes
                .iter()
                .map(|n| {
                    json!({
                        "active": if self.active(n, now) { 1 } else { 0 },
                        "capabilities": n.capabilities,
                        "endpoint": n.endpoint,
                        "id": n.id,
                        "jobs_completed": n.jobs_completed,
                        "jobs_failed": n.jobs_failed,
                        "last_heartbeat": fmt_timestamp(n.last_heartbeat),
                    })
                })
                .collect();
            return json_resp(200, json!({ "nodes": nodes }));
        }
        if let Some(id) = path.strip_prefix("/status/") {
            return match st.jobs.iter().find(|j| j.id == id) {
                None => json_resp(404, json!({"error": "Job not found"})),
                Some(j) => json_resp(
                    200,
                    json!({
                        "completed_at": ts(j.completed_at),
                        "created_at": fmt_timestamp(j.created_at),
                        "job_id": j.id,
                        "node_id": j.node_id,
                        "status": j.status,
                    }),
                ),
            };
        }
        if let Some(id) = path.strip_prefix("/results/") {
            return match st.jobs.iter().find(|j| j.id == id) {
                None => json_resp(404, json!({"error": "Job not found"})),
                Some(j) if j.status != "completed" && j.status != "failed" => {
                    json_resp(202, json!({"error": "Job not completed"}))
                }
                Some(j) => json_resp(
                    200,
                    json!({"error": j.error, "exit_code": j.exit_code, "job_id": j.id, "output": j.output, "status": j.status}),
                ),
            };
        }
        html(404, HTML_404)
    }

    /// The devnet's registration rules (the reference broker has none): a `payout` must
    /// be bound by `payout_signature` under the record's own `worker_id` for its
    /// `payout_chain_id`; an existing record (same node id) keeps its `worker_id`, and its
    /// `payout` changes only with a valid signature by that key; a `worker_id` held by
    /// another active record cannot be claimed. `Err` is the reason for the 403.
    fn check_register(&self, st: &State, id: &str, endpoint: &str, caps: &Value, now: u64) -> Result<(), String> {
        let wid = caps.get("worker_id").and_then(Value::as_str);
        let payout = match caps.get("payout") {
            None | Some(Value::Null) => None,
            Some(Value::String(p)) => Some(p.as_str()),
            Some(_) => return Err("payout must be a 0x address string or null".into()),
        };
        if let Some(old) = st.nodes.iter().find(|n| n.id == id) {
            let old_wid = old.capabilities.get("worker_id").and_then(Value::as_str);
            if old_wid != wid {
                return Err(format!(
                    "node {id} ({endpoint}) is registered with worker_id {}; a registration cannot change it (a new key needs a new endpoint)",
                    old_wid.unwrap_or("null")
                ));
            }
            let old_payout = old.capabilities.get("payout").and_then(Value::as_str).map(str::to_ascii_lowercase);
            if old_payout.is_some() && payout.is_none() {
                return Err(format!(
                    "node {id} ({endpoint}) has a payout; changing it needs a valid payout_signature by its worker_id"
                ));
            }
        }
        if let Some(p) = payout {
            let Some(w) = wid else {
                return Err("a payout needs a worker_id whose key signs it (payout_signature)".into());
            };
            let chain = caps.get("payout_chain_id").and_then(Value::as_u64).ok_or("a payout needs payout_chain_id (a number)")?;
            let sig = caps.get("payout_signature").and_then(Value::as_str).ok_or("a payout needs payout_signature (base64 Ed25519 signature by worker_id)")?;
            crate::sign::verify_payout(w, chain, p, sig)?;
        }
        if let Some(w) = wid {
            if let Some(n) = st.nodes.iter().find(|n| n.id != id && self.active(n, now) && n.capabilities.get("worker_id").and_then(Value::as_str) == Some(w)) {
                return Err(format!("worker_id {w} is already held by active node {} ({})", n.id, n.endpoint));
            }
        }
        Ok(())
    }

    fn post(&self, path: &str, body: &Value) -> Vec<u8> {
        let now = unix_now();
        let mut st = self.st.lock().unwrap();
        let s = |k: &str| body.get(k).and_then(Value::as_str).filter(|v| !v.is_empty()).map(str::to_string);
        match path {
            "/submit" => {
                let Some(code) = s("code") else { return json_resp(400, json!({"error": "Missing code"})) };
                let id = new_job_id();
                st.jobs.push(BJob {
                    id: id.clone(),
                    code,
                    interpreter: s("interpreter").unwrap_or_else(|| "python3".into()),
                    args: body.get("args").filter(|a| a.is_array()).cloned().unwrap_or(json!([])),
                    status: "pending",
                    node_id: None,
                    created_at: now,
                    completed_at: None,
                    output: String::new(),
                    error: String::new(),
                    exit_code: 0,
                });
                json_resp(200, json!({"job_id": id, "status": "pending"}))
            }
            "/register" => {
                let Some(endpoint) = s("endpoint") else { return json_resp(400, json!({"error": "Missing endpoint"})) };
                let id = sha256_hex(endpoint.as_bytes())[..16].to_string();
                let caps = body.get("capabilities").cloned().unwrap_or(json!({}));
                if self.checks {
                    if let Err(why) = self.check_register(&st, &id, &endpoint, &caps, now) {
                        eprintln!("registry: refused /register of {endpoint}: {why}");
                        return json_resp(403, json!({ "error": why }));
                    }
                }
                if let Some(n) = st.nodes.iter_mut().find(|n| n.id == id) {
                    n.capabilities = caps;
                    n.last_heartbeat = now;
                } else {
                    st.nodes.push(Node { id: id.clone(), endpoint, capabilities: caps, last_heartbeat: now, jobs_completed: 0, jobs_failed: 0 });
                }
                json_resp(200, json!({ "node_id": id }))
            }
            "/heartbeat" => {
                let Some(node) = s("node_id") else { return json_resp(400, json!({"error": "Missing node_id"})) };
                if let Some(n) = st.nodes.iter_mut().find(|n| n.id == node) {
                    n.last_heartbeat = now;
                }
                json_resp(200, json!({"status": "ok"}))
            }
            "/claim" => {
                let Some(node) = s("node_id") else { return json_resp(400, json!({"error": "Missing node_id"})) };
                if let Some(n) = st.nodes.iter_mut().find(|n| n.id == node) {
                    n.last_heartbeat = now;
                }
                match st.jobs.iter_mut().find(|j| j.status == "pending") {
                    None => json_resp(200, json!({"job": null})),
                    Some(j) => {
                        j.status = "assigned";
                        j.node_id = Some(node);
                        json_resp(
                            200,
                            json!({"job": {"args": j.args, "code": j.code, "id": j.id, "interpreter": j.interpreter}}),
                        )
                    }
                }
            }
            "/complete" => {
                let (Some(node), Some(job_id), Some(exit)) = (s("node_id"), s("job_id"), body.get("exit_code").and_then(Value::as_i64))
                else {
                    return json_resp(400, json!({"error": "Missing required fields"}));
                };
                let Some(j) = st.jobs.iter_mut().find(|j| j.id == job_id) else {
                    return json_resp(404, json!({"error": "Job not found"}));
                };
                j.status = if exit == 0 { "completed" } else { "failed" };
                j.exit_code = exit;
                j.output = body.get("output").and_then(Value::as_str).unwrap_or("").to_string();
                j.error = body.get("error").and_then(Value::as_str).unwrap_or("").to_string();
                j.completed_at = Some(now);
                j.node_id = Some(node.clone());
                if let Some(n) = st.nodes.iter_mut().find(|n| n.id == node) {
                    if exit == 0 {
                        n.jobs_completed += 1;
                    } else {
                        n.jobs_failed += 1;
                    }
                }
                json_resp(200, json!({"status": "ok"}))
            }
            _ => html(404, HTML_404),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_json() {
        assert_eq!(
            py_json(&json!({"status": "healthy", "active_nodes": 0, "jobs": 0})),
            "{\"active_nodes\":0,\"jobs\":0,\"status\":\"healthy\"}"
        );
        assert_eq!(py_json(&json!("h\u{e9}\n\u{1F600}")), "\"h\\u00e9\\n\\ud83d\\ude00\"");
    }

    #[test]
    fn html_415_matches_capture() {
        assert_eq!(HTML_415.len(), 215);
    }
}
