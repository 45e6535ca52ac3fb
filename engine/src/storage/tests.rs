//! The disk contract, checked on the simulated disk and on fjall; the simulated disk's faults;
//! the store's group commit and full-disk behaviour.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::*;

/// What a load must return after `batches`, computed without any disk.
fn model(batches: &[Batch]) -> StoredState {
    let mut state = StoredState::default();
    for batch in batches {
        for op in batch.ops() {
            apply_op(&mut state, op);
        }
    }
    state
        .keyspaces
        .retain(|_, ks| !ks.meta.is_empty() || !ks.entries.is_empty());
    state
}

fn apply_op(state: &mut StoredState, op: &Op) {
    match op {
        Op::PutEntry {
            keyspace,
            key,
            value,
        } => {
            let ks = state.keyspaces.entry(keyspace.clone()).or_default();
            ks.entries.insert(key.clone(), value.clone());
        }
        Op::RemoveEntry { keyspace, key } => {
            if let Some(ks) = state.keyspaces.get_mut(keyspace) {
                ks.entries.remove(key);
            }
        }
        Op::PutKeyspaceMeta {
            keyspace,
            name,
            value,
        } => {
            let ks = state.keyspaces.entry(keyspace.clone()).or_default();
            ks.meta.insert(name.clone(), value.clone());
        }
        Op::RemoveKeyspaceMeta { keyspace, name } => {
            if let Some(ks) = state.keyspaces.get_mut(keyspace) {
                ks.meta.remove(name);
            }
        }
        Op::ClearKeyspace { keyspace } => {
            state.keyspaces.remove(keyspace);
        }
        Op::PutNodeMeta { name, value } => {
            state.node.insert(name.clone(), value.clone());
        }
    }
}

fn sample_batches() -> Vec<Batch> {
    let mut first = Batch::new();
    first
        .put_node_meta("identity", b"node-1")
        .put_entry("config", b"a", b"1")
        .put_entry("config", b"b", b"2")
        .put_entry("vars", b"t", b"0.7")
        .put_keyspace_meta("config", "seen", b"s1");
    let mut second = Batch::new();
    second
        .put_entry("config", b"a", b"1b")
        .remove_entry("config", b"b")
        .clear_keyspace("vars")
        .put_entry("vars", b"u", b"new")
        .put_keyspace_meta("config", "seen", b"s2")
        .put_keyspace_meta("config", "gone", b"x")
        .remove_keyspace_meta("config", "gone");
    vec![first, second]
}

/// The contract every disk keeps: loads return exactly what was written, in order.
fn check_contract(disk: &mut impl Disk) {
    let batches = sample_batches();
    for batch in &batches {
        disk.write(batch).unwrap();
    }
    let before_sync = disk.load().unwrap();
    assert_eq!(
        before_sync.state,
        model(&batches),
        "writes are visible before a sync"
    );
    disk.sync().unwrap();
    let loaded = disk.load().unwrap();
    assert!(loaded.report.is_clean(), "{}", loaded.report);
    assert_eq!(loaded.state, model(&batches));
    // Node identity, config's "a" and "seen", vars' "u".
    assert_eq!(loaded.report.records, 4);
}

