//! The `foundation` command's subcommands.

pub mod act;
pub mod agents;
pub mod call;
pub mod check;
pub mod config;
pub mod federation;
pub mod force_leave;
pub mod leave;
pub mod members;
pub mod monitor;
pub mod node;
mod open_secret;
pub mod placement;
pub mod pubsub;
pub mod register;
pub mod services;
mod signals;
pub mod sim;
pub mod snapshot;
pub mod suggest;
pub mod target;
pub mod vars;
