//! Ethereum: the wallet seam (EIP-1193), a local signer for scripts, and the escrow calls.
//!
//! Signing stays in the wallet: the SDK sends `eth_sendTransaction` through the user's
//! EIP-1193 provider (`window.ethereum`, or `localWallet(privateKey, rpcUrl)` in Node
//! scripts) and never sees a browser user's key.

pub mod binding;
pub mod escrow;
pub mod pay;
pub mod local;

pub use binding::{payout_message, verify_payout_binding};

use crate::error::{Error, ErrorCode, Result};
use serde_json::Value;

pub use crate::platform::Wallet;

/// An EIP-1193 / JSON-RPC error object -> a typed error (4001: the user said no). URLs in
/// the provider's message are cut to their origin (see [`redact_urls`]).
pub fn provider_error(method: &str, code: i64, message: &str) -> Error {
    let message = &redact_urls(message);
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

/// `url` without what may hold a secret: userinfo, path, query and fragment. RPC URLs put
/// API keys there (Infura's `https://mainnet.infura.io/v3/<key>`, Alchemy's `/v2/<key>`,
/// `?apikey=`), so an RPC URL is only ever shown as its origin: `https://mainnet.infura.io`.
/// Something that is not an http(s)/ws(s) URL becomes `<redacted URL>`.
pub fn redact_url(url: &str) -> String {
    let url = url.trim();
    let Some((scheme, rest)) = url.split_once("://") else { return "<redacted URL>".into() };
    if !["http", "https", "ws", "wss"].contains(&scheme.to_ascii_lowercase().as_str()) {
        return "<redacted URL>".into();
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    // `user:password@host` -> `host`.
    let host = authority.rsplit('@').next().unwrap_or("");
    if host.is_empty() {
        return "<redacted URL>".into();
    }
    let path = if authority.len() < rest.len() { "/..." } else { "" };
    format!("{scheme}://{host}{path}")
}

/// `text` with every http(s)/ws(s) URL in it cut to its origin ([`redact_url`]), for
/// error messages that may quote an RPC URL (a host's network error, a provider's message).
pub fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        let next = ["https://", "http://", "wss://", "ws://"]
            .iter()
            .filter_map(|p| rest.to_ascii_lowercase().find(p))
            .min();
        let Some(start) = next else {
            out.push_str(rest);
            return out;
        };
        out.push_str(&rest[..start]);
        // A URL ends at whitespace or a delimiter that cannot be part of it in prose.
        let mut len = rest[start..].find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '`' | ')' | ']' | '}' | ',')).unwrap_or(rest.len() - start);
        // Sentence punctuation after a URL ("POST <url>: refused") stays in the text.
        len = rest[start..start + len].trim_end_matches([':', ';', '.', '!', '?']).len();
        out.push_str(&redact_url(&rest[start..start + len]));
        rest = &rest[start + len..];
    }
}

/// `e` with URLs in its message and cause redacted ([`redact_urls`]).
pub fn redact_error(mut e: Error) -> Error {
    e.message = redact_urls(&e.message);
    e.cause = e.cause.map(|c| redact_urls(&c));
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "84842078b09946638c03157f83405213";

    #[test]
    fn rpc_urls_lose_path_query_and_credentials() {
        assert_eq!(redact_url(&format!("https://mainnet.infura.io/v3/{KEY}")), "https://mainnet.infura.io/...");
        assert_eq!(redact_url(&format!("https://eth.example.com:8545?apikey={KEY}")), "https://eth.example.com:8545/...");
        assert_eq!(redact_url(&format!("https://user:{KEY}@rpc.example.com")), "https://rpc.example.com");
        assert_eq!(redact_url("http://127.0.0.1:8545"), "http://127.0.0.1:8545");
        assert_eq!(redact_url(&format!("wss://x.io/ws/v3/{KEY}#f")), "wss://x.io/...");
        assert_eq!(redact_url(KEY), "<redacted URL>");
        assert_eq!(redact_url(&format!("ftp://h/{KEY}")), "<redacted URL>");
    }

    #[test]
    fn urls_inside_text_are_redacted() {
        let msg = format!("POST https://mainnet.infura.io/v3/{KEY}: connection refused (see HTTPS://A.io/x?k={KEY}), and \"http://h/{KEY}\"");
        let out = redact_urls(&msg);
        assert!(!out.contains(KEY), "{out}");
        assert_eq!(out, "POST https://mainnet.infura.io/...: connection refused (see HTTPS://A.io/...), and \"http://h/...\"");
        assert_eq!(redact_urls("no url here"), "no url here");
        let e = redact_error(Error::network(format!("{} failed", format!("https://a.io/v3/{KEY}"))).with_cause(format!("https://a.io/v3/{KEY}")));
        assert!(!e.message.contains(KEY) && !e.cause.unwrap().contains(KEY));
        assert!(!provider_error("eth_call", -32000, &format!("upstream https://b.io/v2/{KEY} failed")).message.contains(KEY));
    }
}
