//! The payment flow: open an escrow before the job is submitted, release it to the
//! workers whose verified results agreed (equal shares: each did the same work), refund it
//! otherwise (failure, no quorum, cancel, timeout, no bound payout address).
//!
//! Nothing is lost on a timeout: every transaction hash is recorded as soon as the wallet
//! returns it, and an error after that carries `details: { escrow: { address, chainId,
//! key, payer }, transactions, state }`, so `refund_key` (JS: `sandrun.refund(key)`) can
//! settle the escrow later.

use super::binding::{same_worker, verify_payout_binding};
use super::escrow::{decimals, key_of, parse_amount, payer, Escrow, Mined, DEFAULT_RECEIPT_TIMEOUT_SECS, REVERTED};
use super::Wallet;
use crate::api::BrokerClient;
use crate::context::Sandrun;
use crate::error::{Error, ErrorCode, Result};
use crate::platform::Platform;
use crate::types::{JobResult, PaymentInfo, PaymentRequest};
use alloy_primitives::{Address, B256, U256};
use serde_json::{json, Value};
use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// An open escrow for one job.
pub struct PaidJob {
    wallet: Rc<dyn Wallet>,
    platform: Rc<dyn Platform>,
    escrow: Address,
    chain_id: u64,
    payer: Address,
    key: B256,
    amount: U256,
    receipt_timeout_ms: u64,
    request: PaymentRequest,
    /// Mined transactions, in order.
    txs: RefCell<Vec<Mined>>,
    /// Every transaction hash the wallet returned, mined or not, in order.
    sent: RefCell<Vec<String>>,
    state: RefCell<String>,
    /// What the SDK is waiting for ('opening', 'releasing', 'refunding'), if anything.
    in_flight: Cell<Option<&'static str>>,
    credited: RefCell<Vec<Address>>,
    settled: Cell<bool>,
    /// A settlement is in flight.
    busy: Cell<bool>,
}

thread_local!(static NONCE: Cell<u64> = const { Cell::new(0) });

/// The wallet, the escrow and its chain, checked against each other.
struct Connection {
    wallet: Rc<dyn Wallet>,
    escrow: Address,
    chain_id: u64,
    receipt_timeout_ms: u64,
}

async fn connect(client: &Sandrun, what: &str) -> Result<Connection> {
    let wallet = client.wallet().ok_or_else(|| {
        Error::invalid(format!("{what} needs a wallet: set SandrunConfig.web3Provider (window.ethereum, or localWallet(privateKey, rpcUrl) in Node)"))
    })?;
    let cfg = client.config().escrow.clone().ok_or_else(|| Error::invalid(format!("{what} needs SandrunConfig.escrow = {{ address, chainId }}")))?;
    let chain = super::quantity(&wallet.request("eth_chainId", json!([])).await?)? as u64;
    if chain != cfg.chain_id {
        return Err(Error::new(
            ErrorCode::WrongChain,
            format!("the wallet is on chain {chain} but the escrow is on chain {}: switch the wallet's network; nothing was paid or submitted", cfg.chain_id),
        ));
    }
    let escrow: Address = cfg.address.parse().map_err(|_| Error::invalid("escrow.address is not an address"))?;
    let secs = cfg.receipt_timeout.unwrap_or(DEFAULT_RECEIPT_TIMEOUT_SECS);
    Ok(Connection { wallet, escrow, chain_id: cfg.chain_id, receipt_timeout_ms: (secs * 1000.0).ceil() as u64 })
}

/// Open the escrow for a job whose `job_hash` is known; nothing is submitted yet. If the
/// open is sent but not seen mined, the error's `details` name the escrow key.
pub async fn open(client: &Sandrun, job_hash: &str, timeout_secs: f64, request: &PaymentRequest) -> Result<PaidJob> {
    let c = connect(client, "payment()").await?;
    let wallet = c.wallet.clone();
    let payer = payer(wallet.as_ref()).await?;
    let token: Option<Address> = if request.token == "ETH" { None } else { Some(request.token.parse().map_err(|_| Error::invalid("payment token is not an address"))?) };
    let amount = parse_amount(&request.amount, decimals(wallet.as_ref(), token).await?)?;
    let hash: B256 = job_hash.parse().map_err(|_| Error::malformed("job hash is not 32 bytes of hex"))?;
    let nonce = U256::from(client.platform().now_ms().to_bits()) + U256::from(NONCE.with(|n| { n.set(n.get() + 1); n.get() }));
    let block = wallet.request("eth_getBlockByNumber", json!(["latest", false])).await?;
    let now = super::quantity(&block["timestamp"])? as u64;
    // The deadline leaves the job its timeout plus time for the verification and release.
    let deadline = escrow_deadline(now, timeout_secs);
    // The key is known before anything is sent, so a timed-out open can still be named.
    let paid = PaidJob {
        wallet,
        platform: client.platform().clone(),
        escrow: c.escrow,
        chain_id: c.chain_id,
        payer,
        key: key_of(payer, hash, nonce),
        amount,
        receipt_timeout_ms: c.receipt_timeout_ms,
        request: request.clone(),
        txs: RefCell::default(),
        sent: RefCell::default(),
        state: RefCell::new("pending".into()),
        in_flight: Cell::new(Some("opening")),
        credited: RefCell::default(),
        settled: Cell::new(false),
        busy: Cell::new(false),
    };
    let txs = paid.escrow().open(payer, hash, nonce, token, amount, deadline).await.map_err(|e| paid.stuck(e))?;
    paid.in_flight.set(None);
    *paid.txs.borrow_mut() = txs;
    Ok(paid)
}

