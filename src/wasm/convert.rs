//! Conversions between JS values and core types, and the error mapping.

use super::Host;
use crate::config::SandrunConfig;
use crate::error::{Error, ErrorCode};
use crate::execution::Finished;
use crate::job::JobBuilder as CoreJob;
use crate::types::JobResult;
use js_sys::{Reflect, Uint8Array};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::cell::RefCell;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

thread_local! {
    static HOST: RefCell<Option<Host>> = const { RefCell::new(None) };
}

pub fn set_host(h: Host) {
    HOST.with(|c| *c.borrow_mut() = Some(h));
}

pub fn host() -> Result<Host, JsValue> {
    HOST.with(|c| c.borrow().clone())
        .ok_or_else(|| JsValue::from_str("@sandrun/wasm is not initialized: in browsers, `await init()` once before use"))
}

#[wasm_bindgen]
extern "C" {
    /// Optional typed parameters: an `unchecked_param_type` would drop the `?`.
    #[wasm_bindgen(typescript_type = "SandrunConfig")]
    pub type SandrunConfigArg;
    #[wasm_bindgen(typescript_type = "DiscoveryCriteria")]
    pub type DiscoveryCriteriaArg;

    #[wasm_bindgen(method, js_name = makeError)]
    fn make_error(this: &Host, code: &str, message: &str, extra: JsValue) -> JsValue;
}

/// Core error -> a `SandrunError` instance (the class lives in the package's JS).
pub fn err(e: Error) -> JsValue {
    let extra = js_sys::Object::new();
    let set = |k: &str, v: JsValue| {
        let _ = Reflect::set(&extra, &JsValue::from_str(k), &v);
    };
    if let Some(s) = e.status {
        set("status", JsValue::from(s));
    }
    if let Some(ms) = e.retry_after_ms {
        set("retryAfterMs", JsValue::from(ms as f64));
    }
    if let Some(c) = &e.cause {
        set("cause", JsValue::from_str(c));
    }
    if let Some(d) = &e.details {
        set("details", to_js(d).unwrap_or(JsValue::NULL));
    }
    match host() {
        Ok(h) => h.make_error(e.code.as_str(), &e.message, extra.into()),
        Err(_) => JsValue::from_str(&e.to_string()),
    }
}

pub fn to_js<T: Serialize + ?Sized>(v: &T) -> Result<JsValue, JsValue> {
    v.serialize(&serde_wasm_bindgen::Serializer::new().serialize_maps_as_objects(true).serialize_missing_as_null(false))
        .map_err(|e| err(Error::new(ErrorCode::MalformedResponse, format!("cannot convert a value to JS: {e}"))))
}

/// A JS argument -> a core type, with an `INVALID_ARGUMENT` that names the method.
pub fn from_js<T: DeserializeOwned>(v: JsValue, what: &str) -> Result<T, JsValue> {
    serde_wasm_bindgen::from_value(v).map_err(|e| err(Error::invalid(format!("{what}: {e}"))))
}

pub fn config(v: Option<JsValue>) -> Result<SandrunConfig, JsValue> {
    match v {
        None => Ok(SandrunConfig::default()),
        Some(v) if v.is_undefined() || v.is_null() => Ok(SandrunConfig::default()),
        Some(v) => {
            if !v.is_object() {
                return Err(err(Error::invalid("the config must be an object like { apiEndpoint: 'http://127.0.0.1:7700' }")));
            }
            check_keys(&v, CONFIG_KEYS, "SandrunConfig")?;
            let defaults = Reflect::get(&v, &"defaults".into())?;
            if defaults.is_object() {
                check_keys(&defaults, &["timeout", "retries", "consensus"], "SandrunConfig.defaults")?;
            }
            // The provider is a live JS object, held apart from the serializable config.
            let copy = js_sys::Object::assign(&js_sys::Object::new(), v.unchecked_ref::<js_sys::Object>());
            let _ = Reflect::delete_property(&copy, &"web3Provider".into());
            from_js(copy.into(), "SandrunConfig")
        }
    }
}

const CONFIG_KEYS: &[&str] = &["apiEndpoint", "registryEndpoint", "ipfsGateway", "ipfsApi", "authentication", "defaults", "escrow", "web3Provider", "allowedWorkers"];

