//! Wire clients: the Sandrun worker (quirks included) and, later, the broker.

pub mod broker;
pub mod wire;
pub mod worker;

pub use broker::BrokerClient;
pub use worker::WorkerClient;
