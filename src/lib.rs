//! `sandrun-wasm`: the Rust core of `@sandrun/wasm`.
//!
//! Everything here is plain Rust, tested natively with `cargo test`; the host (HTTP,
//! timers, files) comes in through [`platform::Platform`]. The `wasm` module is the
//! thin `#[wasm_bindgen]` facade that becomes the npm package.

pub mod api;
pub mod chain;
pub mod client;
pub mod config;
pub mod context;
pub mod error;
pub mod execution;
pub mod gpu;
pub mod ipfs;
pub mod job;
pub mod node;
pub mod platform;
pub mod plugin;
pub mod pool;
pub mod proof;
pub mod types;
pub mod wire;
mod util;

#[cfg(target_arch = "wasm32")]
pub mod wasm;

pub use context::Sandrun;
pub use config::SandrunConfig;
pub use error::{Error, ErrorCode, Result};
pub use execution::{JobExecution, LogChunk, LogStream};
pub use job::JobBuilder;
