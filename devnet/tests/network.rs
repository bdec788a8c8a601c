//! WebSocket frames, the registry, reference timing, curl compatibility and shutdown.

mod support;
use support::*;
use std::time::{Duration, Instant};

#[test]
fn websocket_frames() {
    let d = Devnet::start(&["--workers", "1", "--no-rate-limit"]);
    let w = d.w(0);

    // Unknown id: error frame then a close frame without status.
    let (mut s, head) = ws_connect(w, "/stream/job_0_0");
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"), "{head}");
    assert_eq!(ws_read(&mut s), Frame::Text("[ERROR] Job not found: job_0_0\n".into()));
    assert_eq!(ws_read(&mut s), Frame::Close(vec![]));

    // Live: queued, started, whole stdout, stderr, done with exact CPU; then poll.
    let blocker = py(w, "import time\ntime.sleep(1)\n");
    wait_running(w, &blocker);
    let id = py(w, "import sys, time\nfor i in range(3):\n    print('tick', i, flush=True)\n    time.sleep(0.1)\nprint('oops', file=sys.stderr)\nprint('done')\n");
    let (mut s, _) = ws_connect(w, &format!("/stream/{id}"));
    assert_eq!(ws_read(&mut s), Frame::Text("[STATUS] Job status: queued\n".into()));
    assert_eq!(ws_read(&mut s), Frame::Text("[STATUS] Job started\n".into()));
    assert_eq!(ws_read(&mut s), Frame::Text("tick 0\ntick 1\ntick 2\ndone\n".into()));
    assert_eq!(ws_read(&mut s), Frame::Text("[STDERR]\noops\n".into()));
    let Frame::Text(done) = ws_read(&mut s) else { panic!("no done frame") };
    let st = wait_done(w, &id);
    let em = &st["execution_metadata"];
    let cpu = done.split("CPU=").nth(1).unwrap().split('s').next().unwrap().to_string();
    assert_eq!(cpu.split('.').nth(1).unwrap().len(), 6, "CPU printed with %f: {done}");
    assert_eq!(done, format!("[DONE] Job completed (exit=0, CPU={cpu}s, Mem={}MB)\n", em["memory_peak_mb"]));
    // %g of the [DONE] figure is the exact CPU of the signed string.
    let g: f64 = cpu.parse().unwrap();
    assert_eq!(format!("{}", g), exact_cpu(w, &id).parse::<f64>().unwrap().to_string());
    assert!(verify(w, &id, &st));
    ws_send(&mut s, "poll");
    assert_eq!(ws_read(&mut s), Frame::Text("[DONE] Job completed\n".into()));
    assert_eq!(ws_read(&mut s), Frame::Eof, "TCP closed without a close frame");
    wait_done(w, &blocker);

    // After completion: stdout, status, stdout again, done, close frame.
    let (mut s, _) = ws_connect(w, &format!("/stream/{id}"));
    let out = "tick 0\ntick 1\ntick 2\ndone\n".to_string();
    assert_eq!(ws_read(&mut s), Frame::Text(out.clone()));
    assert_eq!(ws_read(&mut s), Frame::Text("[STATUS] Job status: completed\n".into()));
    assert_eq!(ws_read(&mut s), Frame::Text(out));
    assert_eq!(ws_read(&mut s), Frame::Text("[DONE] Job completed\n".into()));
    assert_eq!(ws_read(&mut s), Frame::Close(vec![]));
}

