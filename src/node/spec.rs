//! What a node is before it registers: its capabilities, prices, region and payout
//! ([`NodeSpec`]), and the `capabilities` object sent to the registry's `/register`
//! (the reference fields plus the documented extensions).

use crate::error::{Error, Result};
use crate::types::parse_size_mb;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

#[cfg(target_arch = "wasm32")]
use tsify::Tsify;

/// Interpreters advertised when `interpreters()` was not called.
pub const DEFAULT_INTERPRETERS: [&str; 3] = ["python3", "node", "bash"];

/// A size: `'24GB'`, `'1TB'`, `'512MB'`, or a number of GB.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[serde(untagged)]
pub enum NodeSize {
    Text(String),
    Gigabytes(f64),
}

impl NodeSize {
    /// Gigabytes, or `INVALID_ARGUMENT` naming `what`.
    pub fn gigabytes(&self, what: &str) -> Result<f64> {
        let gb = match self {
            NodeSize::Gigabytes(n) => *n,
            NodeSize::Text(s) => parse_size_mb(s).map_err(|e| Error::invalid(format!("{what}: {}", e.message)))? / 1024.0,
        };
        if !(gb.is_finite() && gb > 0.0) {
            return Err(Error::invalid(format!("{what} must be a positive size like '24GB' or a number of GB, got {gb}")));
        }
        Ok(gb)
    }
}

/// The node's GPUs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeGpu {
    /// e.g. `'rtx4090'`, `'a100'`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Memory per GPU: `'24GB'` or a number of GB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional, type = "string | number"))]
    pub memory: Option<NodeSize>,
    /// How many (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub count: Option<f64>,
}

/// The node's CPUs and memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeCpu {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub cores: Option<f64>,
    /// Host memory: `'64GB'` or a number of GB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional, type = "string | number"))]
    pub memory: Option<NodeSize>,
}

/// What a node offers (`NodeBuilder.capabilities()`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeCapabilities {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub gpu: Option<NodeGpu>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub cpu: Option<NodeCpu>,
    /// Disk: `'1TB'` or a number of GB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional, type = "string | number"))]
    pub storage: Option<NodeSize>,
}

/// Prices per hour (`NodeBuilder.pricing()`): `'0.5/hour'` or a number per hour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodePricing {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional, type = "string | number"))]
    pub gpu: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional, type = "string | number"))]
    pub cpu: Option<Value>,
}

/// A whole number when it is one, so `24.0` is sent as `24`.
fn num(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 9.0e15 {
        json!(x as i64)
    } else {
        json!(x)
    }
}

/// `'0.5/hour'`, `'0.5/h'`, `'0.5'` or `0.5` -> the string sent (`'0.5/hour'` form).
fn price(v: &Value, what: &str) -> Result<Value> {
    let bad = || Error::invalid(format!("pricing(): {what} {v} is not like '0.5/hour' or 0.5 (per hour)"));
    let n = match v {
        Value::Number(n) => return n.as_f64().filter(|n| n.is_finite() && *n >= 0.0).map(|n| json!(format!("{n}/hour"))).ok_or_else(bad),
        Value::String(s) => s.trim(),
        _ => return Err(bad()),
    };
    let (amount, unit) = n.split_once('/').unwrap_or((n, "hour"));
    let amount: f64 = amount.trim().parse().map_err(|_| bad())?;
    let per_hour = ["hour", "hr", "h"].contains(&unit.trim().to_ascii_lowercase().as_str());
    if !(amount.is_finite() && amount >= 0.0 && per_hour) {
        return Err(bad());
    }
    Ok(json!(if n.contains('/') { n.to_string() } else { format!("{n}/hour") }))
}