/// A fresh directory under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "foundation-storage-{}-{test}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        Self(path)
    }

    fn data_dir(&self) -> DataDir {
        DataDir::create(&self.0).unwrap()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn the_simulated_disk_keeps_the_contract() {
    check_contract(&mut SimDisk::new());
}

#[test]
fn the_fjall_disk_keeps_the_contract_and_survives_a_reopen() {
    let dir = TempDir::new("contract");
    let data = dir.data_dir();
    check_contract(&mut data.open_disk().unwrap());
    let loaded = data.open_disk().unwrap().load().unwrap();
    assert_eq!(loaded.state, model(&sample_batches()));
    assert!(loaded.report.is_clean(), "{}", loaded.report);
}

#[test]
fn a_second_node_on_the_same_data_directory_is_refused() {
    let dir = TempDir::new("locked");
    let data = dir.data_dir();
    let _first = data.open_disk().unwrap();
    let error = data.open_disk().err().unwrap();
    assert!(matches!(error, StorageError::Locked { .. }), "{error}");
    assert!(error.to_string().contains("--data-dir"), "{error}");
}

fn journal(data: &DataDir) -> PathBuf {
    let mut journals: Vec<PathBuf> = std::fs::read_dir(data.store())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jnl"))
        .collect();
    journals.sort();
    journals.pop().unwrap()
}

/// Writes `batches` durably, one sync each, and closes the store.
fn write_synced(data: &DataDir, batches: &[Batch]) {
    let mut disk = data.open_disk().unwrap();
    for batch in batches {
        disk.write(batch).unwrap();
        disk.sync().unwrap();
    }
}

#[test]
fn a_torn_journal_tail_loses_only_the_torn_batch() {
    let dir = TempDir::new("torn");
    let data = dir.data_dir();
    let batches = sample_batches();
    write_synced(&data, &batches[..1]);
    let first_len = std::fs::metadata(journal(&data))
        .map(|m| m.len())
        .unwrap_or(0);
    let _ = first_len;
    write_synced(&data, &batches[1..]);
    let path = journal(&data);
    let bytes = std::fs::read(&path).unwrap();
    let end = bytes.iter().rposition(|&b| b != 0).unwrap_or(0);
    // Cut the last batch in half: a write the crash interrupted.
    std::fs::write(&path, &bytes[..end - 20]).unwrap();
    let loaded = data.open_disk().unwrap().load().unwrap();
    assert_eq!(loaded.state, model(&batches[..1]));
}

#[test]
fn flipped_bytes_in_the_journal_never_give_a_wrong_value() {
    let batches = sample_batches();
    let allowed = [
        StoredState::default(),
        model(&batches[..1]),
        model(&batches),
    ];
    for flip in [40usize, 150, 300] {
        let dir = TempDir::new("flip");
        let data = dir.data_dir();
        write_synced(&data, &batches);
        let path = journal(&data);
        let mut bytes = std::fs::read(&path).unwrap();
        let end = bytes.iter().rposition(|&b| b != 0).unwrap_or(0);
        let at = flip.min(end);
        bytes[at] ^= 0x20;
        std::fs::write(&path, &bytes).unwrap();
        let loaded = data.open_disk().unwrap().load().unwrap();
        assert!(
            allowed.contains(&loaded.state),
            "flip at {at}: {:?}",
            loaded.state
        );
        if loaded.state != model(&batches) {
            assert!(!loaded.report.is_clean(), "a loss is reported");
        }
    }
}

#[test]
fn a_missing_journal_or_version_file_starts_what_can_be_saved() {
    let dir = TempDir::new("missing");
    let data = dir.data_dir();
    write_synced(&data, &sample_batches());
    std::fs::remove_file(data.store().join("version")).unwrap();
    let loaded = data.open_disk().unwrap().load().unwrap();
    assert!(!loaded.report.is_clean(), "{}", loaded.report);
    assert!(data.quarantine().exists());
    // The store works again afterwards.
    let mut disk = data.open_disk().unwrap();
    disk.write(&sample_batches()[0]).unwrap();
    disk.sync().unwrap();
    assert_eq!(disk.load().unwrap().state, model(&sample_batches()[..1]));
}

#[test]
fn a_crash_loses_exactly_the_unsynced_writes_by_default() {
    let batches = sample_batches();
    let mut disk = SimDisk::new();
    disk.write(&batches[0]).unwrap();
    disk.sync().unwrap();
    disk.write(&batches[1]).unwrap();
    let outcome = disk.crash(&mut StdRng::seed_from_u64(1));
    assert!(outcome.lost_bytes > 0 && !outcome.torn);
    let loaded = disk.load().unwrap();
    assert_eq!(loaded.state, model(&batches[..1]));
    assert!(loaded.report.is_clean());
}

#[test]
fn a_torn_write_is_cut_and_the_synced_writes_survive() {
    let batches = sample_batches();
    let faults = SimDiskFaults {
        crash_keeps_unsynced: 0.0,
        crash_tears: 1.0,
    };
    let mut disk = SimDisk::new().with_faults(faults);
    disk.write(&batches[0]).unwrap();
    disk.sync().unwrap();
    disk.write(&batches[1]).unwrap();
    assert!(disk.crash(&mut StdRng::seed_from_u64(3)).torn);
    let loaded = disk.load().unwrap();
    assert_eq!(loaded.state, model(&batches[..1]));
    assert!(loaded.report.dropped_tail_bytes > 0, "{}", loaded.report);
}

#[test]
fn writes_after_a_torn_crash_are_not_hidden_behind_the_torn_bytes() {
    let batches = sample_batches();
    let faults = SimDiskFaults {
        crash_keeps_unsynced: 0.0,
        crash_tears: 1.0,
    };
    let mut disk = SimDisk::new().with_faults(faults);
    disk.write(&batches[0]).unwrap();
    disk.crash(&mut StdRng::seed_from_u64(5));
    disk.write(&batches[1]).unwrap();
    disk.sync().unwrap();
    assert_eq!(disk.load().unwrap().state, model(&batches[1..]));
}

#[test]
fn a_full_disk_refuses_writes_and_keeps_reads() {
    let batches = sample_batches();
    let mut disk = SimDisk::new();
    disk.write(&batches[0]).unwrap();
    disk.sync().unwrap();
    disk.fill();
    let error = disk.write(&batches[1]).unwrap_err();
    assert!(error.is_disk_full(), "{error}");
    assert_eq!(disk.load().unwrap().state, model(&batches[..1]));
    disk.set_capacity(None);
    disk.write(&batches[1]).unwrap();
    assert_eq!(disk.load().unwrap().state, model(&batches));
}

#[test]
fn a_disk_whose_files_are_gone_loads_empty() {
    let mut disk = SimDisk::new();
    disk.write(&sample_batches()[0]).unwrap();
    disk.sync().unwrap();
    disk.lose_everything();
    assert!(disk.load().unwrap().state.is_empty());
}

#[test]
fn the_log_is_compacted_without_changing_the_state() {
    let mut disk = SimDisk::new();
    let mut batches = Vec::new();
    for round in 0..400u32 {
        let mut batch = Batch::new();
        for key in 0..8u32 {
            let value = vec![round as u8; 512];
            batch.put_entry("ks", &key.to_be_bytes(), &value);
        }
        disk.write(&batch).unwrap();
        disk.sync().unwrap();
        batches.push(batch);
    }
    assert!(disk.stats().compactions > 0);
    assert!(disk.len_bytes() < 3 << 20);
    assert_eq!(disk.load().unwrap().state, model(&batches));
}

/// A random history: batches of puts and removes over a few keys, each maybe followed by a sync.
fn history() -> impl Strategy<Value = Vec<(Batch, bool)>> {
    let op = (0u8..3, 0u8..6, any::<u8>()).prop_map(|(kind, key, value)| match kind {
        0 | 1 => Op::PutEntry {
            keyspace: "ks".into(),
            key: vec![key],
            value: vec![value; 1 + usize::from(value % 40)],
        },
        _ => Op::RemoveEntry {
            keyspace: "ks".into(),
            key: vec![key],
        },
    });
    let batch = proptest::collection::vec(op, 1..5).prop_map(|ops| {
        let mut batch = Batch::new();
        for op in ops {
            batch.push(op);
        }
        batch
    });
    proptest::collection::vec((batch, any::<bool>()), 1..24)
}

/// The states after 0, 1, …, n batches.
fn prefix_states(batches: &[Batch]) -> Vec<StoredState> {
    (0..=batches.len()).map(|n| model(&batches[..n])).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// With the harshest faults a crash leaves the state after some prefix of the writes that is
    /// at least everything synced: acknowledged (synced) writes are never lost, and no write is
    /// half applied.
    #[test]
    fn a_crash_keeps_every_synced_write_and_applies_batches_whole(
        history in history(),
        seed in any::<u64>(),
    ) {
        let mut disk = SimDisk::new().with_faults(SimDiskFaults { crash_keeps_unsynced: 0.5, crash_tears: 0.7 });
        let mut synced = 0;
        for (n, (batch, sync)) in history.iter().enumerate() {
            disk.write(batch).unwrap();
            if *sync {
                disk.sync().unwrap();
                synced = n + 1;
            }
        }
        disk.crash(&mut StdRng::seed_from_u64(seed));
        let batches: Vec<Batch> = history.into_iter().map(|(b, _)| b).collect();
        let loaded = disk.load().unwrap().state;
        let states = prefix_states(&batches);
        let kept = states.iter().skip(synced).any(|s| *s == loaded);
        prop_assert!(kept, "the state after {} synced batches or more", synced);
    }

    /// Without faults a crash loses exactly the writes after the last sync.
    #[test]
    fn a_crash_loses_exactly_the_unsynced_suffix(history in history(), seed in any::<u64>()) {
        let mut disk = SimDisk::new();
        let mut synced = 0;
        for (n, (batch, sync)) in history.iter().enumerate() {
            disk.write(batch).unwrap();
            if *sync {
                disk.sync().unwrap();
                synced = n + 1;
            }
        }
        disk.crash(&mut StdRng::seed_from_u64(seed));
        let batches: Vec<Batch> = history.into_iter().map(|(b, _)| b).collect();
        let loaded = disk.load().unwrap();
        prop_assert_eq!(loaded.state, model(&batches[..synced]));
        prop_assert!(loaded.report.is_clean());
    }

    /// A flipped bit anywhere never yields a value that was not written: the state is the one
    /// after some prefix of the batches.
    #[test]
    fn a_flipped_bit_never_yields_a_value_that_was_not_written(
        history in history(),
        seed in any::<u64>(),
    ) {
        let mut disk = SimDisk::new();
        for (batch, _) in &history {
            disk.write(batch).unwrap();
        }
        disk.sync().unwrap();
        let offset = disk.corrupt(&mut StdRng::seed_from_u64(seed));
        let batches: Vec<Batch> = history.into_iter().map(|(b, _)| b).collect();
        let loaded = disk.load().unwrap();
        prop_assert!(prefix_states(&batches).contains(&loaded.state), "flip at {:?}", offset);
        if loaded.state != model(&batches) {
            prop_assert!(!loaded.report.is_clean());
        }
    }

    /// The same seed gives the same bytes and the same outcome.
    #[test]
    fn the_simulated_disk_is_deterministic(history in history(), seed in any::<u64>()) {
        let run = || {
            let mut disk = SimDisk::new().with_faults(SimDiskFaults::harsh());
            let mut rng = StdRng::seed_from_u64(seed);
            for (batch, sync) in &history {
                disk.write(batch).unwrap();
                if *sync {
                    disk.sync().unwrap();
                }
            }
            let crash = disk.crash(&mut rng);
            let flipped = disk.corrupt(&mut rng);
            (crash, flipped, disk.load().unwrap())
        };
        prop_assert_eq!(run(), run());
    }
}

#[test]
fn concurrent_writers_share_syncs() {
    let store = Store::new(SimDisk::new(), SyncPolicy::Always).unwrap();
    let writers = 16;
    let per_writer = 50;
    std::thread::scope(|scope| {
        for w in 0..writers {
            let store = &store;
            scope.spawn(move || {
                for i in 0..per_writer {
                    let mut batch = Batch::new();
                    batch.put_entry("ks", format!("{w}-{i}").as_bytes(), b"v");
                    let done = store.submit(batch).unwrap().wait().unwrap();
                    assert!(done.synced);
                }
            });
        }
    });
    let stats = store.with_disk(|disk| disk.stats());
    assert_eq!(stats.writes, (writers * per_writer) as u64);
    assert!(stats.syncs <= stats.writes);
    assert_eq!(
        store.load().unwrap().state.entry_count(),
        writers * per_writer
    );
}

#[test]
fn receipts_complete_in_submission_order_with_rising_seqs() {
    let store = Store::new(SimDisk::new(), SyncPolicy::Always).unwrap();
    let receipts: Vec<Receipt> = (0..20u8)
        .map(|i| {
            let mut batch = Batch::new();
            batch.put_entry("ks", &[i], &[i]);
            store.submit(batch).unwrap()
        })
        .collect();
    let seqs: Vec<u64> = receipts
        .into_iter()
        .map(|r| r.wait().unwrap().seq)
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
}

#[test]
fn a_full_disk_fails_receipts_keeps_loads_and_recovers() {
    let retry = Duration::from_millis(20);
    let store = Store::with_retry(SimDisk::new(), SyncPolicy::Always, retry).unwrap();
    let batches = sample_batches();
    store.submit(batches[0].clone()).unwrap().wait().unwrap();
    store.with_disk(SimDisk::fill);
    let error = store
        .submit(batches[1].clone())
        .unwrap()
        .wait()
        .unwrap_err();
    assert!(error.is_disk_full(), "{error}");
    assert!(error.to_string().contains("free space"), "{error}");
    assert_eq!(store.load().unwrap().state, model(&batches[..1]));
    store.with_disk(|disk| disk.set_capacity(None));
    std::thread::sleep(retry * 2);
    // With room again, nothing but a rewrite of the whole state lands after the failed batch:
    // a later ordinary one could claim writes only the failed one held.
    let mut ordinary = Batch::new();
    ordinary.put_entry("config", b"later", b"x");
    let refused = store.submit(ordinary.clone()).unwrap().wait();
    assert!(refused.is_err_and(|e| e.is_disk_full()));
    let mut rewrite = batches[1].clone();
    rewrite.mark_rewrite();
    store.submit(rewrite).unwrap().wait().unwrap();
    assert_eq!(store.load().unwrap().state, model(&batches));
    store
        .submit(ordinary)
        .unwrap()
        .wait()
        .expect("ordinary batches resume");
}

/// A batch refused at submit (the queue full behind a stalled disk) never reaches the disk. A
/// later ordinary batch that landed would claim, in its bookkeeping, writes only the refused
/// one held: a store that is no prefix of what it was given, which a load reports whole. As
/// after a failed write, only a rewrite of the whole state lands after a refusal.
#[test]
fn after_a_batch_refused_for_a_full_queue_only_a_rewrite_lands() {
    let store = Store::new(SimDisk::new(), SyncPolicy::Always).unwrap();
    let entry = |key: &[u8]| {
        let mut batch = Batch::new();
        batch.put_entry("ks", key, b"v");
        batch
    };
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let refused = std::thread::scope(|scope| {
        let store = &store;
        scope.spawn(move || {
            store.with_disk(|_| {
                locked_tx.send(()).unwrap();
                release_rx.recv().unwrap();
            })
        });
        locked_rx.recv().unwrap();
        // The committer waits for the disk; the queue fills behind it.
        let mut receipts = Vec::new();
        let refused = loop {
            match store.submit(entry(b"queued")) {
                Ok(receipt) => receipts.push(receipt),
                Err(error) => break error,
            }
        };
        release_tx.send(()).unwrap();
        for receipt in receipts {
            receipt.wait().unwrap();
        }
        refused
    });
    assert!(
        matches!(refused, StorageError::Overloaded { .. }),
        "{refused}"
    );
    let later = store.submit(entry(b"later")).and_then(Receipt::wait);
    assert!(
        later.is_err(),
        "an ordinary batch landed after a refused one"
    );
    let mut rewrite = entry(b"everything");
    rewrite.mark_rewrite();
    store.submit(rewrite).unwrap().wait().unwrap();
    store
        .submit(entry(b"later"))
        .unwrap()
        .wait()
        .expect("ordinary batches resume after the rewrite");
}

#[test]
fn interval_and_never_complete_before_the_sync_and_sync_forces_one() {
    let every = Duration::from_millis(10);
    let store = Store::new(SimDisk::new(), SyncPolicy::Interval(every)).unwrap();
    let done = store
        .submit(sample_batches()[0].clone())
        .unwrap()
        .wait()
        .unwrap();
    assert!(!done.synced);
    std::thread::sleep(every * 5);
    assert_eq!(store.with_disk(|disk| disk.unsynced_bytes()), 0);

    let store = Store::new(SimDisk::new(), SyncPolicy::Never).unwrap();
    store
        .submit(sample_batches()[0].clone())
        .unwrap()
        .wait()
        .unwrap();
    assert!(store.with_disk(|disk| disk.unsynced_bytes()) > 0);
    assert!(store.sync().unwrap().wait().unwrap().synced);
    assert_eq!(store.with_disk(|disk| disk.unsynced_bytes()), 0);
}

#[test]
fn a_closed_store_refuses_and_close_syncs() {
    let dir = TempDir::new("close");
    let data = dir.data_dir();
    let store = Store::new(data.open_disk().unwrap(), SyncPolicy::Never).unwrap();
    store
        .submit(sample_batches()[0].clone())
        .unwrap()
        .wait()
        .unwrap();
    store.close().unwrap();
    let loaded = data.open_disk().unwrap().load().unwrap();
    assert_eq!(loaded.state, model(&sample_batches()[..1]));
}

#[test]
fn oversized_writes_are_refused_before_anything_is_written() {
    let mut disk = SimDisk::new();
    let mut batch = Batch::new();
    batch
        .put_entry("ks", b"ok", b"v")
        .put_entry("ks", &vec![0; 70_000], b"v");
    let error = disk.write(&batch).unwrap_err();
    assert!(matches!(error, StorageError::TooLarge { .. }), "{error}");
    assert!(disk.load().unwrap().state.is_empty());
}

#[tokio::test]
async fn receipts_can_be_awaited_from_async_code() {
    let store = Store::new(SimDisk::new(), SyncPolicy::Always).unwrap();
    let first = store.submit(sample_batches()[0].clone()).unwrap();
    let second = store.submit(sample_batches()[1].clone()).unwrap();
    let (first, second) = (first.await.unwrap(), second.await.unwrap());
    assert!(first.seq < second.seq && first.synced && second.synced);
    assert_eq!(store.load().unwrap().state, model(&sample_batches()));
}

/// Every value loaded is the value written under that key: whatever was lost, nothing is wrong.
fn assert_no_wrong_value(loaded: &StoredState, written: &StoredState) {
    for (name, keyspace) in &loaded.keyspaces {
        let expected = written.keyspaces.get(name);
        for (key, value) in &keyspace.entries {
            let want = expected.and_then(|ks| ks.entries.get(key));
            assert_eq!(Some(value), want, "{name}/{}", key.escape_ascii());
        }
    }
}

fn table_files(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            table_files(&path, out);
        } else if path.parent().is_some_and(|p| p.ends_with("tables")) {
            out.push(path);
        }
    }
}

