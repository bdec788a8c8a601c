//! Worker endpoints, statuses, execution and bad input against the real devnet binary.

mod support;
use support::*;
use std::time::{Duration, Instant};

const HELLO: &str = "print(\"Hello from Sandrun!\")\n";
const SLEEPER: &str = "import time\ntime.sleep(1.5)\nprint(\"slept\")\n";

fn json_head(status: &str, len: usize) -> String {
    format!("{status}\r\nAccess-Control-Allow-Origin: *\r\nContent-Type: application/json\r\nContent-Length: {len}")
}

#[test]
fn endpoints_layouts_and_hello_job() {
    let d = Devnet::start(&["--workers", "1", "--no-rate-limit"]);
    let w = d.w(0);
    let root = capture_body("01-get-root.http");

    let r = get(w, "/");
    assert_eq!(r.raw_head, json_head("HTTP/1.1 200 OK", root.len()));
    assert_eq!(r.text(), root);
    // Prefix routing: any GET is the info body; a lowercase upgrade is a plain GET.
    assert_eq!(get(w, "/no/such/path").text(), root);
    assert_eq!(get(w, "/stream/job_0_0").text(), root);
    assert_eq!(get(w, "/environments").text(), capture_body("03-environments.http"));
    assert_eq!(get(w, "/stats").text(), capture_body("04-stats-before.http"));
    let h = get(w, "/health");
    assert_eq!(h.text(), format!("{{\"status\":\"healthy\",\"worker_id\":\"{}\"}}", d.worker_ids[0].as_ref().unwrap()));

    for (m, p) in [("OPTIONS", "/submit"), ("DELETE", "/status/x"), ("POST", "/nope"), ("PUT", "/submit")] {
        let r = request(w, m, p, &[], b"");
        assert_eq!(r.raw_head, json_head("HTTP/1.1 404 Not Found", 21), "{m} {p}");
        assert_eq!(r.text(), "{\"error\":\"Not found\"}");
    }
    for p in ["/status/job_0_0", "/logs/job_0_0", "/outputs/job_0_0", "/download/job_0_0", "/download/job_0_0/x"] {
        let r = get(w, p);
        assert_eq!(r.status, 404, "{p}");
        assert_eq!(r.text(), "{\"error\":\"Job not found\"}");
    }

    // A sleeper ahead makes the hello job visibly queued at position 1.
    let sleeper = py(w, SLEEPER);
    wait_running(w, &sleeper);
    let id = py(w, HELLO);
    let parts: Vec<&str> = id.split('_').collect();
    assert_eq!(parts[0], "job");
    assert!(parts[1].parse::<u64>().unwrap() > 1_700_000_000);
    assert_eq!(parts[2], "2");
    let q = get(w, &format!("/status/{id}"));
    assert_eq!(q.text(), capture_body("07-status-queued.http").replace("job_1795716671_1", &id));
    // Whole-job download of a queued job is refused; the worker stays up.
    let r = get(w, &format!("/download/{id}"));
    assert_eq!(r.status, 400);
    assert_eq!(r.text(), "{\"error\":\"Job not finished\"}");
    assert_eq!(get(w, "/health").status, 200);

    let st = wait_done(w, &id);
    assert_eq!(st["status"], "completed");
    assert_eq!(st["queue_position"], 0);
    assert_eq!(st["job_hash"], "4132144496a5939f391660586dfdd2d9c1439011828c0534b66025896829b9ed");
    assert_eq!(st["output_files"]["main.py"]["sha256"], "f12ffd66c6f9db9ba8bb330dcfb6ab16c94c4c9234e1750d965ccef6a2654595");
    let em = &st["execution_metadata"];
    assert_eq!(em["memory_peak_bytes"].as_u64().unwrap(), em["memory_peak_mb"].as_u64().unwrap() * 1_048_576);
    assert_eq!(em["wall_time_ms"], 0);
    assert!(verify(w, &id, &st), "signature must verify with ed25519-compact");
    // Byte layout: the capture with our variable values substituted.
    let raw = get(w, &format!("/status/{id}")).text();
    let expected = capture_body("08-status-completed.http")
        .replace("job_1795716671_1", &id)
        .replace("\"cpu_seconds\": 0.03", &format!("\"cpu_seconds\": {:.2}", em["cpu_seconds"].as_f64().unwrap()))
        .replace("7340032", &em["memory_peak_bytes"].to_string())
        .replace("\"memory_peak_mb\": 7", &format!("\"memory_peak_mb\": {}", em["memory_peak_mb"]))
        .replace("8yvlAG7HVDbe7fjKJjcscihmvRZDnS+wZEkhWE0UtPY=", st["worker_metadata"]["worker_id"].as_str().unwrap())
        .replace(
            "On/ZD4tC0YwzrhScgmH4buF1aayOsbWdfMloJtj0YbIJGNxPHdN06zimW+On1N5v1rj4cbK7RtqGFtnDOKWWDw==",
            st["worker_metadata"]["signature"].as_str().unwrap(),
        );
    assert_eq!(raw, expected);
    assert!(raw.contains(&format!("\"cpu_seconds\": {:.2},", em["cpu_seconds"].as_f64().unwrap())));

    assert_eq!(get(w, &format!("/logs/{id}")).text(), capture_body("09-logs-completed.http"));
    assert_eq!(get(w, &format!("/outputs/{id}")).text(), capture_body("10-outputs-hello.http").replace("job_1795716671_1", &id));
    assert_eq!(get(w, &format!("/status/{id}?x=1")).status, 404);

    let f = get(w, &format!("/download/{id}/main.py"));
    assert_eq!(
        f.raw_head,
        "HTTP/1.1 200 OK\r\nAccess-Control-Allow-Origin: *\r\nContent-Disposition: attachment; filename=\"main.py\"\r\nContent-Type: text/x-python\r\nContent-Length: 29"
    );
    assert_eq!(f.body, HELLO.as_bytes());
    assert_eq!(get(w, &format!("/status/{id}")).status, 200, "single-file download keeps the job");

    let all = get(w, &format!("/download/{id}"));
    assert_eq!(all.status, 200);
    assert_eq!(all.header("Content-Type"), Some("application/gzip"));
    assert_eq!(all.header("Content-Disposition").unwrap(), format!("attachment; filename=\"{id}.tar.gz\""));
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(&all.body[..]));
    let names: Vec<String> = ar.entries().unwrap().map(|e| e.unwrap().path().unwrap().display().to_string()).collect();
    assert!(names.iter().any(|n| n == "./main.py" || n == "main.py"), "{names:?}");
    assert_eq!(get(w, &format!("/status/{id}")).status, 404, "whole download deletes the job");
    assert_eq!(get(w, &format!("/download/{id}")).status, 404);

    // Trailing slash counts as whole-job download.
    wait_done(w, &sleeper);
    assert_eq!(get(w, &format!("/download/{sleeper}/")).status, 200);
    assert_eq!(get(w, &format!("/status/{sleeper}")).status, 404);

    let stats = get(w, "/stats").json();
    assert!(stats["your_quota"]["used"].as_f64().unwrap() > 0.0);
    assert_eq!(stats["system"]["queue_length"], 0);
    let adm = get(w, "/_devnet/jobs").json();
    assert_eq!(adm["accepted"], 2);
}