pub(super) fn check_url(what: &str, url: &str) -> Result<String> {
    let ok = (url.starts_with("http://") || url.starts_with("https://")) && url.len() > "https://".len() && !url.contains(char::is_whitespace);
    if !ok {
        return Err(Error::invalid(format!("{what} must be an http:// or https:// URL, got {url:?}")));
    }
    Ok(url.trim_end_matches('/').to_string())
}

/// What binds a payout address to the worker (`payout(address, { chainId, signature })`):
/// the worker's own Ed25519 signature over
/// `sandrun-payout-v1|<chainId>|<address, lowercase>` ([`crate::chain::payout_message`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PayoutBinding {
    /// The chain the payments are made on (e.g. 1 for Ethereum mainnet, 31337 for anvil).
    pub chain_id: u64,
    /// Standard base64 of the worker's 64-byte Ed25519 signature.
    pub signature: String,
}

/// A payout address with its binding.
#[derive(Debug, Clone, PartialEq)]
pub struct Payout {
    pub address: String,
    pub chain_id: u64,
    pub signature: String,
}

/// How to make a payout signature, for error messages.
pub(super) fn payout_how_to(address: &str, chain_id: u64) -> String {
    format!(
        "sign the exact text {:?} with the worker's Ed25519 key (the key whose public half the worker shows as worker_id at /health) \
         and pass the standard base64 of the 64-byte signature: payout(address, {{ chainId, signature }}). \
         With the key in PEM: printf '%s' '<text>' > msg && openssl pkeyutl -sign -rawin -inkey key.pem -in msg | base64 -w0",
        crate::chain::payout_message(chain_id, address)
    )
}

/// Everything a node is, before `register()`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NodeSpec {
    pub capabilities: NodeCapabilities,
    pub region: Option<String>,
    pub pricing: Option<NodePricing>,
    pub payout: Option<Payout>,
    /// The Sandrun worker URL; `None`: the client's `apiEndpoint`.
    pub endpoint: Option<String>,
    pub interpreters: Option<Vec<String>>,
}

impl NodeSpec {
    /// The `capabilities` object sent to `/register`, less `worker_id` and
    /// `sandrun_endpoint` (known at registration).
    pub fn capabilities_json(&self) -> Result<Value> {
        let c = &self.capabilities;
        let gpu = match &c.gpu {
            None => Value::Null,
            Some(g) => json!({
                "type": g.kind,
                "memory": match &g.memory { Some(m) => num(m.gigabytes("capabilities(): gpu.memory")?), None => Value::Null },
                "count": num(g.count.unwrap_or(1.0)),
            }),
        };
        let cpu = c.cpu.clone().unwrap_or_default();
        let memory_gb = match &cpu.memory {
            Some(m) => num(m.gigabytes("capabilities(): cpu.memory")?),
            None => Value::Null,
        };
        let storage = match &c.storage {
            Some(s) => num(s.gigabytes("capabilities(): storage")?),
            None => Value::Null,
        };
        let interpreters: Vec<String> = self.interpreters.clone().unwrap_or_else(|| DEFAULT_INTERPRETERS.iter().map(|s| s.to_string()).collect());
        let pricing = match &self.pricing {
            None => Value::Null,
            Some(p) => {
                let mut m = serde_json::Map::new();
                if let Some(v) = &p.cpu {
                    m.insert("cpu".into(), price(v, "cpu")?);
                }
                if let Some(v) = &p.gpu {
                    m.insert("gpu".into(), price(v, "gpu")?);
                }
                Value::Object(m)
            }
        };
        Ok(json!({
            "cpu_cores": cpu.cores.map(num).unwrap_or(Value::Null),
            "memory_gb": memory_gb,
            "gpu": gpu,
            "interpreters": interpreters,
            "storage": storage,
            "region": self.region,
            "pricing": pricing,
            "payout": self.payout.as_ref().map(|p| p.address.clone()),
            "payout_chain_id": self.payout.as_ref().map(|p| p.chain_id),
            "payout_signature": self.payout.as_ref().map(|p| p.signature.clone()),
        }))
    }
}
