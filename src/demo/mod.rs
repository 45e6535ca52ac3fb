//! Demonstrations behind `foundation demo` and `foundation transport-demo`.

mod agents;
mod cluster;
mod services;
mod transport;

pub use cluster::cluster;
pub use transport::transport;
