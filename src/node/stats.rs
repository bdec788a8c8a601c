//! The loop's counters (`node.stats`): what was claimed, completed, failed, the
//! heartbeats and polls, and the errors the loop counted instead of throwing.

use super::register::Node;
use crate::error::Error;
use serde::{Deserialize, Serialize};

#[cfg(target_arch = "wasm32")]
use tsify::Tsify;

/// Counters of a node's loop (`node.stats`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[serde(rename_all = "camelCase")]
pub struct NodeStats {
    /// Jobs claimed from the registry.
    pub claimed: u64,
    /// Jobs reported with exit code 0.
    pub completed: u64,
    /// Jobs reported with a non-zero exit code, or that could not be run or reported.
    pub failed: u64,
    /// Heartbeats the registry accepted.
    pub heartbeats: u64,
    /// `/claim` polls that found no job.
    pub polls: u64,
    /// Errors inside the loop (registry unreachable, a job the SDK could not run, ...).
    pub errors: u64,
    /// Times the node registered again because the registry had forgotten it (missing
    /// from `/nodes`, e.g. after a registry restart with an empty database).
    pub reregistrations: u64,
    /// The latest of those errors, as `CODE: message`.
    pub last_error: Option<String>,
    /// Whether the loop is running.
    pub running: bool,
}

impl Node {
    pub fn stats(&self) -> NodeStats {
        self.inner.stats.borrow().clone()
    }

    /// Count an error of the loop (`errors`, `last_error`) instead of throwing it.
    pub(super) fn error(&self, what: &str, e: &Error) {
        let mut s = self.inner.stats.borrow_mut();
        s.errors += 1;
        s.last_error = Some(format!("{what}: {e}"));
    }
}
