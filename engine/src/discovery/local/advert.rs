//! The advertisement file: writing ours atomically, reading others' without trusting them.

use std::fs;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use foundation_transport::NodeId;
use serde::{Deserialize, Serialize};

use super::super::{DiscoveryError, LocalNode};

/// Larger files are not advertisements (ours is ~150 bytes); reading stops here.
const MAX_FILE_BYTES: u64 = 4096;

/// What a node writes about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Advert {
    cluster: String,
    /// The node id as 32 hex digits (JSON numbers cannot carry 128 bits safely).
    id: String,
    addr: SocketAddr,
    pid: u32,
    /// Seconds since the Unix epoch when the node started advertising.
    started: u64,
    /// The node's HTTP address, where it serves one (absent in files of older nodes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    http: Option<SocketAddr>,
}

/// A peer found in the directory.
#[derive(Debug)]
pub(super) struct Peer {
    pub(super) id: NodeId,
    pub(super) addr: SocketAddr,
}

/// The outcome of one directory listing.
#[derive(Debug, Default)]
pub(super) struct Scan {
    pub(super) peers: Vec<Peer>,
    /// Files that were not valid advertisements (skipped), each as it was when read.
    pub(super) malformed: Vec<FileStamp>,
    /// The directory could not be listed.
    pub(super) unreadable: bool,
}

/// A file as a scan found it: its name, size and last change. A malformed file is counted
/// when first seen, and again only once it has been written again.
pub(super) type FileStamp = (std::ffi::OsString, u64, Option<SystemTime>);

fn stamp(path: &Path) -> FileStamp {
    let meta = fs::symlink_metadata(path).ok();
    let name = path.file_name().unwrap_or_default().to_owned();
    let len = meta.as_ref().map_or(0, fs::Metadata::len);
    (name, len, meta.and_then(|m| m.modified().ok()))
}

impl Advert {
    pub(super) fn of(me: &LocalNode) -> Self {
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Self {
            cluster: me.cluster.as_str().to_owned(),
            id: me.id.to_string(),
            addr: me.addr,
            pid: std::process::id(),
            started,
            http: me.http,
        }
    }

    pub(super) fn path(&self, dir: &Path) -> PathBuf {
        dir.join(format!("{}.json", self.id))
    }

    /// Writes the file atomically (temporary file, then rename), so readers never see half of it.
    pub(super) fn write(&self, dir: &Path) -> Result<PathBuf, DiscoveryError> {
        let path = self.path(dir);
        let tmp = dir.join(format!(".{}.json.tmp", self.id));
        let write = || -> io::Result<()> {
            let json = serde_json::to_vec(self).map_err(io::Error::other)?;
            let mut file = fs::File::create(&tmp)?;
            file.write_all(&json)?;
            file.sync_all()?;
            fs::rename(&tmp, &path)
        };
        write().map_err(|source| DiscoveryError::Advertise {
            path: path.clone(),
            source,
        })?;
        Ok(path)
    }

    /// Rewrites the file if it disappeared.
    pub(super) fn ensure_written(&self, dir: &Path) -> Result<(), DiscoveryError> {
        if self.path(dir).exists() {
            return Ok(());
        }
        self.write(dir).map(|_| ())
    }
}

/// Lists `dir`: valid advertisements of other live nodes of our cluster become peers; files of
/// dead processes are removed; anything else that looks like an advertisement is counted.
pub(super) fn scan(dir: &Path, me: &Advert) -> Scan {
    let mut scan = Scan::default();
    let Ok(entries) = fs::read_dir(dir) else {
        scan.unreadable = true;
        return scan;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(stem) = advert_stem(&path) else {
            continue; // temporary files, dotfiles, anything not named like an advertisement
        };
        if stem == me.id {
            continue;
        }
        match read_peer(&path, &stem, &me.cluster) {
            Some((peer, pid)) if pid_alive(pid) => scan.peers.push(peer),
            Some(_) => remove_stale(&path),
            None => scan.malformed.push(stamp(&path)),
        }
    }
    scan
}

/// Every valid advertisement of `cluster` in `dir` whose process is alive, oldest first, without
/// changing anything in the directory (this is what the `foundation` commands read to find a
/// node). A directory that does not exist holds no nodes.
pub(super) fn running(dir: &Path, cluster: &str) -> io::Result<Vec<super::RunningNode>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    let mut nodes = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(stem) = advert_stem(&path) else {
            continue;
        };
        let Some((advert, peer)) = read_valid(&path, &stem, cluster) else {
            continue;
        };
        if pid_alive(advert.pid) {
            nodes.push(super::RunningNode {
                id: peer.id,
                addr: peer.addr,
                // An address no tool can reach is no HTTP address: `foundation` says the node
                // serves none instead of trying port 0.
                http: advert.http.filter(|http| reachable(*http)),
                pid: advert.pid,
                started: advert.started,
            });
        }
    }
    nodes.sort_by_key(|n| (n.started, n.id));
    Ok(nodes)
}

/// The stem of `<stem>.json`, for names that do not start with a dot.
fn advert_stem(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let stem = name.strip_suffix(".json")?;
    (!stem.starts_with('.')).then(|| stem.to_owned())
}

