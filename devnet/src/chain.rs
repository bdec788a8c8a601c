//! `--chain`: a local Ethereum (anvil, from the npm package `@foundry-rs/anvil`) with the
//! escrow and a test ERC-20 deployed, accounts funded, and one payout address per worker.
//!
//! Deployment uses anvil's unlocked dev accounts (`eth_sendTransaction`), so the devnet
//! needs no signing code of its own. The contracts are the committed artifacts in
//! `contracts/artifacts/`, embedded at build time.

use crate::http;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ESCROW: &str = include_str!("../../contracts/artifacts/SandrunEscrow.json");
const TOKEN: &str = include_str!("../../contracts/artifacts/TestToken.json");
/// `mint(address,uint256)` of the test token.
const MINT_SELECTOR: &str = "40c10f19";
/// Test tokens minted to every account: 1,000,000 with 18 decimals.
const MINT_AMOUNT_HEX: &str = "00000000000000000000000000000000000000000000d3c21bcecceda1000000";

/// A running chain.
pub struct Chain {
    pub child: Child,
    pub rpc: String,
    pub chain_id: u64,
    pub escrow: String,
    pub token: String,
    /// (address, private key) of every dev account, funded with ETH and test tokens.
    pub accounts: Vec<(String, String)>,
}

impl Chain {
    /// Stop anvil and anything it started.
    pub fn stop(&mut self) {
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }

    /// The `"chain"` object of the JSON line (key order fixed by hand).
    pub fn to_json(&self) -> String {
        let accounts: Vec<String> =
            self.accounts.iter().map(|(a, k)| format!("{{\"address\":\"{a}\",\"privateKey\":\"{k}\"}}")).collect();
        format!(
            "{{\"rpc\":\"{}\",\"chainId\":{},\"escrow\":\"{}\",\"token\":\"{}\",\"accounts\":[{}]}}",
            self.rpc,
            self.chain_id,
            self.escrow,
            self.token,
            accounts.join(",")
        )
    }
}

/// The real binary inside `@foundry-rs/anvil-<platform>` under `root`, if installed.
/// (`node_modules/.bin/anvil` is a Node wrapper that spawns it: killing the wrapper would
/// leave anvil running, so the devnet starts the binary itself.)
fn platform_binary(root: &Path) -> Option<PathBuf> {
    let dir = root.join("node_modules/@foundry-rs");
    std::fs::read_dir(dir).ok()?.flatten().map(|e| e.path().join("bin/anvil")).find(|p| p.exists())
}

/// The anvil binary: `--anvil PATH`, `$SANDRUN_ANVIL`, the one from the npm package
/// `@foundry-rs/anvil` in the repo (or the current directory), or `anvil` on PATH.
pub fn find_anvil(explicit: Option<PathBuf>) -> Result<PathBuf, String> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let candidates = [
        explicit,
        std::env::var_os("SANDRUN_ANVIL").map(PathBuf::from),
        platform_binary(&repo),
        platform_binary(Path::new(".")),
        Some(repo.join("node_modules/.bin/anvil")),
    ];
    if let Some(p) = candidates.into_iter().flatten().find(|p| p.exists()) {
        return Ok(p);
    }
    if Command::new("anvil").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok() {
        return Ok(PathBuf::from("anvil"));
    }
    Err("--chain needs anvil: run `npm install` in the repo (it comes with @foundry-rs/anvil), or pass --anvil PATH".into())
}

async fn rpc(addr: &str, method: &str, params: Value) -> Result<Value, String> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
    let (status, resp) = http::client_request(addr, "POST", "/", Some("application/json"), body.as_bytes(), Duration::from_secs(10))
        .await
        .map_err(|e| format!("{method}: {e}"))?;
    let v: Value = serde_json::from_slice(&resp).map_err(|e| format!("{method}: HTTP {status}, not JSON: {e}"))?;
    if let Some(err) = v.get("error") {
        return Err(format!("{method}: {err}"));
    }
    Ok(v["result"].clone())
}

