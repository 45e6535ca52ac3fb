//! Each node's services directory, kept the way the runtime's driver keeps it: brought up to
//! date from the changes its core reports (membership, service and interest entries), not
//! rebuilt for every call attempt and publication. In debug builds every read is checked
//! against a directory built from scratch.

use std::collections::BTreeMap;
use std::sync::Arc;

use foundation_core::effects::Event;
use foundation_core::node::Core;
use foundation_core::services::{Directory, DirectoryChanges};

/// One node life's directory and what changed since it was last brought up to date.
struct Kept {
    life: u64,
    directory: Arc<Directory>,
    /// Changes each time the directory does, so a reader can tell it moved.
    version: u64,
    changes: DirectoryChanges,
}

/// The directories of the nodes whose directory was read in their current life.
#[derive(Default)]
pub(crate) struct Directories {
    by_slot: BTreeMap<usize, Kept>,
    /// The last version handed out, across every node.
    last_version: u64,
}

impl Directories {
    /// Notes an event the core in `slot` emitted (nothing to note before the first read: that
    /// one builds from scratch).
    pub(crate) fn note(&mut self, slot: usize, event: &Event) {
        if let Some(kept) = self.by_slot.get_mut(&slot) {
            kept.changes.note(event);
        }
    }

    /// The directory of the node in `slot` in its life `life`, whose core is `core`, and its
    /// version.
    pub(crate) fn current(&mut self, slot: usize, life: u64, core: &Core) -> (Arc<Directory>, u64) {
        let kept = match self.by_slot.get_mut(&slot) {
            Some(kept) if kept.life == life => kept,
            _ => {
                self.last_version += 1;
                let fresh = Kept {
                    life,
                    directory: Arc::new(Directory::build(core)),
                    version: self.last_version,
                    changes: DirectoryChanges::default(),
                };
                let directory = fresh.directory.clone();
                self.by_slot.insert(slot, fresh);
                return (directory, self.last_version);
            }
        };
        if kept.directory.needs_update(core, &kept.changes) {
            let changes = std::mem::take(&mut kept.changes);
            Arc::make_mut(&mut kept.directory).update(core, &changes);
            self.last_version += 1;
            kept.version = self.last_version;
        }
        if cfg!(debug_assertions) {
            if let Some(difference) = kept.directory.difference(&Directory::build(core)) {
                panic!("n{slot}'s kept directory is not what its core shows: {difference}");
            }
        }
        (kept.directory.clone(), kept.version)
    }
}

impl crate::world::World {
    /// The services directory of the node in `slot` as its application sees it now, and its
    /// version (it changes whenever the directory does); `None` while the node is down.
    pub(crate) fn directory(&mut self, slot: usize) -> Option<(Arc<Directory>, u64)> {
        let mut kept = std::mem::take(&mut self.directories);
        let node = self.node(slot);
        let current = node
            .core()
            .map(|core| kept.current(slot, node.life(), core));
        self.directories = kept;
        current
    }
}
