//! Property tests ("fuzzing") of everything a hostile worker, registry or archive host can
//! send and everything a careless user can pass: each input gives `Ok` or a typed `Err`,
//! never a panic. The wasm build aborts on panic (`profile.wasm`, `panic = "abort"`), so
//! one panic reachable from server data would kill the module with every job in it.
//!
//! Bounded for CI: a fixed seed and case count. `SANDRUN_FUZZ_CASES=<n>` sets the base
//! number of cases per property (default 256; the expensive properties run a fraction of
//! it), `SANDRUN_FUZZ_SEED=<u64>` picks another seed, e.g.
//! `SANDRUN_FUZZ_CASES=20000 SANDRUN_FUZZ_SEED=$RANDOM cargo test --test fuzz --release`.
//!
//! Properties that hold beyond "no panic" are asserted too: round trips (signed strings,
//! per-byte escaped logs, receipts, archives), `format_g` against C's own `printf("%g")`,
//! and the attacker's view of the signed string: a string the SDK accepts never means a
//! different set of (path, sha256) than the status it came with.

#![cfg(not(target_arch = "wasm32"))]

use base64::{engine::general_purpose::STANDARD as B64, Engine};
use ed25519_dalek::{Signer, SigningKey};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use sandrun_wasm::api::broker::{ClaimedJob, NodeRecord};
use sandrun_wasm::api::wire::{decode_byte_escapes, error_text, retry_after_ms, status_error, Logs, WorkerStatus};
use sandrun_wasm::execution::done_frame_cpu;
use sandrun_wasm::job::archive::{check_relative_path, pack_tar_gz, unpack_tar_gz, MAX_UNPACKED_BYTES};
use sandrun_wasm::job::{JobBuilder, JobDescription};
use sandrun_wasm::pool::consensus::{parse_signed, signature_ok};
use sandrun_wasm::proof::receipt::{verify_receipt, ProofInputs, Receipt};
use sandrun_wasm::proof::recipe::{format_g, job_hash, sha256_hex, signed_prefix, signed_string, signed_suffix};
use sandrun_wasm::proof::verify::cpu_candidates;
use sandrun_wasm::proof::verify_status_signature;
use sandrun_wasm::types::{parse_size_mb, ConsensusLevel, PaymentRequest};
use sandrun_wasm::{ErrorCode, SandrunConfig};
use serde_json::{json, Value};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;

// ---------------------------------------------------------------------------------------
// Bounds

const DEFAULT_CASES: u32 = 256;
const DEFAULT_SEED: u64 = 0x5A4D_5255_4E21;

/// The proptest configuration: fixed seed, `base / cost` cases, no failure files.
fn cfg(cost: u32) -> Config {
    let base = std::env::var("SANDRUN_FUZZ_CASES").ok().and_then(|v| v.parse::<u32>().ok()).unwrap_or(DEFAULT_CASES);
    let seed = std::env::var("SANDRUN_FUZZ_SEED").ok().and_then(|v| v.parse::<u64>().ok()).unwrap_or(DEFAULT_SEED);
    Config {
        cases: (base / cost).max(4),
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        max_shrink_iters: 4096,
        ..Config::default()
    }
}

// ---------------------------------------------------------------------------------------
// Memory accounting: the peak of live heap bytes on this thread, so "bounded in memory"
// is a checked property, not a hope.

struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn track(delta: isize) {
    let _ = LIVE.try_with(|l| {
        let v = l.get() + delta;
        l.set(v);
        let _ = PEAK.try_with(|p| p.set(p.get().max(v)));
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = System.alloc(l);
        if !p.is_null() {
            track(l.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l);
        track(-(l.size() as isize));
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let q = System.realloc(p, l, new);
        if !q.is_null() {
            track(new as isize - l.size() as isize);
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Run `f`; also return the most heap it held at once beyond what was live before.
fn peak_heap<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let start = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(start));
    let out = f();
    (out, (PEAK.with(Cell::get) - start).max(0) as usize)
}

// ---------------------------------------------------------------------------------------
// Strategies

/// Strings a hostile server or user would send: anything, separators of the signed string,
/// per-byte-escape look-alikes (U+0080..U+00FF), control characters, very long.
fn hostile_string() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => any::<String>(),
        4 => "[a-z0-9|:/\\\\. \"'%\\x00-\\x1f\\x7f]{0,24}",
        2 => "[\u{80}-\u{ff}a-z]{0,16}",
        2 => "[✓é€ß漢\u{fffd}\u{10ffff}|:a]{0,12}",
        1 => Just(String::new()),
        1 => (1usize..4).prop_map(|n| "|:".repeat(n * 1000)),
        1 => Just("x".repeat(70_000)),
    ]
}

fn hex64() -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<u8>(), 32).prop_map(|b| b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Raw JSON number tokens, including ones no f64, i64 or u64 can hold.
fn number_token() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_filter("json has no nan/inf", |x| x.is_finite()).prop_map(|x| format!("{x:e}")),
        prop::sample::select(vec![
            "0", "-0", "-0.0", "1e308", "-1e308", "1e309", "-1e999", "1e-400", "18446744073709551616", "-9223372036854775809",
            "99999999999999999999999999999", "0.005", "4.9e-324", "2.2250738585072014e-308", "1.7976931348623157e308", "00", "1.", ".5",
            "NaN", "Infinity", "-", "+1", "0x10",
        ])
        .prop_map(str::to_string),
    ]
}

