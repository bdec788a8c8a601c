//! Provider nodes: register a Sandrun worker with the registry (broker) and serve the
//! registry's jobs on it.
//!
//! Semantics (also in the package README):
//! - `register()` checks the worker's `/health` (a node must serve from a signing worker:
//!   its `worker_id` is advertised), then `POST /register`s it with the reference
//!   capability fields (`cpu_cores`, `memory_gb`, `gpu`, `interpreters`) and the
//!   documented extensions (`storage`, `region`, `pricing`, `payout`, `payout_chain_id`,
//!   `payout_signature`, `worker_id`, `sandrun_endpoint`). A payout must come with the
//!   worker's own signature binding it ([`crate::chain::binding`]); it is verified against
//!   the `/health` key before anything is registered.
//! - The loop ([`Node::run_until_stopped`]) heartbeats (once at start, then every
//!   `heartbeat_ms`), polls `/claim` (quickly at first, then every `poll_ms`), runs each
//!   claimed job on the worker through the ordinary job path with consensus `'low'` (so
//!   the worker's signed status is checked), and reports `/complete` with `output` =
//!   stdout, `error` = stderr, `exit_code`, plus the extension fields `proof` (the
//!   checked proof, camelCase JSON as `JobResult.proof`) and `worker_job_id`.
//! - A job the SDK could not run or check is reported with `exit_code` -1 and the SDK
//!   error in `error`, so it never stays assigned forever.
//! - Errors inside the loop are counted (`errors`, `last_error`) and retried, never thrown.
//! - A registry that forgot the node (a reference broker restarted with an empty database
//!   still answers its heartbeats with 200, and never lists it again) is noticed: every
//!   [`REGISTRATION_CHECK_EVERY`] accepted heartbeats (and after a heartbeat answered 404)
//!   the node looks for itself in `/nodes` and, if missing, registers again with the same
//!   endpoint and capabilities (`reregistrations` counts it).
//! - `stop()` ends the loop: idle waits and heartbeats are cut short at once; a job being
//!   run is finished and reported first, still heartbeating (an abandoned claim would stay
//!   assigned).
//!
//! Layout: `spec.rs` (the capability types and the `/register` body), `builder.rs`
//! (`NodeBuilder`, its checks), `register.rs` (checking the worker and registering it;
//! the [`Node`] handle), `listen.rs` (the loop: heartbeats, claims, re-registration,
//! `stop()`), `serve.rs` (running one claimed job and reporting it), `stats.rs` (the
//! loop's counters), `tests.rs` (the node against an in-memory registry).

mod builder;
mod listen;
mod register;
mod serve;
mod spec;
mod stats;

#[cfg(test)]
mod tests;

pub use builder::NodeBuilder;
pub use listen::{ListenOptions, DEFAULT_HEARTBEAT_MS, DEFAULT_POLL_MS, REGISTRATION_CHECK_EVERY};
pub use register::{register, Node};
pub use spec::{NodeCapabilities, NodeCpu, NodeGpu, NodePricing, NodeSize, NodeSpec, Payout, PayoutBinding, DEFAULT_INTERPRETERS};
pub use stats::NodeStats;
