//! The real disk: a fjall database (an LSM tree with a checksummed journal) holding every
//! record under one fjall keyspace, with recovery that keeps what is intact.
//!
//! fjall checks its journal batches (xxh3) when it recovers and its table blocks on every read;
//! a torn journal tail is cut at the last whole batch. On top of that each record carries our
//! own checksum ([`super::record`]), checked at load.
//!
//! When fjall cannot open the store because something is damaged, recovery climbs a ladder and
//! reports each step: (1) move the journals aside into the quarantine directory and open the
//! tables alone (what was flushed survives, recent writes are lost here); (2) move the whole
//! store aside and start empty. When a load hits a damaged table, the records read before it
//! are kept: the store is moved aside and a fresh one is written with them. Peers refill the
//! rest through anti-entropy. Nothing is ever deleted: quarantined files stay for inspection.
//! An error that is not damage (permissions, a lock held by another node, a newer format) is
//! returned instead, since moving files would not fix it.

use std::path::{Path, PathBuf};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, LsmError, PersistMode};

use super::record::{self, RawOp};
use super::Batch;
use super::Disk;
use super::StorageError;
use super::{LoadReport, Loaded, StoredState};

/// The fjall keyspace that holds every record.
const RECORDS: &str = "records";
/// Journal size after which fjall flushes memtables to tables: bounds the replay at start-up
/// (about 220 ms per 16 MiB measured here) and the disk used by journals. fjall's minimum.
const JOURNAL_BYTES_MAX: u64 = 64 << 20;
/// Block cache: records are read once, at start-up, so a small cache is enough.
const CACHE_BYTES: u64 = 8 << 20;

/// Bytes written (and synced, then removed) next to the store to see whether the disk has room
/// again before the store is reopened after a full disk.
const SPACE_PROBE_BYTES: usize = 1 << 20;
/// Opens tried after a failed one while its lock is still held: fjall's threads from the failed
/// open let go of the lock file a little later (each try waits 200 ms inside fjall).
const OPEN_RETRIES_MAX: u32 = 10;
/// Bound on the `<what>-<n>` names tried in the quarantine directory.
const QUARANTINE_SLOTS_MAX: u32 = 10_000;

/// A node's durable state in a fjall database; see the module documentation.
pub struct FjallDisk {
    path: PathBuf,
    quarantine: PathBuf,
    /// `None` only between closing the database and reopening it (fjall holds a lock).
    inner: Option<Open>,
    /// The first write or sync failure; writes are refused until [`Disk::recover_writes`].
    failure: Option<StorageError>,
    /// What opening had to do, handed to the next load's report.
    pending: LoadReport,
}

/// An open database and the keyspace of records.
struct Open {
    db: Database,
    records: Keyspace,
}

/// Why fjall failed: damage that moving files aside can get past, or an error to return.
enum Failure {
    Damage(String),
    Fatal(StorageError),
}

impl FjallDisk {
    /// Opens (or creates) the store in `path`, moving damaged files into `quarantine` if it
    /// must. Fails only for what moving files cannot fix.
    pub fn open(path: &Path, quarantine: &Path) -> Result<Self, StorageError> {
        let mut report = LoadReport::default();
        let inner = open_with_recovery(path, quarantine, &mut report)?;
        Ok(Self {
            path: path.to_path_buf(),
            quarantine: quarantine.to_path_buf(),
            inner: Some(inner),
            failure: None,
            pending: report,
        })
    }

