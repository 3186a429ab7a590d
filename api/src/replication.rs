//! What a replica serves its peers: how far behind it is, the barriers it
//! has passed, and checkpoints of its store for a replica that starts
//! empty or lost events (see `src/bootstrap.rs`).
//!
//! A new replica declares its own queue, then publishes a barrier through
//! the exchange, which reaches every replica's queue. A peer that has
//! applied the barrier has applied every event published before the new
//! queue existed; a checkpoint of its store taken then, plus the new
//! queue, leaves no event out (events in both are deduplicated).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio::sync::Notify;

/// Most bytes of a checkpoint file one request returns.
pub const CHECKPOINT_CHUNK_BYTES: u64 = 8 << 20;
/// How long a checkpoint directory is kept for its replica to fetch.
const CHECKPOINT_KEPT: Duration = Duration::from_secs(30 * 60);

/// The replication state the consumer reports and the API serves.
pub struct Replication {
    /// Barriers this replica's queue has delivered, once the events before
    /// them were applied.
    passed: Mutex<HashSet<String>>,
    /// Wakes the requests waiting for a barrier.
    barrier_passed: Notify,
    /// Messages waiting in this service's queue (`u64::MAX`: not known).
    waiting: AtomicU64,
}

impl Default for Replication {
    fn default() -> Self {
        Self {
            passed: Mutex::new(HashSet::new()),
            barrier_passed: Notify::new(),
            waiting: AtomicU64::new(u64::MAX),
        }
    }
}

impl Replication {
    pub fn barrier_passed(&self, id: &str) {
        self.passed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_owned());
        self.barrier_passed.notify_waiters();
    }

    fn has_passed(&self, id: &str) -> bool {
        self.passed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(id)
    }

    /// Waits until barrier `id` has passed, at most `timeout`; whether it
    /// did.
    pub async fn wait_for_barrier(&self, id: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.barrier_passed.notified();
            if self.has_passed(id) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || tokio::time::timeout(left, notified).await.is_err() {
                return self.has_passed(id);
            }
        }
    }

    pub fn set_waiting(&self, messages: u32) {
        self.waiting.store(u64::from(messages), Ordering::Relaxed);
    }

    /// Messages waiting in the queue, once the consumer has counted them.
    pub fn waiting(&self) -> Option<u32> {
        u32::try_from(self.waiting.load(Ordering::Relaxed)).ok()
    }
}

/// How far behind a service is, in seconds: nothing when no event waits
/// for it in its queue; else the time since its watermark (the latest
/// event applied). Unknown waiting counts as caught up only while nothing
/// was ever applied.
pub fn lag_seconds(
    waiting: Option<u32>,
    as_of: Option<audrey_core::Timestamp>,
    now: audrey_core::Timestamp,
) -> f64 {
    match (waiting, as_of) {
        (Some(0), _) | (_, None) => 0.0,
        (_, Some(as_of)) => ((now.nanos() as f64 - as_of.nanos() as f64) / 1e9).max(0.0),
    }
}

/// A checkpoint a peer can fetch, file by file.
#[derive(Debug, Serialize)]
pub struct CheckpointManifest {
    /// Names the checkpoint in the file requests.
    pub checkpoint: String,
    pub files: Vec<CheckpointFile>,
}

#[derive(Debug, Serialize)]
pub struct CheckpointFile {
    pub name: String,
    pub bytes: u64,
}

/// Where the checkpoints of the store in `data_dir` are made: beside it,
/// on the same file system (a checkpoint hard-links the store's files).
pub fn checkpoints_dir(data_dir: &Path) -> PathBuf {
    let mut name = data_dir.file_name().unwrap_or_default().to_os_string();
    name.push(".checkpoints");
    data_dir.with_file_name(name)
}

/// A fresh checkpoint name: hex of the time in nanoseconds.
pub fn new_checkpoint_name() -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:016x}", nanos as u64)
}

/// Whether `name` can name a checkpoint or one of its files: letters,
/// digits, `.`, `_` and `-` only, so a request can never leave the
/// checkpoints directory.
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The files of checkpoint directory `dir`.
pub fn manifest(name: &str, dir: &Path) -> std::io::Result<CheckpointManifest> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            files.push(CheckpointFile {
                name: entry.file_name().to_string_lossy().into_owned(),
                bytes: entry.metadata()?.len(),
            });
        }
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(CheckpointManifest {
        checkpoint: name.to_owned(),
        files,
    })
}

/// Removes the checkpoints older than their keeping time.
pub fn remove_old_checkpoints(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > CHECKPOINT_KEPT);
        if old {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Up to [`CHECKPOINT_CHUNK_BYTES`] of `path` from `offset`.
pub fn read_chunk(path: &Path, offset: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut chunk = Vec::new();
    file.take(CHECKPOINT_CHUNK_BYTES).read_to_end(&mut chunk)?;
    Ok(chunk)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_leave_the_checkpoints_directory() {
        assert!(is_plain_name("000123.sst"));
        assert!(is_plain_name("MANIFEST-000005"));
        for bad in ["", ".", "..", "../x", "a/b", "a\\b", "x y"] {
            assert!(!is_plain_name(bad), "{bad:?}");
        }
        assert_eq!(
            checkpoints_dir(Path::new("/var/lib/audrey/data")),
            Path::new("/var/lib/audrey/data.checkpoints")
        );
    }

    #[tokio::test]
    async fn a_barrier_wait_ends_when_it_passes_or_times_out() {
        let r = std::sync::Arc::new(Replication::default());
        assert!(!r.wait_for_barrier("b1", Duration::from_millis(50)).await);
        let waiter = {
            let r = r.clone();
            tokio::spawn(async move { r.wait_for_barrier("b2", Duration::from_secs(10)).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        r.barrier_passed("b2");
        assert!(waiter.await.unwrap());
        assert!(r.wait_for_barrier("b2", Duration::ZERO).await);
        assert_eq!(r.waiting(), None);
        r.set_waiting(7);
        assert_eq!(r.waiting(), Some(7));
    }
}
