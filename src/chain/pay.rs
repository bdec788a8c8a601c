//! The payment flow: open an escrow before the job is submitted, release it to the
//! workers whose verified results agreed (equal shares: each did the same work), refund it
//! otherwise (failure, no quorum, cancel, timeout, no registered payout address).

use super::escrow::{decimals, parse_amount, payer, Escrow, Mined};
use super::Wallet;
use crate::api::BrokerClient;
use crate::client::Sandrun;
use crate::error::{Error, ErrorCode, Result};
use crate::platform::Platform;
use crate::types::{JobResult, PaymentInfo, PaymentRequest};
use alloy_primitives::{Address, B256, U256};
use serde_json::json;
use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// An open escrow for one job.
pub struct PaidJob {
    wallet: Rc<dyn Wallet>,
    platform: Rc<dyn Platform>,
    escrow: Address,
    payer: Address,
    key: B256,
    amount: U256,
    request: PaymentRequest,
    txs: RefCell<Vec<Mined>>,
    state: RefCell<String>,
    settled: Cell<bool>,
}

thread_local!(static NONCE: Cell<u64> = const { Cell::new(0) });

/// Open the escrow for a job whose `job_hash` is known; nothing is submitted yet.
pub async fn open(client: &Sandrun, job_hash: &str, timeout_secs: f64, request: &PaymentRequest) -> Result<PaidJob> {
    let wallet = client.wallet().ok_or_else(|| {
        Error::invalid("payment() needs a wallet: set SandrunConfig.web3Provider (window.ethereum, or localWallet(privateKey, rpcUrl) in Node)")
    })?;
    let cfg = client.config().escrow.clone().ok_or_else(|| Error::invalid("payment() needs SandrunConfig.escrow = { address, chainId }"))?;
    let chain = super::quantity(&wallet.request("eth_chainId", json!([])).await?)? as u64;
    if chain != cfg.chain_id {
        return Err(Error::new(
            ErrorCode::WrongChain,
            format!("the wallet is on chain {chain} but the escrow is on chain {}: switch the wallet's network; nothing was paid or submitted", cfg.chain_id),
        ));
    }
    let escrow: Address = cfg.address.parse().map_err(|_| Error::invalid("escrow.address is not an address"))?;
    let payer = payer(wallet.as_ref()).await?;
    let token: Option<Address> = if request.token == "ETH" { None } else { Some(request.token.parse().map_err(|_| Error::invalid("payment token is not an address"))?) };
    let amount = parse_amount(&request.amount, decimals(wallet.as_ref(), token).await?)?;
    let hash: B256 = job_hash.parse().map_err(|_| Error::malformed("job hash is not 32 bytes of hex"))?;
    let nonce = U256::from(client.platform().now_ms().to_bits()) + U256::from(NONCE.with(|n| { n.set(n.get() + 1); n.get() }));
    let block = wallet.request("eth_getBlockByNumber", json!(["latest", false])).await?;
    let now = super::quantity(&block["timestamp"])? as u64;
    // The deadline leaves the job its timeout plus time for the verification and release.
    let deadline = now + timeout_secs.ceil() as u64 + 600;
    let platform = client.platform().clone();
    let e = Escrow { wallet: wallet.as_ref(), platform: platform.as_ref(), address: escrow };
    let txs = e.open(payer, hash, nonce, token, amount, deadline).await?;
    let key = e.key_of(payer, hash, nonce).await?;
    Ok(PaidJob { wallet, platform, escrow, payer, key, amount, request: request.clone(), txs: RefCell::new(txs), state: RefCell::new("pending".into()), settled: Cell::new(false) })
}

