//! `SandrunConfig` and its defaults.

use crate::error::{Error, Result};
use crate::types::ConsensusLevel;
use serde::{Deserialize, Serialize};

#[cfg(target_arch = "wasm32")]
use tsify::Tsify;

/// Where the SDK sends jobs when no `apiEndpoint` is configured: the first worker of
/// a local devnet started with `--port-base 7700` (what `npm start` does).
pub const DEFAULT_API_ENDPOINT: &str = "http://127.0.0.1:7700";
/// Job timeout when neither the job nor `defaults.timeout` says (the reference's 300 s).
pub const DEFAULT_TIMEOUT_SECS: f64 = 300.0;

/// Per-client defaults applied where a builder is silent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[serde(rename_all = "camelCase")]
pub struct Defaults {
    /// Job timeout in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub timeout: Option<f64>,
    /// How many times a safe operation is retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub retries: Option<u32>,
    /// Consensus level of jobs that don't set one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional, type = "ConsensusLevel"))]
    pub consensus: Option<String>,
}

/// Credentials for endpoints that accept them (brokers, gateways, proxies).
/// Never sent to reference workers from a browser: they answer no CORS preflight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[serde(rename_all = "camelCase")]
pub struct AuthConfig {
    /// Bearer token (`Authorization: Bearer ...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub token: Option<String>,
    /// API key (`X-API-Key: ...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub api_key: Option<String>,
}

/// The escrow deployment payments go through.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[serde(rename_all = "camelCase")]
pub struct EscrowConfig {
    pub address: String,
    pub chain_id: u64,
    /// Seconds to wait for each payment transaction's receipt (open, approve, release,
    /// refund); default 120. On a timeout the error's `details` carry the escrow key and the
    /// transaction hashes, and `sandrun.refund(key)` settles it later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub receipt_timeout: Option<f64>,
}

/// The SDK's configuration (spec: `SandrunConfig`). Every field is optional; `configure()`
/// merges a partial config over the current one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SandrunConfig {
    /// A Sandrun worker's base URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub api_endpoint: Option<String>,
    /// The registry (broker) URL used by `pool().discover()` and `node()`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub registry_endpoint: Option<String>,
    /// A trustless IPFS gateway (`/ipfs/{cid}?format=car|raw`): `ipfs://` inputs and
    /// `ipfs().cat/ls/get` read through it, every block checked against its CID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub ipfs_gateway: Option<String>,
    /// A Kubo RPC endpoint (`/api/v0/add`) that `ipfs().add()` and `publish()` add
    /// through (SDK extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub ipfs_api: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub authentication: Option<AuthConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub defaults: Option<Defaults>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub escrow: Option<EscrowConfig>,
    /// Worker keys (base64 Ed25519, as `/health` shows them) trusted to sign results. Set,
    /// a result signed by any other key fails verification and pools take only these
    /// workers; k-of-n then means k distinct operators you chose. Unset, any key counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional))]
    pub allowed_workers: Option<Vec<String>>,
    /// The wallet (EIP-1193 provider) payments go through; held by the client, not
    /// serialized (see the facade).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(optional, type = "Web3Provider"))]
    pub web3_provider: Option<serde_json::Value>,
}

fn check_url(field: &str, url: &Option<String>) -> Result<()> {
    if let Some(u) = url {
        let ok = (u.starts_with("http://") || u.starts_with("https://")) && u.len() > "http://".len();
        if !ok {
            return Err(Error::invalid(format!("{field} must be an http:// or https:// URL, got {u:?}")));
        }
    }
    Ok(())
}

