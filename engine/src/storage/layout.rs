//! The data directory's layout: what lives where, in one place.
//!
//! ```text
//!   <data_dir>/
//!     store/         the node's durable replicated state (a fjall database)
//!     node-id        the node's stable identity: written at the first start, read at every
//!                    later one (unless the configuration names an id)
//!     node-id.*.new  an id being written at a first start; one left behind by a crash then
//!                    is unused and may be deleted
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

    /// The node's stable id: the one in `node-id`, or a new random one written there. A file
    /// that does not hold an id is an error, never overwritten.
    pub fn stable_node_id(&self) -> Result<NodeId, StorageError> {
        match self.read_node_id()? {
            Some(id) => Ok(id),
            None => self.new_node_id(),
        }
    }

    /// The id in `node-id`; `None` if there is no such file.
    fn read_node_id(&self) -> Result<Option<NodeId>, StorageError> {
        let path = self.node_id();
        match std::fs::read_to_string(&path) {
            Ok(text) => text
                .trim()
                .parse()
                .map(Some)
                .map_err(|e: ParseNodeIdError| StorageError::BadNodeId {
                    path: path.clone(),
                    detail: e.to_string(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StorageError::io("read", &path, &e)),
        }
    }

    /// Writes a new random id to `node-id`, unless another process starting on this directory
    /// wrote one first: then that one is the id. Written whole to a file of this attempt's own
    /// (`node-id.<id>.new`) and linked into place, which fails if `node-id` exists, so a crash
    /// leaves no half of an id, and of two starts at once one id wins and both read it.
    fn new_node_id(&self) -> Result<NodeId, StorageError> {
        let (path, id) = (self.node_id(), NodeId::random());
        let fresh = self.root.join(format!("node-id.{id}.new"));
        let written = std::fs::write(&fresh, format!("{id}\n"))
            .and_then(|()| std::fs::File::open(&fresh)?.sync_all());
        if let Err(e) = written {
            let _ = std::fs::remove_file(&fresh);
            return Err(StorageError::io("write", &fresh, &e));
        }
        let placed = match std::fs::hard_link(&fresh, &path) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
            // No hard links here (vfat, some network mounts): renamed into place, where two
            // first starts at once can still disagree on the id.
            Err(_) => {
                return std::fs::rename(&fresh, &path)
                    .map_err(|e| StorageError::io("rename", &path, &e))
                    .and_then(|()| sync_dir(&self.root))
                    .map(|()| id);
            }
        };
        let _ = std::fs::remove_file(&fresh);
        if placed {
            return sync_dir(&self.root).map(|()| id);
        }
        // Another start placed its id first. Something there that reads as no file (a
        // dangling link) is an error, not a reason to try again.
        self.read_node_id()?.ok_or_else(|| {
            let gone = std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "it exists but cannot be read (a dangling link?)",
            );
            StorageError::io("read", &path, &gone)
        })
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

/// Makes a directory's entries durable: a file linked in survives a power cut only once its
/// directory is synced.
fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StorageError::io("sync", dir, &e))
}
