//! The `foundation` command's subcommands.

pub mod agents;
pub mod config;
pub mod leave;
pub mod members;
pub mod node;
pub mod placement;
pub mod services;
pub mod signals;
pub mod sim;
pub mod suggest;
pub mod target;
pub mod vars;
