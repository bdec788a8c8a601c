//! The core compiled to wasm32 and run by wasm-bindgen-test (in Node): the same checks
//! as natively, on the code users actually run.
#![cfg(target_arch = "wasm32")]

use sandrun_wasm::api::wire::WorkerStatus;
use sandrun_wasm::job::archive::{pack_tar_gz, unpack_tar_gz};
use sandrun_wasm::proof::{job_hash, verify_status_signature};
use sandrun_wasm::types::ConsensusLevel;
use sandrun_wasm::JobBuilder;
use wasm_bindgen_test::wasm_bindgen_test;

const VECTORS: &str = include_str!("fixtures/signature-vectors.json");

#[wasm_bindgen_test]
fn reference_signatures_verify_in_wasm() {
    let v: serde_json::Value = serde_json::from_str(VECTORS).unwrap();
    for vector in v["vectors"].as_array().unwrap() {
        let status = WorkerStatus::parse(vector["status"].to_string().as_bytes()).unwrap();
        let check = verify_status_signature(&status, None).unwrap();
        assert_eq!(check.signed, vector["signed_string"].as_str().unwrap());
        let mut tampered = status.clone();
        tampered.execution_metadata.exit_code += 1;
        assert!(verify_status_signature(&tampered, None).is_err());
    }
}

#[wasm_bindgen_test]
fn worked_example_job_hash_in_wasm() {
    let h = job_hash("main.py", "python3", "", &[], Some(b"print(\"Hello from Sandrun!\")\n"));
    assert_eq!(h, "4132144496a5939f391660586dfdd2d9c1439011828c0534b66025896829b9ed");
}

#[wasm_bindgen_test]
fn archives_round_trip_in_wasm() {
    let a = pack_tar_gz(vec![("main.py", &b"print(1)"[..]), ("d/x.bin", &[0u8, 255, 7][..])]).unwrap();
    let back = unpack_tar_gz(&a, false).unwrap();
    assert_eq!(back[1], ("d/x.bin".to_string(), vec![0u8, 255, 7]));
}

#[wasm_bindgen_test]
fn builders_are_persistent_in_wasm() {
    let a = JobBuilder::new().code("print(1)").unwrap();
    let b = a.timeout(3.0).unwrap().consensus("2-of-3").unwrap();
    assert_eq!(a.spec().timeout_secs, None);
    assert_eq!(b.spec().consensus, Some(ConsensusLevel::Quorum { k: 2, n: 3 }));
    assert!(a.memory(0.0).is_err());
}
