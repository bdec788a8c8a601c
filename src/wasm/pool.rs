//! Facade of pools: `PoolBuilder`, `Pool`.

use super::convert::{check_keys, err, from_js, to_js};
use super::{JobBuilder, JobExecution};
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
    /// Discover and check the workers (each answers `/health` with the advertised key).
    #[wasm_bindgen(unchecked_return_type = "Promise<Pool>")]
    pub fn join(&self) -> Promise {
        let (client, spec) = (self.client.clone(), self.core.spec().clone());
        future_to_promise(async move { Ok(Pool::new(pool::join(&client, &spec).await.map_err(err)?).into()) })
    }
}

super::plugin::layered_builder!(PoolBuilder);

/// A joined pool of checked workers.
#[wasm_bindgen]
pub struct Pool {
    pub(super) core: CorePool,
    handle: u32,
}

impl Pool {
    fn new(core: CorePool) -> Pool {
        thread_local!(static NEXT: std::cell::Cell<u32> = const { std::cell::Cell::new(1) });
        let handle = NEXT.with(|n| {
            let h = n.get();
            n.set(h + 1);
            h
        });
        super::POOLS.with(|p| p.borrow_mut().insert(handle, core.clone()));
        Pool { core, handle }
    }
}

impl Drop for Pool {
    /// Runs when JS frees the object (explicitly or by garbage collection); builders
    /// made with `with(pool)` keep their own copy of the pool.
    fn drop(&mut self) {
        super::POOLS.with(|p| p.borrow_mut().remove(&self.handle));
    }
}

#[wasm_bindgen]
impl Pool {
    /// The pool's workers.
    #[wasm_bindgen(getter, unchecked_return_type = "PoolNode[]")]
    pub fn nodes(&self) -> Result<JsValue, JsValue> {
        to_js(&self.core.nodes)
    }
    /// Distinct capabilities of its workers (`'gpu:a100'`, `'interpreter:node'`, `'region:us-east'`).
    #[wasm_bindgen(getter, unchecked_return_type = "string[]")]
    pub fn capabilities(&self) -> Result<JsValue, JsValue> {
        to_js(&self.core.capabilities())
    }
    /// The rules its consensus runs under (distinct keys, allowlist, diversity).
    #[wasm_bindgen(getter, unchecked_return_type = "ConsensusRules")]
    pub fn rules(&self) -> Result<JsValue, JsValue> {
        to_js(&self.core.rules)
    }
    /// Workers `join()` left out, with the reason (same key as another, key mismatch,
    /// unreachable, not allowed, diversity rules).
    #[wasm_bindgen(getter, unchecked_return_type = "{ endpoint: string; reason: string }[]")]
    pub fn excluded(&self) -> Result<JsValue, JsValue> {
        let list: Vec<serde_json::Value> = self.core.excluded.iter().map(|(e, r)| serde_json::json!({"endpoint": e, "reason": r})).collect();
        to_js(&list)
    }
    /// Submit one replica per selected worker, in parallel.
    #[wasm_bindgen(unchecked_return_type = "Promise<JobExecution[]>")]
    pub fn distribute(&self, job: &JobBuilder) -> Promise {
        let (pool, job) = (self.core.clone(), job.clone());
        future_to_promise(async move {
            let core = job.resolved().await?;
            let list = js_sys::Array::new();
            for e in pool.distribute(&core).await.map_err(err)? {
                list.push(&JobExecution::single(e, pool.client().clone()).into());
            }
            Ok(list.into())
        })
    }
    /// Check proofs offline (signatures over their signed strings) and find the agreement.
    #[wasm_bindgen(unchecked_return_type = "Promise<ConsensusResult>")]
    pub fn verify(&self, #[wasm_bindgen(unchecked_param_type = "Proof[]")] proofs: JsValue) -> Promise {
        let pool = self.core.clone();
        future_to_promise(async move {
            let proofs: Vec<Proof> = from_js(proofs, "verify()")?;
            to_js(&pool.verify(&proofs, None::<ConsensusLevel>))
        })
    }
    /// How `JobBuilder.with()` finds this pool.
    #[wasm_bindgen(getter = __sandrunPool)]
    pub fn handle(&self) -> u32 {
        self.handle
    }
}
