//! Ethereum: the wallet seam (EIP-1193), a local signer for scripts, and the escrow calls.
//!
//! Signing stays in the wallet: the SDK sends `eth_sendTransaction` through the user's
//! EIP-1193 provider (`window.ethereum`, or `localWallet(privateKey, rpcUrl)` in Node
//! scripts) and never sees a browser user's key.

pub mod escrow;
pub mod pay;
pub mod local;

use crate::error::{Error, ErrorCode, Result};
use crate::platform::LocalFuture;
use serde_json::Value;

/// An EIP-1193 provider: `request({ method, params })`.
pub trait Wallet {
    fn request(&self, method: &str, params: Value) -> LocalFuture<'_, Result<Value>>;
}

/// An EIP-1193 / JSON-RPC error object -> a typed error (4001: the user said no).
pub fn provider_error(method: &str, code: i64, message: &str) -> Error {
    match code {
        4001 => Error::new(ErrorCode::UserRejected, format!("the wallet user rejected {method}: nothing was paid or submitted")),
        4100 => Error::new(ErrorCode::UserRejected, format!("{method}: the wallet has not authorized this site or account ({message})")),
        4900 | 4901 => Error::network(format!("{method}: the wallet is disconnected ({message})")),
        _ => Error::new(ErrorCode::PaymentFailed, format!("{method} failed: {message}")).with_cause(format!("code {code}")),
    }
}

/// `0x`-hex quantity -> u128.
pub fn quantity(v: &Value) -> Result<u128> {
    let s = v.as_str().ok_or_else(|| Error::malformed(format!("expected a hex quantity, got {v}")))?;
    u128::from_str_radix(s.trim_start_matches("0x"), 16).map_err(|_| Error::malformed(format!("bad hex quantity {s}")))
}