#[test]
fn flipped_bytes_in_a_table_never_give_a_wrong_value() {
    let mut batch = Batch::new();
    for i in 0..2_000u32 {
        batch.put_entry("config", format!("key-{i:05}").as_bytes(), &[i as u8; 64]);
    }
    let written = model(std::slice::from_ref(&batch));
    for fraction in [0.1, 0.5, 0.9] {
        let dir = TempDir::new("table");
        let data = dir.data_dir();
        write_synced(&data, std::slice::from_ref(&batch));
        data.open_disk().unwrap().load().unwrap(); // flushes the journal into a table
        let mut tables = Vec::new();
        table_files(&data.store(), &mut tables);
        let table = tables
            .iter()
            .max_by_key(|t| t.metadata().map(|m| m.len()).unwrap_or(0));
        let table = table.expect("a table after the flush");
        let mut bytes = std::fs::read(table).unwrap();
        let at = (bytes.len() as f64 * fraction) as usize;
        bytes[at] ^= 0x10;
        std::fs::write(table, &bytes).unwrap();
        let loaded = data.open_disk().unwrap().load().unwrap();
        assert_no_wrong_value(&loaded.state, &written);
        if loaded.state != written {
            assert!(!loaded.report.is_clean(), "a loss is reported");
        }
        // The store works afterwards and keeps what it has.
        let mut disk = data.open_disk().unwrap();
        let again = disk.load().unwrap();
        assert_eq!(again.state, loaded.state);
    }
}

