//! Facade of the spec's `Job`: the immutable value `JobBuilder.build()` returns, that
//! `Pool.distribute(job)` and plugins' `onSubmit(job)` take.

use super::convert::{err, to_js};
use super::JobBuilder;
use crate::job::JobDescription;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use wasm_bindgen::prelude::*;

thread_local! {
    /// Live `Job` values by handle, so a `Job` handed back from JS (a plugin's return
    /// value, `distribute(job)`) finds its Rust job without unsafe pointer games.
    static JOBS: RefCell<HashMap<u32, JobBuilder>> = RefCell::new(HashMap::new());
    static NEXT: Cell<u32> = const { Cell::new(1) };
}

/// A built job (spec: `Job`): immutable and inspectable. Its fields are the job's
/// description; the code and files travel with it but are not exposed.
#[wasm_bindgen]
pub struct Job {
    handle: u32,
    description: JobDescription,
}

impl Job {
    pub(crate) fn new(builder: JobBuilder) -> Job {
        let handle = NEXT.with(|n| {
            let h = n.get();
            n.set(h.wrapping_add(1).max(1));
            h
        });
        let description = builder.core.describe();
        JOBS.with(|j| j.borrow_mut().insert(handle, builder));
        Job { handle, description }
    }

    /// A job value with only its description (what a plugin's `onSubmit` is shown: the
    /// code stays with the SDK). `toBuilder()` and `distribute()` refuse it.
    pub(crate) fn described(description: JobDescription) -> Job {
        Job { handle: 0, description }
    }

    /// The builder behind a JS value that is a `Job` (or a `JobBuilder`, built first).
    pub(crate) fn builder_of(v: &JsValue) -> Option<JobBuilder> {
        let v = match js_sys::Reflect::get(v, &"build".into()).ok().and_then(|b| b.dyn_into::<js_sys::Function>().ok()) {
            Some(build) => build.call0(v).ok()?,
            None => v.clone(),
        };
        let h = js_sys::Reflect::get(&v, &"__sandrunJob".into()).ok()?.as_f64()? as u32;
        JOBS.with(|j| j.borrow().get(&h).cloned())
    }
}

impl Drop for Job {
    /// Runs when JS frees the value (explicitly or by garbage collection).
    fn drop(&mut self) {
        JOBS.with(|j| j.borrow_mut().remove(&self.handle));
    }
}

#[wasm_bindgen]
impl Job {
    /// `'python3' | 'node' | 'bash' | 'sh'`, when set.
    #[wasm_bindgen(getter)]
    pub fn interpreter(&self) -> Option<String> {
        self.description.interpreter.clone()
    }
    /// The file to run, when set.
    #[wasm_bindgen(getter)]
    pub fn entrypoint(&self) -> Option<String> {
        self.description.entrypoint.clone()
    }
    /// Command-line arguments.
    #[wasm_bindgen(getter)]
    pub fn args(&self) -> Vec<String> {
        self.description.args.clone()
    }
    /// Environment variables.
    #[wasm_bindgen(getter, unchecked_return_type = "Record<string, string>")]
    pub fn environment(&self) -> Result<JsValue, JsValue> {
        to_js(&self.description.environment)
    }
    /// Timeout in seconds, when set.
    #[wasm_bindgen(getter)]
    pub fn timeout(&self) -> Option<f64> {
        self.description.timeout
    }
    /// Memory limit in MB, when set.
    #[wasm_bindgen(getter)]
    pub fn memory(&self) -> Option<f64> {
        self.description.memory
    }
    /// GPU requirements, when set.
    #[wasm_bindgen(getter, unchecked_return_type = "GPURequirements | undefined")]
    pub fn gpu(&self) -> Result<JsValue, JsValue> {
        to_js(&self.description.gpu)
    }
    /// The consensus level, when set.
    #[wasm_bindgen(getter, unchecked_return_type = "ConsensusLevel | undefined")]
    pub fn consensus(&self) -> Option<String> {
        self.description.consensus.clone()
    }
    /// Output patterns.
    #[wasm_bindgen(getter)]
    pub fn outputs(&self) -> Vec<String> {
        self.description.outputs.clone()
    }
    /// `{ amount, token }` when the job pays.
    #[wasm_bindgen(getter, unchecked_return_type = "{ amount: string; token: string } | undefined")]
    pub fn payment(&self) -> Result<JsValue, JsValue> {
        to_js(&self.description.payment)
    }
    /// Paths of the extra input files.
    #[wasm_bindgen(getter)]
    pub fn files(&self) -> Vec<String> {
        self.description.files.clone()
    }
    /// The description as a plain object (what `JSON.stringify(job)` gives).
    #[wasm_bindgen(js_name = toJSON, unchecked_return_type = "JobDescription")]
    pub fn to_json(&self) -> Result<JsValue, JsValue> {
        to_js(&self.description)
    }
    /// A builder holding this job, to derive a changed one: `job.toBuilder().timeout(60).build()`.
    #[wasm_bindgen(js_name = toBuilder)]
    pub fn to_builder(&self) -> Result<JobBuilder, JsValue> {
        JOBS.with(|j| j.borrow().get(&self.handle).cloned())
            .ok_or_else(|| err(crate::Error::invalid("this Job was freed")))
    }
    /// How the facade finds the Rust job behind this value.
    #[wasm_bindgen(getter = __sandrunJob)]
    pub fn handle(&self) -> u32 {
        self.handle
    }
}