/// The escrow deadline (unix seconds): the chain's `now` plus the job's timeout plus 600 s
/// for verification and release. Saturating: `timeout(1e300)` is a valid job timeout and
/// `now` is the RPC's word, and a wrapped sum would be a deadline in the past.
pub fn escrow_deadline(now: u64, timeout_secs: f64) -> u64 {
    now.saturating_add(timeout_secs.ceil() as u64).saturating_add(600)
}

/// Payout addresses for these agreeing worker keys, one per worker (an address shared by
/// several workers is paid once). For each key every registry record naming it is
/// considered, and only an address the worker bound with its own key for `chain_id` is
/// taken (see [`super::binding`]): a record a registry or another party made up, without
/// the worker's signature, is never paid. Unbound or unlisted workers are not paid.
pub async fn payouts(client: &Sandrun, worker_ids: &[String], chain_id: u64) -> Vec<Address> {
    let Some(reg) = client.config().registry_endpoint.clone() else { return vec![] };
    let Ok(nodes) = BrokerClient::new(&reg, client.platform().clone()).nodes().await else { return vec![] };
    let mut out = Vec::new();
    for id in worker_ids {
        let bound = nodes.iter().filter(|n| n.worker_id().is_some_and(|w| same_worker(&w, id))).find_map(|n| {
            let address = n.capabilities["payout"].as_str()?;
            let signature = n.capabilities["payout_signature"].as_str()?;
            verify_payout_binding(id, chain_id, address, signature).then(|| address.parse::<Address>().ok()).flatten()
        });
        if let Some(p) = bound {
            if !out.contains(&p) {
                out.push(p);
            }
        }
    }
    out
}

/// `e` with `extra`'s keys added to its details (an object; existing keys are kept
/// unless `extra` has them too).
pub fn merge_details(mut e: Error, extra: Value) -> Error {
    let mut details = match e.details.take() {
        Some(Value::Object(m)) => m,
        Some(other) => {
            let mut m = serde_json::Map::new();
            m.insert("cause".into(), other);
            m
        }
        None => serde_json::Map::new(),
    };
    if let Value::Object(x) = extra {
        details.extend(x);
    }
    e.details = Some(Value::Object(details));
    e
}