#[test]
fn the_data_directory_keeps_the_node_id_and_refuses_a_damaged_one() {
    let dir = TempDir::new("node-id");
    let data = dir.data_dir();
    let first = data.stable_node_id().unwrap();
    assert_eq!(
        data.stable_node_id().unwrap(),
        first,
        "read back at the next start"
    );
    std::fs::write(data.node_id(), "not hex\n").unwrap();
    assert!(matches!(
        data.stable_node_id(),
        Err(StorageError::BadNodeId { .. })
    ));
    assert_eq!(
        std::fs::read_to_string(data.node_id()).unwrap(),
        "not hex\n",
        "a damaged file is left for the operator, not overwritten"
    );
}

/// A `node-id` that exists but reads as missing (a dangling link) is an error: the id's
/// placing took it for another start's, read it back as missing, and tried again for good.
#[cfg(unix)]
#[test]
fn a_node_id_that_is_a_dangling_link_is_an_error() {
    let dir = TempDir::new("node-id-dangling");
    let data = dir.data_dir();
    std::os::unix::fs::symlink(data.root().join("nowhere"), data.node_id()).unwrap();
    let refused = data.stable_node_id();
    assert!(
        matches!(&refused, Err(StorageError::Io { .. })),
        "{refused:?}"
    );
    let left: Vec<_> = std::fs::read_dir(data.root())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["node-id"], "no temporary file left behind");
}

