//! Cluster-wide configuration: JSON values in the replicated `config` keyspace, readable locally
//! on every node and changeable from any node.
//!
//! ```no_run
//! # async fn demo(node: foundation_engine::runtime::Node) -> Result<(), foundation_engine::runtime::ConfigError> {
//! let config = node.config();
//! config.set("checkout.enabled", true).await?;
//! let enabled: Option<bool> = config.get("checkout.enabled")?;
//! let mut changes = config.watch("checkout.");
//! while let Some(change) = changes.next().await {
//!     println!("{}: {:?} -> {:?}", change.key, change.old, change.new);
//! }
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{de::DeserializeOwned, Serialize};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::request::Request;
use foundation_core::replication::{ReplicationError, ReplicationEvent, Write};

/// The keyspace the config lives in.
pub const CONFIG_KEYSPACE: &str = "config";

/// Live values of the config keyspace, kept by the driver from the core's change events so the
/// application can read config without a round trip to the driver task. Only config: the
/// other keyspaces are read through their own views (the directory, the variables' published
/// view), so a copy of them here would be one copy too many.
pub(crate) type Mirror = Arc<RwLock<BTreeMap<String, Vec<u8>>>>;

/// Applies a change event to the mirror (changes of other keyspaces are not mirrored).
pub(crate) fn mirror_apply(mirror: &Mirror, event: &ReplicationEvent) {
    let ReplicationEvent::KeyChanged {
        keyspace, key, new, ..
    } = event
    else {
        return;
    };
    if keyspace != CONFIG_KEYSPACE {
        return;
    }
    let Ok(mut space) = mirror.write() else {
        return; // poisoned only if a reader panicked mid-read; reads stay as they were
    };
    match new {
        Some(value) => {
            space.insert(key.clone(), value.clone());
        }
        None => {
            space.remove(key);
        }
    }
}

/// Why a config operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The value could not be turned into JSON.
    #[error("config value for {key:?} cannot be encoded as JSON: {source}")]
    Encode {
        /// The key.
        key: String,
        /// Why.
        source: serde_json::Error,
    },
    /// The stored value is not the type asked for.
    #[error("config value for {key:?} is not of the requested type: {source}")]
    Decode {
        /// The key.
        key: String,
        /// Why.
        source: serde_json::Error,
    },
    /// The write was refused (a size limit; for a majority write, no majority of the agreed
    /// membership is alive in this node's view: [`ReplicationError::MinoritySide`]); nothing
    /// changed.
    #[error(transparent)]
    Refused(#[from] ReplicationError),
    /// The key is empty or holds control characters (NUL, newlines, escapes), which would
    /// corrupt logs, the CLI's output and tools that read keys as lines; nothing changed.
    #[error("config key {key:?} is empty or contains control characters")]
    BadKey {
        /// The key.
        key: String,
    },
    /// A majority write was applied here but not confirmed by a majority in time. It still
    /// spreads (it is not rolled back); only the confirmation is missing.
    #[error(
        "only {acked} of the {needed} members needed for a majority hold the write after {timeout:?}"
    )]
    NoMajority {
        /// Members known to hold it, ourselves included.
        acked: usize,
        /// A majority of the live members at write time, ourselves included.
        needed: usize,
        /// How long we waited.
        timeout: Duration,
    },
    /// The node has stopped.
    #[error("the node has stopped")]
    Stopped,
}

/// One config change seen by a [`ConfigWatch`].
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigChange {
    /// The key.
    pub key: String,
    /// The value before (`None`: absent).
    pub old: Option<serde_json::Value>,
    /// The value now (`None`: deleted).
    pub new: Option<serde_json::Value>,
}

/// The cluster-wide config as seen from one node. Cheap to clone.
#[derive(Clone)]
pub struct ConfigHandle {
    pub(crate) requests: mpsc::Sender<Request>,
    pub(crate) mirror: Mirror,
    pub(crate) events: broadcast::Sender<ReplicationEvent>,
}

impl ConfigHandle {
    /// Sets `key` to `value` (as JSON) here and starts spreading it; returns once applied
    /// locally. Other nodes get it within a few anti-entropy rounds.
    pub async fn set(&self, key: &str, value: impl Serialize) -> Result<(), ConfigError> {
        check_key(key)?;
        let json = serde_json::to_vec(&value).map_err(|source| ConfigError::Encode {
            key: key.to_owned(),
            source,
        })?;
        self.write(key, Some(json)).await
    }

