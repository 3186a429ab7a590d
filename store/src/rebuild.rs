//! Rebuilding every view from the event log (after an upgrade changed the
//! projection or the row encoding).

use rocksdb::WriteBatch;

use crate::apply::{apply_events, Origin};
use crate::codec::{encode, VIEWS_VERSION};
use crate::db::{Db, CF_META, VIEW_FAMILIES};
use crate::error::StoreError;
use crate::keys::{KEY_COUNTS, KEY_REBUILDING, KEY_VERSION};
use crate::log::scan_log;
use crate::recent::WriterMemory;

/// Events replayed per unsynced batch during a rebuild.
const REBUILD_BATCH: usize = 5_000;

/// Empties every view and replays the whole event log through the
/// projection, then records the current views version. Killed at any
/// point, it leaves a marker that makes `Store::open` refuse the views
/// until a rebuild finishes. `progress` is told
/// how many events have been replayed so far. The caller holds the writer
/// lock (`memory` is what it guards).
pub(crate) fn rebuild(
    db: &Db,
    memory: &mut WriterMemory,
    mut progress: impl FnMut(u64),
) -> Result<u64, StoreError> {
    // Every remembered row is about to be wrong.
    *memory = memory.emptied();
    // No key of ours starts with 64 bytes of 0xff (UTF-8 never has one).
    let end = [0xffu8; 64];
    let mut clear = WriteBatch::default();
    for family in VIEW_FAMILIES {
        clear.delete_range_cf(db.cf(family), [].as_slice(), end.as_slice());
    }
    clear.delete_cf(db.cf(CF_META), KEY_COUNTS);
    clear.put_cf(db.cf(CF_META), KEY_REBUILDING, []);
    // Synced: once the views are being emptied, the marker is on disk.
    db.write_synced(clear)?;

    let mut replayed = 0u64;
    let mut batch = Vec::with_capacity(REBUILD_BATCH);
    let mut failure = None;
    scan_log(db, &[], |_, event| {
        batch.push(event);
        if batch.len() == REBUILD_BATCH {
            if let Err(e) = apply_events(db, memory, &batch, Origin::Log) {
                failure = Some(e);
                return Ok(false);
            }
            replayed += batch.len() as u64;
            batch.clear();
            progress(replayed);
        }
        Ok(true)
    })?;
    if let Some(e) = failure {
        return Err(e);
    }
    apply_events(db, memory, &batch, Origin::Log)?;
    replayed += batch.len() as u64;
    progress(replayed);
    db.flush()?;
    // The unsynced replay is on disk (flushed above) before the marker goes.
    let mut done = WriteBatch::default();
    done.put_cf(db.cf(CF_META), KEY_VERSION, encode(&VIEWS_VERSION));
    done.delete_cf(db.cf(CF_META), KEY_REBUILDING);
    db.write_synced(done)?;
    Ok(replayed)
}