/// Two first starts at once on one new directory agree on the id the file keeps: each wrote
/// its own id through the same temporary file and renamed it in place, so one process could run
/// under an id the other then wrote over, and come back as another member at its next start.
#[test]
fn two_first_starts_at_once_take_the_same_node_id() {
    for round in 0..50 {
        let dir = TempDir::new(&format!("node-id-race-{round}"));
        let start = std::sync::Barrier::new(2);
        let (a, b) = std::thread::scope(|s| {
            let take = || {
                let data = dir.data_dir();
                start.wait();
                data.stable_node_id()
            };
            let a = s.spawn(take);
            let b = s.spawn(take);
            (a.join().unwrap(), b.join().unwrap())
        });
        let kept = dir.data_dir().stable_node_id().unwrap();
        assert_eq!((a.unwrap(), b.unwrap()), (kept, kept), "round {round}");
    }
}

/// A rewrite after a failed batch clears a keyspace and puts its entries back in one batch:
/// fjall gives every item of a batch one seqno, so the put must still win over the clear's
/// delete of the same key — in memory, after a reopen (journal replay) and from the tables.
#[test]
fn a_rewrite_that_clears_and_puts_the_same_keys_keeps_them() {
    let dir = TempDir::new("rewrite-same-keys");
    let data = dir.data_dir();
    let mut first = Batch::new();
    first
        .put_entry("config", b"a", b"1")
        .put_keyspace_meta("config", "seen", b"s1");
    let mut rewrite = Batch::new();
    rewrite
        .clear_keyspace("config")
        .put_entry("config", b"a", b"1")
        .put_keyspace_meta("config", "seen", b"s1");
    rewrite.mark_rewrite();
    let batches = [first, rewrite];
    let mut disk = data.open_disk().unwrap();
    for batch in &batches {
        disk.write(batch).unwrap();
    }
    disk.sync().unwrap();
    assert_eq!(disk.load().unwrap().state, model(&batches), "in memory");
    drop(disk);
    let mut reopened = data.open_disk().unwrap();
    assert_eq!(reopened.load().unwrap().state, model(&batches), "replayed");
    reopened.flush_to_tables().unwrap();
    drop(reopened);
    std::thread::sleep(Duration::from_millis(200));
    let loaded = data.open_disk().unwrap().load().unwrap();
    assert_eq!(loaded.state, model(&batches), "from the tables");
}
