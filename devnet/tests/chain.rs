//! `--chain`: anvil with the escrow and test token deployed, accounts funded, payouts
//! assigned and registered. Needs `npm install` (anvil comes from @foundry-rs/anvil).

mod support;
use support::*;

fn rpc(addr: &str, method: &str, params: serde_json::Value) -> serde_json::Value {
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
    // anvil keeps connections alive unless told otherwise; the support client reads to EOF.
    let r = request(addr, "POST", "/", &[("Content-Type", "application/json"), ("Connection", "close")], body.as_bytes()).json();
    assert!(r.get("error").is_none(), "{method}: {r}");
    r["result"].clone()
}

#[test]
fn chain_is_deployed_funded_and_payouts_are_registered() {
    let mut d = Devnet::start(&["--workers", "2", "--chain"]);
    let v: serde_json::Value = serde_json::from_str(d.line.trim()).unwrap();
    let c = &v["chain"];
    assert_eq!(c["chainId"], 31337);
    let rpc_addr = c["rpc"].as_str().unwrap().strip_prefix("http://").unwrap().to_string();
    assert_eq!(rpc(&rpc_addr, "eth_chainId", serde_json::json!([])), "0x7a69");
    for contract in ["escrow", "token"] {
        let code = rpc(&rpc_addr, "eth_getCode", serde_json::json!([c[contract], "latest"]));
        assert!(code.as_str().unwrap().len() > 100, "{contract} has code");
    }
    let accounts = c["accounts"].as_array().unwrap();
    assert!(accounts.len() >= 10);
    assert!(accounts.iter().all(|a| a["privateKey"].as_str().unwrap().len() == 66));
    // balanceOf(account 0) on the token: 1,000,000 tokens of 18 decimals.
    let a0 = accounts[0]["address"].as_str().unwrap().trim_start_matches("0x");
    let call = serde_json::json!([{"to": c["token"], "data": format!("0x70a08231{a0:0>64}")}, "latest"]);
    let bal = rpc(&rpc_addr, "eth_call", call);
    assert_eq!(u128::from_str_radix(bal.as_str().unwrap().trim_start_matches("0x").trim_start_matches('0'), 16).unwrap(), 1_000_000u128 * 10u128.pow(18));
    // Each worker has a payout address in the JSON line and in its registry entry.
    let nodes = get(&d.registry, "/nodes").json();
    for (i, w) in v["workers"].as_array().unwrap().iter().enumerate() {
        let payout = w["payout"].as_str().unwrap();
        assert!(payout.starts_with("0x") && payout.len() == 42);
        let node = nodes["nodes"].as_array().unwrap().iter().find(|n| n["capabilities"]["sandrun_endpoint"] == w["url"]).unwrap();
        assert_eq!(node["capabilities"]["payout"], payout, "worker {i}");
        // Bound by the worker's own key for this chain (devnet registry extension).
        assert_eq!(node["capabilities"]["payout_chain_id"], 31337, "worker {i}");
        let sig = node["capabilities"]["payout_signature"].as_str().unwrap();
        assert!(verify_payout(w["worker_id"].as_str().unwrap(), 31337, payout, sig), "worker {i}");
        assert_ne!(payout, accounts[0]["address"], "payouts are not the payer's account");
    }
    assert!(d.sigterm().success());
    // anvil went down with the devnet.
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(std::net::TcpStream::connect(&rpc_addr).is_err(), "anvil stopped with the devnet");
}

#[test]
fn without_chain_the_line_is_unchanged() {
    let mut d = Devnet::start(&["--workers", "1"]);
    let v: serde_json::Value = serde_json::from_str(d.line.trim()).unwrap();
    assert!(v.get("chain").is_none() && v["workers"][0].get("payout").is_none());
    assert!(d.sigterm().success());
}