/// Base units -> display units ("500000000000000000", 18 -> "0.5").
pub fn format_amount(amount: U256, decimals: u8) -> String {
    let digits = amount.to_string();
    let d = decimals as usize;
    let (int, frac) = if digits.len() > d { (digits[..digits.len() - d].to_string(), digits[digits.len() - d..].to_string()) } else { ("0".to_string(), format!("{digits:0>d$}")) };
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() { int } else { format!("{int}.{frac}") }
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
            credited: self.credited.borrow().iter().map(|a| format!("{a:#x}")).collect(),
        }
    }

    /// The escrow key, `0x` + 64 hex digits.
    pub fn key(&self) -> String {
        format!("{:#x}", self.key)
    }

    fn escrow(&self) -> Escrow<'_> {
        Escrow { wallet: self.wallet.as_ref(), platform: self.platform.as_ref(), address: self.escrow, receipt_timeout_ms: self.receipt_timeout_ms, sent: &self.sent }
    }

    /// `e` (from a payment transaction) with what it takes to settle the escrow later,
    /// once any transaction was sent: `{ escrow: { address, chainId, key, payer },
    /// transactions, state }`; `state` is what was in flight ('opening', 'releasing',
    /// 'refunding') or the last known state.
    fn stuck(&self, e: Error) -> Error {
        let sent = self.sent.borrow().clone();
        if sent.is_empty() {
            return e;
        }
        let state = self.in_flight.get().map(str::to_string).unwrap_or_else(|| self.state.borrow().clone());
        let details = json!({
            "escrow": {"address": format!("{:#x}", self.escrow), "chainId": self.chain_id, "key": self.key(), "payer": format!("{:#x}", self.payer)},
            "transactions": sent,
            "state": state,
        });
        let mut e = merge_details(e, details);
        // A reverted transaction is final (it did nothing); anything else may still land.
        if e.code != ErrorCode::UserRejected && e.cause.as_deref() != Some(REVERTED) {
            e.message = format!("{}; to settle the escrow later, call sandrun.refund('{}') (error.details.escrow.key)", e.message, self.key());
        }
        e
    }

    /// Refund the payer (once).
    pub async fn refund(&self) -> Result<()> {
        if self.settled.replace(true) {
            return Ok(());
        }
        self.in_flight.set(Some("refunding"));
        let r = self.escrow().refund(self.payer, self.key).await;
        let r = r.map_err(|e| self.stuck(e));
        self.in_flight.set(None);
        let m = r?;
        self.txs.borrow_mut().push(m);
        *self.state.borrow_mut() = "refunded".into();
        Ok(())
    }

    /// Release to `payees` in equal shares (the contract refunds the remainder), once. A
    /// payee whose payment fails is credited by the escrow (it withdraws later) and listed
    /// in `info().credited`; the others are paid all the same.
    pub async fn release(&self, payees: &[Address]) -> Result<()> {
        if payees.is_empty() {
            return self.refund().await;
        }
        if self.settled.replace(true) {
            return Ok(());
        }
        let share = self.amount / U256::from(payees.len());
        let sent_before = self.sent.borrow().len();
        self.in_flight.set(Some("releasing"));
        let r = self.escrow().release(self.payer, self.key, payees.to_vec(), vec![share; payees.len()]).await;
        match r {
            Ok((m, credited)) => {
                self.in_flight.set(None);
                self.txs.borrow_mut().push(m);
                *self.credited.borrow_mut() = credited;
                *self.state.borrow_mut() = "released".into();
                Ok(())
            }
            // Known not to have gone through (never sent, or mined and reverted): give the
            // payer the funds back now rather than at the deadline. A release whose receipt
            // never came may still be mined, so it is left alone (details say how to settle).
            Err(e) if self.sent.borrow().len() == sent_before || e.cause.as_deref() == Some(REVERTED) => {
                self.in_flight.set(None);
                self.settled.set(false);
                let (message, details) = match self.refund().await {
                    Ok(()) => (format!("the release failed ({}); the payer was refunded", e.message), None),
                    Err(r) => (format!("the release failed ({}) and so did the refund ({})", e.message, r.message), r.details),
                };
                Err(Error { details, ..Error::new(ErrorCode::PaymentFailed, message) })
            }
            Err(e) => {
                let e = self.stuck(e);
                self.in_flight.set(None);
                Err(e)
            }
        }
    }

    /// Settle after the job: release on a verified result, refund otherwise; the outcome
    /// carries `cost`. A failed settlement turns the outcome into `PAYMENT_FAILED`, with
    /// what it takes to settle later in `details` when a transaction was sent.
    pub async fn settle(&self, client: &Sandrun, outcome: Result<JobResult>) -> Result<JobResult> {
        // A settle that starts while another is in flight (two replicas of a distributed
        // job awaited together, or wait() twice) waits for it, so every caller reads the
        // final state; the guard frees the slot even if a caller stops waiting.
        while self.busy.get() {
            self.platform.sleep(10).await;
        }
        struct Busy<'a>(&'a Cell<bool>);
        impl Drop for Busy<'_> {
            fn drop(&mut self) {
                self.0.set(false);
            }
        }
        self.busy.set(true);
        let _busy = Busy(&self.busy);
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
                let payees = payouts(client, &ids, self.chain_id).await;
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
            (Err(e), Ok(())) => Err(merge_details(e, json!({"cost": cost}))),
            (_, Err(e)) => {
                let details = e.details.clone();
                let out = Error::new(ErrorCode::PaymentFailed, format!("the job ended but the escrow could not be settled: {}", e.message));
                Err(merge_details(Error { details, ..out }, json!({"cost": cost})))
            }
        }
    }
}