/// JSON text that is valid or nearly so, mixing the fields the parsers look for with
/// hostile values and shapes.
fn json_text() -> impl Strategy<Value = String> {
    const KEYS: &[&str] = &[
        "job_id", "status", "queue_position", "execution_metadata", "cpu_seconds", "memory_peak_bytes", "memory_peak_mb", "wall_time_ms",
        "exit_code", "environment", "interpreter", "job_hash", "output_files", "size_bytes", "sha256", "type", "worker_metadata", "worker_id",
        "signature", "stdout", "stderr", "error", "nodes", "job", "id", "endpoint", "capabilities", "active", "jobs_completed", "code", "args",
        "version", "worker", "jobId", "workerId", "signedString", "jobHash", "exitCode", "outputs", "node_id", "sandrun_endpoint",
    ];
    let leaf = prop_oneof![
        3 => number_token(),
        3 => hostile_string().prop_map(|s| Value::String(s).to_string()),
        1 => prop::sample::select(vec![
            "null", "true", "false", "\"\\u00e9\"", "\"\\ud800\"", "\"\\udc00\\ud800\"", "\"\\u0000\"", "\"\\x\"", "\"unterminated", "[", "{", "\"\\u00ff\\u00fe\"",
        ])
        .prop_map(str::to_string),
    ];
    leaf.prop_recursive(4, 64, 8, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(|v| format!("[{}]", v.join(","))),
            proptest::collection::vec(
                (prop_oneof![3 => prop::sample::select(KEYS.to_vec()).prop_map(str::to_string), 1 => hostile_string()], inner),
                0..8
            )
            .prop_map(|kv| format!("{{{}}}", kv.iter().map(|(k, v)| format!("{}:{v}", Value::String(k.clone()))).collect::<Vec<_>>().join(","))),
        ]
    })
}

/// Valid JSON text, then sometimes cut or with one byte changed.
fn json_bytes() -> impl Strategy<Value = Vec<u8>> {
    (json_text(), 0u8..4, any::<prop::sample::Index>(), any::<u8>()).prop_map(|(t, how, at, b)| {
        let mut v = t.into_bytes();
        if !v.is_empty() {
            let i = at.index(v.len());
            match how {
                0 => v.truncate(i),
                1 => v[i] = b,
                _ => {}
            }
        }
        v
    })
}

/// A status a worker could send: structurally right, every value hostile.
fn status_value() -> impl Strategy<Value = Value> {
    let file = (any::<u64>(), prop_oneof![hex64(), hostile_string()], hostile_string())
        .prop_map(|(size, sha, kind)| json!({"size_bytes": size, "sha256": sha, "type": kind}));
    (
        hostile_string(),
        prop::sample::select(vec!["queued", "running", "completed", "failed", "", "COMPLETED"]),
        (any::<f64>().prop_filter("finite", |x| x.is_finite()), any::<u64>(), any::<i64>()),
        prop_oneof![hex64().prop_map(Some), hostile_string().prop_map(Some), Just(None)],
        proptest::collection::btree_map(hostile_string(), file, 0..5),
        prop_oneof![
            (proptest::collection::vec(any::<u8>(), 32), proptest::collection::vec(any::<u8>(), 64))
                .prop_map(|(k, s)| json!({"worker_id": B64.encode(k), "signature": B64.encode(s)})),
            (hostile_string(), hostile_string()).prop_map(|(k, s)| json!({"worker_id": k, "signature": s})),
            Just(json!({"worker_id": null, "signature": null})),
        ],
    )
        .prop_map(|(job_id, status, (cpu, mem, exit), hash, files, wm)| {
            json!({
                "job_id": job_id, "status": status,
                "execution_metadata": {"cpu_seconds": cpu, "memory_peak_mb": mem, "exit_code": exit},
                "job_hash": hash, "output_files": files, "worker_metadata": wm,
            })
        })
}

// ---------------------------------------------------------------------------------------
// A worker that signs whatever it reports, with a real key: hostile but honest about its
// own signature, so the whole verification path runs, not only its first refusal.

fn signer() -> (SigningKey, String) {
    let key = SigningKey::from_bytes(&[7u8; 32]);
    let id = B64.encode(key.verifying_key().as_bytes());
    (key, id)
}

/// The reference worker's `/status` for what it signed.
fn signed_status(job_hash: &str, exit: i64, cpu_micros: u64, mem: u64, files: &BTreeMap<String, String>) -> (Value, String) {
    let (key, id) = signer();
    let cpu = cpu_micros as f64 / 1e6;
    let signed = signed_string(job_hash, exit, cpu, mem, files);
    let sig = B64.encode(key.sign(signed.as_bytes()).to_bytes());
    let out: serde_json::Map<String, Value> = files.iter().map(|(p, h)| (p.clone(), json!({"size_bytes": 1, "sha256": h}))).collect();
    let status = json!({
        "job_id": "j", "status": "completed", "job_hash": job_hash,
        // The reference prints CPU with 2 decimals; the signature has the exact figure.
        "execution_metadata": {"cpu_seconds": (cpu * 100.0).round() / 100.0, "memory_peak_mb": mem, "exit_code": exit},
        "output_files": out,
        "worker_metadata": {"worker_id": id, "signature": sig},
    });
    (status, signed)
}

/// Paths as programs name their files; none contains `|` and none is made only of
/// U+0080..U+00FF look-alikes (which the per-byte unescaping would reread as bytes).
fn clean_path() -> impl Strategy<Value = String> {
    prop_oneof!["[a-zA-Z0-9_. :/-]{1,24}", "[a-z]{1,4}[✓漢€: ]{0,4}[a-z]{0,4}"]
}

/// Paths an attacker picks: separators, escapes, empty, long.
fn evil_path() -> impl Strategy<Value = String> {
    prop_oneof![
        clean_path(),
        hostile_string(),
        (clean_path(), hex64(), clean_path()).prop_map(|(a, h, b)| format!("{a}:{h}|{b}")),
        Just(String::new()),
        Just("|".into()),
        Just(":".into()),
    ]
}

// ---------------------------------------------------------------------------------------
// The wire parsers