    /// The store directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn fail(&mut self, error: StorageError) -> StorageError {
        self.failure.get_or_insert(error).clone()
    }

    /// The open database; `None` only if reopening failed, which left `failure` set.
    fn inner(&self) -> Result<&Open, StorageError> {
        self.inner.as_ref().ok_or_else(|| {
            self.failure.clone().unwrap_or(StorageError::WritesRefused {
                path: self.path.clone(),
                cause: "the store could not be reopened".into(),
            })
        })
    }

    /// Decodes every record into `state`; on a damaged table, stops there with the error.
    fn scan(
        &self,
        state: &mut StoredState,
        report: &mut LoadReport,
    ) -> Result<Option<fjall::Error>, StorageError> {
        for item in self.inner()?.records.iter() {
            match item.into_inner() {
                Ok((key, value)) => record::decode_into(state, &key, &value, report),
                Err(error) => return Ok(Some(error)),
            }
        }
        Ok(None)
    }

    /// Moves the damaged store aside and writes `salvaged` into a fresh one.
    fn rebuild(
        &mut self,
        salvaged: &StoredState,
        report: &mut LoadReport,
    ) -> Result<(), StorageError> {
        let moved = quarantine_path(&self.quarantine, "store")?;
        self.inner = None;
        move_aside(&self.path, &moved)?;
        let fresh = open_db(&self.path).map_err(|e| fatal(&self.path, "create", e))?;
        let ops = record::encode(salvaged)?;
        write_ops(&fresh, &ops).map_err(|e| fatal(&self.path, "write", e))?;
        fresh
            .db
            .persist(PersistMode::SyncAll)
            .map_err(|e| fatal(&self.path, "sync", e))?;
        self.inner = Some(fresh);
        report.note_loss(format!(
            "a table was unreadable: kept the {} records read before it, moved the store to {}",
            ops.len(),
            moved.display()
        ));
        Ok(())
    }

    fn persist(&mut self, mode: PersistMode) -> Result<(), StorageError> {
        if let Some(failure) = &self.failure {
            return Err(failure.clone());
        }
        match self.inner()?.db.persist(mode) {
            Ok(()) => Ok(()),
            Err(e) => {
                let error = fatal(&self.path, "sync", e);
                Err(self.fail(error))
            }
        }
    }

    /// Has what the journal holds written into a table in the background, which frees the
    /// memtable. After a load, the state is in the caller's memory: keeping a second copy in
    /// fjall's memtable costs as much again, and the next start would replay the same journal.
    /// It does not wait: on a full disk the flush cannot finish, and fjall's waiting rotation
    /// would then wait forever (seen: a load after a refused write hung).
    pub fn flush_to_tables(&self) -> Result<(), StorageError> {
        if self.failure.is_some() {
            return Ok(());
        }
        self.inner()?
            .records
            .rotate_memtable()
            .map(|_| ())
            .map_err(|e| fatal(&self.path, "write", e))
    }

    /// Whether the volume has room again: writes, syncs and removes a probe file.
    fn has_room(&self) -> Result<(), StorageError> {
        use std::io::Write;
        let probe = self.path.with_extension("space-probe");
        let attempt = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&probe)?;
            file.write_all(&vec![0u8; SPACE_PROBE_BYTES])?;
            file.sync_data()
        };
        let result = attempt();
        let _ = std::fs::remove_file(&probe);
        result.map_err(|e| StorageError::io("write", &probe, &e))
    }
}

fn write_ops(open: &Open, ops: &[RawOp]) -> Result<(), fjall::Error> {
    let records = &open.records;
    let mut batch = open.db.batch().durability(None);
    for op in ops {
        match op {
            RawOp::Put(key, value) => batch.insert(records, key.clone(), value.clone()),
            RawOp::Delete(key) => batch.remove(records, key.clone()),
            RawOp::DeleteKeyspace(prefixes) => {
                for prefix in prefixes {
                    for item in records.prefix(prefix) {
                        batch.remove(records, item.key()?);
                    }
                }
            }
        }
    }
    batch.commit()
}

impl Disk for FjallDisk {
    fn write(&mut self, batch: &Batch) -> Result<(), StorageError> {
        if let Some(failure) = &self.failure {
            return Err(failure.clone());
        }
        let ops = batch.lower()?;
        match write_ops(self.inner()?, &ops) {
            Ok(()) => Ok(()),
            Err(e) => {
                let error = fatal(&self.path, "write", e);
                Err(self.fail(error))
            }
        }
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        self.persist(PersistMode::SyncData)
    }

    fn flush(&mut self) -> Result<(), StorageError> {
        self.persist(PersistMode::Buffer)
    }

    fn load(&mut self) -> Result<Loaded, StorageError> {
        let mut report = std::mem::take(&mut self.pending);
        let mut state = StoredState::default();
        if let Some(error) = self.scan(&mut state, &mut report)? {
            match classify(&self.path, "read", error) {
                Failure::Fatal(error) => return Err(error),
                Failure::Damage(_) => self.rebuild(&state, &mut report)?,
            }
        }
        self.flush_to_tables()?;
        Ok(Loaded { state, report })
    }

    fn recover_writes(&mut self) -> Result<(), StorageError> {
        if self.failure.is_none() {
            return Ok(());
        }
        // Reopening closes the database first; check for room before giving up the handle,
        // so a disk that is still full keeps serving loads.
        self.has_room()?;
        self.inner = None;
        let reopened = open_with_recovery(&self.path, &self.quarantine, &mut self.pending)?;
        self.inner = Some(reopened);
        self.failure = None;
        Ok(())
    }
}

fn open_db(path: &Path) -> Result<Open, fjall::Error> {
    let db = Database::builder(path)
        .max_journaling_size(JOURNAL_BYTES_MAX)
        .cache_size(CACHE_BYTES)
        .open()?;
    let records = db.keyspace(RECORDS, KeyspaceCreateOptions::default)?;
    Ok(Open { db, records })
}

