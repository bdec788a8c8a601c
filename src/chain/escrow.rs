//! The escrow contract (contracts/SandrunEscrow.sol) and ERC-20 approval, called through a
//! wallet. ABI encoding comes from the committed artifact via alloy's `sol!`.

use super::{quantity, Wallet};
use crate::error::{Error, ErrorCode, Result};
use crate::platform::Platform;
use alloy_primitives::{Address, B256, U256};
use alloy_sol_types::{sol, SolCall, SolEvent, SolValue};
use serde_json::{json, Value};
use std::cell::RefCell;

sol!(SandrunEscrow, "contracts/artifacts/SandrunEscrow.json");

sol! {
    interface IERC20 {
        function approve(address spender, uint256 amount) external returns (bool);
        function allowance(address owner, address spender) external view returns (uint256);
        function decimals() external view returns (uint8);
    }
}

/// A mined transaction, as `PaymentInfo` reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Mined {
    pub hash: String,
    pub gas_used: u128,
    pub effective_gas_price: u128,
    /// The receipt's logs (`{ address, topics, data }`), for the escrow's events.
    pub logs: Vec<Value>,
}

/// `0x`-hex of bytes.
fn hex0x(b: &[u8]) -> String {
    format!("0x{}", crate::proof::recipe::hex(b))
}

/// How long to wait for a receipt when the config does not say (`escrow.receiptTimeout`):
/// mainnet blocks come every 12 s and a transaction may wait several blocks at a low fee.
pub const DEFAULT_RECEIPT_TIMEOUT_SECS: f64 = 120.0;

/// The `cause` of the error for a transaction that was mined and reverted (final: it did
/// nothing), as opposed to one whose receipt never came (it may still be mined).
pub const REVERTED: &str = "reverted";

/// Send a transaction from `from` through the wallet; returns its hash (nothing is mined yet).
pub async fn send(wallet: &dyn Wallet, from: Address, to: Address, data: Vec<u8>, value: U256, what: &str) -> Result<String> {
    let tx = json!({"from": format!("{from:#x}"), "to": format!("{to:#x}"), "data": hex0x(&data), "value": format!("{value:#x}")});
    let hash = wallet.request("eth_sendTransaction", json!([tx])).await?;
    hash.as_str().map(str::to_string).ok_or_else(|| Error::malformed(format!("{what}: the wallet returned no transaction hash")))
}

/// Wait up to `timeout_ms` for the receipt of `hash`; a revert is `PAYMENT_FAILED`, no
/// receipt in time is `TIMEOUT` (the transaction may still be mined later).
pub async fn wait(wallet: &dyn Wallet, platform: &dyn Platform, hash: &str, what: &str, timeout_ms: u64) -> Result<Mined> {
    let start = platform.now_ms();
    // Poll fast at first (local chains mine at once), then back off to one poll per 2 s.
    let mut delay = 100u64;
    loop {
        let r = wallet.request("eth_getTransactionReceipt", json!([hash])).await?;
        if !r.is_null() {
            if r["status"] != "0x1" {
                return Err(Error::new(ErrorCode::PaymentFailed, format!("{what}: transaction {hash} reverted")).with_cause(REVERTED));
            }
            return Ok(Mined {
                hash: hash.to_string(),
                gas_used: quantity(&r["gasUsed"])?,
                effective_gas_price: quantity(&r["effectiveGasPrice"]).unwrap_or(0),
                logs: r["logs"].as_array().cloned().unwrap_or_default(),
            });
        }
        let waited = platform.now_ms() - start;
        if waited >= timeout_ms as f64 {
            return Err(Error::new(
                ErrorCode::Timeout,
                format!(
                    "{what}: transaction {hash} was not mined within {} s (escrow.receiptTimeout); it may still be mined",
                    timeout_ms as f64 / 1000.0
                ),
            ));
        }
        platform.sleep(delay.min((timeout_ms as f64 - waited).ceil() as u64)).await;
        delay = (delay * 3 / 2).min(2000);
    }
}

async fn call(wallet: &dyn Wallet, to: Address, data: Vec<u8>) -> Result<Vec<u8>> {
    let r = wallet.request("eth_call", json!([{"to": format!("{to:#x}"), "data": hex0x(&data)}, "latest"])).await?;
    let s = r.as_str().ok_or_else(|| Error::malformed("eth_call returned no data"))?;
    alloy_primitives::hex::decode(s).map_err(|_| Error::malformed("eth_call returned bad hex"))
}