proptest! {
    #![proptest_config(cfg(1))]

    #[test]
    fn status_parser_never_panics(body in prop_oneof![json_bytes(), proptest::collection::vec(any::<u8>(), 0..256)]) {
        match WorkerStatus::parse(&body) {
            Ok(s) => {
                let _ = s.is_finished();
                // Whatever parsed goes on to the signature check; the key and signature
                // are random here, so the expensive search rarely runs.
                if let Err(e) = verify_status_signature(&s, Some(0.01)) {
                    prop_assert_eq!(e.code, ErrorCode::VerificationFailed);
                }
            }
            Err(e) => prop_assert_eq!(e.code, ErrorCode::MalformedResponse),
        }
    }

    #[test]
    fn structured_hostile_statuses_parse_or_fail_typed(v in status_value()) {
        let body = v.to_string();
        let s = WorkerStatus::parse(body.as_bytes());
        prop_assert!(s.is_ok(), "a well-formed status was refused: {:?}", s.err());
        let s = s.unwrap();
        for cpu in [None, Some(f64::INFINITY), Some(f64::NAN), Some(-1.0), Some(1e300), Some(-1e300)] {
            if cpu.is_none() && s.worker_metadata.worker_id.as_deref().is_some_and(|k| k.len() == 44) {
                continue; // the 10,001-candidate search has its own, smaller property
            }
            if let Err(e) = verify_status_signature(&s, cpu) {
                prop_assert_eq!(e.code, ErrorCode::VerificationFailed);
            }
        }
    }

    #[test]
    fn logs_parser_never_panics(body in prop_oneof![json_bytes(), proptest::collection::vec(any::<u8>(), 0..256)]) {
        if let Err(e) = Logs::parse(&body) {
            prop_assert_eq!(e.code, ErrorCode::MalformedResponse);
        }
    }

    /// The reference escapes every byte >= 0x80 (and control bytes) as one `\u00XX`:
    /// any output, valid UTF-8 or not, comes back as its (lossy) text.
    #[test]
    fn logs_round_trip_per_byte_escapes(out in proptest::collection::vec(any::<u8>(), 0..200), err in any::<String>()) {
        fn reference_json(bytes: &[u8]) -> String {
            let mut s = String::from("\"");
            for &b in bytes {
                match b {
                    b'"' => s.push_str("\\\""),
                    b'\\' => s.push_str("\\\\"),
                    b'\n' => s.push_str("\\n"),
                    b'\t' => s.push_str("\\t"),
                    0x20..=0x7e => s.push(b as char),
                    _ => s.push_str(&format!("\\u{:04x}", b)),
                }
            }
            s.push('"');
            s
        }
        let body = format!("{{\"stdout\":{},\"stderr\":{}}}", reference_json(&out), reference_json(err.as_bytes()));
        let logs = Logs::parse(body.as_bytes()).unwrap();
        prop_assert_eq!(logs.stdout, String::from_utf8_lossy(&out).into_owned());
        prop_assert_eq!(logs.stderr, err);
    }

    #[test]
    fn byte_unescaping_never_panics(s in hostile_string()) {
        let d = decode_byte_escapes(&s);
        if s.is_ascii() || s.chars().any(|c| c as u32 > 0xff) {
            prop_assert_eq!(d, s);
        }
    }

    /// Error bodies (404, 429, 5xx, HTML, binary) map to typed errors; the wait a 429
    /// names never overflows.
    #[test]
    fn error_bodies_map_to_typed_errors(
        status in prop_oneof![Just(429u16), Just(404u16), Just(400u16), Just(500u16), any::<u16>()],
        body in prop_oneof![
            json_bytes(),
            proptest::collection::vec(any::<u8>(), 0..400),
            number_token().prop_map(|n| format!("{{\"error\":\"CPU quota exhausted, wait {n} seconds\"}}").into_bytes()),
            "[0-9]{0,30}".prop_map(|n| format!("wait {n} seconds wait ").into_bytes()),
        ],
    ) {
        let _ = error_text(&body);
        let e = status_error(status, &body, "fuzz");
        prop_assert_eq!(e.status, Some(status));
        match status {
            429 => prop_assert_eq!(e.code, ErrorCode::RateLimited),
            404 => prop_assert!(matches!(e.code, ErrorCode::JobNotFound | ErrorCode::HttpStatus)),
            _ => prop_assert_eq!(e.code, ErrorCode::HttpStatus),
        }
    }

    #[test]
    fn retry_after_never_overflows(text in prop_oneof![hostile_string(), "[0-9]{0,40}".prop_map(|n| format!("CPU quota exhausted, wait {n} seconds"))]) {
        if let Some(ms) = retry_after_ms(&text) {
            prop_assert!(ms % 1000 == 0 || ms == u64::MAX);
        }
    }

    /// The registry's JSON: node lists, claimed jobs.
    #[test]
    fn broker_records_never_panic(body in json_bytes()) {
        if let Ok(v) = serde_json::from_slice::<Value>(&body) {
            for candidate in [v.clone(), v["nodes"].clone(), v["job"].clone()] {
                if let Ok(nodes) = serde_json::from_value::<Vec<NodeRecord>>(candidate.clone()) {
                    for n in nodes {
                        let _ = (n.worker_url(), n.worker_id());
                    }
                }
                if let Ok(n) = serde_json::from_value::<NodeRecord>(candidate.clone()) {
                    let _ = (n.worker_url(), n.worker_id());
                }
                let _ = serde_json::from_value::<ClaimedJob>(candidate);
            }
        }
    }

    /// `[DONE]` frames: a CPU figure is finite and not negative, or there is none.
    #[test]
    fn done_frames_give_a_sane_cpu_or_none(frame in prop_oneof![
        hostile_string(),
        (number_token(), hostile_string()).prop_map(|(n, tail)| format!("[DONE] Job completed (exit=0, CPU={n}s, Mem=8MB){tail}")),
        prop::sample::select(vec!["inf", "-inf", "NaN", "nan", "infinity", "1e400", "-0", "-1", "", "1e-400", "ß"]).prop_map(|n| format!("[DONE] CPU={n}s")),
        Just("[DONE] CPU=".to_string()),
        Just("CPU=ßs CPU=1s".to_string()),
    ]) {
        if let Some(cpu) = done_frame_cpu(&frame) {
            prop_assert!(cpu.is_finite() && cpu >= 0.0, "{} gave {}", frame, cpu);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Signed strings, signatures, receipts

/// The agreement a status shows, as the SDK compares results.
fn status_agreement(s: &WorkerStatus) -> (String, i64, BTreeMap<String, String>) {
    (
        s.job_hash.clone().unwrap_or_default(),
        s.execution_metadata.exit_code,
        s.output_files.iter().map(|(p, m)| (p.clone(), m.sha256.clone())).collect(),
    )
}

proptest! {
    #![proptest_config(cfg(1))]

    /// Any string: no panic, and what parses is exactly the canonical form of its parts,
    /// so one signed string can never be read as two different agreements.
    #[test]
    fn signed_string_parser_is_canonical(s in prop_oneof![
        hostile_string(),
        (hex64(), any::<i64>(), "[0-9.e+-]{0,10}", "[0-9]{1,22}", proptest::collection::vec((evil_path(), prop_oneof![hex64(), hostile_string()]), 0..4))
            .prop_map(|(h, e, c, m, f)| format!("{h}|{e}|{c}|{m}|{}", f.iter().map(|(p, x)| format!("{p}:{x}|")).collect::<String>())),
    ]) {
        if let Some(p) = parse_signed(&s) {
            let again = format!("{}{}{}", signed_prefix(&p.agreement.job_hash, p.agreement.exit_code), p.cpu, signed_suffix(p.memory_mb, &p.agreement.outputs));
            prop_assert_eq!(again, s);
        }
    }

    /// What a worker signs parses back to the same parts when no path holds `|`.
    #[test]
    fn signed_strings_round_trip(
        h in hex64(), exit in any::<i64>(), micros in any::<u32>(), mem in any::<u64>(),
        files in proptest::collection::btree_map(clean_path(), hex64(), 0..6),
    ) {
        let s = signed_string(&h, exit, micros as f64 / 1e6, mem, &files);
        let p = parse_signed(&s).expect("a worker's own signed string parses");
        prop_assert_eq!(p.agreement.job_hash, h);
        prop_assert_eq!(p.agreement.exit_code, exit);
        prop_assert_eq!(p.memory_mb, mem);
        prop_assert_eq!(p.agreement.outputs, files);
        prop_assert_eq!(p.cpu, format_g(micros as f64 / 1e6));
    }

    /// A worker signs what it reports, whatever the paths. The SDK accepts the signature
    /// only when the signed string means exactly the status it came with: same job hash,
    /// exit code and (path, sha256) set. Honest statuses (clean paths) always verify.
    #[test]
    fn accepted_signatures_mean_what_the_status_says(
        h in prop_oneof![4 => hex64(), 1 => hostile_string()],
        exit in any::<i64>(),
        micros in 0u64..100_000_000,
        mem in any::<u64>(),
        clean in any::<bool>(),
        clean_files in proptest::collection::btree_map(clean_path(), hex64(), 0..4),
        evil_files in proptest::collection::btree_map(evil_path(), prop_oneof![4 => hex64(), 1 => hostile_string()], 0..4),
    ) {
        let files = if clean { clean_files } else { evil_files };
        let (status, signed) = signed_status(&h, exit, micros, mem, &files);
        let s = WorkerStatus::parse(status.to_string().as_bytes()).unwrap();
        let honest = clean && h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
        match verify_status_signature(&s, Some(micros as f64 / 1e6)) {
            Ok(check) => {
                prop_assert_eq!(&check.signed, &signed);
                let p = parse_signed(&check.signed);
                prop_assert!(p.is_some(), "accepted a signed string that does not parse: {:?}", check.signed);
                let p = p.unwrap();
                prop_assert_eq!((p.agreement.job_hash, p.agreement.exit_code, p.agreement.outputs), status_agreement(&s));
                prop_assert_eq!(p.memory_mb, s.execution_metadata.memory_peak_mb);
            }
            Err(e) => {
                prop_assert_eq!(e.code, ErrorCode::VerificationFailed);
                prop_assert!(!honest, "an honest status was refused: {}", e.message);
            }
        }
    }

    #[test]
    fn receipt_parser_never_panics(text in prop_oneof![json_text(), any::<String>()]) {
        if let Ok(r) = Receipt::parse(&text) {
            let report = verify_receipt(&r, &ProofInputs::default());
            prop_assert_eq!(report.valid, report.checks.iter().all(|c| c.ok));
        }
    }

    /// Receipts with hostile fields: JSON round trip; a valid one is signed by its worker
    /// id and its signed string means exactly its outputs, job hash and exit code.
    #[test]
    fn receipts_round_trip_and_never_lie(
        h in prop_oneof![hex64(), hostile_string()],
        exit in any::<i64>(),
        micros in any::<u32>(),
        mem in any::<u64>(),
        files in proptest::collection::btree_map(evil_path(), prop_oneof![hex64(), hostile_string()], 0..4),
        claimed in proptest::collection::btree_map(evil_path(), hex64(), 0..3),
        lie in any::<bool>(),
        worker in hostile_string(),
        allow in proptest::option::of(proptest::collection::vec(hostile_string(), 0..2)),
        given in proptest::collection::vec((evil_path(), proptest::collection::vec(any::<u8>(), 0..8)), 0..3),
    ) {
        let (key, id) = signer();
        let signed = signed_string(&h, exit, micros as f64 / 1e6, mem, &files);
        let r = Receipt {
            version: 1,
            worker,
            job_id: "j".into(),
            worker_id: id.clone(),
            signature: B64.encode(key.sign(signed.as_bytes()).to_bytes()),
            signed_string: signed,
            job_hash: h,
            exit_code: exit,
            outputs: if lie { claimed } else { files.clone() },
        };
        let back = Receipt::parse(&r.to_json());
        prop_assert_eq!(back.as_ref().ok(), Some(&r));
        let report = verify_receipt(&r, &ProofInputs { allow, job_hash: None, files: given });
        if report.valid {
            prop_assert!(signature_ok(&r.worker_id, &r.signature, &r.signed_string));
            let p = parse_signed(&r.signed_string).unwrap();
            prop_assert_eq!(&p.agreement.job_hash, &r.job_hash);
            prop_assert_eq!(p.agreement.exit_code, r.exit_code);
            prop_assert_eq!(&p.agreement.outputs, &r.outputs);
        }
    }
}

proptest! {
    #![proptest_config(cfg(32))]

    /// Without the exact CPU the signature check searches 10,001 figures around the
    /// reported one, whatever that is (`1e308`, negative, ...), and still finds an honest one.
    #[test]
    fn candidate_search_survives_any_cpu(
        micros in prop_oneof![0u64..10_000_000, Just(0u64)],
        reported in prop_oneof![Just(None), any::<f64>().prop_filter("json", |x| x.is_finite()).prop_map(Some)],
    ) {
        let h = "a".repeat(64);
        let files: BTreeMap<String, String> = [("out.txt".to_string(), "b".repeat(64))].into();
        let (mut status, _) = signed_status(&h, 0, micros, 7, &files);
        if let Some(r) = reported {
            status["execution_metadata"]["cpu_seconds"] = json!(r);
        }
        let s = WorkerStatus::parse(status.to_string().as_bytes()).unwrap();
        match verify_status_signature(&s, None) {
            Ok(c) => prop_assert_eq!(c.cpu, format_g(micros as f64 / 1e6)),
            Err(e) => {
                prop_assert_eq!(e.code, ErrorCode::VerificationFailed);
                prop_assert!(reported.is_some(), "an honest status with its own CPU figure was refused");
            }
        }
    }
}

#[test]
fn cpu_candidates_survive_extreme_figures() {
    for x in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e308, -1e308, 9.2e12, -0.0, f64::MIN_POSITIVE, 5e-324, i64::MAX as f64 / 1e6] {
        let c = cpu_candidates(x);
        assert!(c.len() <= 10_001, "{x}");
    }
}

// ---------------------------------------------------------------------------------------
// Hashes and C's %g

extern "C" {
    fn snprintf(buf: *mut std::os::raw::c_char, n: usize, fmt: *const std::os::raw::c_char, ...) -> std::os::raw::c_int;
}

/// C's own `printf("%g", x)`, the figure the reference worker signs.
fn c_format_g(x: f64) -> String {
    let mut buf = [0 as std::os::raw::c_char; 64];
    // SAFETY: a 64-byte buffer holds any %g of a double; the format is NUL-terminated.
    let n = unsafe { snprintf(buf.as_mut_ptr(), buf.len(), c"%g".as_ptr(), x) };
    let bytes: Vec<u8> = buf[..n as usize].iter().map(|&c| c as u8).collect();
    String::from_utf8(bytes).unwrap()
}

proptest! {
    #![proptest_config(cfg(1))]

    #[test]
    fn format_g_is_c_printf(x in prop_oneof![
        any::<f64>(),
        (0u64..10_000_000_000).prop_map(|m| m as f64 / 1e6),
        prop::sample::select(vec![1e308, -1e308, f64::MAX, f64::MIN, f64::MIN_POSITIVE, 5e-324, 999999.5, 9.999995, 0.00001, 1e-5, 123456.5, 0.5, -0.0]),
    ]) {
        let ours = format_g(x);
        if x.is_nan() {
            prop_assert_eq!(ours, "nan");
        } else if x == 0.0 {
            prop_assert_eq!(ours, "0"); // C prints "-0" for -0.0; CPU time is never negative
        } else {
            prop_assert_eq!(ours, c_format_g(x));
        }
    }

    #[test]
    fn job_hash_takes_anything(e in hostile_string(), i in hostile_string(), env in hostile_string(), args in proptest::collection::vec(hostile_string(), 0..4), c in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64))) {
        let h = job_hash(&e, &i, &env, &args, c.as_deref());
        prop_assert_eq!(h.len(), 64);
        prop_assert_eq!(sha256_hex(h.as_bytes()).len(), 64);
    }
}

