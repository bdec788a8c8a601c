//! `localWallet(privateKey, rpcUrl)`: an EIP-1193 provider for Node scripts that signs
//! locally with alloy's signer and forwards everything else to a JSON-RPC endpoint.

use super::{provider_error, quantity, Wallet};
use crate::error::{Error, ErrorCode, Result};
use crate::platform::{HttpRequest, LocalFuture, Platform};
use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, Bytes, TxKind, U256};
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;
use serde_json::{json, Value};
use std::rc::Rc;

/// A wallet holding one private key.
pub struct LocalWallet {
    signer: PrivateKeySigner,
    rpc_url: String,
    platform: Rc<dyn Platform>,
}

impl LocalWallet {
    pub fn new(private_key: &str, rpc_url: &str, platform: Rc<dyn Platform>) -> Result<LocalWallet> {
        let signer: PrivateKeySigner = private_key
            .trim()
            .parse()
            .map_err(|_| Error::invalid("localWallet: the private key must be 32 bytes of hex (0x + 64 hex digits)"))?;
        if !(rpc_url.starts_with("http://") || rpc_url.starts_with("https://")) {
            // Not echoed: a mistyped URL may still carry an API key.
            return Err(Error::invalid(format!("localWallet: rpcUrl must be an http:// or https:// URL, got {}", super::redact_url(rpc_url))));
        }
        Ok(LocalWallet { signer, rpc_url: rpc_url.trim_end_matches('/').to_string(), platform })
    }

    pub fn address(&self) -> Address {
        self.signer.address()
    }

    /// Plain JSON-RPC to the node.
    pub async fn rpc(&self, method: &str, params: Value) -> Result<Value> {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
        // The RPC URL may hold an API key (`/v3/<key>`): errors name only its origin.
        let resp = self
            .platform
            .http(HttpRequest::post(&self.rpc_url, "application/json", body.into_bytes()).timeout(30_000))
            .await
            .map_err(super::redact_error)?;
        let v: Value = serde_json::from_slice(&resp.body)
            .map_err(|_| Error::malformed(format!("{method}: {} did not answer JSON-RPC (HTTP {})", super::redact_url(&self.rpc_url), resp.status)))?;
        if let Some(e) = v.get("error") {
            return Err(provider_error(method, e["code"].as_i64().unwrap_or(0), e["message"].as_str().unwrap_or("error")));
        }
        Ok(v["result"].clone())
    }

    async fn send_transaction(&self, tx: &Value) -> Result<Value> {
        let from = self.address();
        if let Some(f) = tx["from"].as_str() {
            if f.parse::<Address>().ok() != Some(from) {
                return Err(Error::new(ErrorCode::UserRejected, format!("localWallet holds {from}, not {f}")));
            }
        }
        let to: Address = tx["to"].as_str().ok_or_else(|| Error::invalid("eth_sendTransaction needs `to`"))?.parse().map_err(|_| Error::invalid("bad `to` address"))?;
        let value = tx["value"].as_str().map(|v| U256::from_str_radix(v.trim_start_matches("0x"), 16)).transpose().map_err(|_| Error::invalid("bad `value`"))?.unwrap_or_default();
        let data: Bytes = tx["data"].as_str().unwrap_or("0x").parse().map_err(|_| Error::invalid("bad `data`"))?;
        let chain_id = quantity(&self.rpc("eth_chainId", json!([])).await?)? as u64;
        let nonce = quantity(&self.rpc("eth_getTransactionCount", json!([format!("{from:#x}"), "pending"])).await?)? as u64;
        let call = json!({"from": format!("{from:#x}"), "to": format!("{to:#x}"), "value": format!("{value:#x}"), "data": data.to_string()});
        let gas = match tx.get("gas").filter(|g| g.is_string()) {
            Some(g) => quantity(g)? as u64,
            None => (quantity(&self.rpc("eth_estimateGas", json!([call])).await?)? as u64) * 6 / 5,
        };
        let block = self.rpc("eth_getBlockByNumber", json!(["latest", false])).await?;
        let base = quantity(&block["baseFeePerGas"]).unwrap_or(1_000_000_000);
        let tip = self.rpc("eth_maxPriorityFeePerGas", json!([])).await.ok().and_then(|v| quantity(&v).ok()).unwrap_or(1_000_000_000);
        let unsigned = TxEip1559 {
            chain_id,
            nonce,
            gas_limit: gas,
            max_fee_per_gas: base * 2 + tip,
            max_priority_fee_per_gas: tip,
            to: TxKind::Call(to),
            value,
            access_list: Default::default(),
            input: data,
        };
        let sig = self.signer.sign_hash_sync(&unsigned.signature_hash()).map_err(|e| Error::new(ErrorCode::PaymentFailed, format!("signing failed: {e}")))?;
        let raw = TxEnvelope::from(unsigned.into_signed(sig)).encoded_2718();
        self.rpc("eth_sendRawTransaction", json!([format!("0x{}", crate::proof::recipe::hex(&raw))])).await
    }
}

impl Wallet for LocalWallet {
    fn request(&self, method: &str, params: Value) -> LocalFuture<'_, Result<Value>> {
        let method = method.to_string();
        Box::pin(async move {
            match method.as_str() {
                "eth_accounts" | "eth_requestAccounts" => Ok(json!([format!("{:#x}", self.address())])),
                "eth_sendTransaction" => self.send_transaction(&params[0]).await,
                "eth_sign" | "personal_sign" | "eth_signTypedData_v4" | "eth_signTransaction" => {
                    Err(Error::new(ErrorCode::Unsupported, format!("localWallet does not implement {method}")))
                }
                _ => self.rpc(&method, params).await,
            }
        })
    }
}