/// serde-wasm-bindgen reads only the fields a struct declares, so a misspelt option
/// would be ignored silently; name it instead.
pub fn check_keys(v: &JsValue, allowed: &[&str], what: &str) -> Result<(), JsValue> {
    for k in js_sys::Object::keys(v.unchecked_ref::<js_sys::Object>()).iter() {
        let k = k.as_string().unwrap_or_default();
        if !allowed.contains(&k.as_str()) {
            return Err(err(Error::invalid(format!("{what} has no option {k:?}; the options are {}", allowed.join(", ")))));
        }
    }
    Ok(())
}

pub enum Code {
    Bytes(Vec<u8>),
    Blob,
}

/// string | Uint8Array | Blob, checked now.
pub fn code(v: &JsValue) -> Result<Code, JsValue> {
    if let Some(s) = v.as_string() {
        return Ok(Code::Bytes(s.into_bytes()));
    }
    if v.is_instance_of::<Uint8Array>() {
        return Ok(Code::Bytes(Uint8Array::new(v).to_vec()));
    }
    let is_blob = Reflect::get(v, &"arrayBuffer".into()).map(|f| f.is_function()).unwrap_or(false)
        && Reflect::get(v, &"size".into()).ok().and_then(|s| s.as_f64()).is_some();
    if is_blob {
        if Reflect::get(v, &"size".into()).ok().and_then(|s| s.as_f64()) == Some(0.0) {
            return Err(err(Error::invalid("code() got an empty Blob/File")));
        }
        return Ok(Code::Blob);
    }
    Err(err(Error::invalid("code() takes a string, a Uint8Array (or Buffer), or a Blob/File")))
}

/// Read a Blob/File given to `code()`; a File's name becomes the entrypoint.
pub async fn read_blob_into(job: &CoreJob, blob: &JsValue) -> Result<CoreJob, JsValue> {
    // web-sys's Blob/File (browsers, and Node's globals), so a Blob from another realm or a
    // look-alike object is refused by name rather than called blindly.
    let b: &web_sys::Blob = blob.dyn_ref().ok_or_else(|| err(Error::invalid("code() takes a string, a Uint8Array, or a Blob/File")))?;
    let buf = JsFuture::from(b.array_buffer()).await?;
    let bytes = Uint8Array::new(&buf).to_vec();
    let mut j = job.code(bytes).map_err(err)?;
    if let Some(name) = blob.dyn_ref::<web_sys::File>().map(|f| f.name()).filter(|n| !n.is_empty()) {
        if job.spec().entrypoint.is_none() {
            j = j.entrypoint(&name).map_err(err)?;
        }
        if job.spec().interpreter.is_none() {
            if let Some(i) = crate::job::prepare::interpreter_for_extension(&name) {
                j = j.interpreter(i).map_err(err)?;
            }
        }
    }
    Ok(j)
}

/// A result whose `files` carry their bytes.
pub fn with_bytes(f: Finished) -> JobResult {
    let mut r = f.result;
    for of in r.files.iter_mut() {
        of.bytes = f.files.iter().find(|(p, _)| *p == of.path).map(|(_, b)| b.to_vec());
    }
    r
}

/// What the caller passed, for error messages: `the string "2GB"`, `the number NaN`, ...
pub fn describe_js(v: &JsValue) -> String {
    if let Some(t) = v.as_string() {
        return format!("the string {t:?}");
    }
    if let Some(n) = v.as_f64() {
        return format!("the number {n}");
    }
    if v.is_undefined() {
        return "undefined".into();
    }
    if v.is_null() {
        return "null".into();
    }
    if let Some(b) = v.as_bool() {
        return format!("the boolean {b}");
    }
    if js_sys::Array::is_array(v) {
        return "an array".into();
    }
    if v.is_function() {
        return "a function".into();
    }
    "an object".into()
}

/// A number argument, or an error naming what was passed and what is expected.
pub fn number_arg(v: &JsValue, what: &str, expected: &str) -> Result<f64, JsValue> {
    v.as_f64().ok_or_else(|| err(Error::invalid(format!("{what} takes {expected}, got {}", describe_js(v)))))
}
