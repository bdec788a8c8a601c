//! The escrow contract (contracts/SandrunEscrow.sol) and ERC-20 approval, called through a
//! wallet. ABI encoding comes from the committed artifact via alloy's `sol!`.

use super::{quantity, Wallet};
use crate::error::{Error, ErrorCode, Result};
use crate::platform::Platform;
use alloy_primitives::{Address, B256, U256};
use alloy_sol_types::{sol, SolCall};
use serde_json::{json, Value};

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
}

/// `0x`-hex of bytes.
fn hex0x(b: &[u8]) -> String {
    format!("0x{}", crate::proof::recipe::hex(b))
}

/// Send a transaction from `from` and wait for its receipt; a revert is `PAYMENT_FAILED`.
pub async fn transact(wallet: &dyn Wallet, platform: &dyn Platform, from: Address, to: Address, data: Vec<u8>, value: U256, what: &str) -> Result<Mined> {
    let tx = json!({"from": format!("{from:#x}"), "to": format!("{to:#x}"), "data": hex0x(&data), "value": format!("{value:#x}")});
    let hash = wallet.request("eth_sendTransaction", json!([tx])).await?;
    let hash = hash.as_str().ok_or_else(|| Error::malformed(format!("{what}: the wallet returned no transaction hash")))?.to_string();
    for _ in 0..600 {
        let r = wallet.request("eth_getTransactionReceipt", json!([hash])).await?;
        if !r.is_null() {
            if r["status"] != "0x1" {
                return Err(Error::new(ErrorCode::PaymentFailed, format!("{what}: transaction {hash} reverted")));
            }
            return Ok(Mined {
                hash,
                gas_used: quantity(&r["gasUsed"])?,
                effective_gas_price: quantity(&r["effectiveGasPrice"]).unwrap_or(0),
            });
        }
        platform.sleep(100).await;
    }
    Err(Error::new(ErrorCode::Timeout, format!("{what}: transaction {hash} was not mined within 60 s")))
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

/// The escrow at `address`.
pub struct Escrow<'a> {
    pub wallet: &'a dyn Wallet,
    pub platform: &'a dyn Platform,
    pub address: Address,
}

impl Escrow<'_> {
    pub async fn key_of(&self, payer: Address, job_hash: B256, nonce: U256) -> Result<B256> {
        let out = call(self.wallet, self.address, SandrunEscrow::keyOfCall { payer, jobHash: job_hash, nonce }.abi_encode()).await?;
        SandrunEscrow::keyOfCall::abi_decode_returns(&out).map_err(|_| Error::malformed("keyOf: bad answer"))
    }

    /// Approve (ERC-20 only) and open. Returns the transactions in order.
    pub async fn open(&self, payer: Address, job_hash: B256, nonce: U256, token: Option<Address>, amount: U256, deadline: u64) -> Result<Vec<Mined>> {
        let mut mined = Vec::new();
        let (token_addr, value) = match token {
            Some(t) => {
                let approve = IERC20::approveCall { spender: self.address, amount }.abi_encode();
                mined.push(transact(self.wallet, self.platform, payer, t, approve, U256::ZERO, "approve").await?);
                (t, U256::ZERO)
            }
            None => (Address::ZERO, amount),
        };
        let data = SandrunEscrow::openCall { jobHash: job_hash, nonce, token: token_addr, amount, deadline }.abi_encode();
        mined.push(transact(self.wallet, self.platform, payer, self.address, data, value, "escrow open").await?);
        Ok(mined)
    }

    pub async fn release(&self, payer: Address, key: B256, payees: Vec<Address>, amounts: Vec<U256>) -> Result<Mined> {
        let data = SandrunEscrow::releaseCall { key, payees, amounts }.abi_encode();
        transact(self.wallet, self.platform, payer, self.address, data, U256::ZERO, "escrow release").await
    }

    pub async fn refund(&self, payer: Address, key: B256) -> Result<Mined> {
        transact(self.wallet, self.platform, payer, self.address, SandrunEscrow::refundCall { key }.abi_encode(), U256::ZERO, "escrow refund").await
    }
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
    }
}
