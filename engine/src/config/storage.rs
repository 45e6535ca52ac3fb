//! Where a node keeps its durable state: `data_dir`, `storage` and `sync`.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use super::error::{ConfigError, Origin};
use super::origins::Origins;
use super::{NodeConfig, Profile};
use crate::storage::SyncPolicy;

/// The message production prints when it would keep its state only in memory by default.
pub(crate) const PRODUCTION_NEEDS_STORAGE: &str =
    "the production profile keeps its replicated state on disk and needs a data directory: set \
     data_dir (env FOUNDATION_DATA_DIR, CLI --data-dir), or storage = \"memory\" (env \
     FOUNDATION_STORAGE=memory) to keep state in memory only and lose it when the node stops";

const DISK_NEEDS_DATA_DIR: &str =
    "storage = \"disk\" needs a data directory: set data_dir (env FOUNDATION_DATA_DIR, CLI \
     --data-dir)";

/// Where replicated state lives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum StorageMode {
    /// In memory only: lost when the node stops; peers refill it when it rejoins, unless every
    /// node stopped. The default without a data directory (development only).
    #[default]
    Memory,
    /// On disk in the data directory: survives restarts, including the whole cluster's. The
    /// default whenever a data directory is given.
    Disk,
}

impl StorageMode {
    /// The canonical lowercase name.
    pub const fn as_str(self) -> &'static str {
        match self {
            StorageMode::Memory => "memory",
            StorageMode::Disk => "disk",
        }
    }
}

impl fmt::Display for StorageMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StorageMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "memory" => Ok(StorageMode::Memory),
            "disk" => Ok(StorageMode::Disk),
            _ => Err(format!(
                "{s:?} is not a storage mode: expected \"memory\" or \"disk\""
            )),
        }
    }
}

/// With no explicit `storage`, a data directory means disk.
pub(crate) fn resolve(config: &mut NodeConfig, origins: &Origins) {
    if origins.of("storage") == Origin::Default && config.data_dir.is_some() {
        config.storage = StorageMode::Disk;
    }
}

/// Disk needs a directory; production needs disk or an explicit choice of memory.
pub(crate) fn validate(config: &NodeConfig, origins: &Origins) -> Result<(), ConfigError> {
    config
        .sync
        .validate()
        .map_err(|e| ConfigError::invalid(origins.of("sync"), "sync_interval", e))?;
    if let Some(dir) = &config.data_dir {
        check_dir(dir, &origins.of("data_dir"))?;
    }
    if config.storage == StorageMode::Disk && config.data_dir.is_none() {
        return Err(ConfigError::invalid(
            origins.of("storage"),
            "storage",
            DISK_NEEDS_DATA_DIR,
        ));
    }
    let chose_memory = origins.of("storage") != Origin::Default;
    if config.profile == Profile::Production
        && config.storage == StorageMode::Memory
        && !chose_memory
    {
        return Err(ConfigError::invalid(
            origins.of("data_dir"),
            "data_dir",
            PRODUCTION_NEEDS_STORAGE,
        ));
    }
    Ok(())
}

fn check_dir(dir: &Path, origin: &Origin) -> Result<(), ConfigError> {
    if dir.as_os_str().is_empty() {
        return Err(ConfigError::invalid(origin.clone(), "data_dir", "is empty"));
    }
    if dir.exists() && !dir.is_dir() {
        let problem = format!("{} exists and is not a directory", dir.display());
        return Err(ConfigError::invalid(origin.clone(), "data_dir", problem));
    }
    Ok(())
}

/// The sync policy given as a name and an optional interval in one source: an interval alone
/// means `interval`.
pub(crate) fn sync_policy(
    name: Option<&str>,
    interval: Option<std::time::Duration>,
) -> Result<Option<SyncPolicy>, String> {
    match (name, interval) {
        (None, None) => Ok(None),
        (None, Some(every)) => Ok(Some(SyncPolicy::Interval(every))),
        (Some(name), interval) => SyncPolicy::parse(name, interval).map(Some),
    }
}
