//! Facade of pools: `PoolBuilder`, `Pool`.

use super::convert::{check_keys, err, from_js, to_js};
use crate::pool::{self, DiscoveryCriteria, Pool as CorePool, PoolBuilder as CorePoolBuilder};
use crate::types::{ConsensusLevel, Proof};
use crate::Sandrun as CoreSandrun;
use js_sys::Promise;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

/// An immutable pool description: `sandrun.pool().discover({...}).consensus('2-of-3').join()`.
#[wasm_bindgen]
#[derive(Clone)]
pub struct PoolBuilder {
    pub(super) client: CoreSandrun,
    pub(super) core: CorePoolBuilder,
}

impl PoolBuilder {
    fn next(&self, core: crate::Result<CorePoolBuilder>) -> Result<PoolBuilder, JsValue> {
        Ok(PoolBuilder { client: self.client.clone(), core: core.map_err(err)? })
    }
}

#[wasm_bindgen]
impl PoolBuilder {
    /// Take the registry's active nodes matching `criteria` (needs `registryEndpoint`).
    pub fn discover(&self, criteria: Option<super::convert::DiscoveryCriteriaArg>) -> Result<PoolBuilder, JsValue> {
        let c: DiscoveryCriteria = match criteria.map(JsValue::from) {
            Some(v) if v.is_object() => {
                check_keys(&v, &["minGPUs", "gpuType", "gpuMemory", "region", "maxPrice", "interpreters", "distinctHosts", "distinctRegions"], "discover()")?;
                from_js(v, "discover()")?
            }
            _ => DiscoveryCriteria::default(),
        };
        self.next(self.core.discover(c))
    }
    /// Take these nodes: registry node ids or worker URLs.
    pub fn nodes(&self, #[wasm_bindgen(js_name = nodeIds, unchecked_param_type = "string[]")] node_ids: JsValue) -> Result<PoolBuilder, JsValue> {
        self.next(self.core.nodes(from_js(node_ids, "nodes()")?))
    }
    /// The pool's consensus strategy; a job's own `consensus()` takes precedence.
    pub fn consensus(&self, #[wasm_bindgen(unchecked_param_type = "ConsensusLevel")] strategy: &str) -> Result<PoolBuilder, JsValue> {
        self.next(self.core.consensus(strategy))
    }
    /// Only take workers whose `/health` key is one of `workerIds` (base64 Ed25519);
    /// overrides the client's `allowedWorkers`.
    pub fn allow(&self, #[wasm_bindgen(js_name = workerIds, unchecked_param_type = "string[]")] worker_ids: JsValue) -> Result<PoolBuilder, JsValue> {
        self.next(self.core.allow(from_js(worker_ids, "allow()")?))
    }
    /// Run each job on at least `factor` workers.
    pub fn redundancy(&self, factor: f64) -> Result<PoolBuilder, JsValue> {
        if factor.fract() != 0.0 || factor < 1.0 {
            return Err(err(crate::Error::invalid(format!("redundancy({factor}) must be a whole number >= 1"))));
        }
        self.next(self.core.redundancy(factor as u32))
    }
    /// `'lazy'` (default): start k replicas (or `redundancy`, if higher) and start another
    /// only when one fails or the results so far disagree; `'eager'`: start all n at once
    /// and see every worker's answer. `distribute()` always starts all n.
    pub fn replication(&self, #[wasm_bindgen(unchecked_param_type = "'lazy' | 'eager'")] mode: String) -> Result<PoolBuilder, JsValue> {
        self.next(self.core.replication(&mode))
    }
    /// Discover and check the workers (each answers `/health` with the advertised key).
    #[wasm_bindgen(unchecked_return_type = "Promise<Pool>")]
    pub fn join(&self) -> Promise {
        let cell = PoolCell::new(self.client.clone(), self.core.spec().clone());
        future_to_promise(async move {
            if let Err(e) = cell.get().await {
                return Err(super::failed(&cell.client, e, "join").await);
            }
            Ok(Pool::new(cell).into())
        })
    }
    /// The pool without joining it yet (spec: `build(): Pool`): it joins on first use
    /// (`distribute`, `verify`, a job `with()` it); until then `nodes` is empty. `join()`
    /// joins now, so that an unreachable registry fails here.
    pub fn build(&self) -> Pool {
        Pool::new(PoolCell::new(self.client.clone(), self.core.spec().clone()))
    }
}

/// A pool that joins once, on first use (shared by a `Pool` and the jobs made `with()` it).
pub(crate) struct PoolCell {
    client: CoreSandrun,
    spec: pool::PoolSpec,
    joined: std::cell::RefCell<Option<CorePool>>,
}