// ---------------------------------------------------------------------------------------
// The tar.gz reader

/// A raw tar header, written by hand so it can say what the `tar` crate refuses to write.
fn raw_header(name: &[u8], kind: u8, size_field: &[u8; 12], good_checksum: bool, prefix: &[u8]) -> [u8; 512] {
    let mut h = [0u8; 512];
    let n = name.len().min(100);
    h[..n].copy_from_slice(&name[..n]);
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(size_field);
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = kind;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    let p = prefix.len().min(155);
    h[345..345 + p].copy_from_slice(&prefix[..p]);
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| b as u32).sum::<u32>() + if good_checksum { 0 } else { 1 };
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

fn octal_size(n: u64) -> [u8; 12] {
    let mut f = [0u8; 12];
    let s = format!("{:011o}\0", n & 0o77777777777);
    f.copy_from_slice(s.as_bytes());
    f
}

/// GNU base-256 size: any u64, beyond what 11 octal digits hold.
fn binary_size(n: u64) -> [u8; 12] {
    let mut f = [0u8; 12];
    f[0] = 0x80;
    f[4..].copy_from_slice(&n.to_be_bytes());
    f
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// One hostile tar entry: header (maybe with pax/GNU long-name records before it) and data.
#[derive(Debug, Clone)]
struct EvilEntry {
    name: Vec<u8>,
    prefix: Vec<u8>,
    kind: u8,
    size: [u8; 12],
    data_len: usize,
    good_checksum: bool,
    pax: Option<String>,
    long_name: Option<Vec<u8>>,
}

fn evil_entry() -> impl Strategy<Value = EvilEntry> {
    let name = prop_oneof![
        "[a-z]{1,8}(/[a-z]{1,8}){0,2}".prop_map(String::into_bytes),
        prop::sample::select(vec![
            "../evil", "/etc/passwd", "a/../../b", "./ok", "./", ".", "..", "a//b", "C:x", "a\\b", "a/./b", "", "repo/", "repo/x/", "pax_global_header",
            "././@LongLink", "x\u{0}y",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        proptest::collection::vec(any::<u8>(), 0..100),
    ];
    let size = prop_oneof![
        (0u64..2048).prop_map(octal_size),
        Just(octal_size(0o77777777777)),
        Just(octal_size(MAX_UNPACKED_BYTES)),
        Just(octal_size(MAX_UNPACKED_BYTES - 1)),
        any::<u64>().prop_map(binary_size),
        Just(binary_size(u64::MAX)),
        Just(binary_size(u64::MAX - MAX_UNPACKED_BYTES + 2)),
        proptest::collection::vec(any::<u8>(), 12).prop_map(|v| v.try_into().unwrap()),
    ];
    let pax = prop_oneof![
        3 => Just(None),
        1 => prop::sample::select(vec![
            "path=../escape", "path=/abs", "path=ok.txt", "size=99999999999999999999", "size=18446744073709551615", "size=536870911", "size=-1",
            "linkpath=/etc", "GNU.sparse.size=99999999999", "GNU.sparse.map=0,1,2", "path=",
        ])
        .prop_map(|r| Some(r.to_string())),
    ];
    (
        name,
        prop_oneof![3 => Just(vec![]), 1 => prop::sample::select(vec!["..", "/abs", "a", "repo"]).prop_map(|s| s.as_bytes().to_vec())],
        prop_oneof![
            6 => prop::sample::select(vec![b'0', b'\0', b'5', b'1', b'2', b'3', b'4', b'6', b'7', b'g', b'x', b'L', b'K', b'S', b'D', b'M', b'V']),
            1 => any::<u8>(),
        ],
        size,
        0usize..1500,
        prop_oneof![9 => Just(true), 1 => Just(false)],
        pax,
        prop_oneof![4 => Just(None), 1 => prop::sample::select(vec!["../long", "ok/long", "/abs/long"]).prop_map(|s| Some(s.as_bytes().to_vec()))],
    )
        .prop_map(|(name, prefix, kind, size, data_len, good_checksum, pax, long_name)| EvilEntry { name, prefix, kind, size, data_len, good_checksum, pax, long_name })
}

/// `"<len> <key>=<value>\n"`, where `len` counts the whole record, its own digits included.
fn pax_record(kv: &str) -> String {
    let body = format!(" {kv}\n");
    let mut len = body.len() + 1;
    while (len.to_string().len() + body.len()) != len {
        len += 1;
    }
    format!("{len}{body}")
}

fn evil_tar(entries: &[EvilEntry], end_marker: bool) -> Vec<u8> {
    let mut t = Vec::new();
    let pad = |t: &mut Vec<u8>| t.resize(t.len().div_ceil(512) * 512, 0);
    for e in entries {
        if let Some(record) = &e.pax {
            let line = pax_record(record);
            t.extend_from_slice(&raw_header(b"PaxHeader", b'x', &octal_size(line.len() as u64), true, b""));
            t.extend_from_slice(line.as_bytes());
            pad(&mut t);
        }
        if let Some(long) = &e.long_name {
            t.extend_from_slice(&raw_header(b"././@LongLink", b'L', &octal_size(long.len() as u64 + 1), true, b""));
            t.extend_from_slice(long);
            t.push(0);
            pad(&mut t);
        }
        t.extend_from_slice(&raw_header(&e.name, e.kind, &e.size, e.good_checksum, &e.prefix));
        t.extend((0..e.data_len).map(|i| (i % 251) as u8));
        pad(&mut t);
    }
    if end_marker {
        t.extend_from_slice(&[0u8; 1024]);
    }
    t
}

/// The most heap one unpack of a small hostile archive may hold: far below any declared size.
const UNPACK_HEAP_BOUND: usize = 8 * 1024 * 1024;

fn assert_unpack_is_safe(tgz: &[u8], strip: bool) -> Result<Option<Vec<(String, Vec<u8>)>>, TestCaseError> {
    let (r, peak) = peak_heap(|| unpack_tar_gz(tgz, strip));
    let data: usize = r.as_ref().map(|v| v.iter().map(|(_, b)| b.len()).sum()).unwrap_or(0);
    prop_assert!(peak <= UNPACK_HEAP_BOUND + 2 * data, "unpacking {} bytes held {} bytes of heap at once", tgz.len(), peak);
    match r {
        Ok(files) => {
            for (p, _) in &files {
                prop_assert!(check_relative_path(p).is_ok() || (strip && p.is_empty()), "unpacked an unsafe path {:?}", p);
            }
            Ok(Some(files))
        }
        Err(e) => {
            prop_assert_eq!(e.code, ErrorCode::Io);
            Ok(None)
        }
    }
}

proptest! {
    #![proptest_config(cfg(2))]

    #[test]
    fn tar_reader_takes_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048), gz in any::<bool>(), strip in any::<bool>()) {
        let input = if gz { gzip(&bytes) } else { bytes };
        assert_unpack_is_safe(&input, strip)?;
    }

    /// Entries with `..`, absolute paths, links, device files, pax and GNU records, huge
    /// or malformed declared sizes, bad checksums: refused or unpacked safely, in bounded memory.
    #[test]
    fn tar_reader_refuses_hostile_entries(entries in proptest::collection::vec(evil_entry(), 1..4), end in any::<bool>(), strip in any::<bool>()) {
        let tgz = gzip(&evil_tar(&entries, end));
        assert_unpack_is_safe(&tgz, strip)?;
    }

    /// Real archives round-trip; any cut of one is refused, never taken as a smaller whole.
    #[test]
    fn tar_round_trip_and_truncation(
        files in proptest::collection::btree_map("[a-z]{1,6}(/[a-z]{1,6}){0,2}\\.(py|txt|sh)", proptest::collection::vec(any::<u8>(), 0..3000), 1..5),
        cut in any::<prop::sample::Index>(),
    ) {
        // A path that is a prefix directory of another cannot also be a file.
        let files: BTreeMap<String, Vec<u8>> = files.into_iter().collect();
        let tgz = pack_tar_gz(files.iter().map(|(p, b)| (p.as_str(), &b[..]))).unwrap();
        let back = assert_unpack_is_safe(&tgz, false)?.expect("a packed archive unpacks");
        prop_assert_eq!(back, files.clone().into_iter().collect::<Vec<_>>());
        let cut = cut.index(tgz.len());
        let r = assert_unpack_is_safe(&tgz[..cut], false)?;
        prop_assert!(r.is_none(), "an archive cut at {} of {} bytes was accepted", cut, tgz.len());
    }
}

// ---------------------------------------------------------------------------------------
// User input: builders and the other parsers of what a user types

fn hostile_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        prop::sample::select(vec![f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e308, -1e308, 0.0, -0.0, 5e-324, f64::MAX, 1e19, 1.8446744073709552e19]),
    ]
}

