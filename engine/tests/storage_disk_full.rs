//! A real full disk: the store on a small tmpfs the test mounts. Writes are refused with a
//! clear error while loads (and a node's reads) go on; once the volume grows, writes resume and
//! every acknowledged write is there. Needs root to mount; skipped with a message otherwise.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use foundation_engine::replication::ReplicationError;
use foundation_engine::runtime::{ConfigError, Node, StorageSettings};
use foundation_engine::storage::{Batch, DataDir, Disk, StorageError, Store, SyncPolicy};
use foundation_transport::NodeId;

/// The volume's size at first: small enough to fill in well under a second.
const SMALL: &str = "size=3m";
/// Its size once space is "freed".
const LARGER: &str = "size=64m";

/// A tmpfs mounted for the test, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(test: &str) -> Option<Self> {
        let dir = std::env::temp_dir().join(format!("foundation-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok()?;
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", SMALL, "tmpfs"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            let _ = std::fs::remove_dir(&dir);
            return None;
        }
        Some(Self(dir))
    }

    fn grow(&self) {
        let grown = Command::new("mount")
            .args(["-o", &format!("remount,{LARGER}")])
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        assert!(grown, "remount {} with {LARGER}", self.0.display());
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn batch(i: usize) -> Batch {
    let mut batch = Batch::new();
    batch.put_entry("config", format!("key-{i:06}").as_bytes(), &[7u8; 4096]);
    batch
}

#[test]
fn a_full_disk_refuses_writes_keeps_loads_and_recovers_when_space_is_freed() {
    let Some(volume) = Tmpfs::mount("disk-full") else {
        eprintln!("SKIPPED: mounting a tmpfs needs root");
        return;
    };
    let data = DataDir::create(volume.path().join("data")).expect("data dir");
    let retry = Duration::from_millis(50);
    let store = Store::with_retry(data.open_disk().expect("opens"), SyncPolicy::Always, retry)
        .expect("store starts");
    let mut acknowledged = 0;
    let error = loop {
        match store.submit(batch(acknowledged)).expect("queued").wait() {
            Ok(_) => acknowledged += 1,
            Err(error) => break error,
        }
        assert!(acknowledged < 10_000, "a 3 MiB volume never filled");
    };
    assert!(matches!(error, StorageError::DiskFull { .. }), "{error}");
    assert!(error.to_string().contains("free space"), "{error}");

    let loaded = store.load().expect("loads go on while the disk is full");
    // The refused batch may be there too: its write went through and its sync failed. A
    // refused write is "not known durable", never "known absent".
    let count = loaded.state.entry_count();
    assert!(
        (acknowledged..=acknowledged + 1).contains(&count),
        "{count}"
    );
    let refused = store.submit(batch(acknowledged)).expect("queued").wait();
    assert!(refused.is_err_and(|e| e.is_disk_full()));

    volume.grow();
    std::thread::sleep(retry * 2);
    // Only a rewrite of the whole state lands first (see `Batch::mark_rewrite`).
    let mut rewrite = batch(acknowledged);
    rewrite.mark_rewrite();
    store
        .submit(rewrite)
        .expect("queued")
        .wait()
        .expect("writes resume once there is room");
    store.close().expect("closes");
    let reopened = data.open_disk().expect("reopens").load().expect("loads");
    assert!(reopened.state.entry_count() > acknowledged);
    let config = &reopened.state.keyspaces["config"];
    for i in 0..acknowledged {
        let key = format!("key-{i:06}");
        assert!(
            config.entries.contains_key(key.as_bytes()),
            "{key} acknowledged and kept"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_on_a_full_disk_refuses_durability_keeps_reading_and_writes_all_once_there_is_room()
{
    let Some(volume) = Tmpfs::mount("node-disk-full") else {
        eprintln!("SKIPPED: mounting a tmpfs needs root");
        return;
    };
    let id = NodeId::random();
    let dir = volume.path().join("data");
    let start = || {
        let mut settings = common::settings("full", "disk-full-test-secret-0123456789", vec![]);
        settings.identity.id = id;
        settings.storage = Some(StorageSettings {
            data_dir: dir.clone(),
            sync: SyncPolicy::Always,
        });
        Node::start(settings)
    };
    let node = start().await.expect("starts");
    let config = node.config();
    let value = |round: usize| format!("{round:0>40000}");
    let mut round = 0;
    let error = loop {
        round += 1;
        assert!(round < 2_000, "a 3 MiB volume never filled");
        if let Err(error) = config
            .set(&format!("key-{}", round % 16), value(round))
            .await
        {
            break error;
        }
    };
    assert!(
        matches!(
            error,
            ConfigError::Refused(ReplicationError::NotDurable { .. })
        ),
        "{error}"
    );
    let (refused_key, refused_value) = (format!("key-{}", round % 16), value(round));
    assert_eq!(
        config.get::<String>(&refused_key).expect("reads go on"),
        Some(refused_value.clone()),
        "the refused write is applied, only not durable"
    );

    volume.grow();
    let resumed = async {
        loop {
            round += 1;
            if config.set("after", round).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(15), resumed)
        .await
        .expect("durable writes resume once there is room");
    node.abort().await;

    let node = start().await.expect("starts again");
    let config = node.config();
    assert_eq!(
        config.get::<String>(&refused_key).expect("decodes"),
        Some(refused_value),
        "everything in memory was written again once there was room"
    );
    node.leave().await;
}