impl SandrunConfig {
    /// Check every field now, so a typo fails at `create()`/`configure()`, not at submit.
    pub fn validate(&self) -> Result<()> {
        check_url("apiEndpoint", &self.api_endpoint)?;
        check_url("registryEndpoint", &self.registry_endpoint)?;
        check_url("ipfsGateway", &self.ipfs_gateway)?;
        check_url("ipfsApi", &self.ipfs_api)?;
        if let Some(d) = &self.defaults {
            if let Some(t) = d.timeout {
                if !(t.is_finite() && t > 0.0) {
                    return Err(Error::invalid(format!("defaults.timeout must be a positive number of seconds, got {t}")));
                }
            }
            if let Some(c) = &d.consensus {
                ConsensusLevel::parse(c)?;
            }
        }
        if let Some(keys) = &self.allowed_workers {
            crate::proof::verify::check_worker_keys("allowedWorkers", keys)?;
        }
        if let Some(e) = &self.escrow {
            let a = &e.address;
            if !(a.len() == 42 && a.starts_with("0x") && a[2..].chars().all(|c| c.is_ascii_hexdigit())) {
                return Err(Error::invalid(format!("escrow.address must be 0x + 40 hex digits, got {a:?}")));
            }
            if let Some(t) = e.receipt_timeout {
                if !(t.is_finite() && t > 0.0) {
                    return Err(Error::invalid(format!("escrow.receiptTimeout must be a positive number of seconds, got {t}")));
                }
            }
        }
        Ok(())
    }

    /// `self` with every field set in `partial` replaced (defaults merged field by field).
    pub fn merged(&self, partial: &SandrunConfig) -> SandrunConfig {
        let defaults = match (&self.defaults, &partial.defaults) {
            (Some(a), Some(b)) => Some(Defaults {
                timeout: b.timeout.or(a.timeout),
                retries: b.retries.or(a.retries),
                consensus: b.consensus.clone().or_else(|| a.consensus.clone()),
            }),
            (a, b) => b.clone().or_else(|| a.clone()),
        };
        SandrunConfig {
            api_endpoint: partial.api_endpoint.clone().or_else(|| self.api_endpoint.clone()),
            registry_endpoint: partial.registry_endpoint.clone().or_else(|| self.registry_endpoint.clone()),
            ipfs_gateway: partial.ipfs_gateway.clone().or_else(|| self.ipfs_gateway.clone()),
            ipfs_api: partial.ipfs_api.clone().or_else(|| self.ipfs_api.clone()),
            authentication: partial.authentication.clone().or_else(|| self.authentication.clone()),
            defaults,
            escrow: partial.escrow.clone().or_else(|| self.escrow.clone()),
            allowed_workers: partial.allowed_workers.clone().or_else(|| self.allowed_workers.clone()),
            web3_provider: None,
        }
    }

    /// The worker URL jobs go to, without a trailing slash.
    pub fn endpoint(&self) -> String {
        self.api_endpoint.as_deref().unwrap_or(DEFAULT_API_ENDPOINT).trim_end_matches('/').to_string()
    }

    pub fn default_timeout(&self) -> f64 {
        self.defaults.as_ref().and_then(|d| d.timeout).unwrap_or(DEFAULT_TIMEOUT_SECS)
    }

    pub fn default_consensus(&self) -> ConsensusLevel {
        self.defaults
            .as_ref()
            .and_then(|d| d.consensus.as_deref())
            .and_then(|c| ConsensusLevel::parse(c).ok())
            .unwrap_or(ConsensusLevel::Low)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_and_validate() {
        let base = SandrunConfig {
            api_endpoint: Some("http://a".into()),
            defaults: Some(Defaults { timeout: Some(5.0), retries: Some(2), consensus: None }),
            ..Default::default()
        };
        let part = SandrunConfig { defaults: Some(Defaults { consensus: Some("none".into()), ..Default::default() }), ..Default::default() };
        let m = base.merged(&part);
        assert_eq!(m.api_endpoint.as_deref(), Some("http://a"));
        assert_eq!(m.defaults.as_ref().unwrap().timeout, Some(5.0));
        assert_eq!(m.default_consensus(), ConsensusLevel::None);
        assert_eq!(base.default_consensus(), ConsensusLevel::Low);
        let bad = SandrunConfig { api_endpoint: Some("localhost:7700".into()), ..Default::default() };
        assert!(bad.validate().unwrap_err().message.contains("apiEndpoint"));
        assert_eq!(SandrunConfig::default().endpoint(), DEFAULT_API_ENDPOINT);
    }
}