/// Opens the store, climbing the recovery ladder on damage (see the module documentation).
fn open_with_recovery(
    path: &Path,
    quarantine: &Path,
    report: &mut LoadReport,
) -> Result<Open, StorageError> {
    let damage = match reopen_db(path) {
        Ok(opened) => return Ok(opened),
        Err(e) => damage_or_fatal(path, e)?,
    };
    let journals = journal_files(path)?;
    if !journals.is_empty() {
        let moved = quarantine_path(quarantine, "journal")?;
        std::fs::create_dir_all(&moved).map_err(|e| StorageError::io("create", &moved, &e))?;
        for file in &journals {
            move_aside(file, &moved.join(file_name(file)))?;
        }
        match reopen_db(path) {
            Ok(opened) => {
                report.note_loss(format!(
                    "the store would not open ({damage}): moved its journal to {}; writes not yet \
                     in tables are lost here",
                    moved.display()
                ));
                return Ok(opened);
            }
            Err(e) => damage_or_fatal(path, e)?,
        };
    }
    let moved = quarantine_path(quarantine, "store")?;
    move_aside(path, &moved)?;
    report.note(format!(
        "the store would not open ({damage}): moved it to {} and started empty",
        moved.display()
    ));
    reopen_db(path).map_err(|e| fatal(path, "create", e))
}

/// Opens again after an open in this process failed or was closed, waiting for its lock.
fn reopen_db(path: &Path) -> Result<Open, fjall::Error> {
    let mut tries = 1;
    loop {
        match open_db(path) {
            Err(fjall::Error::Locked) if tries < OPEN_RETRIES_MAX => tries += 1,
            other => return other,
        }
    }
}

fn damage_or_fatal(path: &Path, error: fjall::Error) -> Result<String, StorageError> {
    match classify(path, "open", error) {
        Failure::Damage(message) => Ok(message),
        Failure::Fatal(error) => Err(error),
    }
}

fn fatal(path: &Path, op: &'static str, error: fjall::Error) -> StorageError {
    match classify(path, op, error) {
        Failure::Fatal(error) => error,
        Failure::Damage(message) => StorageError::Store {
            path: path.to_path_buf(),
            message,
        },
    }
}

/// Sorts a fjall error into damage (files unreadable, missing or inconsistent) and the rest.
fn classify(path: &Path, op: &'static str, error: fjall::Error) -> Failure {
    let fatal = |e| Failure::Fatal(e);
    match error {
        fjall::Error::Locked => fatal(StorageError::Locked {
            path: path.to_path_buf(),
        }),
        fjall::Error::Io(e) | fjall::Error::Storage(LsmError::Io(e)) => io_failure(path, op, &e),
        fjall::Error::InvalidVersion(v) => fatal(StorageError::Incompatible {
            path: path.to_path_buf(),
            detail: format!("version {v:?}"),
        }),
        fjall::Error::Storage(LsmError::InvalidVersion(v)) => fatal(StorageError::Incompatible {
            path: path.to_path_buf(),
            detail: format!("table version {v}"),
        }),
        fjall::Error::Poisoned => fatal(StorageError::WritesRefused {
            path: path.to_path_buf(),
            cause: "an earlier write failed".into(),
        }),
        other => Failure::Damage(format!("{other:?}")),
    }
}

/// An I/O error: a missing or truncated file is damage; anything else is returned.
fn io_failure(path: &Path, op: &'static str, error: &std::io::Error) -> Failure {
    use std::io::ErrorKind;
    match error.kind() {
        ErrorKind::NotFound | ErrorKind::UnexpectedEof | ErrorKind::InvalidData => {
            Failure::Damage(error.to_string())
        }
        // A store missing its version file looks new to fjall, which then trips over the
        // files that are there.
        ErrorKind::AlreadyExists if op == "open" => Failure::Damage(error.to_string()),
        _ => Failure::Fatal(StorageError::io(op, path, error)),
    }
}

fn journal_files(path: &Path) -> Result<Vec<PathBuf>, StorageError> {
    let entries = std::fs::read_dir(path).map_err(|e| StorageError::io("read", path, &e))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|p| p.extension().is_some_and(|ext| ext == "jnl"))
        .collect();
    files.sort();
    Ok(files)
}

fn file_name(path: &Path) -> PathBuf {
    path.file_name().map(PathBuf::from).unwrap_or_default()
}

/// The first free `<quarantine>/<what>-<n>`.
fn quarantine_path(quarantine: &Path, what: &str) -> Result<PathBuf, StorageError> {
    std::fs::create_dir_all(quarantine).map_err(|e| StorageError::io("create", quarantine, &e))?;
    (1..=QUARANTINE_SLOTS_MAX)
        .map(|n| quarantine.join(format!("{what}-{n}")))
        .find(|candidate| !candidate.exists())
        .ok_or_else(|| StorageError::Io {
            op: "move aside into",
            path: quarantine.to_path_buf(),
            kind: std::io::ErrorKind::AlreadyExists,
            message: format!("{QUARANTINE_SLOTS_MAX} quarantined copies already; remove old ones"),
        })
}

fn move_aside(from: &Path, to: &Path) -> Result<(), StorageError> {
    std::fs::rename(from, to).map_err(|e| StorageError::io("move aside", from, &e))
}
