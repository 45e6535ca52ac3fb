//! The test network shared by the tests that run `foundation node` processes on separate
//! "hosts" (`tests/multi_host`, `tests/faults`): network namespaces joined by a bridge
//! ([`lan`]), a thread's way into one ([`netns`]), and node processes in them ([`nodes`]).
//! Each test binary includes this module with `#[path]` and uses only some of it.
#![allow(dead_code)]

pub mod lan;
pub mod netns;
pub mod nodes;

use std::process::Command;

pub const BINARY: &str = env!("CARGO_BIN_EXE_foundation");
/// The HTTP API is bound to every address, so writes need a token.
pub const HTTP_TOKEN: &str = "multi-host-http-token-0123456789";

/// Why namespaces cannot be created here, if they cannot.
pub fn cannot_run() -> Option<&'static str> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("needs root to create network namespaces");
    }
    let ip = Command::new("ip").arg("-V").output();
    if !ip.is_ok_and(|o| o.status.success()) {
        return Some("the `ip` command (iproute2) is not available");
    }
    None
}
