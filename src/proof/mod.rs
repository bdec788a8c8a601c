//! Proofs: the signature recipe, job hash recomputation, output hashes, Ed25519.

pub mod receipt;
pub mod recipe;
pub mod signed;
pub mod verify;

pub use recipe::{format_g, job_hash, sha256, sha256_hex, signed_string};
pub use verify::{verify_status_signature, SignatureCheck};
