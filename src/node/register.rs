//! Registration: check the worker (`/health`, the payout binding), `POST /register` it,
//! and the [`Node`] handle that the loop (`listen.rs`) runs on.

use super::listen::Run;
use super::spec::{check_url, payout_how_to, NodeSpec};
use super::stats::NodeStats;
use crate::api::{BrokerClient, WorkerClient};
use crate::context::Sandrun;
use crate::error::{Error, Result};
use serde_json::{json, Value};
use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// The state shared by the clones of a [`Node`].
pub(super) struct Inner {
    /// The client, aimed at the node's worker.
    pub(super) client: Sandrun,
    pub(super) broker: BrokerClient,
    /// Credentials for the registry (`authentication`).
    pub(super) headers: Vec<(String, String)>,
    /// The registry's id for the node; a registry that forgot the node may give a new
    /// one when it registers again (a reference broker gives the same).
    pub(super) id: RefCell<String>,
    pub(super) endpoint: String,
    pub(super) worker_id: String,
    pub(super) capabilities: Value,
    pub(super) stats: RefCell<NodeStats>,
    pub(super) run: RefCell<Option<Run>>,
    pub(super) running: Cell<bool>,
}

/// A registered node. Cheap to clone (shared state).
#[derive(Clone)]
pub struct Node {
    pub(super) inner: Rc<Inner>,
}

/// The registry client of `client`, and the credential headers it sends.
fn broker_of(client: &Sandrun) -> Result<(BrokerClient, Vec<(String, String)>)> {
    let reg = client.config().registry_endpoint.clone().ok_or_else(|| {
        Error::invalid("node().register() needs SandrunConfig.registryEndpoint (the registry URL), e.g. Sandrun.create({ registryEndpoint: 'http://127.0.0.1:7703' })")
    })?;
    let mut headers = Vec::new();
    if let Some(a) = &client.config().authentication {
        if let Some(t) = &a.token {
            headers.push(("Authorization".to_string(), format!("Bearer {t}")));
        }
        if let Some(k) = &a.api_key {
            headers.push(("X-API-Key".to_string(), k.clone()));
        }
    }
    Ok((BrokerClient::new(&reg, client.platform().clone()).with_headers(headers.clone()), headers))
}

/// Check the worker, then register it with the registry.
pub async fn register(client: &Sandrun, spec: &NodeSpec) -> Result<Node> {
    // Plugins' onInit runs before the first network operation of any kind.
    client.init().await?;
    let (broker, headers) = broker_of(client)?;
    let mut caps = spec.capabilities_json()?;
    let endpoint = match &spec.endpoint {
        Some(e) => e.clone(),
        None => check_url("apiEndpoint", &client.config().endpoint())?,
    };
    let worker = WorkerClient::new(&endpoint, client.platform().clone());
    let worker_id = worker.health().await?.ok_or_else(|| {
        Error::invalid(format!(
            "the worker at {endpoint} is anonymous (no worker_id in /health): a node must serve from a worker that signs its results"
        ))
    })?;
    if let Some(p) = &spec.payout {
        // Checked before registering: a registration with a binding that does not verify
        // would be refused by payers (and by registries that check) anyway.
        if !crate::chain::verify_payout_binding(&worker_id, p.chain_id, &p.address, &p.signature) {
            return Err(Error::invalid(format!(
                "payout({}): the signature does not verify under the key of the worker at {endpoint} ({worker_id}) for chain {}; {}",
                p.address,
                p.chain_id,
                payout_how_to(&p.address, p.chain_id)
            )));
        }
    }
    caps["worker_id"] = json!(worker_id);
    caps["sandrun_endpoint"] = json!(endpoint);
    let id = broker.register(&endpoint, &caps).await?;
    Ok(Node {
        inner: Rc::new(Inner {
            client: client.for_worker(&endpoint),
            broker,
            headers,
            id: RefCell::new(id),
            endpoint,
            worker_id,
            capabilities: caps,
            stats: RefCell::new(NodeStats::default()),
            run: RefCell::new(None),
            running: Cell::new(false),
        }),
    })
}

impl Node {
    /// The registry's node id (`sha256(endpoint)[:16]` on a reference broker).
    pub fn id(&self) -> String {
        self.inner.id.borrow().clone()
    }
    /// The Sandrun worker URL.
    pub fn endpoint(&self) -> &str {
        &self.inner.endpoint
    }
    /// The worker's base64 Ed25519 key, from its `/health`.
    pub fn worker_id(&self) -> &str {
        &self.inner.worker_id
    }
    /// The capabilities as registered.
    pub fn capabilities(&self) -> &Value {
        &self.inner.capabilities
    }
    pub fn is_running(&self) -> bool {
        self.inner.running.get()
    }
}
