//! What the registry stores about one service instance, and the names it accepts.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// Longest service name.
pub const SERVICE_NAME_MAX: usize = 128;

/// Whether an instance should receive traffic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Serving.
    #[default]
    Healthy,
    /// Failing its checks, or said so itself: listed, but routed around.
    Unhealthy,
    /// Shutting down: finishes what it has, takes nothing new.
    Draining,
}

/// How callers reach an instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// A handler inside the owning node, called through Foundation's RPC.
    Handler,
    /// Something outside Foundation, at an address only the caller interprets (a URL,
    /// `host:port`): the registry makes it discoverable, RPC does not call it.
    Endpoint(String),
}

/// One registered instance of a service, as replicated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRecord {
    /// How to reach it.
    pub target: Target,
    /// The instance's software version.
    pub version: String,
    /// Labels, e.g. `zone=eu-1`.
    pub tags: BTreeMap<String, String>,
    /// What it can do, e.g. `gpu`, `pdf-render`.
    pub capabilities: BTreeSet<String>,
    /// Share of traffic relative to other instances; 0 takes none.
    pub weight: u32,
    /// Whether it takes traffic.
    pub health: Health,
}

impl Default for InstanceRecord {
    fn default() -> Self {
        Self {
            target: Target::Handler,
            version: String::new(),
            tags: BTreeMap::new(),
            capabilities: BTreeSet::new(),
            weight: 1,
            health: Health::Healthy,
        }
    }
}

impl InstanceRecord {
    /// The replicated bytes.
    pub fn encode(&self) -> Vec<u8> {
        // Plain data: encoding into a Vec cannot fail.
        postcard::to_stdvec(self).unwrap_or_default()
    }

    /// Reads replicated bytes; `None` if they are not a record (a newer or corrupt writer).
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        postcard::from_bytes(bytes).ok()
    }

    /// Whether routing may send it requests.
    pub fn routable(&self) -> bool {
        self.health == Health::Healthy && self.weight > 0 && self.target == Target::Handler
    }
}

/// Why a service name was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("service name {0:?} must be 1 to {SERVICE_NAME_MAX} characters of A-Z a-z 0-9 . _ -")]
pub struct BadServiceName(pub String);

/// Checks a service name: short, and free of the `/` that separates key parts.
pub fn check_service_name(name: &str) -> Result<(), BadServiceName> {
    if crate::ephemeral::plain_name(name, SERVICE_NAME_MAX) {
        Ok(())
    } else {
        Err(BadServiceName(name.to_owned()))
    }
}

/// The ephemeral entry name of instance `local_id` of `service`.
pub fn entry_name(service: &str, local_id: u64) -> String {
    format!("{service}/{local_id}")
}

/// Splits an entry name into service and local instance id.
pub fn parse_entry_name(name: &str) -> Option<(&str, u64)> {
    let (service, id) = name.rsplit_once('/')?;
    check_service_name(service).ok()?;
    Some((service, id.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_garbage_is_refused() {
        let record = InstanceRecord {
            target: Target::Endpoint("http://10.0.0.5:8080".into()),
            version: "1.4.2".into(),
            tags: [("zone".to_owned(), "eu-1".to_owned())].into(),
            capabilities: ["pdf".to_owned()].into(),
            weight: 3,
            health: Health::Draining,
        };
        assert_eq!(InstanceRecord::decode(&record.encode()), Some(record));
        assert_eq!(InstanceRecord::decode(&[0xff, 0xff, 0xff]), None);
    }

    #[test]
    fn names_are_checked_and_entry_names_round_trip() {
        assert!(check_service_name("billing.v2_eu-1").is_ok());
        for bad in ["", "a/b", "spa ce", &"x".repeat(SERVICE_NAME_MAX + 1)] {
            assert!(check_service_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_entry_name(&entry_name("billing", 7)),
            Some(("billing", 7))
        );
        assert_eq!(parse_entry_name("billing"), None);
        assert_eq!(parse_entry_name("bil/ling/x"), None);
    }

    #[test]
    fn only_healthy_weighted_handlers_are_routable() {
        let base = InstanceRecord::default();
        assert!(base.routable());
        for record in [
            InstanceRecord {
                health: Health::Unhealthy,
                ..base.clone()
            },
            InstanceRecord {
                weight: 0,
                ..base.clone()
            },
            InstanceRecord {
                target: Target::Endpoint("x".into()),
                ..base.clone()
            },
        ] {
            assert!(!record.routable());
        }
    }
}