/// Reads and validates one file; `None` when it is not a valid advertisement of our cluster.
fn read_peer(path: &Path, stem: &str, cluster: &str) -> Option<(Peer, u32)> {
    read_valid(path, stem, cluster).map(|(advert, peer)| (peer, advert.pid))
}

/// Reads one file and checks it is an advertisement of `cluster` named after its node.
fn read_valid(path: &Path, stem: &str, cluster: &str) -> Option<(Advert, Peer)> {
    let advert = read_advert(path)?;
    let id: NodeId = advert.id.parse().ok()?;
    // Other spellings parse to the same id: one node must have one file, and ours must be ours.
    let valid = advert.id == id.to_string()
        && advert.id == stem
        && advert.cluster == cluster
        && advert.pid != 0
        && reachable(advert.addr);
    if !valid {
        tracing::debug!(file = %path.display(), "local discovery: skipping invalid advertisement");
        return None;
    }
    let addr = advert.addr;
    Some((advert, Peer { id, addr }))
}

/// Whether another process could connect to `addr`: port 0 and the unspecified address are
/// what a node binds to, never where it is found.
fn reachable(addr: SocketAddr) -> bool {
    addr.port() != 0 && !addr.ip().is_unspecified()
}

fn read_advert(path: &Path) -> Option<Advert> {
    // Only regular files: a symlink or a FIFO planted here must not make us block or wander.
    let meta = fs::symlink_metadata(path).ok()?;
    if !meta.file_type().is_file() || meta.len() > MAX_FILE_BYTES {
        return None;
    }
    let mut bytes = Vec::new();
    fs::File::open(path)
        .ok()?
        .take(MAX_FILE_BYTES)
        .read_to_end(&mut bytes)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn remove_stale(path: &Path) {
    match fs::remove_file(path) {
        Ok(()) => {
            tracing::debug!(file = %path.display(), "local discovery: removed file of a dead process")
        }
        Err(error) => {
            tracing::debug!(file = %path.display(), %error, "local discovery: cannot remove stale file")
        }
    }
}

/// Whether process `pid` exists. Where that cannot be checked, assume it does (a stale entry
/// costs one failed dial; removing a live node's file would hide it).
fn pid_alive(pid: u32) -> bool {
    let proc = Path::new("/proc");
    if cfg!(target_os = "linux") && proc.join("self").exists() {
        return proc.join(pid.to_string()).exists();
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_json_names_are_advertisements() {
        assert_eq!(
            advert_stem(Path::new("/d/ab12.json")).as_deref(),
            Some("ab12")
        );
        assert_eq!(advert_stem(Path::new("/d/.ab12.json.tmp")), None);
        assert_eq!(advert_stem(Path::new("/d/.ab12.json")), None);
        assert_eq!(advert_stem(Path::new("/d/ab12.txt")), None);
    }

    /// One node, one file: an id spelled otherwise (upper case, a sign, fewer digits) parses to
    /// the same node, so its file would list the node twice, or a node its own file again.
    #[test]
    fn only_the_canonical_spelling_of_an_id_is_taken_up() {
        let dir = std::env::temp_dir().join(format!("foundation-adverts-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let canonical = "0123456789abcdef0123456789abcdef";
        for id in [
            canonical,
            "0123456789ABCDEF0123456789ABCDEF",
            "+123456789abcdef0123456789abcdef",
        ] {
            let json = format!(
                r#"{{"cluster":"c","id":"{id}","addr":"127.0.0.1:7000","pid":{},"started":1}}"#,
                std::process::id()
            );
            fs::write(dir.join(format!("{id}.json")), json).unwrap();
        }
        let nodes = running(&dir, "c").unwrap();
        fs::remove_dir_all(&dir).unwrap();
        let ids: Vec<String> = nodes.iter().map(|n| n.id.to_string()).collect();
        assert_eq!(ids, [canonical]);
    }

    /// A file may name an HTTP address its node bound rather than one it can be reached at.
    #[test]
    fn an_unreachable_http_address_is_taken_as_none() {
        let dir = std::env::temp_dir().join(format!("foundation-http-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let ids = [
            "0000000000000000000000000000000a",
            "0000000000000000000000000000000b",
        ];
        let https = ["127.0.0.1:0", "0.0.0.0:8080"];
        for (id, http) in ids.iter().zip(https) {
            let json = format!(
                r#"{{"cluster":"c","id":"{id}","addr":"127.0.0.1:7000","pid":{},"started":1,"http":"{http}"}}"#,
                std::process::id()
            );
            fs::write(dir.join(format!("{id}.json")), json).unwrap();
        }
        let nodes = running(&dir, "c").unwrap();
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(nodes.len(), 2);
        assert!(nodes.iter().all(|n| n.http.is_none()), "{nodes:?}");
    }

    #[test]
    fn this_process_is_alive_and_an_absurd_pid_is_not() {
        assert!(pid_alive(std::process::id()));
        if cfg!(target_os = "linux") {
            assert!(!pid_alive(u32::MAX));
        }
    }
}