/// Send from an unlocked dev account; returns the receipt (anvil mines at once).
async fn send(addr: &str, from: &str, to: Option<&str>, data: &str) -> Result<Value, String> {
    let mut tx = json!({"from": from, "data": data, "gas": "0x989680"});
    if let Some(to) = to {
        tx["to"] = json!(to);
    }
    let hash = rpc(addr, "eth_sendTransaction", json!([tx])).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = rpc(addr, "eth_getTransactionReceipt", json!([hash])).await?;
        if !r.is_null() {
            if r["status"] != "0x1" {
                return Err(format!("transaction {hash} reverted"));
            }
            return Ok(r);
        }
        if Instant::now() > deadline {
            return Err(format!("transaction {hash} was not mined"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn bytecode(artifact: &str) -> String {
    let v: Value = serde_json::from_str(artifact).expect("committed artifact is JSON");
    v["bytecode"].as_str().expect("artifact has bytecode").to_string()
}

/// ABI encoding of `(string, string)` for short strings (<= 32 bytes each).
fn encode_two_strings(a: &str, b: &str) -> String {
    let word = |n: usize| format!("{n:064x}");
    let padded = |s: &str| {
        let mut h: String = s.bytes().map(|b| format!("{b:02x}")).collect();
        while h.len() % 64 != 0 || h.is_empty() {
            h.push('0');
        }
        h
    };
    format!("{}{}{}{}{}{}", word(0x40), word(0x80), word(a.len()), padded(a), word(b.len()), padded(b))
}

/// Start anvil on `port` (0: a free one), deploy, fund. `accounts` dev accounts.
pub async fn start(anvil: &Path, data_dir: &Path, port: u16, accounts: usize) -> Result<Chain, String> {
    let port = if port == 0 {
        std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).map_err(|e| e.to_string())?
    } else {
        port
    };
    let config = data_dir.join("anvil.json");
    let _ = std::fs::remove_file(&config);
    let mut cmd = Command::new(anvil);
    cmd.args(["--host", "127.0.0.1", "--port", &port.to_string(), "--accounts", &accounts.to_string(), "--silent"])
        .arg("--config-out")
        .arg(&config)
        // The JSON line must stay alone on stdout.
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    crate::util::own_group_dies_with_parent(&mut cmd);
    let mut child = cmd.spawn().map_err(|e| format!("cannot start anvil ({}): {e}", anvil.display()))?;
    let addr = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let chain_id = loop {
        if let Ok(v) = rpc(&addr, "eth_chainId", json!([])).await {
            break u64::from_str_radix(v.as_str().unwrap_or("0x0").trim_start_matches("0x"), 16).unwrap_or(0);
        }
        if let Ok(Some(st)) = child.try_wait() {
            return Err(format!("anvil exited during startup: {st}"));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err(format!("anvil did not answer on {addr}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // anvil may answer RPC before it has written its config file (seen under load): wait
    // for a complete, parseable file within the same deadline.
    let cfg: Value = loop {
        match std::fs::read(&config).map_err(|e| e.to_string()).and_then(|b| serde_json::from_slice::<Value>(&b).map_err(|e| e.to_string())) {
            Ok(v) => break v,
            Err(e) if Instant::now() > deadline => {
                let _ = child.kill();
                return Err(format!("anvil config: {e}"));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let addrs: Vec<String> = cfg["available_accounts"].as_array().into_iter().flatten().filter_map(|a| a.as_str().map(str::to_string)).collect();
    let keys: Vec<String> = cfg["private_keys"].as_array().into_iter().flatten().filter_map(|a| a.as_str().map(str::to_string)).collect();
    if addrs.is_empty() || addrs.len() != keys.len() {
        return Err("anvil's config lists no accounts".into());
    }
    let deployer = addrs[0].clone();
    let escrow = send(&addr, &deployer, None, &bytecode(ESCROW)).await?["contractAddress"].as_str().unwrap_or_default().to_string();
    let token_code = format!("{}{}", bytecode(TOKEN), encode_two_strings("Sandrun Test Token", "SRT"));
    let token = send(&addr, &deployer, None, &token_code).await?["contractAddress"].as_str().unwrap_or_default().to_string();
    for a in &addrs {
        let data = format!("0x{MINT_SELECTOR}{:0>64}{MINT_AMOUNT_HEX}", a.trim_start_matches("0x"));
        send(&addr, &deployer, Some(&token), &data).await?;
    }
    Ok(Chain { child, rpc: format!("http://{addr}"), chain_id, escrow, token, accounts: addrs.into_iter().zip(keys).collect() })
}

#[cfg(test)]
mod tests {
    #[test]
    fn encodes_constructor_strings() {
        let e = super::encode_two_strings("ab", "c");
        assert_eq!(e.len(), 64 * 6);
        assert!(e.starts_with(&format!("{:064x}{:064x}{:064x}6162", 0x40, 0x80, 2)));
    }
}
