//! `--ipfs`: a local IPFS node, `devnet/ipfs/server.mjs` run by Node (Helia's UnixFS from
//! npm over an in-memory blockstore), serving a Kubo RPC `/api/v0/add` and a trustless
//! gateway on loopback. `--ipfs-fault tamper` makes the gateway serve wrong bytes for every
//! block; `--ipfs-fault wrong-cid` makes `add` answer the CID of other bytes.
//!
//! The script is found relative to this crate (`devnet/ipfs/server.mjs` in the repo), or
//! at `$SANDRUN_IPFS_SCRIPT`; its npm packages come from the repo's `node_modules`
//! (`npm ci`, which `scripts/setup.sh` runs).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running IPFS node.
pub struct Ipfs {
    child: Child,
    pub api: String,
    pub gateway: String,
}

impl Ipfs {
    /// The `"ipfs"` object of the JSON line (key order fixed by hand).
    pub fn to_json(&self) -> String {
        format!("{{\"api\":\"{}\",\"gateway\":\"{}\"}}", self.api, self.gateway)
    }

    /// Stop the node.
    pub fn stop(&mut self) {
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// The node's script: `$SANDRUN_IPFS_SCRIPT`, else `devnet/ipfs/server.mjs` in the repo.
pub fn script() -> Result<PathBuf, String> {
    let p = std::env::var_os("SANDRUN_IPFS_SCRIPT").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("ipfs/server.mjs"));
    if !p.exists() {
        return Err(format!("--ipfs needs {} (the devnet's IPFS node script)", p.display()));
    }
    let modules = p.parent().and_then(|d| d.parent()).and_then(|d| d.parent()).map(|r| r.join("node_modules/@helia/unixfs"));
    if modules.is_some_and(|m| !m.exists()) {
        return Err("--ipfs needs the repo's npm packages (@helia/unixfs ...): run `npm ci` (scripts/setup.sh does)".into());
    }
    Ok(p)
}

/// Start the node on `api_port` and `gateway_port` (0: free ones) with `fault`.
pub async fn start(api_port: u16, gateway_port: u16, fault: Option<&str>) -> Result<Ipfs, String> {
    let script = script()?;
    let node = std::env::var_os("SANDRUN_NODE").unwrap_or_else(|| "node".into());
    let mut cmd = Command::new(&node);
    cmd.arg(&script)
        .args(["--api-port", &api_port.to_string(), "--gateway-port", &gateway_port.to_string()])
        .args(["--fault", fault.unwrap_or("none")])
        // stdin stays open while the devnet lives: the node exits when it closes.
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    crate::util::own_group_dies_with_parent(&mut cmd);
    let mut child = cmd.spawn().map_err(|e| format!("cannot start the IPFS node ({} {}): {e}", node.to_string_lossy(), script.display()))?;
    let stdout = child.stdout.take().ok_or("the IPFS node has no stdout")?;
    // Its first line says where it listens; read it off the runtime's threads.
    let line = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::task::spawn_blocking(move || {
            let mut l = String::new();
            BufReader::new(stdout).read_line(&mut l).map(|_| l)
        }),
    )
    .await;
    let line = match line {
        Ok(Ok(Ok(l))) if !l.trim().is_empty() => l,
        _ => {
            let _ = child.kill();
            let st = child.wait().map(|s| s.to_string()).unwrap_or_default();
            return Err(format!("the IPFS node did not start ({st}); its errors are above"));
        }
    };
    let v: serde_json::Value = serde_json::from_str(line.trim()).map_err(|e| format!("the IPFS node said {line:?}: {e}"))?;
    let (Some(api), Some(gateway)) = (v["api"].as_str(), v["gateway"].as_str()) else {
        return Err(format!("the IPFS node said {line:?}"));
    };
    Ok(Ipfs { api: api.to_string(), gateway: gateway.to_string(), child })
}
