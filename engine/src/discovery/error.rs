//! Why a discovery strategy could not be built or started.

use std::path::PathBuf;

/// A discovery strategy could not be built or started. Each message names the strategy and
/// what to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// A static seed is not `host:port`, `ip:port` or `[ipv6]:port`.
    #[error("static discovery: bad seed {seed:?}: {reason} (expected \"host:port\", \"ip:port\" or \"[ipv6]:port\")")]
    BadSeed {
        /// The seed as configured.
        seed: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// `static` was chosen but no seed was given.
    #[error("static discovery: no seeds configured (give at least one \"host:port\")")]
    NoSeeds,

    /// The local runtime directory cannot be created, secured or read.
    #[error("local discovery: runtime directory {path}: {reason}")]
    RuntimeDir {
        /// The directory.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },

    /// This node's own advertisement file cannot be written.
    #[error("local discovery: cannot write {path}: {source}")]
    Advertise {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },

    /// The mDNS daemon could not be started or refused our service.
    #[error("mdns discovery: {0}")]
    Mdns(String),

    /// The DNS discovery settings are unusable.
    #[error("dns discovery: {0}")]
    DnsConfig(String),

    /// The DNS resolver could not be set up.
    #[error("dns discovery: cannot set up the resolver: {0} (check /etc/resolv.conf or configure a name server)")]
    Resolver(String),
}
