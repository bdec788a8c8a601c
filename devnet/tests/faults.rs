//! Every fault mode, on the command line and through the admin endpoint.

mod support;
use support::*;
use std::time::{Duration, Instant};

const WRITER: &str = "open('out.txt','w').write('result data 42\\n')\nprint('wrote')\n";

#[test]
fn fault_modes() {
    let d = Devnet::start(&[
        "--workers", "6", "--no-rate-limit", "--slow-ms", "800",
        "--fault", "0=wrong-output", "--fault", "1=bad-signature", "--fault", "2=anonymous",
        "--fault", "3=slow", "--fault", "4=crash", "--fault", "5=429",
    ]);
    assert!(d.line.contains("\"worker_id\":null"));
    assert!(d.worker_ids[2].is_none());
    assert!(d.worker_ids.iter().enumerate().all(|(i, id)| (i == 2) == id.is_none()));

    // wrong-output: the signature verifies, but a listed hash does not match the bytes.
    let w = d.w(0);
    let id = py(w, WRITER);
    let st = wait_done(w, &id);
    assert!(verify(w, &id, &st), "signed over the tampered data");
    let mut mismatches = 0;
    for (name, f) in st["output_files"].as_object().unwrap() {
        let body = get(w, &format!("/download/{id}/{name}")).body;
        if sha256_hex(&body) != f["sha256"].as_str().unwrap() {
            mismatches += 1;
        }
    }
    assert_eq!(mismatches, 1);

    // bad-signature: well-formed, does not verify.
    let w = d.w(1);
    let id = py(w, WRITER);
    let st = wait_done(w, &id);
    assert_eq!(st["worker_metadata"]["signature"].as_str().unwrap().len(), 88);
    assert!(!verify(w, &id, &st));

    // anonymous: null worker_id everywhere.
    let w = d.w(2);
    assert_eq!(get(w, "/health").text(), "{\"status\":\"healthy\",\"worker_id\":null}");
    let id = py(w, WRITER);
    let st = wait_done(w, &id);
    assert!(st["worker_metadata"]["worker_id"].is_null());
    assert!(st["worker_metadata"]["signature"].is_null());
    let nodes = get(&d.registry, "/nodes").json();
    let anon = nodes["nodes"].as_array().unwrap().iter().find(|n| n["endpoint"] == format!("http://{w}")).unwrap();
    assert!(anon["capabilities"]["worker_id"].is_null());

    // slow: every response late; the admin endpoint is not slowed.
    let w = d.w(3);
    let t = Instant::now();
    assert_eq!(get(w, "/health").status, 200);
    assert!(t.elapsed() >= Duration::from_millis(800));
    let t = Instant::now();
    get(w, "/_devnet/jobs");
    assert!(t.elapsed() < Duration::from_millis(600));

    // crash: the worker process exits mid-job.
    let w = d.w(4);
    let id = py(w, "import time\ntime.sleep(5)\n");
    assert!(id.starts_with("job_"));
    let t = Instant::now();
    loop {
        if std::net::TcpStream::connect(w).is_err() {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(5), "crashed worker still answers");
        std::thread::sleep(Duration::from_millis(50));
    }

    // 429 on every submit, then cleared and changed at run time.
    let w = d.w(5);
    let r = submit(w, &[("main.py", b"print(1)\n")], None);
    assert_eq!(r.status_line, "HTTP/1.1 429 Unknown");
    assert_eq!(r.text(), "{\"error\":\"Rate limit exceeded\"}");
    assert_eq!(get(w, "/_devnet/fault").text(), "{\"fault\":\"429\"}");
    assert_eq!(get(w, "/_devnet/jobs").json()["accepted"], 0);
    let r = request(w, "POST", "/_devnet/fault", &[("Content-Type", "application/json")], br#"{"mode":"nonsense"}"#);
    assert_eq!(r.status, 400);
    let r = request(w, "POST", "/_devnet/fault", &[("Content-Type", "application/json")], br#"{"mode":null}"#);
    assert_eq!(r.text(), "{\"fault\":null}");
    let id = py(w, WRITER);
    let st = wait_done(w, &id);
    assert!(verify(w, &id, &st));
    assert_eq!(get(w, "/_devnet/jobs").json()["accepted"], 1);
    let r = request(w, "POST", "/_devnet/fault", &[], br#"{"mode":"bad-signature"}"#);
    assert_eq!(r.text(), "{\"fault\":\"bad-signature\"}");
    let id = py(w, WRITER);
    let st = wait_done(w, &id);
    assert!(!verify(w, &id, &st));
    request(w, "POST", "/_devnet/fault", &[], br#"{"mode":"anonymous"}"#);
    assert_eq!(get(w, "/health").json()["worker_id"], serde_json::Value::Null);
    request(w, "POST", "/_devnet/fault", &[], br#"{"mode":"slow"}"#);
    let t = Instant::now();
    get(w, "/health");
    assert!(t.elapsed() >= Duration::from_millis(800));
    assert_eq!(get(w, "/_devnet/jobs").json()["accepted"], 2);
}
