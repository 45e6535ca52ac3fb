//! `local`: zero-config discovery on one machine (the Erlang epmd idea, without a daemon).
//!
//! Each node of cluster `C` writes `<base>/C/<node-id>.json` ({cluster, id, addr, pid,
//! started, http}) and periodically lists the directory. `<base>` is per user
//! (`$XDG_RUNTIME_DIR/foundation`, else `<tmp>/foundation-<uid>`), so two terminals of one user
//! running `foundation node` just cluster. Files are untrusted input: anything malformed is
//! skipped and counted, and the file of a process that no longer exists is removed.

mod advert;
mod dir;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use foundation_transport::{ClusterName, NodeId};

use tokio::sync::mpsc;

use super::handle::StopSignal;
use super::report::Reporter;
use super::{
    Candidate, Discovery, DiscoveryError, DiscoveryHandle, DiscoveryMetrics, Environment, LocalNode,
};
use advert::{Advert, FileStamp, Scan};

const NAME: &str = "local";

/// The per-user base directory: `$XDG_RUNTIME_DIR/foundation`, or else
/// `<temp dir>/foundation-<uid>` (`foundation-<user>` where the uid is unknown).
/// Each cluster gets its own subdirectory below it.
pub fn default_base_dir(env: &Environment) -> PathBuf {
    if let Some(runtime) = &env.xdg_runtime_dir {
        return runtime.join("foundation");
    }
    let who = dir::current_uid()
        .map(|uid| uid.to_string())
        .or_else(|| env.user.clone())
        .unwrap_or_else(|| "unknown".to_owned());
    std::env::temp_dir().join(format!("foundation-{who}"))
}

/// A node found in the local discovery directory, as its advertisement describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunningNode {
    /// The node's id.
    pub id: NodeId,
    /// Its QUIC address.
    pub addr: SocketAddr,
    /// Its HTTP address, if it serves HTTP (and is recent enough to say so).
    pub http: Option<SocketAddr>,
    /// Its process id (checked alive when the directory was read).
    pub pid: u32,
    /// When it started advertising, in seconds since the Unix epoch.
    pub started: u64,
}

/// The live nodes of `cluster` advertising below `base` (the same base a [`LocalDiscovery`] is
/// given, e.g. [`default_base_dir`]), oldest first. Reading changes nothing: files of dead
/// processes are skipped, not removed, and malformed files are ignored. A directory that does
/// not exist yet holds no nodes; one that cannot be listed is an error.
pub fn running_nodes(base: &Path, cluster: &ClusterName) -> std::io::Result<Vec<RunningNode>> {
    advert::running(&base.join(cluster.as_str()), cluster.as_str())
}

/// Discovery through a per-user runtime directory.
#[derive(Clone, Debug)]
pub struct LocalDiscovery {
    base: PathBuf,
    interval: Duration,
    metrics: DiscoveryMetrics,
}

impl LocalDiscovery {
    /// How often the directory is listed, by default.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(500);

    /// Discovery below `base` (see [`default_base_dir`]); the cluster's name is appended.
    pub fn new(base: impl Into<PathBuf>, metrics: DiscoveryMetrics) -> Self {
        Self {
            base: base.into(),
            interval: Self::DEFAULT_INTERVAL,
            metrics,
        }
    }

    /// Sets how often the directory is listed.
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(10));
        self
    }

    /// The directory nodes of `cluster` advertise in.
    pub fn cluster_dir(&self, cluster: &foundation_transport::ClusterName) -> PathBuf {
        self.base.join(cluster.as_str())
    }
}

impl Discovery for LocalDiscovery {
    fn name(&self) -> &'static str {
        NAME
    }

    fn start(
        self: Box<Self>,
        me: LocalNode,
        found: mpsc::Sender<Candidate>,
    ) -> Result<DiscoveryHandle, DiscoveryError> {
        let dir = self.cluster_dir(&me.cluster);
        dir::prepare(&self.base, &dir)?;
        let advert = Advert::of(&me);
        let own = advert.write(&dir)?;
        tracing::debug!(file = %own.display(), "local discovery: advertising");
        let reporter = Reporter::new(NAME, me, found, self.metrics.clone());
        Ok(DiscoveryHandle::spawn(NAME, move |stop| {
            run(self.interval, dir, advert, reporter, stop)
        }))
    }
}

async fn run(
    interval: Duration,
    dir: PathBuf,
    advert: Advert,
    reporter: Reporter,
    mut stop: StopSignal,
) {
    let mut ticker = tokio::time::interval(interval);
    let mut known = Known::default();
    loop {
        tokio::select! {
            _ = stop.stopped() => break,
            _ = ticker.tick() => {
                if !round(&dir, &advert, &reporter, &mut known).await {
                    break;
                }
            }
        }
    }
    withdraw(&dir, &advert);
}

/// One scan of the directory; false when the consumer is gone.
async fn round(dir: &Path, advert: &Advert, reporter: &Reporter, known: &mut Known) -> bool {
    let (dir_owned, advert_owned) = (dir.to_owned(), advert.clone());
    let scan = tokio::task::spawn_blocking(move || {
        // Something (a tmp cleaner, an operator) may have removed our file: put it back.
        let rewritten = advert_owned.ensure_written(&dir_owned);
        (rewritten, advert::scan(&dir_owned, &advert_owned))
    })
    .await;
    let Ok((rewritten, scan)) = scan else {
        reporter.error();
        return true;
    };
    if let Err(error) = rewritten {
        reporter.error();
        tracing::warn!(%error, "local discovery: cannot rewrite own advertisement");
    }
    report_scan(scan, reporter, known)
}

/// What earlier rounds found wrong, so that each problem counts once, when it appears.
#[derive(Default)]
struct Known {
    malformed: BTreeSet<FileStamp>,
    unreadable: bool,
}

/// Reports the peers found, and counts as errors the directory turning unreadable and each
/// malformed file not `known` from earlier rounds (which then become the ones this scan found).
fn report_scan(scan: Scan, reporter: &Reporter, known: &mut Known) -> bool {
    if scan.unreadable && !known.unreadable {
        reporter.error();
    }
    known.unreadable = scan.unreadable;
    let found: BTreeSet<FileStamp> = scan.malformed.into_iter().collect();
    for _ in found.difference(&known.malformed) {
        reporter.error();
    }
    known.malformed = found;
    scan.peers
        .into_iter()
        .all(|peer| reporter.report(peer.addr, Some(peer.id)).is_ok())
}

fn withdraw(dir: &Path, advert: &Advert) {
    let path = advert.path(dir);
    match std::fs::remove_file(&path) {
        Ok(()) => tracing::debug!(file = %path.display(), "local discovery: withdrawn"),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => {
            tracing::warn!(file = %path.display(), %error, "local discovery: cannot remove own file")
        }
    }
}
