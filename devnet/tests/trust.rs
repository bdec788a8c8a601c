//! The devnet playing the attacker (issue 9): the `relay`, `relay-key`, `stdout-lie` and
//! `hijack-payout` faults, and the registry's payout-binding and takeover checks.

mod support;
use base64::Engine as _;
use serde_json::{json, Value};
use support::*;

const WRITER: &str = "open('out.txt','w').write('result data 42\\n')\nprint('answer 42')\n";

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn set_fault(w: &str, mode: &str) -> Resp {
    request(w, "POST", "/_devnet/fault", &[("Content-Type", "application/json")], mode.as_bytes())
}

/// Every `/status`-listed output file downloads with the listed hash.
fn hashes_match(w: &str, id: &str, st: &Value) -> bool {
    st["output_files"].as_object().unwrap().iter().all(|(name, f)| {
        let body = get(w, &format!("/download/{id}/{name}")).body;
        sha256_hex(&body) == f["sha256"].as_str().unwrap()
    })
}

/// Text frames of `/stream/{id}` until the `[DONE] Job completed (...)` frame.
fn stream_frames(w: &str, id: &str) -> Vec<String> {
    let (mut s, head) = ws_connect(w, &format!("/stream/{id}"));
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let mut frames = Vec::new();
    loop {
        match ws_read(&mut s) {
            Frame::Text(t) => {
                let last = t.starts_with("[DONE]");
                frames.push(t);
                if last {
                    return frames;
                }
            }
            other => panic!("stream ended early with {other:?} after {frames:?}"),
        }
    }
}