impl PoolCell {
    fn new(client: CoreSandrun, spec: pool::PoolSpec) -> std::rc::Rc<PoolCell> {
        std::rc::Rc::new(PoolCell { client, spec, joined: Default::default() })
    }
    /// The joined pool, joining it first if it was not yet.
    pub(crate) async fn get(&self) -> crate::Result<CorePool> {
        if let Some(p) = self.joined.borrow().clone() {
            return Ok(p);
        }
        let p = pool::join(&self.client, &self.spec).await?;
        Ok(self.joined.borrow_mut().get_or_insert(p).clone())
    }
    fn current(&self) -> Option<CorePool> {
        self.joined.borrow().clone()
    }
}

super::plugin::layered_builder!(PoolBuilder);

/// A pool of checked workers (spec: `Pool`).
#[wasm_bindgen]
pub struct Pool {
    pub(super) cell: std::rc::Rc<PoolCell>,
    handle: u32,
}

impl Pool {
    fn new(cell: std::rc::Rc<PoolCell>) -> Pool {
        thread_local!(static NEXT: std::cell::Cell<u32> = const { std::cell::Cell::new(1) });
        let handle = NEXT.with(|n| {
            let h = n.get();
            n.set(h + 1);
            h
        });
        super::POOLS.with(|p| p.borrow_mut().insert(handle, cell.clone()));
        Pool { cell, handle }
    }
    fn joined(&self) -> CorePool {
        self.cell.current().unwrap_or_else(|| CorePool::empty(self.cell.client.clone()))
    }
}

impl Drop for Pool {
    /// Runs when JS frees the object (explicitly or by garbage collection); builders
    /// made with `with(pool)` keep their own reference to the pool.
    fn drop(&mut self) {
        super::POOLS.with(|p| p.borrow_mut().remove(&self.handle));
    }
}

#[wasm_bindgen]
impl Pool {
    /// The pool's workers (spec: `Node[]`), each bound to the key it showed at `join()`.
    /// Empty until the pool joined.
    #[wasm_bindgen(getter)]
    pub fn nodes(&self) -> Vec<super::Node> {
        self.joined().nodes.into_iter().map(super::Node::member).collect()
    }
    /// Distinct capabilities of its workers (spec: `Capability[]`): `{ kind, value, label,
    /// nodes }`, e.g. `{ kind: 'gpu', value: 'a100', label: 'gpu:a100', nodes: 2 }`.
    #[wasm_bindgen(getter, unchecked_return_type = "Capability[]")]
    pub fn capabilities(&self) -> Result<JsValue, JsValue> {
        to_js(&self.joined().capabilities())
    }
    /// The rules its consensus runs under (distinct keys, allowlist, diversity).
    #[wasm_bindgen(getter, unchecked_return_type = "ConsensusRules")]
    pub fn rules(&self) -> Result<JsValue, JsValue> {
        to_js(&self.joined().rules)
    }
    /// Workers `join()` left out, with the reason (same key as another, key mismatch,
    /// unreachable, not allowed, diversity rules).
    #[wasm_bindgen(getter, unchecked_return_type = "{ endpoint: string; reason: string }[]")]
    pub fn excluded(&self) -> Result<JsValue, JsValue> {
        let list: Vec<serde_json::Value> = self.joined().excluded.iter().map(|(e, r)| serde_json::json!({"endpoint": e, "reason": r})).collect();
        to_js(&list)
    }
    /// Submit one replica per selected worker, in parallel (joining the pool first if it
    /// was only built). Takes a `Job` (or a `JobBuilder`, built first).
    #[wasm_bindgen(unchecked_return_type = "Promise<JobExecution[]>")]
    pub fn distribute(&self, #[wasm_bindgen(unchecked_param_type = "Job | JobBuilder")] job: JsValue) -> Promise {
        let cell = self.cell.clone();
        let job = super::Job::builder_of(&job);
        future_to_promise(async move {
            let job = job.ok_or_else(|| err(crate::Error::invalid("distribute() takes a Job (jobBuilder.build()) or a JobBuilder")))?;
            let pool = match cell.get().await {
                Ok(p) => p,
                Err(e) => return Err(super::failed(&cell.client, e, "join").await),
            };
            super::distribute(&pool, job).await
        })
    }
    /// Check proofs offline (signatures over their signed strings) and find the agreement.
    #[wasm_bindgen(unchecked_return_type = "Promise<ConsensusResult>")]
    pub fn verify(&self, #[wasm_bindgen(unchecked_param_type = "Proof[]")] proofs: JsValue) -> Promise {
        let cell = self.cell.clone();
        future_to_promise(async move {
            let proofs: Vec<Proof> = from_js(proofs, "verify()")?;
            let pool = cell.get().await.map_err(err)?;
            to_js(&pool.verify(&proofs, None::<ConsensusLevel>))
        })
    }
    /// How `JobBuilder.with()` finds this pool.
    #[wasm_bindgen(getter = __sandrunPool)]
    pub fn handle(&self) -> u32 {
        self.handle
    }
}
