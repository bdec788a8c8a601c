//! Payout binding: a worker says, with its own Ed25519 key, which address gets paid for
//! its work on which chain. A registry record's `capabilities` carry it:
//!
//! | field | value |
//! | --- | --- |
//! | `worker_id` | the worker's key: standard base64 of the 32-byte Ed25519 public key (as `/health` shows it) |
//! | `payout` | the payout address, `0x` + 40 hex digits |
//! | `payout_chain_id` | the chain id the binding is for (a number; informational, the signature is what counts) |
//! | `payout_signature` | standard base64 (with padding) of the pure Ed25519 signature over [`payout_message`] |
//!
//! The SDK pays an address only when the signature verifies, strictly, under the key of a
//! worker whose result agreed, for the escrow's chain. A registry (or anyone who can write
//! to it) can list records, but cannot make up a binding: redirecting a worker's payments
//! takes the worker's private key.

use base64::{engine::general_purpose::STANDARD as B64, Engine};
use ed25519_dalek::{Signature, VerifyingKey};

/// The domain tag that starts every payout message, so a payout signature can never be
/// mistaken for (or replayed as) a signature over a job status.
pub const PAYOUT_DOMAIN: &str = "sandrun-payout-v1";

/// The exact text a worker signs to bind `address` as its payout on chain `chain_id`:
/// `sandrun-payout-v1|<chainId decimal>|<address, lowercase 0x hex>`. The address is
/// lowercased here (a checksummed address gives the same message); it is not otherwise
/// checked: [`verify_payout_binding`] refuses anything but `0x` + 40 hex digits.
pub fn payout_message(chain_id: u64, address: &str) -> String {
    format!("{PAYOUT_DOMAIN}|{chain_id}|{}", address.trim().to_ascii_lowercase())
}

/// Is `address` (`0x` + 40 hex digits, any case) a 20-byte address?
pub fn is_address(address: &str) -> bool {
    let a = address.trim();
    a.len() == 42 && (a.starts_with("0x") || a.starts_with("0X")) && a[2..].chars().all(|c| c.is_ascii_hexdigit())
}

/// Does `signature_b64` bind `address` as the payout of the worker `worker_id_b64` on
/// chain `chain_id`? Strict Ed25519 (`verify_strict`): a small-order ("weak") key or a
/// small-order/non-canonical R never verifies, so the identity key with a trivial
/// signature cannot bind anything. Malformed input is `false`, never a panic.
pub fn verify_payout_binding(worker_id_b64: &str, chain_id: u64, address: &str, signature_b64: &str) -> bool {
    if !is_address(address) {
        return false;
    }
    let Some(key) = B64.decode(worker_id_b64.trim()).ok().and_then(|k| <[u8; 32]>::try_from(k).ok()) else { return false };
    let Ok(key) = VerifyingKey::from_bytes(&key) else { return false };
    if key.is_weak() {
        return false;
    }
    let Some(sig) = B64.decode(signature_b64.trim()).ok().and_then(|s| <[u8; 64]>::try_from(s).ok()) else { return false };
    key.verify_strict(payout_message(chain_id, address).as_bytes(), &Signature::from_bytes(&sig)).is_ok()
}

/// Do two base64 worker ids name the same 32-byte key? (Compared as bytes, so stray
/// whitespace does not matter; an id that is not a key equals nothing.)
pub fn same_worker(a: &str, b: &str) -> bool {
    match (B64.decode(a.trim()), B64.decode(b.trim())) {
        (Ok(x), Ok(y)) => x.len() == 32 && x == y,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn worker(seed: u8) -> (SigningKey, String) {
        let k = SigningKey::from_bytes(&[seed; 32]);
        let id = B64.encode(k.verifying_key().to_bytes());
        (k, id)
    }
    fn bind(k: &SigningKey, chain: u64, address: &str) -> String {
        B64.encode(k.sign(payout_message(chain, address).as_bytes()).to_bytes())
    }
    const ADDR: &str = "0x8626f6940E2eb28930eFb4CeF49B2d1F2C9C1199";

    #[test]
    fn message_format() {
        assert_eq!(payout_message(31337, ADDR), "sandrun-payout-v1|31337|0x8626f6940e2eb28930efb4cef49b2d1f2c9c1199");
        assert_eq!(payout_message(1, &ADDR.to_lowercase()), payout_message(1, ADDR));
    }

    #[test]
    fn a_binding_verifies_for_its_key_chain_and_address_only() {
        let (k, id) = worker(7);
        let (other, other_id) = worker(8);
        let sig = bind(&k, 31337, ADDR);
        assert!(verify_payout_binding(&id, 31337, ADDR, &sig));
        assert!(verify_payout_binding(&id, 31337, &ADDR.to_lowercase(), &sig), "any case of the same address");
        assert!(!verify_payout_binding(&id, 1, ADDR, &sig), "another chain");
        assert!(!verify_payout_binding(&id, 31337, "0x0000000000000000000000000000000000000001", &sig), "another address");
        assert!(!verify_payout_binding(&other_id, 31337, ADDR, &sig), "another worker's key");
        assert!(!verify_payout_binding(&id, 31337, ADDR, &bind(&other, 31337, ADDR)), "signed by another key");
        assert!(!verify_payout_binding(&id, 31337, ADDR, ""), "missing");
        assert!(!verify_payout_binding(&id, 31337, ADDR, "not base64!"));
        assert!(!verify_payout_binding(&id, 31337, ADDR, &B64.encode([0u8; 63])));
        assert!(!verify_payout_binding("", 31337, ADDR, &sig));
        assert!(!verify_payout_binding(&id, 31337, "0x1234", &sig));
        assert!(!verify_payout_binding(&id, 31337, &ADDR[2..], &sig));
    }

    #[test]
    fn a_small_order_key_binds_nothing() {
        // The identity point as the key and (R = identity, S = 0) as the signature satisfy
        // the plain verification equation for every message.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let mut sig = [0u8; 64];
        sig[0] = 1;
        let (id, sig) = (B64.encode(identity), B64.encode(sig));
        let plain = VerifyingKey::from_bytes(&identity).unwrap().verify_strict(b"x", &Signature::from_bytes(&B64.decode(&sig).unwrap().try_into().unwrap()));
        assert!(plain.is_err());
        assert!(!verify_payout_binding(&id, 31337, ADDR, &sig));
    }

    #[test]
    fn same_worker_compares_keys() {
        let (_, id) = worker(3);
        assert!(same_worker(&id, &id));
        assert!(same_worker(&format!(" {id}"), &id));
        assert!(!same_worker(&worker(4).1, &id));
        assert!(!same_worker("", ""), "an empty id is no key");
        assert!(!same_worker("x!", "x!"), "nor is garbage");
    }
}