/// Decimals of a token (`None`: ETH, 18).
pub async fn decimals(wallet: &dyn Wallet, token: Option<Address>) -> Result<u8> {
    match token {
        None => Ok(18),
        Some(t) => {
            let out = call(wallet, t, IERC20::decimalsCall {}.abi_encode()).await?;
            IERC20::decimalsCall::abi_decode_returns(&out).map_err(|_| Error::new(ErrorCode::PaymentFailed, format!("{t:#x} is not an ERC-20 token (no decimals())")))
        }
    }
}

/// "1.5" with `decimals` -> base units.
pub fn parse_amount(amount: &str, decimals: u8) -> Result<U256> {
    let (int, frac) = amount.split_once('.').unwrap_or((amount, ""));
    if frac.len() > decimals as usize {
        return Err(Error::invalid(format!("payment amount {amount} has more decimals than the token's {decimals}")));
    }
    let digits = format!("{int}{frac:0<width$}", width = decimals as usize);
    U256::from_str_radix(digits.trim_start_matches('0').chars().next().map(|_| digits.trim_start_matches('0')).unwrap_or("0"), 10)
        .map_err(|_| Error::invalid(format!("payment amount {amount} is not a decimal number")))
}

/// The escrow key `open` derives: keccak256(abi.encode(payer, jobHash, nonce)).
pub fn key_of(payer: Address, job_hash: B256, nonce: U256) -> B256 {
    alloy_primitives::keccak256((payer, job_hash, nonce).abi_encode())
}

/// An escrow as `escrows(key)` reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct EscrowState {
    pub payer: Address,
    /// `None`: ETH.
    pub token: Option<Address>,
    pub amount: U256,
    pub deadline: u64,
    /// 0 none (unknown key), 1 open, 2 released, 3 refunded.
    pub state: u8,
}

/// The escrow at `address`. Every transaction's hash is recorded in `sent` as soon as the
/// wallet returns it, before its receipt is awaited, so that a timeout can still say
/// which transactions are out there.
pub struct Escrow<'a> {
    pub wallet: &'a dyn Wallet,
    pub platform: &'a dyn Platform,
    pub address: Address,
    pub receipt_timeout_ms: u64,
    pub sent: &'a RefCell<Vec<String>>,
}

impl Escrow<'_> {
    async fn transact(&self, from: Address, to: Address, data: Vec<u8>, value: U256, what: &str) -> Result<Mined> {
        let hash = send(self.wallet, from, to, data, value, what).await?;
        self.sent.borrow_mut().push(hash.clone());
        wait(self.wallet, self.platform, &hash, what, self.receipt_timeout_ms).await
    }

    /// `escrows(key)`.
    pub async fn read(&self, key: B256) -> Result<EscrowState> {
        let out = call(self.wallet, self.address, SandrunEscrow::escrowsCall { key }.abi_encode()).await?;
        let r = SandrunEscrow::escrowsCall::abi_decode_returns(&out).map_err(|_| Error::malformed("escrows(key): bad answer (is escrow.address the SandrunEscrow contract?)"))?;
        Ok(EscrowState {
            payer: r.payer,
            token: Some(r.token).filter(|t| *t != Address::ZERO),
            amount: r.amount,
            deadline: r.deadline,
            state: r.state,
        })
    }

    /// Approve (ERC-20 only) and open. Returns the transactions in order.
    pub async fn open(&self, payer: Address, job_hash: B256, nonce: U256, token: Option<Address>, amount: U256, deadline: u64) -> Result<Vec<Mined>> {
        let mut mined = Vec::new();
        let (token_addr, value) = match token {
            Some(t) => {
                let approve = IERC20::approveCall { spender: self.address, amount }.abi_encode();
                mined.push(self.transact(payer, t, approve, U256::ZERO, "approve").await?);
                (t, U256::ZERO)
            }
            None => (Address::ZERO, amount),
        };
        let data = SandrunEscrow::openCall { jobHash: job_hash, nonce, token: token_addr, amount, deadline }.abi_encode();
        mined.push(self.transact(payer, self.address, data, value, "escrow open").await?);
        Ok(mined)
    }

    /// Release; returns the transaction and the accounts the escrow credited instead of
    /// paying (their call failed: each pulls its share with `withdraw()`).
    pub async fn release(&self, payer: Address, key: B256, payees: Vec<Address>, amounts: Vec<U256>) -> Result<(Mined, Vec<Address>)> {
        let data = SandrunEscrow::releaseCall { key, payees, amounts }.abi_encode();
        let m = self.transact(payer, self.address, data, U256::ZERO, "escrow release").await?;
        let credited = credited(&m.logs, self.address, key);
        Ok((m, credited))
    }

    pub async fn refund(&self, from: Address, key: B256) -> Result<Mined> {
        self.transact(from, self.address, SandrunEscrow::refundCall { key }.abi_encode(), U256::ZERO, "escrow refund").await
    }
}

