//! The data directory's layout: what lives where, in one place.
//!
//! ```text
//!   <data_dir>/
//!     store/         the node's durable replicated state (a fjall database)
//!     node-id        the node's stable identity: written at the first start, read at every
//!                    later one (unless the configuration names an id)
//!     quarantine/    damaged store files moved aside by recovery, kept for inspection; an
//!                    operator may delete them once the node has caught up
//! ```

use std::path::{Path, PathBuf};

use foundation_core::{NodeId, ParseNodeIdError};

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

    /// The node's stable id: the one in `node-id`, or a new random one written there (through
    /// a temporary file and a rename, so a crash leaves the old file or the new one, never half
    /// of one). A file that does not hold an id is an error, never overwritten.
    pub fn stable_node_id(&self) -> Result<NodeId, StorageError> {
        let path = self.node_id();
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                text.trim()
                    .parse()
                    .map_err(|e: ParseNodeIdError| StorageError::BadNodeId {
                        path: path.clone(),
                        detail: e.to_string(),
                    })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let id = NodeId::random();
                let fresh = self.root.join("node-id.new");
                std::fs::write(&fresh, format!("{id}\n"))
                    .and_then(|()| std::fs::File::open(&fresh)?.sync_all())
                    .map_err(|e| StorageError::io("write", &fresh, &e))?;
                std::fs::rename(&fresh, &path)
                    .map_err(|e| StorageError::io("rename", &path, &e))?;
                Ok(id)
            }
            Err(e) => Err(StorageError::io("read", &path, &e)),
        }
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
