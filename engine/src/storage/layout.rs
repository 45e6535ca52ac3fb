//! The data directory's layout: what lives where, in one place.
//!
//! ```text
//!   <data_dir>/
//!     store/         the node's durable replicated state (a fjall database)
//!     node-id        the node's stable identity (issue 17): written once, read at every start
//!     quarantine/    damaged store files moved aside by recovery, kept for inspection; an
//!                    operator may delete them once the node has caught up
//! ```

use std::path::{Path, PathBuf};

use super::fjall_disk::FjallDisk;
use super::StorageError;

/// A node's data directory. Creating it creates the directory (and its parents) if missing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// Uses `root`, creating it if missing; fails if it exists and is not a directory.
    pub fn create(root: impl Into<PathBuf>) -> Result<Self, StorageError> {
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(|e| StorageError::io("create", &root, &e))?;
        Ok(Self { root })
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the store lives.
    pub fn store(&self) -> PathBuf {
        self.root.join("store")
    }

    /// Where the node's stable identity lives.
    pub fn node_id(&self) -> PathBuf {
        self.root.join("node-id")
    }

    /// Where damaged files are moved.
    pub fn quarantine(&self) -> PathBuf {
        self.root.join("quarantine")
    }

    /// Opens (or creates) the store, recovering what is intact if it is damaged.
    pub fn open_disk(&self) -> Result<FjallDisk, StorageError> {
        FjallDisk::open(&self.store(), &self.quarantine())
    }
}