/// The accounts a receipt's `Credited(key, ...)` events from `escrow` name, in order.
pub fn credited(logs: &[Value], escrow: Address, key: B256) -> Vec<Address> {
    let mut out = Vec::new();
    for log in logs {
        if log["address"].as_str().and_then(|a| a.parse::<Address>().ok()) != Some(escrow) {
            continue;
        }
        let topics: Vec<B256> = log["topics"].as_array().map(|t| t.iter().filter_map(|x| x.as_str()?.parse().ok()).collect()).unwrap_or_default();
        let data = log["data"].as_str().and_then(|d| alloy_primitives::hex::decode(d).ok()).unwrap_or_default();
        if topics.first() != Some(&SandrunEscrow::Credited::SIGNATURE_HASH) {
            continue;
        }
        if let Ok(ev) = SandrunEscrow::Credited::decode_raw_log(topics, &data) {
            if ev.key == key && !out.contains(&ev.account) {
                out.push(ev.account);
            }
        }
    }
    out
}

/// The payer: the wallet's first account (asking for access if needed).
pub async fn payer(wallet: &dyn Wallet) -> Result<Address> {
    let accounts: Value = wallet.request("eth_requestAccounts", json!([])).await?;
    accounts[0].as_str().and_then(|a| a.parse().ok()).ok_or_else(|| Error::new(ErrorCode::UserRejected, "the wallet gave no account"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts() {
        assert_eq!(parse_amount("0.1", 18).unwrap(), U256::from(100_000_000_000_000_000u128));
        assert_eq!(parse_amount("5", 6).unwrap(), U256::from(5_000_000u64));
        assert_eq!(parse_amount("0.000001", 6).unwrap(), U256::from(1u64));
        assert!(parse_amount("0.0000001", 6).is_err());
    }

    #[test]
    fn abi_matches_the_contract() {
        // Selectors from contracts/README.md.
        assert_eq!(SandrunEscrow::openCall::SELECTOR, [0x5a, 0x21, 0x7e, 0x4f]);
        assert_eq!(SandrunEscrow::releaseCall::SELECTOR, [0x48, 0x2a, 0x72, 0xf8]);
        assert_eq!(SandrunEscrow::refundCall::SELECTOR, [0x72, 0x49, 0xfb, 0xb6]);
        assert_eq!(SandrunEscrow::withdrawCall::SELECTOR, [0x3c, 0xcf, 0xd6, 0x0b]);
        assert_eq!(
            SandrunEscrow::Credited::SIGNATURE_HASH,
            "0x9e162113290241a6fac217e43087d4a505b812132ecb0368edf06157e08db262".parse::<B256>().unwrap()
        );
    }

    #[test]
    fn key_derivation_is_abi_encode_of_payer_job_hash_nonce() {
        // keccak256(abi.encode(payer, jobHash, nonce)): three full 32-byte words.
        let payer: Address = "0x70997970c51812dc3a010c7d01b50e0d17dc79c8".parse().unwrap();
        let job = B256::repeat_byte(0xab);
        let mut words = [0u8; 96];
        words[12..32].copy_from_slice(payer.as_slice());
        words[32..64].copy_from_slice(job.as_slice());
        words[95] = 7;
        assert_eq!(key_of(payer, job, U256::from(7)), alloy_primitives::keccak256(words));
    }

    #[test]
    fn credited_reads_only_this_escrows_events_for_this_key() {
        let escrow: Address = "0x5fbdb2315678afecb367f032d93f642f64180aa3".parse().unwrap();
        let key = B256::repeat_byte(1);
        let who: Address = "0x90f79bf6eb2c4f870365e785982e1f101e93b906".parse().unwrap();
        let ev = SandrunEscrow::Credited { key, account: who, token: Address::ZERO, amount: U256::from(5) };
        let data = ev.encode_log_data();
        let log = |addr: Address, k: B256| {
            let mut e = ev.clone();
            e.key = k;
            let d = e.encode_log_data();
            json!({"address": format!("{addr:#x}"), "topics": d.topics().iter().map(|t| format!("{t:#x}")).collect::<Vec<_>>(), "data": hex0x(&d.data)})
        };
        assert_eq!(data.topics().len(), 3);
        let other: Address = "0x0000000000000000000000000000000000000009".parse().unwrap();
        let logs = vec![log(escrow, key), log(other, key), log(escrow, B256::repeat_byte(2)), json!({"address": "garbage"})];
        assert_eq!(credited(&logs, escrow, key), vec![who]);
    }
}
