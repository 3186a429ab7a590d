//! Raw key-value access shared by the snapshot reader and the pending
//! batch, and the row readers written once on top of it.

use std::cell::RefCell;
use std::collections::HashMap;

use rocksdb::{DBPinnableSlice, DBRawIteratorWithThreadMode, DB};
use serde::de::DeserializeOwned;

use audrey_core::domain::{DeploymentId, InstanceId, Status, Timestamp};
use audrey_core::rows::{ConfigServer, Counts, Deployment, Instance, InstanceState};

use crate::codec::decode;
use crate::db::{
    Db, CF_CONFIG_SERVERS, CF_DEPLOYMENTS, CF_DEPLOYMENT_STATUS, CF_INSTANCES, CF_MEMBERS, CF_META,
};
use crate::error::StoreError;
use crate::instance_parts::{
    decode_instance, decode_instance_row, decode_stored_instance, StoredInstance,
};
use crate::keys::{deployment_from_key, instance_from_key, status_byte, KEY_AS_OF, KEY_COUNTS};

/// Sees one key and value of a scan; returns whether to go on.
pub(crate) type KeyValueVisitor<'a> = dyn FnMut(&[u8], &[u8]) -> Result<bool, StoreError> + 'a;

/// Raw key-value access, from the live database (for the single writer)
/// or from a snapshot (for readers).
pub(crate) trait Raw {
    /// The value of `key`, if any, where RocksDB holds it (pinned in the
    /// block cache or a memtable): not copied out.
    fn pinned(
        &self,
        cf: &'static str,
        key: &[u8],
    ) -> Result<Option<DBPinnableSlice<'_>>, StoreError>;
    /// Decodes the value of `key`, if there is one, with `decode`, from
    /// where RocksDB holds it.
    fn read<T>(
        &self,
        cf: &'static str,
        key: &[u8],
        decode: impl FnOnce(&[u8]) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let value = self.pinned(cf, key)?;
        value.map(|value| decode(&value)).transpose()
    }
    /// Visits keys starting with `prefix`, in order, until `visit` says stop.
    fn scan(
        &self,
        cf: &'static str,
        prefix: &[u8],
        visit: &mut KeyValueVisitor<'_>,
    ) -> Result<(), StoreError>;
}

/// The live database, for the single writer's few reads outside a batch.
impl Raw for Db {
    fn pinned(
        &self,
        cf: &'static str,
        key: &[u8],
    ) -> Result<Option<DBPinnableSlice<'_>>, StoreError> {
        Ok(self.rocks.get_pinned_cf(self.cf(cf), key)?)
    }

    fn scan(
        &self,
        cf: &'static str,
        prefix: &[u8],
        visit: &mut KeyValueVisitor<'_>,
    ) -> Result<(), StoreError> {
        Scanners::new().scan(
            cf,
            prefix,
            || self.rocks.raw_iterator_cf(self.cf(cf)),
            visit,
        )
    }
}

/// One raw iterator per column family, created on first use and re-seeked
/// after: creating a RocksDB iterator costs far more than a seek, and a
/// report or a batch scans the members of many deployments.
pub(crate) struct Scanners<'s> {
    iterators: RefCell<HashMap<&'static str, DBRawIteratorWithThreadMode<'s, DB>>>,
}

impl<'s> Scanners<'s> {
    pub(crate) fn new() -> Self {
        Self {
            iterators: RefCell::new(HashMap::new()),
        }
    }

    pub(crate) fn scan(
        &self,
        cf: &'static str,
        prefix: &[u8],
        create: impl FnOnce() -> DBRawIteratorWithThreadMode<'s, DB>,
        visit: &mut KeyValueVisitor<'_>,
    ) -> Result<(), StoreError> {
        let mut iterators = self.iterators.borrow_mut();
        let iterator = iterators.entry(cf).or_insert_with(create);
        iterator.seek(prefix);
        while iterator.valid() {
            let (Some(key), Some(value)) = (iterator.key(), iterator.value()) else {
                break;
            };
            if !key.starts_with(prefix) || !visit(key, value)? {
                break;
            }
            iterator.next();
        }
        iterator.status()?;
        Ok(())
    }
}

