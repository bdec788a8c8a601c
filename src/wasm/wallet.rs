//! The wallet seam in JS: any EIP-1193 provider as the core's `Wallet`, and
//! `localWallet(privateKey, rpcUrl)` for Node scripts.

use super::convert::{err, to_js};
use crate::chain::local::LocalWallet;
use crate::chain::{provider_error, Wallet};
use crate::error::Result;
use crate::platform::LocalFuture;
use js_sys::{Function, Promise, Reflect};
use serde_json::Value;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{future_to_promise, JsFuture};

#[wasm_bindgen(typescript_custom_section)]
const TS: &str = r#"
/** An EIP-1193 provider: `window.ethereum`, or `localWallet(privateKey, rpcUrl)`. */
export interface Web3Provider { request(args: { method: string; params?: unknown[] | object }): Promise<unknown> }
"#;

/// An EIP-1193 provider held by the SDK. Its `request` is called; nothing else.
pub struct JsWallet(JsValue);

impl JsWallet {
    /// Check the shape now, at `create()` / `configure()`.
    pub fn new(v: JsValue) -> std::result::Result<JsWallet, JsValue> {
        if !Reflect::get(&v, &"request".into()).map(|f| f.is_function()).unwrap_or(false) {
            return Err(err(crate::Error::invalid("web3Provider must be an EIP-1193 provider: an object with request({ method, params })")));
        }
        Ok(JsWallet(v))
    }
}

impl Wallet for JsWallet {
    fn request(&self, method: &str, params: Value) -> LocalFuture<'_, Result<Value>> {
        let method = method.to_string();
        Box::pin(async move {
            let args = js_sys::Object::new();
            let _ = Reflect::set(&args, &"method".into(), &JsValue::from_str(&method));
            let _ = Reflect::set(&args, &"params".into(), &to_js(&params).unwrap_or(JsValue::UNDEFINED));
            let f: Function = Reflect::get(&self.0, &"request".into()).unwrap_or(JsValue::UNDEFINED).into();
            let call = f.call1(&self.0, &args).map(|p| JsFuture::from(Promise::resolve(&p)));
            let out = match call {
                Ok(fut) => fut.await,
                Err(e) => Err(e),
            };
            match out {
                Ok(v) => Ok(serde_wasm_bindgen::from_value(v).unwrap_or(Value::Null)),
                Err(e) => {
                    // A SandrunError from localWallet keeps its code.
                    if let Some(code) = Reflect::get(&e, &"code".into()).ok().and_then(|c| c.as_string()).and_then(|c| crate::ErrorCode::parse(&c)) {
                        let msg = Reflect::get(&e, &"message".into()).ok().and_then(|m| m.as_string()).unwrap_or_default();
                        return Err(crate::Error::new(code, crate::chain::redact_urls(&msg)));
                    }
                    let code = Reflect::get(&e, &"code".into()).ok().and_then(|c| c.as_f64()).unwrap_or(0.0) as i64;
                    let msg = Reflect::get(&e, &"message".into()).ok().and_then(|m| m.as_string()).unwrap_or_else(|| format!("{e:?}"));
                    Err(provider_error(&method, code, &msg))
                }
            }
        })
    }
}

/// An EIP-1193 provider for Node scripts: signs with `privateKey` (never sent anywhere)
/// and forwards everything else to `rpcUrl`.
#[wasm_bindgen(js_name = LocalWallet)]
pub struct LocalWalletJs {
    inner: Rc<LocalWallet>,
}

#[wasm_bindgen(js_class = LocalWallet)]
impl LocalWalletJs {
    /// The account's address.
    #[wasm_bindgen(getter)]
    pub fn address(&self) -> String {
        format!("{:#x}", self.inner.address())
    }
    /// EIP-1193 `request({ method, params })`.
    #[wasm_bindgen(unchecked_return_type = "Promise<unknown>")]
    pub fn request(&self, #[wasm_bindgen(unchecked_param_type = "{ method: string; params?: unknown[] | object }")] args: JsValue) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let method = Reflect::get(&args, &"method".into())?.as_string().ok_or_else(|| err(crate::Error::invalid("request() needs a method")))?;
            let params: Value = serde_wasm_bindgen::from_value(Reflect::get(&args, &"params".into())?).unwrap_or(Value::Array(vec![]));
            to_js(&inner.request(&method, params).await.map_err(err)?)
        })
    }
}

/// `localWallet(privateKey, rpcUrl)`: an EIP-1193 provider for `web3Provider` in Node.
#[wasm_bindgen(js_name = localWallet)]
pub fn local_wallet(#[wasm_bindgen(js_name = privateKey)] private_key: &str, #[wasm_bindgen(js_name = rpcUrl)] rpc_url: &str) -> std::result::Result<LocalWalletJs, JsValue> {
    let platform: Rc<dyn crate::platform::Platform> = Rc::new(crate::platform::js::JsPlatform::new(super::convert::host()?));
    Ok(LocalWalletJs { inner: Rc::new(LocalWallet::new(private_key, rpc_url, platform).map_err(err)?) })
}

/// A chain id from JS: a safe non-negative integer.
fn chain_id_arg(chain_id: f64) -> std::result::Result<u64, JsValue> {
    if chain_id.is_finite() && chain_id >= 0.0 && chain_id.fract() == 0.0 && chain_id <= 9_007_199_254_740_991.0 {
        Ok(chain_id as u64)
    } else {
        Err(err(crate::Error::invalid(format!("chainId must be a non-negative integer, got {chain_id}"))))
    }
}

/// `payoutMessage(chainId, address)`: the exact text a provider's worker key signs (pure
/// Ed25519, signature as standard base64 in the registry record's
/// `capabilities.payout_signature`) to bind `address` as its payout on `chainId`:
/// `sandrun-payout-v1|<chainId>|<address, lowercase>`. The SDK pays only bound addresses.
#[wasm_bindgen(js_name = payoutMessage)]
pub fn payout_message(#[wasm_bindgen(js_name = chainId)] chain_id: f64, address: &str) -> std::result::Result<String, JsValue> {
    let chain = chain_id_arg(chain_id)?;
    if !crate::chain::binding::is_address(address) {
        return Err(err(crate::Error::invalid(format!("payoutMessage: address must be 0x + 40 hex digits, got {address:?}"))));
    }
    Ok(crate::chain::payout_message(chain, address))
}

/// `verifyPayoutBinding(workerId, chainId, address, signature)`: does `signature` (base64)
/// by the worker key `workerId` (base64 Ed25519) bind `address` on `chainId`? Strict
/// Ed25519; malformed input is `false`.
#[wasm_bindgen(js_name = verifyPayoutBinding)]
pub fn verify_payout_binding(
    #[wasm_bindgen(js_name = workerId)] worker_id: &str,
    #[wasm_bindgen(js_name = chainId)] chain_id: f64,
    address: &str,
    signature: &str,
) -> bool {
    chain_id_arg(chain_id).is_ok_and(|c| crate::chain::verify_payout_binding(worker_id, c, address, signature))
}