#[test]
fn registry_endpoints() {
    let d = Devnet::start(&["--workers", "3", "--capabilities", "2={\"region\":\"ap-south\",\"payout\":\"0x00000000000000000000000000000000000000aa\"}"]);
    let r = &d.registry;
    let h = get(r, "/health");
    assert_eq!(h.status_line, "HTTP/1.1 200 OK");
    assert_eq!(h.header("Access-Control-Allow-Origin"), Some("*"));
    assert_eq!(h.header("Content-Type"), Some("application/json"));
    assert_eq!(h.text(), "{\"active_nodes\":3,\"jobs\":0,\"status\":\"healthy\"}\n");

    // Self-registered workers with capabilities and extension fields.
    let nodes = get(r, "/nodes").json();
    let nodes = nodes["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3);
    let mut regions = Vec::new();
    for i in 0..3 {
        let endpoint = format!("http://{}", d.w(i));
        let n = nodes.iter().find(|n| n["endpoint"] == endpoint).unwrap();
        assert_eq!(n["endpoint"], endpoint);
        assert_eq!(n["id"].as_str().unwrap(), &sha256_hex(endpoint.as_bytes())[..16]);
        assert_eq!(n["active"], 1);
        let c = &n["capabilities"];
        for k in ["cpu_cores", "memory_gb", "gpu", "interpreters", "storage", "region", "pricing", "payout", "worker_id", "sandrun_endpoint"] {
            assert!(c.get(k).is_some(), "capability {k} missing: {c}");
        }
        assert_eq!(c["worker_id"].as_str(), d.worker_ids[i].as_deref());
        assert_eq!(c["sandrun_endpoint"], endpoint);
        assert_eq!(c["pricing"]["cpu"], "0.1/hour");
        assert!(c["interpreters"].as_array().unwrap().iter().any(|x| x == "python3"));
        regions.push(c["region"].as_str().unwrap().to_string());
    }
    assert_eq!(regions, ["us-east", "us-west", "ap-south"]);
    let by = |i: usize| nodes.iter().find(|n| n["endpoint"] == format!("http://{}", d.w(i))).unwrap();
    assert!(by(1)["capabilities"]["gpu"]["count"].as_u64().unwrap() >= 1);
    assert!(by(0)["capabilities"]["gpu"].is_null());
    assert_eq!(by(2)["capabilities"]["payout"], "0x00000000000000000000000000000000000000aa");
    // Keys are sorted in the raw body.
    let raw = get(r, "/nodes").text();
    assert!(raw.starts_with("{\"nodes\":[{\"active\":1,\"capabilities\":{\"cpu_cores\":"), "{raw}");

    // Job lifecycle through the broker API.
    let s = post_json(r, "/submit", r#"{"code":"import sys\nprint(\"hi from broker\", sys.argv[1:])","args":["x","y z"]}"#);
    assert_eq!(s.status, 200);
    let jid = s.json()["job_id"].as_str().unwrap().to_string();
    assert_eq!(jid.len(), 16);
    assert!(jid.chars().all(|c| c.is_ascii_hexdigit()));
    let st = get(r, &format!("/status/{jid}")).json();
    assert_eq!(st["status"], "pending");
    assert!(st["node_id"].is_null() && st["completed_at"].is_null());
    assert_eq!(st["created_at"].as_str().unwrap().len(), 19);
    let rr = get(r, &format!("/results/{jid}"));
    assert_eq!(rr.status_line, "HTTP/1.1 202 ACCEPTED");
    assert_eq!(rr.text(), "{\"error\":\"Job not completed\"}\n");
    let reg = post_json(r, "/register", r#"{"endpoint":"http://127.0.0.1:18444","capabilities":{"cpu_cores":2,"gpu":false,"interpreters":["python3","bash"],"memory_gb":8}}"#);
    assert_eq!(reg.text(), "{\"node_id\":\"9959d2fb1eba0dd3\"}\n");
    assert_eq!(post_json(r, "/heartbeat", r#"{"node_id":"9959d2fb1eba0dd3"}"#).text(), "{\"status\":\"ok\"}\n");
    let c = post_json(r, "/claim", r#"{"node_id":"9959d2fb1eba0dd3"}"#);
    assert_eq!(
        c.text(),
        format!("{{\"job\":{{\"args\":[\"x\",\"y z\"],\"code\":\"import sys\\nprint(\\\"hi from broker\\\", sys.argv[1:])\",\"id\":\"{jid}\",\"interpreter\":\"python3\"}}}}\n")
    );
    assert_eq!(post_json(r, "/claim", r#"{"node_id":"9959d2fb1eba0dd3"}"#).text(), "{\"job\":null}\n");
    assert_eq!(get(r, &format!("/status/{jid}")).json()["status"], "assigned");
    let done = post_json(
        r,
        "/complete",
        &format!(r#"{{"node_id":"9959d2fb1eba0dd3","job_id":"{jid}","output":"hi from broker ['x', 'y z']\n","error":"","exit_code":0}}"#),
    );
    assert_eq!(done.text(), "{\"status\":\"ok\"}\n");
    assert_eq!(
        get(r, &format!("/results/{jid}")).text(),
        format!("{{\"error\":\"\",\"exit_code\":0,\"job_id\":\"{jid}\",\"output\":\"hi from broker ['x', 'y z']\\n\",\"status\":\"completed\"}}\n")
    );
    let st = get(r, &format!("/status/{jid}")).json();
    assert_eq!(st["status"], "completed");
    assert_eq!(st["node_id"], "9959d2fb1eba0dd3");
    let nodes = get(r, "/nodes").json();
    let n = nodes["nodes"].as_array().unwrap().iter().find(|n| n["id"] == "9959d2fb1eba0dd3").unwrap().clone();
    assert_eq!(n["jobs_completed"], 1);

    // Errors.
    assert_eq!(post_json(r, "/submit", "{}").text(), "{\"error\":\"Missing code\"}\n");
    assert_eq!(post_json(r, "/submit", "{}").status_line, "HTTP/1.1 400 BAD REQUEST");
    assert_eq!(post_json(r, "/register", "{}").text(), "{\"error\":\"Missing endpoint\"}\n");
    assert_eq!(post_json(r, "/heartbeat", "{}").text(), "{\"error\":\"Missing node_id\"}\n");
    assert_eq!(post_json(r, "/claim", "{}").text(), "{\"error\":\"Missing node_id\"}\n");
    assert_eq!(post_json(r, "/complete", "{\"node_id\":\"x\"}").text(), "{\"error\":\"Missing required fields\"}\n");
    let nf = get(r, "/status/ffffffffffffffff");
    assert_eq!(nf.status_line, "HTTP/1.1 404 NOT FOUND");
    assert_eq!(nf.text(), "{\"error\":\"Job not found\"}\n");
    assert_eq!(get(r, "/results/ffffffffffffffff").status, 404);
    let form = request(r, "POST", "/submit", &[("Content-Type", "application/x-www-form-urlencoded")], b"code=print(1)");
    assert_eq!(form.status_line, "HTTP/1.1 415 UNSUPPORTED MEDIA TYPE");
    assert_eq!(form.text(), capture_body("105-broker-submit-form.http"));

    // CORS preflight like capture 112.
    let p = request(
        r,
        "OPTIONS",
        "/submit",
        &[("Origin", "http://example.test"), ("Access-Control-Request-Method", "POST"), ("Access-Control-Request-Headers", "content-type")],
        b"",
    );
    assert_eq!(p.status, 200);
    assert_eq!(p.header("Allow"), Some("POST, OPTIONS"));
    assert_eq!(p.header("Access-Control-Allow-Origin"), Some("http://example.test"));
    assert_eq!(p.header("Access-Control-Allow-Headers"), Some("content-type"));
    assert_eq!(p.header("Access-Control-Allow-Methods"), Some("DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT"));
    assert_eq!(p.header("Vary"), Some("Origin"));
    assert_eq!(p.header("Content-Length"), Some("0"));
}

#[test]
fn node_goes_inactive_and_jobs_return_to_pending() {
    let d = Devnet::start(&["--workers", "1", "--node-timeout", "1"]);
    let r = &d.registry;
    let jid = post_json(r, "/submit", r#"{"code":"print(1)"}"#).json()["job_id"].as_str().unwrap().to_string();
    let node = post_json(r, "/register", r#"{"endpoint":"http://127.0.0.1:9"}"#).json()["node_id"].as_str().unwrap().to_string();
    let c = post_json(r, "/claim", &format!("{{\"node_id\":\"{node}\"}}")).json();
    assert_eq!(c["job"]["id"], jid.as_str());
    std::thread::sleep(Duration::from_millis(3500));
    let st = get(r, &format!("/status/{jid}")).json();
    assert_eq!(st["status"], "pending");
    assert!(st["node_id"].is_null());
    let nodes = get(r, "/nodes").json();
    let n = nodes["nodes"].as_array().unwrap().iter().find(|n| n["id"] == node.as_str()).unwrap().clone();
    assert_eq!(n["active"], 0);
}

#[test]
fn reference_timing_blocks_status_while_running() {
    let d = Devnet::start(&["--workers", "1", "--no-rate-limit", "--reference-timing"]);
    let w = d.w(0);
    let id = py(w, "import time\ntime.sleep(2)\nprint('ok')\n");
    // Picked up by the 1 s queue poll; then /status blocks until the job ends.
    std::thread::sleep(Duration::from_millis(1300));
    let t = Instant::now();
    let h = get(w, "/health");
    assert_eq!(h.status, 200);
    assert!(t.elapsed() < Duration::from_millis(700), "/health stays responsive");
    let t = Instant::now();
    let st = get(w, &format!("/status/{id}")).json();
    assert!(t.elapsed() >= Duration::from_millis(400), "/status blocked while the job ran");
    assert_eq!(st["status"], "completed");
}

#[test]
fn curl_exactly_as_in_the_reference() {
    if std::process::Command::new("curl").arg("--version").output().is_err() {
        eprintln!("curl not installed; skipping");
        return;
    }
    let d = Devnet::start(&["--workers", "1"]);
    let w = d.w(0);
    let dir = d.data_dir.join("curl-job");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("main.py"), "print(\"Hello from Sandrun!\")\n").unwrap();
    let st = std::process::Command::new("tar").current_dir(&dir).args(["czf", "job.tar.gz", "main.py"]).status().unwrap();
    assert!(st.success());
    let out = std::process::Command::new("curl")
        .current_dir(&dir)
        .args(["-s", "-F", "files=@job.tar.gz", "-F", "manifest={\"entrypoint\":\"main.py\",\"interpreter\":\"python3\"}"])
        .arg(format!("http://{w}/submit"))
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "queued");
    let id = v["job_id"].as_str().unwrap();
    let st = wait_done(w, id);
    assert_eq!(st["status"], "completed");
    assert_eq!(st["job_hash"], "4132144496a5939f391660586dfdd2d9c1439011828c0534b66025896829b9ed");
    assert!(verify(w, id, &st));
    let out = std::process::Command::new("curl").args(["-s", &format!("http://{w}/status/{id}")]).output().unwrap();
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap(), st);
}

fn procs_with(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
            let c = String::from_utf8_lossy(&c).replace('\0', " ");
            if c.contains(marker) {
                found.push(format!("{}: {c}", e.file_name().to_string_lossy()));
            }
        }
    }
    found
}

#[test]
fn sigterm_leaves_no_orphans() {
    let marker = format!("devnet-orphan-marker-{}", std::process::id());
    let mut d = Devnet::start(&["--workers", "2", "--no-rate-limit"]);
    let code = "import subprocess, sys, time\nsubprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)', sys.argv[1]])\ntime.sleep(300)\n";
    let manifest = format!(r#"{{"entrypoint":"main.py","args":["{marker}"]}}"#);
    for i in 0..2 {
        submit_ok(d.w(i), &[("main.py", code.as_bytes())], Some(&manifest));
    }
    let t = Instant::now();
    while procs_with(&marker).len() < 4 {
        assert!(t.elapsed() < Duration::from_secs(10), "jobs did not start: {:?}", procs_with(&marker));
        std::thread::sleep(Duration::from_millis(50));
    }
    let st = d.sigterm();
    assert!(st.success(), "{st}");
    let t = Instant::now();
    loop {
        let left = procs_with(&marker);
        if left.is_empty() {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(5), "orphans: {left:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(std::net::TcpStream::connect(d.w(0)).is_err());
}

#[test]
fn jobs_auto_delete_after_ttl() {
    let d = Devnet::start(&["--workers", "1", "--no-rate-limit", "--job-ttl", "1"]);
    let w = d.w(0);
    let id = py(w, "print('bye')\n");
    wait_done(w, &id);
    let dir = d.data_dir.join("worker-0/jobs").join(&id);
    assert!(dir.exists());
    std::thread::sleep(Duration::from_millis(1800));
    let r = get(w, &format!("/status/{id}"));
    assert_eq!(r.status, 404);
    assert_eq!(r.text(), capture_body("124-status-after-autodelete.http"));
    assert!(!dir.exists(), "job directory removed with the job");
    let (mut s, _) = ws_connect(w, &format!("/stream/{id}"));
    assert_eq!(ws_read(&mut s), Frame::Text(format!("[ERROR] Job not found: {id}\n")));
    assert_eq!(ws_read(&mut s), Frame::Close(vec![]));
}

#[test]
fn orchestrator_sigkill_still_leaves_no_orphans() {
    let marker = format!("devnet-kill9-marker-{}", std::process::id());
    let mut d = Devnet::start(&["--workers", "1", "--no-rate-limit"]);
    let manifest = format!(r#"{{"entrypoint":"main.py","args":["{marker}"]}}"#);
    submit_ok(d.w(0), &[("main.py", b"import time\ntime.sleep(300)\n")], Some(&manifest));
    let t = Instant::now();
    while procs_with(&marker).is_empty() {
        assert!(t.elapsed() < Duration::from_secs(10), "job did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    d.child.kill().unwrap();
    d.child.wait().unwrap();
    let t = Instant::now();
    while !procs_with(&marker).is_empty() {
        assert!(t.elapsed() < Duration::from_secs(5), "orphans: {:?}", procs_with(&marker));
        std::thread::sleep(Duration::from_millis(50));
    }
}