    /// Sets `key` to `value` like [`set`](Self::set), and returns once a majority of the
    /// agreed membership (ourselves included) hold it, or fails with
    /// [`ConfigError::NoMajority`] after `timeout`.
    ///
    /// The majority is of the *agreed* membership, as placement counts it: members join it
    /// when seen alive and leave it only by leaving gracefully (or a restart of this node), so
    /// members marked failed still count. A node that sees fewer than a majority of it alive
    /// (a minority side, or most members down) is refused at once with
    /// [`ConfigError::Refused`]`(`[`ReplicationError::MinoritySide`]`)`, and nothing is
    /// written. A write that was taken is not undone when the confirmation times out; it
    /// keeps spreading.
    pub async fn set_majority(
        &self,
        key: &str,
        value: impl Serialize,
        timeout: Duration,
    ) -> Result<(), ConfigError> {
        check_key(key)?;
        let json = serde_json::to_vec(&value).map_err(|source| ConfigError::Encode {
            key: key.to_owned(),
            source,
        })?;
        let write = Write {
            keyspace: CONFIG_KEYSPACE.to_owned(),
            key: key.to_owned(),
            value: Some(json),
        };
        let (done, result) = oneshot::channel();
        self.requests
            .send(Request::WriteMajority(write, timeout, done))
            .await
            .map_err(|_| ConfigError::Stopped)?;
        let (needed, mut holders) = result.await.map_err(|_| ConfigError::Stopped)??;
        let reached = tokio::time::timeout(timeout, holders.wait_for(|&h| h >= needed))
            .await
            .map(|waited| waited.is_ok());
        match reached {
            Ok(true) => Ok(()),
            Ok(false) => Err(ConfigError::Stopped),
            Err(_) => Err(ConfigError::NoMajority {
                acked: *holders.borrow(),
                needed,
                timeout,
            }),
        }
    }

    /// Deletes `key` cluster-wide. A key this node holds is deleted however it is spelled: one
    /// that writes refuse ([`ConfigError::BadKey`]) can still arrive from a member of an older
    /// build or in a restored snapshot, and nothing else could remove it.
    pub async fn delete(&self, key: &str) -> Result<(), ConfigError> {
        if !self.holds(key) {
            check_key(key)?;
        }
        self.write(key, None).await
    }

    fn holds(&self, key: &str) -> bool {
        self.mirror.read().is_ok_and(|all| all.contains_key(key))
    }

    async fn write(&self, key: &str, value: Option<Vec<u8>>) -> Result<(), ConfigError> {
        let write = Write {
            keyspace: CONFIG_KEYSPACE.to_owned(),
            key: key.to_owned(),
            value,
        };
        let (done, result) = oneshot::channel();
        self.requests
            .send(Request::Write(write, done))
            .await
            .map_err(|_| ConfigError::Stopped)?;
        Ok(result.await.map_err(|_| ConfigError::Stopped)??)
    }

    /// The local value of `key`, decoded as `T`.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, ConfigError> {
        let Some(bytes) = self.get_raw(key) else {
            return Ok(None);
        };
        decode(key, &bytes).map(Some)
    }

    /// The local value of `key` as JSON bytes.
    pub fn get_raw(&self, key: &str) -> Option<Vec<u8>> {
        self.mirror.read().ok()?.get(key).cloned()
    }

    /// Every key and value, for `/config`-style snapshots (values that are not JSON are left out).
    pub fn snapshot(&self) -> BTreeMap<String, serde_json::Value> {
        let Ok(all) = self.mirror.read() else {
            return BTreeMap::new();
        };
        all.iter()
            .filter_map(|(k, v)| Some((k.clone(), decode(k, v).ok()?)))
            .collect()
    }

    /// Changes to keys starting with `prefix`, from now on, local and remote.
    pub fn watch(&self, prefix: impl Into<String>) -> ConfigWatch {
        ConfigWatch {
            events: self.events.subscribe(),
            prefix: prefix.into(),
        }
    }
}

/// `bytes`, the value of `key` as this node's replica holds it, decoded as `T`: how every read
/// of the config decodes. A replica holds what any node wrote, so anything may arrive here.
pub fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, ConfigError> {
    serde_json::from_slice(bytes).map_err(|source| ConfigError::Decode {
        key: key.to_owned(),
        source,
    })
}

/// A stream of config changes under a prefix; see [`ConfigHandle::watch`].
pub struct ConfigWatch {
    events: broadcast::Receiver<ReplicationEvent>,
    prefix: String,
}

