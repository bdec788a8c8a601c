//! Facade of `sandrun.ipfs()`: add, cat, ls, get over the core's verified IPFS client.

use super::convert::{check_keys, err, to_js};
use crate::ipfs::{add::AddOptions, Ipfs as CoreIpfs, IpfsUrl, Limits};
use js_sys::{Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

#[wasm_bindgen(typescript_custom_section)]
const TS_IPFS: &str = r#"
/** Options of `Ipfs.add()`: the DAG's settings. Defaults are Kubo's: CIDv0, DAG-PB leaves;
 * with `cidVersion: 1`, raw leaves. Chunks are always 256 KiB, the layout balanced. */
export interface IpfsAddOptions {
  cidVersion?: 0 | 1;
  /** Leaves as raw blocks (needs `cidVersion: 1`). */
  rawLeaves?: boolean;
}
/** Options of `Ipfs.cat()` and `Ipfs.get()`. */
export interface IpfsGetOptions {
  /** The most content bytes accepted (a file, or a directory's files together); default 100 MiB. */
  maxBytes?: number;
}
/** One entry of `Ipfs.ls()`. */
export interface IpfsEntry {
  name: string;
  cid: string;
  type: 'file' | 'directory' | 'symlink' | 'other';
  /** Content bytes of a file (0 for anything else). */
  size: number;
}
"#;

/// IPFS through the client's `ipfsGateway` (reads, every block verified against its CID)
/// and `ipfsApi` (adds, every CID computed locally and checked against the node's).
#[wasm_bindgen]
pub struct Ipfs {
    pub(crate) core: CoreIpfs,
}

fn add_options(options: &JsValue) -> Result<AddOptions, JsValue> {
    if options.is_undefined() || options.is_null() {
        return Ok(AddOptions::default());
    }
    check_keys(options, &["cidVersion", "rawLeaves"], "add() options")?;
    let v = Reflect::get(options, &"cidVersion".into())?;
    let r = Reflect::get(options, &"rawLeaves".into())?;
    let version = match v.as_f64() {
        Some(n) if n == 0.0 || n == 1.0 => Some(n as u8),
        None if v.is_undefined() => None,
        _ => return Err(err(crate::Error::invalid("add(): options.cidVersion must be 0 or 1"))),
    };
    if !(r.is_undefined() || r.as_bool().is_some()) {
        return Err(err(crate::Error::invalid("add(): options.rawLeaves must be a boolean")));
    }
    AddOptions::new(version, r.as_bool()).map_err(err)
}

fn limits(options: &JsValue, what: &str) -> Result<Limits, JsValue> {
    if options.is_undefined() || options.is_null() {
        return Ok(Limits::default());
    }
    check_keys(options, &["maxBytes"], what)?;
    let m = Reflect::get(options, &"maxBytes".into())?;
    if !(m.is_undefined() || m.as_f64().is_some()) {
        return Err(err(crate::Error::invalid(format!("{what}: maxBytes must be a number"))));
    }
    Limits::default().with_max_bytes(m.as_f64()).map_err(err)
}

/// `Uint8Array` | `string` -> bytes.
fn bytes_of(v: &JsValue, what: &str) -> Result<Vec<u8>, JsValue> {
    if let Some(s) = v.as_string() {
        return Ok(s.into_bytes());
    }
    if v.is_instance_of::<Uint8Array>() {
        return Ok(Uint8Array::new(v).to_vec());
    }
    Err(err(crate::Error::invalid(format!("{what} must be a Uint8Array or a string"))))
}

#[wasm_bindgen]
impl Ipfs {
    /// Add bytes (one file) or `{ path: bytes }` (a directory; paths may hold `/`); resolves
    /// with the root CID, computed here and equal to the node's answer (`VERIFICATION_FAILED`
    /// otherwise). Needs `ipfsApi`.
    #[wasm_bindgen(unchecked_return_type = "Promise<string>")]
    pub fn add(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Uint8Array | Record<string, Uint8Array | string>")] data: JsValue,
        #[wasm_bindgen(unchecked_param_type = "IpfsAddOptions")] options: Option<JsValue>,
    ) -> Promise {
        let core = self.core.clone();
        let parsed = (|| -> Result<(Option<Vec<u8>>, Vec<(String, Vec<u8>)>, AddOptions), JsValue> {
            let opts = add_options(&options.unwrap_or(JsValue::UNDEFINED))?;
            if data.is_instance_of::<Uint8Array>() || data.is_string() {
                return Ok((Some(bytes_of(&data, "add() data")?), vec![], opts));
            }
            if !data.is_object() {
                return Err(err(crate::Error::invalid("add() takes a Uint8Array, or an object of { path: Uint8Array }")));
            }
            let mut files = Vec::new();
            for entry in Object::entries(data.unchecked_ref()).iter() {
                let pair = js_sys::Array::from(&entry);
                let path = pair.get(0).as_string().unwrap_or_default();
                files.push((path.clone(), bytes_of(&pair.get(1), &format!("add(): the value of {path:?}"))?));
            }
            Ok((None, files, opts))
        })();
        future_to_promise(async move {
            let (single, files, opts) = parsed?;
            let cid = match single {
                Some(b) => core.add_bytes(&b, opts).await.map_err(err)?,
                None => core.add_files(&files, opts).await.map_err(err)?.0,
            };
            Ok(JsValue::from_str(&cid))
        })
    }

    /// The verified bytes of the file at `cidOrUrl` (`ipfs://CID[/path]` or a CID). A block
    /// that does not match its CID rejects with `VERIFICATION_FAILED`, and nothing is returned.
    #[wasm_bindgen(unchecked_return_type = "Promise<Uint8Array>")]
    pub fn cat(&self, #[wasm_bindgen(js_name = cidOrUrl)] cid_or_url: String, #[wasm_bindgen(unchecked_param_type = "IpfsGetOptions")] options: Option<JsValue>) -> Promise {
        let core = self.core.clone();
        let l = limits(&options.unwrap_or(JsValue::UNDEFINED), "cat() options");
        future_to_promise(async move {
            // Verified pieces (slices of the fetched blocks) copied once, straight into
            // the JS array: the file is never assembled in wasm memory.
            let parts = core.cat_parts(&cid_or_url, l?).await.map_err(err)?;
            Ok(crate::platform::js::concat_to_js(parts.iter().map(|p| &p[..])).into())
        })
    }

    /// Benchmark hook of bench/goals.mjs (issue 14, row 4); not API. Runs the hash a
    /// result check runs on its outputs (`gpu::sha256_for_proof`, the call
    /// `execution.rs` makes, with the client's platform) `iters` times over `bytes`,
    /// copied once into wasm memory beforehand as downloaded outputs are; resolves with
    /// `[hex digest, mean ms per run]`, timed with the host's clock around the loop.
    #[wasm_bindgen(js_name = __verificationHashBench, skip_typescript)]
    pub fn verification_hash_bench(&self, bytes: &[u8], iters: u32) -> Promise {
        let platform = self.core.platform().clone();
        let buf: std::rc::Rc<[u8]> = bytes.into();
        let iters = iters.max(1);
        future_to_promise(async move {
            let t0 = platform.now_ms();
            let mut last = String::new();
            for _ in 0..iters {
                let (h, _) = crate::gpu::sha256_for_proof(platform.as_ref(), std::slice::from_ref(&buf)).await;
                last = h.into_iter().next().unwrap_or_default();
            }
            let ms = (platform.now_ms() - t0) / iters as f64;
            Ok(js_sys::Array::of2(&JsValue::from_str(&last), &JsValue::from_f64(ms)).into())
        })
    }

    /// The entries of the directory at `cidOrUrl`, verified.
    #[wasm_bindgen(unchecked_return_type = "Promise<IpfsEntry[]>")]
    pub fn ls(&self, #[wasm_bindgen(js_name = cidOrUrl)] cid_or_url: String) -> Promise {
        let core = self.core.clone();
        future_to_promise(async move { to_js(&core.ls(&cid_or_url, Limits::default()).await.map_err(err)?) })
    }

    /// Every file under the directory at `cidOrUrl` as `{ 'path/in/dir': bytes }` (a file
    /// CID gives `{ '': bytes }`), all verified before any is returned.
    #[wasm_bindgen(unchecked_return_type = "Promise<Record<string, Uint8Array>>")]
    pub fn get(&self, #[wasm_bindgen(js_name = cidOrUrl)] cid_or_url: String, #[wasm_bindgen(unchecked_param_type = "IpfsGetOptions")] options: Option<JsValue>) -> Promise {
        let core = self.core.clone();
        let l = limits(&options.unwrap_or(JsValue::UNDEFINED), "get() options");
        future_to_promise(async move {
            let url = IpfsUrl::parse(&cid_or_url).map_err(err)?;
            let files = core.get(&url, l?).await.map_err(err)?;
            let out = Object::new();
            for (p, b) in files {
                Reflect::set(&out, &JsValue::from_str(&p), &Uint8Array::from(&b[..]))?;
            }
            Ok(out.into())
        })
    }
}