#[test]
fn relay_answers_with_worker0s_signed_result() {
    let d = Devnet::start(&["--workers", "3", "--no-rate-limit", "--fault", "1=relay", "--fault", "2=relay-key"]);
    let (w0, relay, relay_key) = (d.w(0), d.w(1), d.w(2));
    let id0 = d.worker_ids[0].clone().unwrap();
    // /health shows the relay's own key (a distinct signer as far as /health goes)...
    let own = get(relay, "/health").json()["worker_id"].as_str().unwrap().to_string();
    assert_eq!(Some(own.clone()), d.worker_ids[1]);
    assert_ne!(own, id0);
    // ...and `relay-key` shows worker 0's.
    assert_eq!(get(relay_key, "/health").json()["worker_id"], id0.as_str());

    let id = py(relay, WRITER);
    let st = wait_done(relay, &id);
    assert_eq!(st["status"], "completed");
    assert_eq!(st["worker_metadata"]["worker_id"], id0.as_str(), "worker 0's result, not the relay's");
    assert!(verify(relay, &id, &st), "worker 0's signature, verifying under worker 0's key");
    // Every job endpoint answers with worker 0's bytes for that job.
    for p in ["/status/", "/logs/", "/outputs/", "/_devnet/jobs/"] {
        assert_eq!(get(relay, &format!("{p}{id}")).body, get(w0, &format!("{p}{id}")).body, "{p}");
    }
    assert_eq!(logs(relay, &id)["stdout"], "answer 42\n");
    assert!(hashes_match(relay, &id, &st));
    let file = get(relay, &format!("/download/{id}/out.txt"));
    assert_eq!(file.header("Content-Disposition"), Some("attachment; filename=\"out.txt\""));
    assert_eq!(file.body, b"result data 42\n");
    let frames = stream_frames(relay, &id);
    assert_eq!(frames.first().map(String::as_str), Some("answer 42\n"));
    assert!(frames.last().unwrap().starts_with("[DONE]"));
    // The job ran on worker 0: both counted it, the relay ran nothing itself.
    assert_eq!(get(w0, "/_devnet/jobs").json()["accepted"], 1);
    assert_eq!(get(relay, "/_devnet/jobs").json()["accepted"], 1);
    assert_eq!(get(relay, "/_devnet/jobs").json()["stored"], 0);
    // The whole-job download is worker 0's too (and deletes the job there).
    let tgz = get(relay, &format!("/download/{id}"));
    assert_eq!(tgz.status, 200);
    assert_eq!(get(w0, &format!("/status/{id}")).status, 404);

    // relay-key: same forwarding.
    let id = py(relay_key, WRITER);
    let st = wait_done(relay_key, &id);
    assert_eq!(st["worker_metadata"]["worker_id"], id0.as_str());
    assert!(verify(relay_key, &id, &st));

    // Runtime: off -> the relay signs its own results; on again -> worker 0's.
    assert_eq!(set_fault(relay, r#"{"mode":null}"#).text(), "{\"fault\":null}");
    let id = py(relay, WRITER);
    let st = wait_done(relay, &id);
    assert_eq!(st["worker_metadata"]["worker_id"], own.as_str());
    assert!(verify(relay, &id, &st));
    assert_eq!(set_fault(relay, r#"{"mode":"relay"}"#).text(), "{\"fault\":\"relay\"}");
    let id = py(relay, WRITER);
    assert_eq!(wait_done(relay, &id)["worker_metadata"]["worker_id"], id0.as_str());
    // Worker 0 cannot relay to itself.
    let r = set_fault(w0, r#"{"mode":"relay"}"#);
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(get(w0, "/_devnet/fault").text(), "{\"fault\":null}");
}

#[test]
fn stdout_lie_changes_only_stdout() {
    let d = Devnet::start(&["--workers", "2", "--no-rate-limit", "--fault", "1=stdout-lie"]);
    let (honest, liar) = (d.w(0), d.w(1));
    let code = "import sys\nopen('out.txt','w').write('result data 42\\n')\nprint('answer 42')\nsys.stderr.write('note\\n')\n";
    let id = py(honest, code);
    let st = wait_done(honest, &id);
    assert_eq!(logs(honest, &id)["stdout"], "answer 42\n");

    let id = py(liar, code);
    let st_l = wait_done(liar, &id);
    let l = logs(liar, &id);
    assert_eq!(l["stdout"], "answer 53\n", "a plausible stdout the program did not print");
    assert_eq!(l["stderr"], "note\n");
    // Files, their hashes and the signature are honest: the same signed outputs.
    assert!(verify(liar, &id, &st_l));
    assert!(hashes_match(liar, &id, &st_l));
    assert_eq!(get(liar, &format!("/download/{id}/out.txt")).body, b"result data 42\n");
    assert_eq!(st_l["output_files"]["out.txt"], st["output_files"]["out.txt"]);
    assert_eq!(st_l["job_hash"], st["job_hash"]);
    // The WebSocket stream tells the same lie.
    let frames = stream_frames(liar, &id);
    assert!(frames.iter().any(|f| f == "answer 53\n"), "{frames:?}");
    assert!(!frames.iter().any(|f| f.contains("answer 42")), "{frames:?}");
    // Off at run time: the truth again (the fault is applied when stdout is shown).
    set_fault(liar, r#"{"mode":null}"#);
    assert_eq!(logs(liar, &id)["stdout"], "answer 42\n");
    set_fault(liar, r#"{"mode":"stdout-lie"}"#);
    // Without digits the letters swap case; an empty stdout becomes a line "0".
    let id = py(liar, "print('Hello')\n");
    wait_done(liar, &id);
    assert_eq!(logs(liar, &id)["stdout"], "hELLO\n");
    let id = py(liar, "pass\n");
    wait_done(liar, &id);
    assert_eq!(logs(liar, &id)["stdout"], "0\n");
}

// ---- registry ------------------------------------------------------------------------

struct Key(ed25519_compact::KeyPair);

impl Key {
    fn new(seed: u8) -> Key {
        Key(ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([seed; 32])))
    }
    fn id(&self) -> String {
        b64(self.0.pk.as_ref())
    }
    fn sign_payout(&self, chain: u64, payout: &str) -> String {
        let msg = format!("sandrun-payout-v1|{chain}|{}", payout.to_ascii_lowercase());
        b64(self.0.sk.sign(msg.as_bytes(), None).as_ref())
    }
    /// Capabilities binding `payout` on `chain` with this key.
    fn caps(&self, chain: u64, payout: &str) -> Value {
        json!({"worker_id": self.id(), "payout": payout, "payout_chain_id": chain, "payout_signature": self.sign_payout(chain, payout)})
    }
}

const P1: &str = "0x1111111111111111111111111111111111111111";
const P2: &str = "0x2222222222222222222222222222222222222222";
const P_EVIL: &str = "0xeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee";

fn register(reg: &str, endpoint: &str, caps: Value) -> Resp {
    post_json(reg, "/register", &json!({"endpoint": endpoint, "capabilities": caps}).to_string())
}

fn refused(r: &Resp, why: &str) {
    assert_eq!(r.status_line, "HTTP/1.1 403 FORBIDDEN", "{}", r.text());
    let e = r.json()["error"].as_str().unwrap_or_else(|| panic!("no error: {}", r.text())).to_string();
    assert!(e.contains(why), "{e:?} does not say {why:?}");
}

fn node(reg: &str, endpoint: &str) -> Option<Value> {
    get(reg, "/nodes").json()["nodes"].as_array().unwrap().iter().find(|n| n["endpoint"] == endpoint).cloned()
}

#[test]
fn registry_binds_payouts_and_refuses_takeovers() {
    let d = Devnet::start(&["--workers", "1"]);
    let reg = &d.registry;
    let (a, b) = (Key::new(1), Key::new(2));
    let e1 = "http://10.0.0.1:8443";

    // Happy path: a signed binding; the same again (heartbeat-like); a payout change
    // signed by the record's own key; a payout in checksum case (signed lower case).
    let ok = register(reg, e1, a.caps(31337, P1));
    assert_eq!(ok.status, 200, "{}", ok.text());
    let node_id = ok.json()["node_id"].as_str().unwrap().to_string();
    assert_eq!(node_id, sha256_hex(e1.as_bytes())[..16]);
    assert_eq!(register(reg, e1, a.caps(31337, P1)).status, 200);
    assert_eq!(register(reg, e1, a.caps(31337, P2)).status, 200);
    let checksummed = "0xAbCdEf0123456789aBcDeF0123456789AbCdEf01";
    assert_eq!(register(reg, "http://10.0.0.9:1", Key::new(9).caps(1, checksummed)).status, 200);
    // No payout, no signature needed (the reference's fields only).
    assert_eq!(register(reg, "http://10.0.0.8:1", json!({"cpu_cores": 2})).status, 200);

    // A payout the record's key did not sign.
    let e2 = "http://10.0.0.2:8443";
    let mut c = b.caps(31337, P_EVIL);
    c["payout_signature"] = json!(a.sign_payout(31337, P_EVIL));
    refused(&register(reg, e2, c), "does not verify");
    let mut c = b.caps(1, P_EVIL);
    c["payout_chain_id"] = json!(31337);
    refused(&register(reg, e2, c), "does not verify");
    let mut c = b.caps(31337, P_EVIL);
    c.as_object_mut().unwrap().remove("payout_signature");
    refused(&register(reg, e2, c), "payout_signature");
    let mut c = b.caps(31337, P_EVIL);
    c.as_object_mut().unwrap().remove("payout_chain_id");
    refused(&register(reg, e2, c), "payout_chain_id");
    refused(&register(reg, e2, json!({"payout": P_EVIL})), "worker_id");
    refused(&register(reg, e2, b.caps(31337, "0x1234")), "not a 0x address");
    // The identity key with a trivial signature verifies anything under lax rules.
    let mut ident = [0u8; 32];
    ident[0] = 1;
    let mut trivial = [0u8; 64];
    trivial[0] = 1;
    refused(
        &register(reg, e2, json!({"worker_id": b64(&ident), "payout": P_EVIL, "payout_chain_id": 31337, "payout_signature": b64(&trivial)})),
        "does not verify",
    );
    assert!(node(reg, e2).is_none());

    // Taking over e1: another key (validly bound to its own payout)...
    refused(&register(reg, e1, b.caps(31337, P_EVIL)), "cannot change");
    // ...e1's key with a payout signed by another key...
    let mut c = a.caps(31337, P_EVIL);
    c["payout_signature"] = json!(b.sign_payout(31337, P_EVIL));
    refused(&register(reg, e1, c), "does not verify");
    // ...dropping e1's payout, or its key.
    refused(&register(reg, e1, json!({"worker_id": a.id(), "payout": null})), "payout");
    refused(&register(reg, e1, json!({"payout": null})), "cannot change");
    // ...and a new endpoint claiming e1's key, even replaying e1's own valid binding.
    let e3 = "http://10.0.0.3:8443";
    refused(&register(reg, e3, a.caps(31337, P2)), "already held by active node");
    refused(&register(reg, e3, json!({"worker_id": a.id()})), "already held");
    assert!(node(reg, e3).is_none());

    // e1 is intact: a's key, P2 bound by a on 31337.
    let rec = node(reg, e1).unwrap();
    assert_eq!(rec["id"], node_id.as_str());
    assert_eq!(rec["capabilities"], a.caps(31337, P2));
    // The devnet's own worker is still registered, payout null (no --chain).
    let w = node(reg, &format!("http://{}", d.w(0))).unwrap();
    assert_eq!(w["capabilities"]["worker_id"], d.worker_ids[0].clone().unwrap().as_str());
    assert!(w["capabilities"]["payout"].is_null());
}

#[test]
fn unchecked_registry_accepts_what_the_reference_broker_does() {
    let d = Devnet::start(&["--workers", "1", "--unchecked-registry"]);
    let (a, b) = (Key::new(1), Key::new(2));
    let e1 = "http://10.0.0.1:8443";
    assert_eq!(register(&d.registry, e1, a.caps(31337, P1)).status, 200);
    assert_eq!(register(&d.registry, e1, b.caps(31337, P_EVIL)).status, 200);
    assert_eq!(register(&d.registry, e1, json!({"worker_id": a.id(), "payout": P_EVIL})).status, 200);
    assert_eq!(node(&d.registry, e1).unwrap()["capabilities"]["payout"], P_EVIL);
}

/// The worker-side signer: `POST /_devnet/payout-signature` and `--capabilities` payouts
/// are bound with the worker's own key.
#[test]
fn workers_sign_their_payouts() {
    let d = Devnet::start(&["--workers", "2", "--capabilities", &format!("1={{\"payout\":\"{P1}\",\"payout_chain_id\":5}}")]);
    let rec = node(&d.registry, &format!("http://{}", d.w(1))).unwrap()["capabilities"].clone();
    let id1 = d.worker_ids[1].clone().unwrap();
    assert_eq!(rec["worker_id"], id1.as_str());
    assert_eq!(rec["payout"], P1);
    assert_eq!(rec["payout_chain_id"], 5);
    assert!(verify_payout(&id1, 5, P1, rec["payout_signature"].as_str().unwrap()));
    let r = post_json(d.w(0), "/_devnet/payout-signature", &json!({"payout": P2, "chain_id": 31337}).to_string());
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let id0 = d.worker_ids[0].clone().unwrap();
    assert_eq!(v["worker_id"], id0.as_str());
    assert!(verify_payout(&id0, 31337, P2, v["payout_signature"].as_str().unwrap()));
    // Worker 0 can now bind P2 to its record (what an operator does with the key offline).
    let mut caps = node(&d.registry, &format!("http://{}", d.w(0))).unwrap()["capabilities"].clone();
    caps["payout"] = json!(P2);
    caps["payout_chain_id"] = json!(31337);
    caps["payout_signature"] = v["payout_signature"].clone();
    assert_eq!(register(&d.registry, &format!("http://{}", d.w(0)), caps).status, 200);
}

// ---- hijack-payout -------------------------------------------------------------------

fn hijack_devnet(extra: &[&str]) -> Devnet {
    let c0 = format!("0={{\"payout\":\"{P1}\",\"payout_chain_id\":31337}}");
    let c1 = format!("1={{\"payout\":\"{P_EVIL}\",\"payout_chain_id\":31337}}");
    let mut args = vec!["--workers", "2", "--capabilities", &c0, "--capabilities", &c1, "--fault", "1=hijack-payout"];
    args.extend_from_slice(extra);
    Devnet::start(&args)
}

#[test]
fn hijack_payout_is_refused_and_worker0s_record_stays() {
    let d = hijack_devnet(&[]);
    let w0 = format!("http://{}", d.w(0));
    let id0 = d.worker_ids[0].clone().unwrap();
    // The orchestrator printed the line only after every attempt was made.
    let h = get(d.w(1), "/_devnet/hijack").json();
    assert_eq!(h["done"], true, "{h}");
    let attempts = h["attempts"].as_array().unwrap();
    let routes: Vec<&str> = attempts.iter().map(|a| a["route"].as_str().unwrap()).collect();
    assert_eq!(
        routes,
        [
            "own-key-on-worker0-endpoint",
            "worker0-key-own-payout",
            "own-endpoint-claims-worker0-key",
            "new-endpoint-replays-worker0-binding",
            "drop-worker0-payout"
        ]
    );
    for a in attempts {
        assert_eq!(a["status"], 403, "{a}");
        assert!(a["answer"]["error"].as_str().is_some_and(|e| !e.is_empty()), "{a}");
    }
    let nodes = get(&d.registry, "/nodes").json();
    assert_eq!(nodes["nodes"].as_array().unwrap().len(), 2, "no record was added: {nodes}");
    let rec = node(&d.registry, &w0).unwrap()["capabilities"].clone();
    assert_eq!(rec["worker_id"], id0.as_str());
    assert_eq!(rec["payout"], P1);
    assert_eq!(rec["payout_chain_id"], 31337);
    assert!(verify_payout(&id0, 31337, P1, rec["payout_signature"].as_str().unwrap()));
    assert_eq!(rec["sandrun_endpoint"], w0.as_str());
    let own = node(&d.registry, &format!("http://{}", d.w(1))).unwrap()["capabilities"].clone();
    assert_eq!(own["worker_id"], d.worker_ids[1].clone().unwrap().as_str());

    // At run time the fault tries again, with the same outcome.
    assert_eq!(set_fault(d.w(1), r#"{"mode":"hijack-payout"}"#).status, 200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let h = get(d.w(1), "/_devnet/hijack").json();
        if h["done"] == true {
            assert!(h["attempts"].as_array().unwrap().iter().all(|a| a["status"] == 403), "{h}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "hijack never finished: {h}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(node(&d.registry, &w0).unwrap()["capabilities"], rec);
}

/// The same attack against a registry without the checks (the reference broker's
/// behaviour) succeeds: the attempts are real takeovers.
#[test]
fn hijack_payout_takes_over_an_unchecked_registry() {
    let d = hijack_devnet(&["--unchecked-registry"]);
    let h = get(d.w(1), "/_devnet/hijack").json();
    assert!(h["attempts"].as_array().unwrap().iter().all(|a| a["status"] == 200), "{h}");
    let rec = node(&d.registry, &format!("http://{}", d.w(0))).unwrap()["capabilities"].clone();
    // Worker 0's key is left, its payout is gone (the last route dropped it after the
    // second set the attacker's, signed by the attacker).
    assert_eq!(rec["worker_id"], d.worker_ids[0].clone().unwrap().as_str());
    assert_ne!(rec["payout"], P1);
}