proptest! {
    #![proptest_config(cfg(2))]

    #[test]
    fn builders_take_hostile_input(
        code in proptest::collection::vec(any::<u8>(), 0..64),
        s in proptest::collection::vec(hostile_string(), 8),
        n in proptest::collection::vec(hostile_f64(), 3),
        env in proptest::collection::btree_map(hostile_string(), hostile_string(), 0..3),
        args in proptest::collection::vec(hostile_string(), 0..3),
    ) {
        let j = JobBuilder::new();
        let j = j.code(code.clone()).unwrap_or(j);
        let _ = j.script(&s[0]);
        let _ = j.repository(&s[1], Some(&s[2]));
        let _ = j.repository(&format!("https://github.com/{}", s[1]), None);
        let j = j.file(&s[3], s[4].as_bytes()).unwrap_or(j);
        let j = j.interpreter(&s[5]).unwrap_or(j);
        let j = j.entrypoint(&s[6]).unwrap_or(j);
        let j = j.memory(n[0]).unwrap_or(j);
        let j = j.timeout(n[1]).unwrap_or(j);
        let j = j.environment(env).unwrap_or(j);
        let j = j.args(args).unwrap_or(j);
        let j = j.outputs(vec![s[7].clone()]).unwrap_or(j);
        let j = j.consensus(&s[0]).unwrap_or(j);
        let j = j.payment(&s[1], Some(&s[2])).unwrap_or(j);
        let j = j.payment(&format!("{}", n[2]), None).unwrap_or(j);
        let spec = j.spec();
        for a in &spec.args {
            prop_assert!(!a.contains('"') && !a.contains('\\') && !a.contains('\0'));
        }
        for (p, _) in &spec.files {
            prop_assert!(check_relative_path(p).is_ok());
        }
        if let Some(t) = spec.timeout_secs {
            prop_assert!(t.is_finite() && t > 0.0);
        }
        // What plugins see goes back through the same checks.
        let d = j.describe();
        let again = j.apply(&d);
        prop_assert!(again.is_ok(), "{:?}", again.err());
        prop_assert_eq!(again.unwrap().describe(), d);
    }

    /// A plugin's rewritten description: any JSON.
    #[test]
    fn descriptions_from_plugins(text in json_text()) {
        if let Ok(d) = serde_json::from_str::<JobDescription>(&text) {
            let j = JobBuilder::new().code("print(1)").unwrap();
            if let Err(e) = j.apply(&d) {
                prop_assert_eq!(e.code, ErrorCode::InvalidArgument);
            }
        }
    }

    #[test]
    fn small_parsers_of_user_strings(s in prop_oneof![hostile_string(), "[0-9]{1,12}-of-[0-9]{1,12}", "[0-9.]{0,30}( ?[KMGT]i?B)?"], decimals in any::<u8>()) {
        let _ = ConsensusLevel::parse(&s).map(|c| (c.workers(), c.to_string()));
        let _ = parse_size_mb(&s);
        if let Ok(p) = PaymentRequest::new(&s, None) {
            let _ = sandrun_wasm::chain::escrow::parse_amount(&p.amount, decimals);
        }
        let _ = sandrun_wasm::chain::escrow::parse_amount(&s, decimals);
    }

    #[test]
    fn configs_from_any_json(text in json_text()) {
        if let Ok(c) = serde_json::from_str::<SandrunConfig>(&text) {
            let _ = c.validate();
            let _ = (c.endpoint(), c.default_timeout(), c.default_consensus());
        }
    }
}

