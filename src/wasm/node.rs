//! Facade of provider nodes: `NodeBuilder`, `Node`.

use super::convert::{check_keys, err, from_js, to_js};
use crate::node::{self, ListenOptions, Node as CoreNode, NodeBuilder as CoreNodeBuilder, NodeCapabilities, NodePricing, PayoutBinding};
use crate::Sandrun as CoreSandrun;
use js_sys::{Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{future_to_promise, spawn_local};

/// An immutable node description:
/// `sandrun.node().capabilities({...}).region('us-west-2').register()`.
#[wasm_bindgen]
#[derive(Clone)]
pub struct NodeBuilder {
    pub(super) client: CoreSandrun,
    pub(super) core: CoreNodeBuilder,
}

super::plugin::layered_builder!(NodeBuilder);

impl NodeBuilder {
    fn next(&self, core: crate::Result<CoreNodeBuilder>) -> Result<NodeBuilder, JsValue> {
        Ok(NodeBuilder { client: self.client.clone(), core: core.map_err(err)? })
    }
}

#[wasm_bindgen]
extern "C" {
    /// Typed so that the generated `.d.ts` says `startListening(options?: ListenOptions)`
    /// (an `unchecked_param_type` would drop the `?`).
    #[wasm_bindgen(typescript_type = "ListenOptions")]
    pub type ListenOptionsArg;
}

/// `check_keys` on `v[key]` when it is an object.
fn check_nested(v: &JsValue, key: &str, allowed: &[&str], what: &str) -> Result<(), JsValue> {
    let inner = Reflect::get(v, &key.into())?;
    if inner.is_object() {
        check_keys(&inner, allowed, what)?;
    }
    Ok(())
}

#[wasm_bindgen]
impl NodeBuilder {
    /// What the node offers: `{ gpu?: { type, memory?, count? }, cpu?: { cores?, memory? }, storage? }`.
    pub fn capabilities(&self, #[wasm_bindgen(unchecked_param_type = "NodeCapabilities")] capabilities: JsValue) -> Result<NodeBuilder, JsValue> {
        if !capabilities.is_object() {
            return Err(err(crate::Error::invalid("capabilities() takes an object like { cpu: { cores: 16, memory: '64GB' } }")));
        }
        check_keys(&capabilities, &["gpu", "cpu", "storage"], "capabilities()")?;
        check_nested(&capabilities, "gpu", &["type", "memory", "count"], "capabilities().gpu")?;
        check_nested(&capabilities, "cpu", &["cores", "memory"], "capabilities().cpu")?;
        let c: NodeCapabilities = from_js(capabilities, "capabilities()")?;
        self.next(self.core.capabilities(c))
    }
    /// Where the node is, e.g. `'us-west-2'` (registry extension field `region`).
    pub fn region(&self, region: &str) -> Result<NodeBuilder, JsValue> {
        self.next(self.core.region(region))
    }
    /// Prices per hour: `{ gpu?: '0.5/hour', cpu?: '0.1/hour' }` (extension field `pricing`).
    pub fn pricing(&self, #[wasm_bindgen(unchecked_param_type = "NodePricing")] pricing: JsValue) -> Result<NodeBuilder, JsValue> {
        if !pricing.is_object() {
            return Err(err(crate::Error::invalid("pricing() takes an object like { cpu: '0.1/hour' }")));
        }
        check_keys(&pricing, &["gpu", "cpu"], "pricing()")?;
        let p: NodePricing = from_js(pricing, "pricing()")?;
        self.next(self.core.pricing(p))
    }
    /// The address this node's earnings go to (`0x` + 40 hex digits), bound by the worker's
    /// own Ed25519 signature over `sandrun-payout-v1|<chainId>|<address, lowercase>`
    /// (base64): payers pay only an address whose binding verifies under the worker's key.
    /// The signature is checked against the worker's `/health` key at `register()`.
    /// Extension fields `payout`, `payout_chain_id`, `payout_signature`.
    pub fn payout(&self, address: &str, #[wasm_bindgen(unchecked_param_type = "PayoutBinding")] binding: JsValue) -> Result<NodeBuilder, JsValue> {
        if !binding.is_object() {
            return Err(err(crate::Error::invalid(format!(
                "payout(address, {{ chainId, signature }}): a payout needs the worker's signature binding it; sign the exact text {:?} \
                 with the worker's Ed25519 key (its /health worker_id) and pass the base64 signature",
                crate::chain::payout_message(31337, address)
                    .replace("|31337|", "|<chainId>|")
            ))));
        }
        check_keys(&binding, &["chainId", "signature"], "payout()")?;
        let b: PayoutBinding = from_js(binding, "payout()")?;
        self.next(self.core.payout(address, &b))
    }
    /// The Sandrun worker this node serves from (default: `apiEndpoint`).
    pub fn endpoint(&self, url: &str) -> Result<NodeBuilder, JsValue> {
        self.next(self.core.endpoint(url))
    }
    /// The interpreters advertised (default `['python3', 'node', 'bash']`).
    pub fn interpreters(&self, #[wasm_bindgen(unchecked_param_type = "('python3' | 'node' | 'bash' | 'sh')[]")] names: JsValue) -> Result<NodeBuilder, JsValue> {
        self.next(self.core.interpreters(from_js(names, "interpreters()")?))
    }
    /// Check the worker's `/health`, then register it with the registry (`registryEndpoint`).
    #[wasm_bindgen(unchecked_return_type = "Promise<Node>")]
    pub fn register(&self) -> Promise {
        let (client, spec) = (self.client.clone(), self.core.spec().clone());
        future_to_promise(async move {
            match node::register(&client, &spec).await {
                Ok(n) => Ok(Node { kind: Kind::Registered(n) }.into()),
                Err(e) => Err(super::failed(&client, e, "register").await),
            }
        })
    }
    /// The node without registering it yet (spec: `build(): Node`): `startListening()`
    /// registers it first. `register()` registers now.
    pub fn build(&self) -> Node {
        Node { kind: Kind::Built { client: self.client.clone(), spec: self.core.spec().clone(), registered: Default::default() } }
    }
}

/// What a `Node` stands for.
enum Kind {
    /// A provider node this program registered: it can listen.
    Registered(CoreNode),
    /// Described by `build()`, registered on `startListening()`.
    Built { client: CoreSandrun, spec: node::NodeSpec, registered: std::rc::Rc<std::cell::RefCell<Option<CoreNode>>> },
    /// Another operator's worker, a member of a joined pool (`Pool.nodes`).
    Member(crate::pool::PoolNode),
}

/// A node of the network (spec: `Node`): one you registered (`register()`, `build()`),
/// which can serve jobs, or a worker of a pool (`Pool.nodes`), which can only be read.
#[wasm_bindgen]
pub struct Node {
    kind: Kind,
}

impl Node {
    pub(crate) fn member(n: crate::pool::PoolNode) -> Node {
        Node { kind: Kind::Member(n) }
    }
    /// The registered core node, if there is one yet.
    fn registered(&self) -> Option<CoreNode> {
        match &self.kind {
            Kind::Registered(n) => Some(n.clone()),
            Kind::Built { registered, .. } => registered.borrow().clone(),
            Kind::Member(_) => None,
        }
    }
    fn not_yours(&self) -> JsValue {
        err(crate::Error::new(
            crate::ErrorCode::Unsupported,
            "this Node is a worker of a pool (another operator's): only a node you registered with sandrun.node()...register() can listen",
        ))
    }
}

#[wasm_bindgen]
impl Node {
    /// The registry's node id (empty for a built node until it registered).
    #[wasm_bindgen(getter)]
    pub fn id(&self) -> String {
        match (&self.kind, self.registered()) {
            (Kind::Member(n), _) => n.id.clone(),
            (_, Some(c)) => c.id().to_string(),
            _ => String::new(),
        }
    }
    /// The Sandrun worker URL this node serves from.
    #[wasm_bindgen(getter)]
    pub fn endpoint(&self) -> String {
        match (&self.kind, self.registered()) {
            (Kind::Member(n), _) => n.endpoint.clone(),
            (_, Some(c)) => c.endpoint().to_string(),
            (Kind::Built { client, spec, .. }, None) => spec.endpoint.clone().unwrap_or_else(|| client.config().endpoint()),
            _ => String::new(),
        }
    }
    /// The worker's base64 Ed25519 key (from its `/health`; null before it was asked).
    #[wasm_bindgen(getter, js_name = workerId)]
    pub fn worker_id(&self) -> Option<String> {
        match (&self.kind, self.registered()) {
            (Kind::Member(n), _) => n.worker_id.clone(),
            (_, Some(c)) => Some(c.worker_id().to_string()),
            _ => None,
        }
    }
    /// The declared region, if any.
    #[wasm_bindgen(getter)]
    pub fn region(&self) -> Option<String> {
        match (&self.kind, self.registered()) {
            (Kind::Member(n), _) => n.region.clone(),
            (_, Some(c)) => c.capabilities()["region"].as_str().map(str::to_string),
            (Kind::Built { spec, .. }, None) => spec.region.clone(),
            _ => None,
        }
    }
    /// The payout address the registry lists (paid only when the worker's key bound it).
    #[wasm_bindgen(getter)]
    pub fn payout(&self) -> Option<String> {
        match (&self.kind, self.registered()) {
            (Kind::Member(n), _) => n.payout.clone(),
            (_, Some(c)) => c.capabilities()["payout"].as_str().map(str::to_string),
            (Kind::Built { spec, .. }, None) => spec.payout.as_ref().map(|p| p.address.clone()),
            _ => None,
        }
    }
    /// The `capabilities` object as registered (reference and extension fields; unset
    /// ones are `null`, as the registry lists them).
    #[wasm_bindgen(getter, unchecked_return_type = "Record<string, unknown>")]
    pub fn capabilities(&self) -> Result<JsValue, JsValue> {
        use serde::Serialize;
        let caps = match (&self.kind, self.registered()) {
            (Kind::Member(n), _) => n.capabilities.clone(),
            (_, Some(c)) => c.capabilities().clone(),
            (Kind::Built { spec, .. }, None) => spec.capabilities_json().map_err(err)?,
            _ => serde_json::Value::Null,
        };
        caps.serialize(&serde_wasm_bindgen::Serializer::json_compatible())
            .map_err(|e| err(crate::Error::malformed(format!("cannot convert the capabilities to JS: {e}"))))
    }
    /// A plain copy of the fields above (what `JSON.stringify(node)` gives).
    #[wasm_bindgen(js_name = toJSON)]
    pub fn to_json(&self) -> Result<JsValue, JsValue> {
        let o = js_sys::Object::new();
        Reflect::set(&o, &"id".into(), &self.id().into())?;
        Reflect::set(&o, &"endpoint".into(), &self.endpoint().into())?;
        Reflect::set(&o, &"workerId".into(), &self.worker_id().map(JsValue::from).unwrap_or(JsValue::NULL))?;
        Reflect::set(&o, &"region".into(), &self.region().map(JsValue::from).unwrap_or(JsValue::NULL))?;
        Reflect::set(&o, &"payout".into(), &self.payout().map(JsValue::from).unwrap_or(JsValue::NULL))?;
        Reflect::set(&o, &"capabilities".into(), &self.capabilities()?)?;
        Ok(o.into())
    }
    /// Counters of the loop (zeros before it ran; a pool's worker has none: `UNSUPPORTED`).
    #[wasm_bindgen(getter, unchecked_return_type = "NodeStats")]
    pub fn stats(&self) -> Result<JsValue, JsValue> {
        match (&self.kind, self.registered()) {
            (Kind::Member(_), _) => Err(self.not_yours()),
            (_, Some(c)) => to_js(&c.stats()),
            _ => to_js(&node::NodeStats::default()),
        }
    }
    /// Start serving the registry's jobs in the background; resolves once the loop runs
    /// (after its first heartbeat attempt). A second call while running does nothing.
    #[wasm_bindgen(js_name = startListening, unchecked_return_type = "Promise<void>")]
    pub fn start_listening(&self, options: Option<ListenOptionsArg>) -> Promise {
        let options: Result<ListenOptions, JsValue> = match options.map(JsValue::from) {
            Some(v) if v.is_object() => check_keys(&v, &["heartbeatInterval", "pollInterval"], "startListening()").and_then(|_| from_js(v, "startListening()")),
            Some(v) if !v.is_undefined() && !v.is_null() => Err(err(crate::Error::invalid("startListening() takes { heartbeatInterval?, pollInterval? } or nothing"))),
            _ => Ok(ListenOptions::default()),
        };
        if matches!(self.kind, Kind::Member(_)) {
            return Promise::reject(&self.not_yours());
        }
        let (now, built) = match &self.kind {
            Kind::Built { client, spec, registered } => (self.registered(), Some((client.clone(), spec.clone(), registered.clone()))),
            _ => (self.registered(), None),
        };
        future_to_promise(async move {
            let options = options?;
            options.validate().map_err(err)?;
            let core = match (now, built) {
                (Some(c), _) => c,
                (None, Some((client, spec, cell))) => {
                    let c = match node::register(&client, &spec).await {
                        Ok(c) => c,
                        Err(e) => return Err(super::failed(&client, e, "register").await),
                    };
                    cell.borrow_mut().get_or_insert(c).clone()
                }
                (None, None) => return Err(err(crate::Error::invalid("this node is not registered"))),
            };
            if let Some(run) = core.start(options) {
                spawn_local(run);
            }
            core.started().await;
            Ok(JsValue::UNDEFINED)
        })
    }
    /// Stop the loop; resolves once it has ended (a job being run is reported first).
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn stop(&self) -> Promise {
        if matches!(self.kind, Kind::Member(_)) {
            return Promise::reject(&self.not_yours());
        }
        let core = self.registered();
        future_to_promise(async move {
            if let Some(core) = core {
                core.stop().await;
            }
            Ok(JsValue::UNDEFINED)
        })
    }
}
