//! Bookkeeping while sources are merged: where each field's value came from, and the seeds and
//! DNS name that are filled into discovery strategies at the end.

use std::collections::BTreeMap;

use super::error::Origin;

/// Where each field (a dotted TOML key) got its current value.
#[derive(Debug, Default)]
pub(crate) struct Origins {
    fields: BTreeMap<String, Origin>,
}

impl Origins {
    /// Records that `field` was set from `origin`. Setting a whole section (`membership`)
    /// forgets where its parts came from before.
    pub(crate) fn set(&mut self, field: &str, origin: &Origin) {
        let prefix = format!("{field}.");
        self.fields.retain(|key, _| !key.starts_with(&prefix));
        self.fields.insert(field.to_owned(), origin.clone());
    }

    /// Where `field` came from: its own entry, else its section's, else a default.
    pub(crate) fn of(&self, field: &str) -> Origin {
        let mut key = field;
        loop {
            if let Some(origin) = self.fields.get(key) {
                return origin.clone();
            }
            match key.rsplit_once('.') {
                Some((parent, _)) => key = parent,
                None => return Origin::Default,
            }
        }
    }

    /// Stores `value` in `slot` and records its origin.
    pub(crate) fn put<T>(&mut self, slot: &mut T, value: T, field: &str, origin: &Origin) {
        *slot = value;
        self.set(field, origin);
    }
}

impl Origin {
    /// Precedence of the source: a higher rank overrides a lower one.
    pub(crate) fn rank(&self) -> u8 {
        match self {
            Origin::Default => 0,
            Origin::File { .. } => 1,
            Origin::Env(_) => 2,
            Origin::Builder => 3,
        }
    }
}

/// Seeds and a DNS name given on their own (env or builder), to be filled into the `static`
/// and `dns` strategies once every source has been read.
#[derive(Debug, Default)]
pub(crate) struct DiscoveryHints {
    /// Seed addresses and where they came from.
    pub seeds: Option<(Vec<String>, Origin)>,
    /// A DNS name and where it came from.
    pub dns_name: Option<(String, Origin)>,
    /// A name server for the `dns` strategies and where it came from.
    pub dns_server: Option<(std::net::SocketAddr, Origin)>,
    /// The port for the `dns` strategies' A/AAAA answers, unparsed, and where it came from.
    pub dns_port: Option<(String, Origin)>,
    /// Whether the environment is a Kubernetes pod, where `auto` finds peers through DNS.
    pub kubernetes: bool,
}