pub(crate) fn get_row<T: DeserializeOwned>(
    raw: &impl Raw,
    cf: &'static str,
    key: &[u8],
) -> Result<Option<T>, StoreError> {
    raw.read(cf, key, |bytes| decode(cf, bytes))
}

pub(crate) fn read_deployment(
    raw: &impl Raw,
    id: DeploymentId,
) -> Result<Option<Deployment>, StoreError> {
    get_row(raw, CF_DEPLOYMENTS, id.as_bytes())
}

/// An instance's row, decoded by `decode` (whole, with what the writer
/// keeps of it, or only its instance fields).
fn read_instance_with<T>(
    raw: &impl Raw,
    id: InstanceId,
    decode: fn(&[u8]) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    raw.read(CF_INSTANCES, id.as_bytes(), decode)
}

pub(crate) fn read_instance(
    raw: &impl Raw,
    id: InstanceId,
) -> Result<Option<InstanceState>, StoreError> {
    read_instance_with(raw, id, decode_instance)
}

/// An instance with its stable part's bytes as stored (the writer's read).
pub(crate) fn read_stored_instance(
    raw: &impl Raw,
    id: InstanceId,
) -> Result<Option<StoredInstance>, StoreError> {
    read_instance_with(raw, id, decode_stored_instance)
}

pub(crate) fn read_instance_row(
    raw: &impl Raw,
    id: InstanceId,
) -> Result<Option<Instance>, StoreError> {
    read_instance_with(raw, id, decode_instance_row)
}

pub(crate) fn read_members(
    raw: &impl Raw,
    id: DeploymentId,
) -> Result<Vec<InstanceId>, StoreError> {
    let mut members = Vec::new();
    raw.scan(CF_MEMBERS, id.as_bytes(), &mut |key, _| {
        members.push(instance_from_key(&key[16..])?);
        Ok(true)
    })?;
    Ok(members)
}

pub(crate) fn read_config_server(
    raw: &impl Raw,
    source: &str,
) -> Result<Option<ConfigServer>, StoreError> {
    get_row(raw, CF_CONFIG_SERVERS, source.as_bytes())
}

pub(crate) fn read_config_servers(raw: &impl Raw) -> Result<Vec<ConfigServer>, StoreError> {
    let mut rows = Vec::new();
    raw.scan(CF_CONFIG_SERVERS, b"", &mut |_, value| {
        rows.push(decode(CF_CONFIG_SERVERS, value)?);
        Ok(true)
    })?;
    Ok(rows)
}

/// The freshness watermark: the latest event time applied, if any.
pub(crate) fn read_as_of(raw: &impl Raw) -> Result<Option<Timestamp>, StoreError> {
    let as_of = raw.read(CF_META, KEY_AS_OF, |bytes| {
        Ok(<[u8; 8]>::try_from(bytes)
            .ok()
            .map(|bytes| Timestamp::from_nanos(i64::from_be_bytes(bytes))))
    })?;
    Ok(as_of.flatten())
}

pub(crate) fn read_counts(raw: &impl Raw) -> Result<Counts, StoreError> {
    Ok(get_row(raw, CF_META, KEY_COUNTS)?.unwrap_or_default())
}

/// Visits deployments with a status (or all, in uuid order), with their
/// last progress, without reading tombstones.
pub(crate) fn scan_deployments(
    raw: &impl Raw,
    status: Option<Status>,
    visit: &mut dyn FnMut(DeploymentId, Option<Timestamp>) -> Result<bool, StoreError>,
) -> Result<(), StoreError> {
    match status {
        Some(status) => raw.scan(
            CF_DEPLOYMENT_STATUS,
            &[status_byte(status)],
            &mut |key, value| {
                let id = deployment_from_key(&key[1..])?;
                let progress = value
                    .try_into()
                    .ok()
                    .map(|b: [u8; 8]| i64::from_be_bytes(b))
                    .filter(|n| *n != i64::MIN)
                    .map(Timestamp::from_nanos);
                visit(id, progress)
            },
        ),
        None => raw.scan(CF_DEPLOYMENTS, b"", &mut |_, value| {
            let row: Deployment = decode(CF_DEPLOYMENTS, value)?;
            if row.deleted.is_some() {
                return Ok(true);
            }
            visit(row.uuid, row.last_progress)
        }),
    }
}
