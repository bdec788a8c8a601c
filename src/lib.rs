//! `sandrun-wasm`: the Rust core of `@sandrun/wasm`.
