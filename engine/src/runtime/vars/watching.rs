//! Watching variables: one by name, or every variable whose name starts with a prefix —
//! those declared later included — with each change's value before and after and its writer.
//!
//! A watch subscribes to the node's variables events before it reads the current values, so no
//! change falls between the two; it then hands out each newer version of a watched variable
//! once, in the order this node saw them.

use std::collections::BTreeMap;

use foundation_agents::variable::VarValue;
use foundation_core::vars::{Life, VarsEvent};
use tokio::sync::broadcast;

use super::VarsHandle;

/// Which variables a watch follows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Watched {
    /// The variable of this name.
    Name(String),
    /// Every variable whose name starts with this (the empty prefix: all of them).
    Prefix(String),
}

impl Watched {
    fn covers(&self, name: &str) -> bool {
        match self {
            Watched::Name(n) => n == name,
            Watched::Prefix(p) => name.starts_with(p.as_str()),
        }
    }
}

/// One change of a watched variable.
#[derive(Clone, Debug, PartialEq)]
pub struct VarChange {
    /// The variable.
    pub name: String,
    /// Its new version.
    pub version: u64,
    /// Its value before, as this watch last saw it; `None` for a variable the watch had not
    /// seen yet (declared after the watch began).
    pub old: Option<VarValue>,
    /// Its new value.
    pub value: VarValue,
    /// The node life whose write it was.
    pub writer: Life,
}

/// Why a watch handed out no change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WatchError {
    /// Changes went by faster than the watch was read: this many events were skipped. The
    /// watch goes on from here (the next change's `old` is what it saw last).
    #[error("{0} variables events went by faster than this watch read them")]
    Lagged(u64),
    /// The node stopped.
    #[error("the node stopped")]
    Stopped,
}

/// A watch on variables; see the module documentation.
pub struct VarWatch {
    watched: Watched,
    events: broadcast::Receiver<VarsEvent>,
    /// Each watched variable's version and value as the watch last saw them.
    seen: BTreeMap<String, (u64, VarValue)>,
}

impl VarWatch {
    pub(super) fn new(vars: &VarsHandle, watched: Watched) -> Self {
        // Subscribed before reading the current values, so no change falls between the two.
        let events = vars.watch();
        let seen = vars
            .all()
            .iter()
            .filter(|(name, _)| watched.covers(name))
            .map(|(name, state)| (name.clone(), (state.version, state.value.clone())))
            .collect();
        Self {
            watched,
            events,
            seen,
        }
    }

    /// The watched variables' versions and values when the watch began (or as it last saw
    /// them), by name.
    pub fn current(&self) -> &BTreeMap<String, (u64, VarValue)> {
        &self.seen
    }

    /// The next change of a watched variable.
    pub async fn next(&mut self) -> Result<VarChange, WatchError> {
        loop {
            let event = match self.events.recv().await {
                Ok(event) => event,
                Err(broadcast::error::RecvError::Lagged(n)) => return Err(WatchError::Lagged(n)),
                Err(broadcast::error::RecvError::Closed) => return Err(WatchError::Stopped),
            };
            if let Some(change) = self.take(event) {
                return Ok(change);
            }
        }
    }

    /// The change `event` makes to a watched variable, if it is a newer version of one.
    fn take(&mut self, event: VarsEvent) -> Option<VarChange> {
        let VarsEvent::Changed {
            name,
            version,
            value,
            writer,
        } = event
        else {
            return None;
        };
        if !self.watched.covers(&name) {
            return None;
        }
        if self.seen.get(&name).is_some_and(|(v, _)| *v >= version) {
            return None;
        }
        let old = self
            .seen
            .insert(name.clone(), (version, value.clone()))
            .map(|(_, old)| old);
        Some(VarChange {
            name,
            version,
            old,
            value,
            writer,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foundation_core::NodeId;

    fn watch(watched: Watched) -> VarWatch {
        let (_, events) = broadcast::channel(4);
        VarWatch {
            watched,
            events,
            seen: BTreeMap::from([("room.a".to_owned(), (2, VarValue::Int(1)))]),
        }
    }

    fn changed(name: &str, version: u64, value: i64) -> VarsEvent {
        VarsEvent::Changed {
            name: name.into(),
            version,
            value: VarValue::Int(value),
            writer: Life {
                node: NodeId::from_u128(7),
                generation: 1,
            },
        }
    }

    #[test]
    fn a_prefix_watch_takes_newer_versions_of_matching_names_with_their_old_values() {
        let mut w = watch(Watched::Prefix("room.".into()));
        let change = w.take(changed("room.a", 3, 5)).expect("a newer version");
        assert_eq!(change.old, Some(VarValue::Int(1)));
        assert_eq!(change.value, VarValue::Int(5));
        assert!(
            w.take(changed("room.a", 3, 5)).is_none(),
            "the same version twice"
        );
        assert!(w.take(changed("hall.b", 9, 1)).is_none(), "another prefix");
        let new = w
            .take(changed("room.b", 1, 4))
            .expect("declared after the watch");
        assert_eq!(new.old, None);
        assert_eq!(w.current().len(), 2);
    }

    #[test]
    fn a_name_watch_takes_only_that_name() {
        let mut w = watch(Watched::Name("room.a".into()));
        assert!(w.take(changed("room.ab", 5, 1)).is_none());
        assert!(w.take(changed("room.a", 4, 2)).is_some());
    }
}
