//! Wire clients: the Sandrun worker (quirks included) and, later, the broker.

pub mod broker;
/// The wire formats (parsing only), a layer below the clients.
pub use crate::wire;
pub mod worker;

pub use broker::BrokerClient;
pub use worker::WorkerClient;