impl ConfigWatch {
    /// The next change, or `None` once the node has stopped. A watcher that falls more than the
    /// event buffer behind skips the oldest changes (read the current value with `get`).
    pub async fn next(&mut self) -> Option<ConfigChange> {
        loop {
            match self.events.recv().await {
                Ok(event) => {
                    if let Some(change) = self.matching(event) {
                        return Some(change);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    fn matching(&self, event: ReplicationEvent) -> Option<ConfigChange> {
        let ReplicationEvent::KeyChanged {
            keyspace,
            key,
            old,
            new,
        } = event
        else {
            return None;
        };
        if keyspace != CONFIG_KEYSPACE || !key.starts_with(&self.prefix) {
            return None;
        }
        let json = |v: Option<Vec<u8>>| v.and_then(|v| decode(&key, &v).ok());
        let (old, new) = (json(old), json(new));
        Some(ConfigChange { key, old, new })
    }
}

/// Longest wait a `?majority_ms=` write may ask for.
const HTTP_MAJORITY_WAIT_MAX: Duration = Duration::from_secs(60);

/// Answers `PUT` or `POST /config/{key}` (the body is the JSON value; `?majority_ms=N` waits up
/// to N ms for a majority of live members to hold it) and `DELETE /config/{key}` on the node's
/// HTTP server.
pub(crate) async fn http_write(
    config: ConfigHandle,
    request: crate::http::WriteRequest,
) -> (hyper::StatusCode, serde_json::Value) {
    use hyper::{Method, StatusCode};
    let key = request.rest;
    if key.is_empty() {
        return http_error(StatusCode::BAD_REQUEST, "no key: use /config/{key}");
    }
    let majority = match majority_wait(&request.query) {
        Ok(wait) => wait,
        Err(why) => return http_error(StatusCode::BAD_REQUEST, &why),
    };
    let result = if request.method == Method::DELETE {
        config.delete(&key).await
    } else {
        let value = match serde_json::from_slice::<serde_json::Value>(&request.body) {
            Ok(value) => value,
            Err(error) => {
                let why = format!("the body must be the JSON value: {error}");
                return http_error(StatusCode::BAD_REQUEST, &why);
            }
        };
        match majority {
            Some(wait) => config.set_majority(&key, value, wait).await,
            None => config.set(&key, value).await,
        }
    };
    match result {
        Ok(()) => (StatusCode::OK, serde_json::json!({ "key": key })),
        Err(error @ ConfigError::Refused(ReplicationError::MinoritySide { .. })) => {
            http_error(StatusCode::SERVICE_UNAVAILABLE, &error.to_string())
        }
        Err(error @ (ConfigError::Refused(_) | ConfigError::BadKey { .. })) => {
            http_error(StatusCode::UNPROCESSABLE_ENTITY, &error.to_string())
        }
        Err(error @ ConfigError::NoMajority { .. }) => {
            http_error(StatusCode::GATEWAY_TIMEOUT, &error.to_string())
        }
        Err(error) => http_error(StatusCode::SERVICE_UNAVAILABLE, &error.to_string()),
    }
}

/// Refuses keys no tool could show faithfully.
fn check_key(key: &str) -> Result<(), ConfigError> {
    if key.is_empty() || key.chars().any(char::is_control) {
        return Err(ConfigError::BadKey {
            key: key.to_owned(),
        });
    }
    Ok(())
}

/// The `majority_ms` of a write's query string, if any.
fn majority_wait(query: &str) -> Result<Option<Duration>, String> {
    let mut wait = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name != "majority_ms" {
            return Err(format!(
                "unknown query parameter {name:?}; only majority_ms is known"
            ));
        }
        let ms: u64 = value
            .parse()
            .map_err(|_| format!("majority_ms must be a number of milliseconds, not {value:?}"))?;
        let ms = Duration::from_millis(ms);
        if ms.is_zero() || ms > HTTP_MAJORITY_WAIT_MAX {
            return Err(format!(
                "majority_ms must be between 1 and {}",
                HTTP_MAJORITY_WAIT_MAX.as_millis()
            ));
        }
        wait = Some(ms);
    }
    Ok(wait)
}

fn http_error(status: hyper::StatusCode, why: &str) -> (hyper::StatusCode, serde_json::Value) {
    (status, serde_json::json!({ "error": why }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majority_wait_reads_milliseconds_and_refuses_the_rest() {
        assert_eq!(majority_wait(""), Ok(None));
        assert_eq!(
            majority_wait("majority_ms=1500"),
            Ok(Some(Duration::from_millis(1500)))
        );
        for bad in [
            "majority_ms=",
            "majority_ms=x",
            "majority_ms=0",
            "majority_ms=60001",
            "wait=3",
        ] {
            assert!(majority_wait(bad).is_err(), "{bad}");
        }
    }
}