#[test]
fn statuses_and_execution() {
    let d = Devnet::start(&["--workers", "1", "--no-rate-limit", "--job-timeout", "3", "--cpu-limit", "1", "--concurrency", "2"]);
    let w = d.w(0);

    let fail = py(w, "import sys\nprint(\"about to fail\")\nprint(\"boom\", file=sys.stderr)\nsys.exit(1)\n");
    let killed = py(w, "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n");
    let st = wait_done(w, &fail);
    assert_eq!(st["status"], "failed");
    assert_eq!(st["execution_metadata"]["exit_code"], 1);
    assert_eq!(st["job_hash"], "23e42db6a5bf04fb6212223e7a6b4eead18cb118bfa9e606ab35fdf1eb2b7769");
    assert_eq!(get(w, &format!("/logs/{fail}")).text(), capture_body("32-logs-failed.http"));
    assert!(verify(w, &fail, &st));
    let st = wait_done(w, &killed);
    assert_eq!(st["status"], "failed");
    assert_eq!(st["execution_metadata"]["exit_code"], -1);
    assert!(verify(w, &killed, &st));

    let t0 = Instant::now();
    let timeout = py(w, "import time\nprint('start', flush=True)\ntime.sleep(30)\n");
    let hog = py(w, "x=0\nwhile True:\n    x+=1\n");
    let st = wait_done(w, &timeout);
    assert!(t0.elapsed() < Duration::from_secs(10));
    assert_eq!(st["status"], "failed");
    assert_eq!(st["execution_metadata"]["exit_code"], -1);
    let l = logs(w, &timeout);
    assert_eq!(l["stdout"], "start\n");
    assert!(l["stderr"].as_str().unwrap().ends_with("\nKilled: timeout"), "{l}");
    let st = wait_done(w, &hog);
    assert_eq!(st["execution_metadata"]["exit_code"], -1);
    assert_eq!(st["job_hash"], "190818e3175e251e2eecb7170eb82fd4b890200296797d4c92c255ce09396b71");
    let cpu = st["execution_metadata"]["cpu_seconds"].as_f64().unwrap();
    assert!((0.9..1.5).contains(&cpu), "cpu limit kill at ~1 s, got {cpu}");
    assert!(!logs(w, &hog)["stderr"].as_str().unwrap().contains("Killed: timeout"));

    // Per-byte escaping (vector 58).
    let uni = py(w, "import sys\nprint(\"h\\u00e9llo \\u2713 tab\\there \\\"quoted\\\" back\\\\slash ctrl\\x01 end\")\nprint(\"err \\u00fc\", file=sys.stderr)\n");
    let st = wait_done(w, &uni);
    assert_eq!(st["job_hash"], "05afefa6b749c780cdd764083c15411448446fab147e82677517bac0b5122471");
    assert_eq!(get(w, &format!("/logs/{uni}")).text(), capture_body("58-logs-unicode.http"));

    // Args (vector 33).
    let args = submit_ok(
        w,
        &[("main.py", b"import sys\nprint(\"args:\", sys.argv[1:])\n")],
        Some(r#"{"entrypoint":"main.py","interpreter":"python3","args":["--input","data.csv","hello world"]}"#),
    );
    let st = wait_done(w, &args);
    assert_eq!(st["job_hash"], "9420f14d95465cd0c41f62554b221ec03b0979253fefb2cf056ede30b16c6ea0");
    assert_eq!(get(w, &format!("/logs/{args}")).text(), capture_body("34-logs-args.http"));

    // Output patterns, nested files, tar.gz upload (vector 51).
    let v: serde_json::Value = serde_json::from_str(include_str!("../../tests/fixtures/signature-vectors.json")).unwrap();
    let vec51 = &v["vectors"][5];
    let files: Vec<(String, Vec<u8>)> = vec51["job_files"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().as_bytes().to_vec()))
        .collect();
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
    let tgz = tar_gz(&refs);
    let w2 = submit_ok(w, &[("job.tar.gz", &tgz)], Some(r#"{"entrypoint":"main.py","interpreter":"python3","outputs":["*.txt","results/*"]}"#));
    let st = wait_done(w, &w2);
    assert_eq!(st["status"], "completed", "{}", logs(w, &w2));
    assert_eq!(st["job_hash"], vec51["expected_job_hash"]);
    assert_eq!(st["output_files"], vec51["status"]["output_files"]);
    assert!(verify(w, &w2, &st));
    let raw = get(w, &format!("/status/{w2}")).text();
    let zeta = raw.find("results/Zeta.json").unwrap();
    assert!(zeta < raw.find("results/out.csv").unwrap(), "output_files ordered by bytes");
    let outs = get(w, &format!("/outputs/{w2}")).json();
    assert_eq!(outs["total_files"], 4);
    let mut names: Vec<String> = outs["files"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap().to_string()).collect();
    names.sort();
    assert_eq!(names, ["output.txt", "results/.keep", "results/Zeta.json", "results/out.csv"]);
    let csv = get(w, &format!("/download/{w2}/results/out.csv"));
    assert_eq!(csv.header("Content-Type"), Some("text/csv"));
    assert_eq!(csv.header("Content-Disposition"), Some("attachment; filename=\"out.csv\""));
    assert_eq!(csv.text(), "n,square\n1,1\n2,4\n3,9\n");
    assert_eq!(get(w, &format!("/download/{w2}/results/Zeta.json")).header("Content-Type"), Some("application/json"));
    assert_eq!(get(w, &format!("/download/{w2}/results")).status, 404, "directory");
    let all = get(w, &format!("/download/{w2}"));
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(&all.body[..]));
    let names: Vec<String> = ar.entries().unwrap().map(|e| e.unwrap().path().unwrap().display().to_string()).collect();
    assert!(names.iter().any(|n| n.ends_with("data/input.csv")), "whole download ignores patterns: {names:?}");

    // `prefix*` and exact names.
    let pat = submit_ok(
        w,
        &[("main.py", b"for n in ['out1.txt','outX.csv','exact.dat','other.txt']:\n    open(n,'w').write(n)\n")],
        Some(r#"{"entrypoint":"main.py","outputs":["out*","exact.dat"]}"#),
    );
    let st = wait_done(w, &pat);
    let mut keys: Vec<&String> = st["output_files"].as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["exact.dat", "out1.txt", "outX.csv"]);
    assert_eq!(st["output_files"]["out1.txt"]["type"], "text");
    assert_eq!(st["output_files"]["exact.dat"]["type"], "other");

    // job.json instead of a manifest (vector 59).
    let jj = submit_ok(
        w,
        &[
            ("run.py", b"import sys\nprint(\"run.py via job.json, argv=\", sys.argv[1:])\n"),
            ("job.json", br#"{"entrypoint":"run.py","interpreter":"python3","args":["a","b c"]}"#),
        ],
        None,
    );
    let st = wait_done(w, &jj);
    assert_eq!(st["job_hash"], "5b4d6987b1ee722bbec1dd45c9affdcba70b2a5700fb555a1628f63a4a8fd3de");
    assert_eq!(get(w, &format!("/logs/{jj}")).text(), capture_body("59c-logs-jobjson.http"));

    // Default entrypoints: index.js with node, run.sh with bash; unknown interpreter.
    let node = submit_ok(w, &[("index.js", b"console.log('node', 1+1)\n")], None);
    let bash = submit_ok(w, &[("run.sh", b"echo bash $((2+3))\n")], Some("{}"));
    let ruby = submit_ok(w, &[("main.rb", b"puts 1\n")], Some(r#"{"entrypoint":"main.rb","interpreter":"ruby"}"#));
    let st = wait_done(w, &node);
    assert_eq!(st["execution_metadata"]["interpreter"], "node");
    assert_eq!(logs(w, &node)["stdout"], "node 2\n");
    let st = wait_done(w, &bash);
    assert_eq!(st["execution_metadata"]["interpreter"], "bash");
    assert_eq!(logs(w, &bash)["stdout"], "bash 5\n");
    let st = wait_done(w, &ruby);
    assert_eq!(st["status"], "failed");
    assert_eq!(st["execution_metadata"]["exit_code"], 127);
    assert!(logs(w, &ruby)["stderr"].as_str().unwrap().contains("unsupported interpreter: ruby"));
}

#[test]
fn bad_input_is_answered_like_the_reference() {
    let d = Devnet::start(&["--workers", "1", "--no-rate-limit", "--max-body-mb", "1"]);
    let w = d.w(0);
    let no_files = "{\"error\":\"No files uploaded\"}";
    let no_ep = "{\"error\":\"No entrypoint specified\"}";

    let r = post_json(w, "/submit", r#"{"code":"print(1)"}"#);
    assert_eq!(r.raw_head, json_head("HTTP/1.1 400 Bad Request", 29));
    assert_eq!(r.text(), no_files);
    // Lowercase header name: the reference does not see the Content-Type.
    let body = multipart(&[("main.py", HELLO.as_bytes())], None);
    let ct = format!("multipart/form-data; boundary={BOUNDARY}");
    assert_eq!(request(w, "POST", "/submit", &[("content-type", &ct)], &body).text(), no_files);
    assert_eq!(submit_raw(w, format!("--{BOUNDARY}--\r\n").as_bytes()).text(), no_files);
    assert_eq!(submit_raw(w, &body[..body.len() / 2]).text(), no_files, "malformed multipart");
    assert_eq!(submit(w, &[], Some(r#"{"interpreter":"python3"}"#)).text(), no_ep);
    assert_eq!(submit(w, &[("data.csv", b"1,2\n")], None).text(), no_ep);
    assert_eq!(submit(w, &[("main.py", b"x")], Some("not json at all")).status, 200, "default main.py");

    // Path traversal in uploads.
    let evil = tar_gz_raw_name("../evil.txt", b"evil");
    let r = submit(w, &[("job.tar.gz", &evil)], Some(r#"{"entrypoint":"main.py"}"#));
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(!d.data_dir.join("worker-0/evil.txt").exists());
    assert_eq!(submit(w, &[("../x.py", b"x")], Some(r#"{"entrypoint":"main.py"}"#)).status, 400);
    assert_eq!(submit(w, &[("main.py", b"x")], Some(r#"{"entrypoint":"../main.py"}"#)).status, 400);
    let r = submit(w, &[("job.zip", b"PK\x03\x04")], Some(r#"{"entrypoint":"main.py"}"#));
    assert_eq!(r.status, 400);
    assert!(r.text().contains("Invalid zip"), "{}", r.text());
    let evil_zip = make_zip(&[("../evil.py", "x")]);
    assert_eq!(submit(w, &[("job.zip", &evil_zip)], Some(r#"{"entrypoint":"main.py"}"#)).status, 400);
    // A real zip (deflate) is unzipped like the reference does.
    let zip = make_zip(&[("main.py", "print(open('sub/data.txt').read())\n"), ("sub/data.txt", &"zipped ".repeat(50))]);
    let id = submit_ok(w, &[("job.zip", &zip)], None);
    assert_eq!(wait_done(w, &id)["status"], "completed", "{}", logs(w, &id));
    assert_eq!(logs(w, &id)["stdout"], format!("{}\n", "zipped ".repeat(50)));

    // Oversized body: 413, no CORS header, Content-Length shorter than the body.
    let big = vec![b'a'; 2 << 20];
    let r = submit_raw(w, &big);
    assert_eq!(r.status_line, "HTTP/1.1 413 Unknown");
    assert!(r.header("Access-Control-Allow-Origin").is_none());
    assert!(r.header("Content-Length").unwrap().parse::<usize>().unwrap() < r.body.len());

    // Downloads: traversal 403, missing 500, directory 404.
    let id = submit_ok(w, &[("main.py", b"import os\nos.makedirs('d', exist_ok=True)\nopen('d/f.txt','w').write('x')\n")], None);
    wait_done(w, &id);
    let r = get(w, &format!("/download/{id}/../../../../../../etc/passwd"));
    assert_eq!(r.raw_head, json_head("HTTP/1.1 403 Unknown", 50));
    assert_eq!(r.text(), "{\"error\":\"Access denied: path traversal detected\"}");
    let r = get(w, &format!("/download/{id}/nope.txt"));
    assert_eq!(r.status_line, "HTTP/1.1 500 Internal Server Error");
    assert_eq!(
        r.text(),
        format!("{{\"error\":\"filesystem error: cannot make canonical path: No such file or directory [{id}/nope.txt]\"}}")
    );
    assert_eq!(get(w, &format!("/download/{id}/d")).status, 404);
    assert_eq!(get(w, &format!("/download/{id}/d/f.txt")).text(), "x");

    // The worker survived all of it.
    let ok = py(w, HELLO);
    assert_eq!(wait_done(w, &ok)["status"], "completed");
}

#[test]
fn rate_limits() {
    let d = Devnet::start(&["--workers", "3", "--jobs-per-hour", "2", "--cpu-per-minute", "0.01"]);
    // Concurrency: two active jobs per client IP.
    let w = d.w(0);
    let a = py(w, SLEEPER);
    let b = py(w, SLEEPER);
    let r = py_submit(w);
    assert_eq!(r.status_line, "HTTP/1.1 429 Unknown");
    assert_eq!(r.text(), "{\"error\":\"Max concurrent jobs reached (2)\",\"cpu_available\":0,\"active_jobs\":2}");
    let s = get(w, "/stats").json();
    assert_eq!(s["your_quota"]["can_submit"], false);
    assert_eq!(s["your_quota"]["reason"], "Max concurrent jobs reached (2)");
    assert_eq!(s["your_quota"]["available"], 0);
    assert_eq!(s["your_quota"]["active_jobs"], 2);
    let _ = (a, b);

    // CPU quota per sliding minute.
    let w = d.w(1);
    let c = py(w, HELLO);
    wait_done(w, &c);
    let r = py_submit(w);
    assert_eq!(r.status, 429);
    let v = r.json();
    let e = v["error"].as_str().unwrap();
    assert!(e.starts_with("CPU quota exhausted, wait ") && e.ends_with(" seconds"), "{e}");
    assert_eq!(v["cpu_available"], 0);
    assert_eq!(v["active_jobs"], 0);
    let s = get(w, "/stats").json();
    assert!(s["your_quota"]["used"].as_f64().unwrap() > 0.01);
    assert_eq!(s["your_quota"]["limit"], 0.01);

    // Jobs per sliding hour (checked before the CPU quota).
    let w = d.w(2);
    let e = py(w, HELLO);
    let f = py(w, HELLO);
    wait_done(w, &e);
    wait_done(w, &f);
    let r = py_submit(w);
    assert_eq!(r.status, 429);
    assert_eq!(r.text(), "{\"error\":\"Max jobs per hour reached (2)\",\"cpu_available\":0,\"active_jobs\":0}");
}

fn py_submit(w: &str) -> Resp {
    submit(w, &[("main.py", HELLO.as_bytes())], Some(r#"{"entrypoint":"main.py"}"#))
}

/// A zip made by Python's zipfile (deflate), so the test does not share our zip code.
fn make_zip(files: &[(&str, &str)]) -> Vec<u8> {
    let spec = serde_json::to_string(&files.iter().map(|(n, c)| (n.to_string(), c.to_string())).collect::<Vec<_>>()).unwrap();
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import io, json, sys, zipfile\nb = io.BytesIO()\nz = zipfile.ZipFile(b, 'w', zipfile.ZIP_DEFLATED)\nfor n, c in json.loads(sys.argv[1]): z.writestr(n, c)\nz.close()\nsys.stdout.buffer.write(b.getvalue())",
            &spec,
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    out.stdout
}
