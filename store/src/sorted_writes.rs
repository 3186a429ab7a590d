//! The writes of one batch, in the order RocksDB inserts them fastest.

use std::borrow::Cow;

use rocksdb::{ColumnFamily, WriteBatch};

use crate::db::Db;

/// The writes of one batch, handed to RocksDB sorted by family and key.
/// Each memtable is a skip list that starts an insert from where its last
/// one went, so keys in order cost far less than keys in arrival order
/// (which, for a batch touching many instances, is random).
/// Values are borrowed where they can be (an event's log bytes encoded
/// beforehand), so they are copied once, into the `WriteBatch`.
#[derive(Default)]
pub(crate) struct SortedWrites<'v> {
    /// In the order made: a delete and a put of the same key keep their
    /// order.
    writes: Vec<Write<'v>>,
}

/// One write: family, key, and what to do with it.
type Write<'v> = (&'static str, Vec<u8>, Op<'v>);

/// What a write does to its key.
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Put,
    /// A merge operand (the family's merge operator combines it with the
    /// value under it when read).
    Merge,
    Delete,
}

enum Op<'v> {
    Put(Cow<'v, [u8]>),
    Merge(Vec<u8>),
    Delete,
}

impl Op<'_> {
    /// The value's length.
    fn value_len(&self) -> usize {
        match self {
            Op::Put(value) => value.len(),
            Op::Merge(operand) => operand.len(),
            Op::Delete => 0,
        }
    }
}

/// A RocksDB `WriteBatch` starts with a sequence number and a count.
const BATCH_HEADER_BYTES: usize = 12;
/// What a record adds to its key and value at most: its tag, its column
/// family's id and the two lengths, each a varint of up to 5 bytes.
const RECORD_OVERHEAD_BYTES: usize = 1 + 3 * 5;

impl<'v> SortedWrites<'v> {
    pub(crate) fn put(&mut self, cf: &'static str, key: Vec<u8>, value: impl Into<Cow<'v, [u8]>>) {
        self.writes.push((cf, key, Op::Put(value.into())));
    }

    pub(crate) fn merge(&mut self, cf: &'static str, key: Vec<u8>, operand: Vec<u8>) {
        self.writes.push((cf, key, Op::Merge(operand)));
    }

    pub(crate) fn delete(&mut self, cf: &'static str, key: Vec<u8>) {
        self.writes.push((cf, key, Op::Delete));
    }

    /// The family, key and kind of each write, in the order made.
    #[cfg(test)]
    pub(crate) fn kinds(&self) -> Vec<(&'static str, &[u8], Kind)> {
        self.writes
            .iter()
            .map(|(cf, key, op)| {
                let kind = match op {
                    Op::Put(_) => Kind::Put,
                    Op::Merge(_) => Kind::Merge,
                    Op::Delete => Kind::Delete,
                };
                (*cf, key.as_slice(), kind)
            })
            .collect()
    }

    pub(crate) fn into_batch(mut self, db: &Db) -> WriteBatch {
        // Stable: the order of writes to the same key is kept.
        self.writes
            .sort_by(|(a_cf, a_key, _), (b_cf, b_key, _)| (a_cf, a_key).cmp(&(b_cf, b_key)));
        // Room for the whole batch at once: grown by doubling, its buffer
        // was copied at each step, and past glibc's mmap threshold
        // (`src/main.rs`) each step was a fresh mapping to fault in
        // (BENCHMARKS.md, seventeenth round).
        let mut batch = WriteBatch::with_capacity_bytes(self.room());
        // Sorted, a family's writes come together: its handle is looked up
        // (by name, in a map) once per family rather than once per write.
        let mut family: Option<(&str, &ColumnFamily)> = None;
        for (cf, key, value) in self.writes {
            let handle = match family {
                Some((name, handle)) if name == cf => handle,
                _ => family.insert((cf, db.cf(cf))).1,
            };
            match value {
                Op::Put(value) => batch.put_cf(handle, key, value),
                Op::Merge(operand) => batch.merge_cf(handle, key, operand),
                Op::Delete => batch.delete_cf(handle, key),
            }
        }
        batch
    }

    /// The bytes the `WriteBatch` of these writes takes at most.
    fn room(&self) -> usize {
        let records = self
            .writes
            .iter()
            .map(|(_, key, op)| RECORD_OVERHEAD_BYTES + key.len() + op.value_len());
        BATCH_HEADER_BYTES + records.sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{CF_DEPLOYMENTS, CF_INSTANCES, CF_MEMBERS, CF_META};
    use crate::keys::KEY_COUNTS;

    #[test]
    fn writes_to_one_key_keep_their_order_when_sorted() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), true).unwrap();
        let mut writes = SortedWrites::default();
        writes.put(CF_MEMBERS, b"b".to_vec(), b"1".to_vec());
        writes.delete(CF_MEMBERS, b"a".to_vec());
        writes.put(CF_MEMBERS, b"a".to_vec(), b"2".to_vec());
        writes.delete(CF_MEMBERS, b"b".to_vec());
        writes.put(CF_DEPLOYMENTS, b"a".to_vec(), b"3".to_vec());
        db.write(
            writes.into_batch(&db),
            false,
            crate::changes::Changed::Everything,
        )
        .unwrap();
        let get = |cf, key: &[u8]| db.get(cf, key).unwrap();
        assert_eq!(get(CF_MEMBERS, b"a"), Some(b"2".to_vec()));
        assert_eq!(get(CF_MEMBERS, b"b"), None);
        assert_eq!(get(CF_DEPLOYMENTS, b"a"), Some(b"3".to_vec()));
    }

    /// The room made for a batch holds it whole, whatever the lengths of
    /// its keys and values (each length a varint of one to three bytes
    /// here), so that it is never grown while it is built.
    #[test]
    fn a_batch_fits_in_the_room_made_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), true).unwrap();
        let mut writes = SortedWrites::default();
        for n in [0, 1, 127, 128, 300, 16_383, 16_384, 70_000] {
            let key = vec![b'k'; n.min(200) + 1];
            writes.put(CF_MEMBERS, key.clone(), vec![b'v'; n]);
            writes.delete(CF_DEPLOYMENTS, key.clone());
            writes.merge(CF_INSTANCES, key, vec![b'm'; n / 2]);
        }
        writes.put(CF_META, KEY_COUNTS.to_vec(), Vec::new());
        let room = writes.room();
        let batch = writes.into_batch(&db);
        assert!(
            batch.size_in_bytes() <= room,
            "{} > {room}",
            batch.size_in_bytes()
        );
        assert!(
            room - batch.size_in_bytes() <= RECORD_OVERHEAD_BYTES * 25,
            "the room is not much larger"
        );
    }
}
