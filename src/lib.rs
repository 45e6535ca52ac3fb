//! Foundation: an embeddable engine for clustered services and multi-agent systems.

pub use foundation_transport as transport;