/// `sandrun.refund(key)`: refund the escrow under `key` to its payer, e.g. after a timeout
/// left it open (`error.details.escrow.key`).
///
/// - open: the refund is sent (by the payer at any time; by anyone else only from the
///   deadline on) and the answer says `state: 'refunded'` with its transaction;
/// - already refunded: the same answer with no transaction (nothing is sent: calling it
///   twice is safe);
/// - released: `PAYMENT_FAILED`, `details.state == 'released'` (the workers were paid);
/// - unknown key: `PAYMENT_FAILED`, `details.state == 'none'` (if the open is still
///   pending, wait until it is mined and call again).
pub async fn refund_key(client: &Sandrun, key: &str) -> Result<PaymentInfo> {
    let key: B256 = key
        .trim()
        .parse()
        .map_err(|_| Error::invalid(format!("refund(key): the escrow key must be 0x + 64 hex digits (error.details.escrow.key), got {key:?}")))?;
    let c = connect(client, "refund()").await?;
    let wallet = c.wallet.as_ref();
    let from = payer(wallet).await?;
    let sent = RefCell::new(Vec::new());
    let e = Escrow { wallet, platform: client.platform().as_ref(), address: c.escrow, receipt_timeout_ms: c.receipt_timeout_ms, sent: &sent };
    let st = e.read(key).await?;
    let escrow_ref = |payer: Address| json!({"address": format!("{:#x}", c.escrow), "chainId": c.chain_id, "key": format!("{key:#x}"), "payer": format!("{payer:#x}")});
    let failed = |state: &str, message: String| Error::new(ErrorCode::PaymentFailed, message).with_details(json!({"escrow": escrow_ref(st.payer), "state": state}));
    if st.state == 0 {
        return Err(failed(
            "none",
            format!("refund(): there is no escrow under key {key:#x} at {:#x} on chain {}; if its open transaction is still pending, wait until it is mined and call refund() again", c.escrow, c.chain_id),
        ));
    }
    let info = |state: &str, mined: Option<&Mined>, units: u8| PaymentInfo {
        amount: format_amount(st.amount, units),
        token: st.token.map(|t| format!("{t:#x}")).unwrap_or_else(|| "ETH".into()),
        state: state.into(),
        transactions: mined.map(|m| vec![m.hash.clone()]).unwrap_or_default(),
        gas_used: mined.map(|m| m.gas_used as u64).unwrap_or(0),
        credited: vec![],
    };
    let units = decimals(wallet, st.token).await?;
    match st.state {
        2 => Err(failed("released", format!("refund(): escrow {key:#x} was already released to the workers; there is nothing to refund"))),
        3 => Ok(info("refunded", None, units)),
        1 => {
            if from != st.payer {
                let block = wallet.request("eth_getBlockByNumber", json!(["latest", false])).await?;
                let now = super::quantity(&block["timestamp"])? as u64;
                if now < st.deadline {
                    return Err(Error::invalid(format!(
                        "refund(): only the payer {:#x} may refund escrow {key:#x} before its deadline (unix {}); this wallet's account is {from:#x}: switch to the payer's account",
                        st.payer, st.deadline
                    )));
                }
            }
            match e.refund(from, key).await {
                Ok(m) => Ok(info("refunded", Some(&m), units)),
                // A refund that reverted because another one got there first is done.
                Err(err) if err.cause.as_deref() == Some(REVERTED) && e.read(key).await.map(|s| s.state) == Ok(3) => Ok(info("refunded", None, units)),
                Err(err) => Err(merge_details(err, json!({"escrow": escrow_ref(st.payer), "transactions": sent.borrow().clone(), "state": "refunding"}))),
            }
        }
        s => Err(Error::malformed(format!("refund(): escrow {key:#x} is in an unknown state {s}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_format_in_display_units() {
        assert_eq!(format_amount(U256::from(500_000_000_000_000_000u128), 18), "0.5");
        assert_eq!(format_amount(U256::from(12_500_000_000_000_000_000u128), 18), "12.5");
        assert_eq!(format_amount(U256::from(1_000_000_000_000_000_000u128), 18), "1");
        assert_eq!(format_amount(U256::from(1u64), 6), "0.000001");
        assert_eq!(format_amount(U256::ZERO, 18), "0");
        assert_eq!(format_amount(U256::from(5u64), 0), "5");
        assert_eq!(parse_amount(&format_amount(U256::from(123_456_789u64), 6), 6).unwrap(), U256::from(123_456_789u64));
    }

    #[test]
    fn details_merge_keeps_both() {
        let e = Error::network("x").with_details(json!({"a": 1}));
        assert_eq!(merge_details(e, json!({"b": 2})).details, Some(json!({"a": 1, "b": 2})));
        assert_eq!(merge_details(Error::network("x"), json!({"b": 2})).details, Some(json!({"b": 2})));
    }
}