/// Payout addresses the registry lists for these worker ids (unlisted workers are not paid).
pub async fn payouts(client: &Sandrun, worker_ids: &[String]) -> Vec<Address> {
    let Some(reg) = client.config().registry_endpoint.clone() else { return vec![] };
    let Ok(nodes) = BrokerClient::new(&reg, client.platform().clone()).nodes().await else { return vec![] };
    let mut out = Vec::new();
    for id in worker_ids {
        let payout = nodes.iter().find(|n| n.worker_id().as_deref() == Some(id)).and_then(|n| n.capabilities["payout"].as_str()).and_then(|p| p.parse::<Address>().ok());
        if let Some(p) = payout {
            if !out.contains(&p) {
                out.push(p);
            }
        }
    }
    out
}

impl PaidJob {
    /// What was paid so far.
    pub fn info(&self) -> PaymentInfo {
        let txs = self.txs.borrow();
        PaymentInfo {
            amount: self.request.amount.clone(),
            token: self.request.token.clone(),
            state: self.state.borrow().clone(),
            transactions: txs.iter().map(|t| t.hash.clone()).collect(),
            gas_used: txs.iter().map(|t| t.gas_used as u64).sum(),
        }
    }

    fn escrow(&self) -> Escrow<'_> {
        Escrow { wallet: self.wallet.as_ref(), platform: self.platform.as_ref(), address: self.escrow }
    }

    /// Refund the payer (once).
    pub async fn refund(&self) -> Result<()> {
        if self.settled.replace(true) {
            return Ok(());
        }
        let m = self.escrow().refund(self.payer, self.key).await?;
        self.txs.borrow_mut().push(m);
        *self.state.borrow_mut() = "refunded".into();
        Ok(())
    }

    /// Release to `payees` in equal shares (the contract refunds the remainder), once.
    pub async fn release(&self, payees: &[Address]) -> Result<()> {
        if payees.is_empty() {
            return self.refund().await;
        }
        if self.settled.replace(true) {
            return Ok(());
        }
        let share = self.amount / U256::from(payees.len());
        match self.escrow().release(self.payer, self.key, payees.to_vec(), vec![share; payees.len()]).await {
            Ok(m) => {
                self.txs.borrow_mut().push(m);
                *self.state.borrow_mut() = "released".into();
                Ok(())
            }
            Err(e) => {
                // A release is all or nothing (a payee that refuses ETH fails it): give the
                // payer the funds back now rather than at the deadline.
                self.settled.set(false);
                let refunded = self.refund().await;
                Err(Error::new(
                    ErrorCode::PaymentFailed,
                    match refunded {
                        Ok(()) => format!("the release failed ({}); the payer was refunded", e.message),
                        Err(r) => format!("the release failed ({}) and so did the refund ({}); the payer can refund any time", e.message, r.message),
                    },
                ))
            }
        }
    }

    /// Settle after the job: release on a verified result, refund otherwise; the outcome
    /// carries `cost`. A failed settlement turns the outcome into `PAYMENT_FAILED`.
    pub async fn settle(&self, client: &Sandrun, outcome: Result<JobResult>) -> Result<JobResult> {
        let verified_ids: Option<Vec<String>> = match &outcome {
            Ok(r) if r.proof.as_ref().is_some_and(|p| p.verified) && r.status == crate::types::ResultStatus::Completed => {
                let p = r.proof.as_ref().unwrap();
                Some(match &p.consensus {
                    Some(c) => c.agreeing.clone(),
                    None => p.worker_id.clone().into_iter().collect(),
                })
            }
            _ => None,
        };
        let settled = match verified_ids {
            Some(ids) => {
                let payees = payouts(client, &ids).await;
                self.release(&payees).await
            }
            None => self.refund().await,
        };
        let cost = self.info();
        match (outcome, settled) {
            (Ok(mut r), Ok(())) => {
                r.cost = cost;
                Ok(r)
            }
            (Err(e), Ok(())) => Err(e.with_details(json!({"cost": cost}))),
            (_, Err(e)) => Err(Error::new(ErrorCode::PaymentFailed, format!("the job ended but the escrow could not be settled: {}", e.message)).with_details(json!({"cost": cost}))),
        }
    }
}
