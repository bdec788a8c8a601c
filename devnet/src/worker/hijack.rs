//! Fault `hijack-payout`: once registered, the worker tries every way to take over
//! worker 0's registry record and payout, and records each attempt with the registry's
//! answer (stderr and `GET /_devnet/hijack`).

use super::registration::DEFAULT_CHAIN_ID;
use super::Worker;
use crate::http;
use crate::sign;
use crate::util::sha256_hex;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The `hijack-payout` run: whether it is under way or done, and each attempt.
#[derive(Default)]
pub(super) struct Hijack {
    pub(super) started: bool,
    pub(super) done: bool,
    pub(super) attempts: Vec<serde_json::Value>,
}

impl Worker {
    /// Fault `hijack-payout`, once per process (or per runtime switch to the fault).
    pub(super) fn start_hijack(self: &Arc<Self>) {
        {
            let mut h = self.hijack.lock().unwrap();
            if h.started {
                return;
            }
            *h = Hijack { started: true, ..Default::default() };
        }
        let w = self.clone();
        tokio::spawn(async move {
            w.hijack_payout().await;
            let mut h = w.hijack.lock().unwrap();
            h.done = true;
            h.started = false;
        });
    }

    /// Tries every way to take over worker 0's record and payout; logs each attempt and
    /// the registry's answer (stderr and `GET /_devnet/hijack`).
    async fn hijack_payout(&self) {
        let (Some(reg), Some(w0)) = (self.cfg.registry.clone(), self.cfg.worker0.clone()) else { return };
        let i = self.cfg.index;
        let w0_url = format!("http://{w0}");
        // Worker 0's record (and our own) must be there first: a takeover, not a head start.
        let deadline = Instant::now() + Duration::from_secs(30);
        let w0_rec = loop {
            let nodes = http::client_request(&reg, "GET", "/nodes", None, b"", Duration::from_secs(5))
                .await
                .ok()
                .and_then(|(_, b)| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .unwrap_or_default();
            let find = |url: &str| nodes["nodes"].as_array().and_then(|a| a.iter().find(|n| n["endpoint"] == url).cloned());
            if let (Some(r), Some(_)) = (find(&w0_url), find(&self.url)) {
                break r;
            }
            if Instant::now() > deadline {
                eprintln!("worker {i}: hijack-payout: worker 0 never appeared in the registry");
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let w0_caps = w0_rec["capabilities"].clone();
        let own_caps = self.capabilities();
        let own_payout = own_caps["payout"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("0x{}", &sha256_hex(self.worker_id.as_bytes())[..40]));
        let chain = own_caps["payout_chain_id"].as_u64().unwrap_or(DEFAULT_CHAIN_ID);
        let own_sig = sign::payout_signature(&self.key, chain, &own_payout);
        let with = |base: &serde_json::Value, fields: serde_json::Value| {
            let mut c = base.clone();
            if let (Some(c), Some(f)) = (c.as_object_mut(), fields.as_object()) {
                c.extend(f.clone());
            }
            c
        };
        let stolen = |wid: &serde_json::Value| {
            serde_json::json!({"worker_id": wid, "payout": own_payout, "payout_chain_id": chain, "payout_signature": own_sig})
        };
        let w0_id = w0_caps["worker_id"].clone();
        let fresh = format!("{}/hijack", self.url);
        let mut attempts = vec![
            ("own-key-on-worker0-endpoint", w0_url.clone(), with(&w0_caps, stolen(&serde_json::json!(self.worker_id)))),
            ("worker0-key-own-payout", w0_url.clone(), with(&w0_caps, stolen(&w0_id))),
            ("own-endpoint-claims-worker0-key", self.url.clone(), with(&own_caps, stolen(&w0_id))),
            (
                "new-endpoint-replays-worker0-binding",
                fresh.clone(),
                with(&w0_caps, serde_json::json!({"sandrun_endpoint": fresh})),
            ),
        ];
        if !w0_caps["payout"].is_null() {
            let drop = serde_json::json!({"payout": null, "payout_chain_id": null, "payout_signature": null});
            attempts.push(("drop-worker0-payout", w0_url.clone(), with(&w0_caps, drop)));
        }
        for (route, endpoint, caps) in attempts {
            let body = serde_json::json!({"endpoint": endpoint, "capabilities": caps}).to_string();
            let r = http::client_request(&reg, "POST", "/register", Some("application/json"), body.as_bytes(), Duration::from_secs(5)).await;
            let (status, answer) = match r {
                Ok((code, b)) => (
                    serde_json::json!(code),
                    serde_json::from_slice::<serde_json::Value>(&b).unwrap_or_else(|_| String::from_utf8_lossy(&b).into_owned().into()),
                ),
                Err(e) => (serde_json::Value::Null, serde_json::json!(e.to_string())),
            };
            eprintln!("worker {i}: hijack-payout: {route} ({endpoint}): HTTP {status} {answer}");
            self.hijack.lock().unwrap().attempts.push(serde_json::json!({"route": route, "endpoint": endpoint, "status": status, "answer": answer}));
        }
    }
}
