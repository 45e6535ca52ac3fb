//! Foundation: an embeddable engine for clustered services and multi-agent systems.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let node = foundation::Foundation::builder().cluster("orders").start().await?;
//! for member in node.members() {
//!     println!("{} {:?}", member.id, member.state);
//! }
//! node.leave().await;
//! # Ok(()) }
//! ```
//!
//! The crates behind it are re-exported: the transport, the CRDTs, the MABEAM mechanisms and
//! the engine (node, membership, discovery, configuration). What is not built yet is listed in
//! the README's status table.

#![warn(missing_docs)]

pub use foundation_agents as agents;
pub use foundation_crdt as crdt;
pub use foundation_engine as engine;
pub use foundation_transport as transport;

pub use foundation_engine::runtime::{Node, StartNodeError};

pub mod cli;
pub mod demo;

/// The entry point: `Foundation::builder()…start().await` starts a node.
pub struct Foundation;

impl Foundation {
    /// A node configuration builder that has read the environment (`FOUNDATION_*`) and the file
    /// it names (`FOUNDATION_CONFIG`); setters override both. Finish with `.start().await`.
    pub fn builder() -> foundation_engine::config::ConfigBuilder {
        foundation_engine::config::NodeConfig::builder().process_env()
    }
}
