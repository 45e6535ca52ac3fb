//! `foundation snapshot save FILE` and `foundation snapshot restore FILE`: the replicated
//! keyspaces that are not ephemeral (config, variables, replicated caches), through a running
//! node's HTTP API (`GET` and `POST /snapshot`).
//!
//! Save checks what the node sent before it writes anything, and writes the file atomically (a
//! temporary file beside it, synced, then renamed over it), so FILE is either the old file or a
//! whole new snapshot. Restore checks the whole file first (magic, version, length, checksum,
//! every keyspace's state) and sends nothing when it is damaged; the node checks it again and
//! merges every keyspace as a CRDT merge, so values newer on the cluster are kept.

use crate::cli::say;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use foundation_engine::http::{get_bytes, post_file};
use foundation_engine::replication::{Snapshot, SNAPSHOT_BYTES_MAX};
use foundation_engine::runtime::snapshot::RESTORE_BODY_TIMEOUT;

use super::target::NodeTarget;

/// Longest taking a snapshot and bringing it here may take.
const SAVE_TIMEOUT: Duration = Duration::from_secs(120);

/// Options of `foundation snapshot`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  foundation snapshot save backup.fsnap          config, variables and the other replicated
                                                 keyspaces that are not ephemeral
  foundation snapshot restore backup.fsnap       merge them into the cluster (newer values win)
  foundation snapshot save b.fsnap --node 127.0.0.1:7401

A restore is a CRDT merge, never a rollback: a value written or deleted on the cluster after the
snapshot was taken stays as it is. A damaged, truncated or newer-format file is refused and
nothing is applied. Files up to 256 MiB; FOUNDATION_HTTP_TOKEN is sent for the restore.")]
pub struct SnapshotArgs {
    /// Which node to ask.
    #[command(flatten)]
    pub target: NodeTarget,
    /// What to do.
    #[command(subcommand)]
    pub command: SnapshotCommand,
}

/// `foundation snapshot` subcommands.
#[derive(clap::Subcommand, Debug, PartialEq)]
pub enum SnapshotCommand {
    /// Write the node's replicated keyspaces (all but the ephemeral ones) to FILE.
    Save {
        /// Where to write the snapshot (replaced atomically if it exists).
        file: PathBuf,
    },
    /// Merge the keyspaces in FILE into the cluster through the node.
    Restore {
        /// A snapshot written by `foundation snapshot save`.
        file: PathBuf,
    },
}

/// Runs the subcommand against the node.
pub async fn run(args: SnapshotArgs) -> Result<(), Box<dyn std::error::Error>> {
    match args.command {
        SnapshotCommand::Save { file } => {
            let node = args.target.resolve().await?;
            save(node, &file).await
        }
        SnapshotCommand::Restore { file } => {
            // The file is checked before any node is looked for: a bad file is the answer.
            let bytes = read_checked(&file)?;
            let node = args.target.resolve().await?;
            restore(node, &file, bytes).await
        }
    }
}

async fn save(node: SocketAddr, file: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let bytes = get_bytes(node, "/snapshot", SNAPSHOT_BYTES_MAX, SAVE_TIMEOUT)
        .await
        .map_err(|e| format!("node at {node}: {e}"))?;
    let snapshot = Snapshot::decode(&bytes)
        .map_err(|e| format!("node at {node} sent a snapshot that does not check: {e}"))?;
    write_atomically(file, &bytes).map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    say!(
        "saved {} ({} bytes) from node {} at {node}: {}",
        file.display(),
        bytes.len(),
        snapshot.node,
        contents(&snapshot)
    );
    Ok(())
}

/// The file's bytes, once they decode as a whole snapshot.
fn read_checked(file: &Path) -> Result<Bytes, Box<dyn std::error::Error>> {
    let shown = file.display();
    let len = std::fs::metadata(file)
        .map_err(|e| format!("cannot read {shown}: {e}"))?
        .len();
    if len > SNAPSHOT_BYTES_MAX as u64 {
        return Err(format!(
            "{shown} is {len} bytes, over the {SNAPSHOT_BYTES_MAX} bytes a snapshot may hold; nothing was restored"
        )
        .into());
    }
    let bytes = std::fs::read(file).map_err(|e| format!("cannot read {shown}: {e}"))?;
    Snapshot::decode(&bytes).map_err(|e| format!("{shown}: {e}; nothing was restored"))?;
    Ok(Bytes::from(bytes))
}

async fn restore(
    node: SocketAddr,
    file: &Path,
    bytes: Bytes,
) -> Result<(), Box<dyn std::error::Error>> {
    let timeout = RESTORE_BODY_TIMEOUT + Duration::from_secs(30);
    let answer = post_file(node, "/snapshot", bytes, timeout)
        .await
        .map_err(|e| format!("node at {node}: {e}"))?;
    let taken_ms = answer["snapshot"]["taken_ms"].as_u64().unwrap_or(0);
    say!(
        "restored {} (taken by node {}, {}) into node {} at {node}; replication spreads it to the cluster",
        file.display(),
        answer["snapshot"]["node"].as_str().unwrap_or("?"),
        age(taken_ms),
        answer["node"]["id"].as_str().unwrap_or("?"),
    );
    for keyspace in answer["restored"].as_array().into_iter().flatten() {
        say!(
            "  {:<24} {:>7} keys in the snapshot, {:>7} changed here, {:>7} now",
            keyspace["name"].as_str().unwrap_or("?"),
            keyspace["keys"],
            keyspace["changed"],
            keyspace["keys_after"],
        );
    }
    Ok(())
}

/// "config: 3 keys, vars: 1 key", or "no keyspaces".
fn contents(snapshot: &Snapshot) -> String {
    if snapshot.keyspaces.is_empty() {
        return "no keyspaces".into();
    }
    snapshot
        .keyspaces
        .iter()
        .map(|k| {
            let n = k.map.len();
            format!("{}: {n} key{}", k.name, if n == 1 { "" } else { "s" })
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// How long ago `taken_ms` (Unix milliseconds) was.
fn age(taken_ms: u64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    match now.checked_sub(taken_ms) {
        Some(ms) => format!("{} s ago", ms / 1000),
        None => format!("{} s in the future", (taken_ms - now) / 1000),
    }
}

/// Writes `bytes` to a temporary file beside `file`, syncs it, renames it over `file` and
/// syncs the directory: a crash leaves the old file or the new one, never a torn one.
fn write_atomically(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = file
        .file_name()
        .ok_or_else(|| std::io::Error::other("not a file name"))?;
    let temporary = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = (|| {
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temporary)?;
        out.write_all(bytes)?;
        out.sync_all()?;
        std::fs::rename(&temporary, file)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written?;
    // Makes the rename itself durable; a directory that cannot be opened (some platforms)
    // still holds the renamed file.
    if let Ok(dir) = std::fs::File::open(&dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An empty directory of this test's.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("foundation-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn an_atomic_write_replaces_the_file_and_leaves_no_temporary() {
        let dir = scratch("snap-cli");
        let file = dir.join("s.fsnap");
        std::fs::write(&file, b"old").unwrap();
        write_atomically(&file, b"new").unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"new");
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(left.len(), 1, "only the snapshot is left");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_damaged_file_is_refused_before_any_node_is_asked() {
        let dir = scratch("snap-bad");
        let file = dir.join("bad.fsnap");
        std::fs::write(&file, b"FNDSNAP\n\x01\x00").unwrap();
        let error = read_checked(&file).unwrap_err().to_string();
        assert!(
            error.contains("truncated") && error.contains("nothing was restored"),
            "{error}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