// ---------------------------------------------------------------------------------------
// Regressions: each input below broke a property above before its fix.

/// `CPU=inf` (or any figure past i64 microseconds) from a `[DONE]` frame overflowed the
/// neighbour figures `micros ± 1` (a panic in debug builds, a wrong figure in release).
#[test]
fn regression_exact_cpu_beyond_i64_does_not_overflow() {
    let files = BTreeMap::new();
    let (status, _) = signed_status(&"a".repeat(64), 0, 1500, 7, &files);
    let s = WorkerStatus::parse(status.to_string().as_bytes()).unwrap();
    for cpu in [f64::INFINITY, f64::NEG_INFINITY, f64::NAN, 1e300, -1e300] {
        assert_eq!(verify_status_signature(&s, Some(cpu)).unwrap_err().code, ErrorCode::VerificationFailed, "{cpu}");
    }
    assert!(verify_status_signature(&s, Some(0.0015)).is_ok());
}

/// A reported `cpu_seconds` of `1e279` overflowed the candidate window (`center + d`).
#[test]
fn regression_candidate_window_saturates() {
    assert!(cpu_candidates(1.0192418669924778e279).len() <= 10_001);
    assert!(cpu_candidates(-1e300).is_empty());
}

/// `CPU=-7.7e-266s` (or `inf`, `NaN`) in a `[DONE]` frame was taken as the exact figure.
#[test]
fn regression_done_frame_cpu_must_be_a_time() {
    for f in ["[DONE] Job completed (exit=0, CPU=-7.736356998904862e-266s, Mem=8MB)", "[DONE] CPU=infs", "[DONE] CPU=NaNs", "[DONE] CPU=1e400s"] {
        assert_eq!(done_frame_cpu(f), None, "{f}");
    }
    assert_eq!(done_frame_cpu("[DONE] Job completed (exit=0, CPU=0.014217s, Mem=8MB)"), Some(0.014217));
}

