//! Wire clients: the Sandrun worker (quirks included) and, later, the broker.

pub mod wire;
pub mod worker;

pub use worker::WorkerClient;