/// A worker names one file `a:<h1>|b` with hash h2 and signs it. Its signed string is
/// byte for byte the one of two files `{a: h1, b: h2}`: the signature verified, so the
/// SDK accepted a result whose files differ from what the signed string means.
#[test]
fn regression_a_path_with_a_pipe_is_not_another_agreement() {
    let (h1, h2) = ("1".repeat(64), "2".repeat(64));
    let forged: BTreeMap<String, String> = [(format!("a:{h1}|b"), h2.clone())].into();
    let honest: BTreeMap<String, String> = [("a".to_string(), h1.clone()), ("b".to_string(), h2.clone())].into();
    let job = "c".repeat(64);
    assert_eq!(signed_string(&job, 0, 0.5, 7, &forged), signed_string(&job, 0, 0.5, 7, &honest));
    let (status, _) = signed_status(&job, 0, 500_000, 7, &forged);
    let s = WorkerStatus::parse(status.to_string().as_bytes()).unwrap();
    let e = verify_status_signature(&s, Some(0.5)).unwrap_err();
    assert_eq!(e.code, ErrorCode::VerificationFailed);
    assert!(e.message.contains("'|'"), "{}", e.message);
    // The same signed bytes with the files they do mean verify.
    let (status, _) = signed_status(&job, 0, 500_000, 7, &honest);
    let s = WorkerStatus::parse(status.to_string().as_bytes()).unwrap();
    let check = verify_status_signature(&s, Some(0.5)).unwrap();
    assert_eq!(parse_signed(&check.signed).unwrap().agreement.outputs, honest);
    // A sha256 field that smuggles a separator is refused the same way.
    let smuggled: BTreeMap<String, String> = [("a".to_string(), format!("{h1}|b:{h2}"))].into();
    let (status, _) = signed_status(&job, 0, 500_000, 7, &smuggled);
    let s = WorkerStatus::parse(status.to_string().as_bytes()).unwrap();
    assert!(verify_status_signature(&s, Some(0.5)).is_err());
}

/// `{"A": {"sha256": ""}}` signed: the signature verified though the signed string does
/// not even parse.
#[test]
fn regression_a_sha256_that_is_not_hex_is_refused() {
    let files: BTreeMap<String, String> = [("A".to_string(), String::new())].into();
    let (status, _) = signed_status(&"0".repeat(64), 0, 0, 0, &files);
    let s = WorkerStatus::parse(status.to_string().as_bytes()).unwrap();
    assert_eq!(verify_status_signature(&s, Some(0.0)).unwrap_err().code, ErrorCode::VerificationFailed);
}

/// `…|00|` parsed as memory 0: one meaning, several strings. Only the canonical form parses.
#[test]
fn regression_signed_strings_parse_only_in_canonical_form() {
    let (h, x, y) = ("0".repeat(64), "a".repeat(64), "b".repeat(64));
    assert!(parse_signed(&format!("{h}|0|0.5|7|a:{x}|b:{y}|")).is_some());
    for bad in [
        format!("{h}|0||00|"),
        format!("{h}|0|0.5|007|"),
        format!("{h}|+0|0.5|7|"),
        format!("{h}|0||7|"),
        format!("{h}|0|0.5|7|b:{y}|a:{x}|"),
        format!("{h}|0|0.5|7|a:{x}|a:{y}|"),
        format!("{h}|0|0.5|7|a:{}|", x.to_uppercase()),
        format!("{}|0|0.5|7|", h.replace('0', "g")),
    ] {
        assert!(parse_signed(&bad).is_none(), "{bad}");
    }
}

/// A 60-byte archive declaring a 512 MB - 1 entry made the reader reserve 512 MB.
#[test]
fn regression_declared_sizes_do_not_reserve_memory() {
    let e = EvilEntry { name: b"big.bin".to_vec(), prefix: vec![], kind: b'0', size: octal_size(MAX_UNPACKED_BYTES - 1), data_len: 16, good_checksum: true, pax: None, long_name: None };
    let tgz = gzip(&evil_tar(&[e], true));
    let (r, peak) = peak_heap(|| unpack_tar_gz(&tgz, false));
    assert_eq!(r.unwrap_err().code, ErrorCode::Io);
    assert!(peak < UNPACK_HEAP_BOUND, "held {peak} bytes");
}

/// Two entries whose base-256 sizes sum past 2^64: the `tar` crate refuses the second
/// ("size overflow") before the reader's own running total (which saturates) could wrap.
#[test]
fn huge_declared_sizes_are_refused() {
    let small = EvilEntry { name: b"a".to_vec(), prefix: vec![], kind: b'0', size: octal_size(16), data_len: 16, good_checksum: true, pax: None, long_name: None };
    let huge = EvilEntry { name: b"b".to_vec(), size: binary_size(u64::MAX - 14), ..small.clone() };
    let tgz = gzip(&evil_tar(&[small, huge], true));
    assert_eq!(unpack_tar_gz(&tgz, false).unwrap_err().code, ErrorCode::Io);
    let one = EvilEntry { name: b"c".to_vec(), size: binary_size(MAX_UNPACKED_BYTES + 1), ..small_entry() };
    let e = unpack_tar_gz(&gzip(&evil_tar(&[one], true)), false).unwrap_err();
    assert!(e.message.contains("more than"), "{e}");
}

fn small_entry() -> EvilEntry {
    EvilEntry { name: b"a".to_vec(), prefix: vec![], kind: b'0', size: octal_size(16), data_len: 16, good_checksum: true, pax: None, long_name: None }
}

/// An archive cut between two entries was read as a smaller, complete archive.
#[test]
fn regression_a_cut_archive_is_refused() {
    let a = vec![1u8; 3000];
    let tgz = pack_tar_gz(vec![("a.txt", &a[..]), ("b.txt", &b"x"[..])]).unwrap();
    for cut in [0, 10, tgz.len() / 2, tgz.len() - 9, tgz.len() - 1] {
        assert!(unpack_tar_gz(&tgz[..cut], false).is_err(), "cut at {cut} of {}", tgz.len());
    }
    assert_eq!(unpack_tar_gz(&tgz, false).unwrap().len(), 2);
}

/// `timeout(1e300)` passes the builder; the escrow deadline `now + timeout + 600`
/// overflowed (a panic in debug builds, a deadline in the past in release).
#[test]
fn regression_escrow_deadline_saturates() {
    use sandrun_wasm::chain::pay::escrow_deadline;
    assert_eq!(escrow_deadline(1_700_000_000, 60.0), 1_700_000_660);
    assert_eq!(escrow_deadline(1_700_000_000, 1e300), u64::MAX);
    assert_eq!(escrow_deadline(u64::MAX, 1.0), u64::MAX);
}
