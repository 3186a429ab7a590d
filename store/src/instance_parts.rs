//! An instance's row in two parts: what changes with its progress
//! (contacts, each service's latest start and end, status, completion),
//! written on almost every event of the instance, and the rest
//! (registration, the services' parameters, provided parameters, the
//! references waiting on it, other deployments' claims), which rarely
//! changes. Both live in one value of the `instances` family, so a report
//! reads an instance with one lookup; but a batch that changed only the
//! progress writes only the progress, as a RocksDB merge operand that
//! [`merge_progress`] puts in place of the row's old one when the row is
//! read or compacted. A batch of events spread over a large deployment then
//! writes one small progress part per instance instead of the whole row:
//! the bytes through the WAL, the memtables and the flushes stop growing
//! with how much each instance declares (BENCHMARKS.md, "What bounds scale
//! here").
//!
//! A value is a whole row (a tag, the stable part's length, the stable
//! part, the progress part) or a progress operand (a tag, the progress
//! part). Both parts are postcard. The progress part lists the services'
//! runs in the order of the services in the stable part, without their
//! names: the writer replaces a row's progress only when the stable part it
//! would write is the stored one, byte for byte, and writes the whole row
//! again after [`MAX_PROGRESS_OPERANDS`] operands ([`instance_write`]).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize, Serializer};

use audrey_core::contract::{Awaited, Parameter};
use audrey_core::domain::{DeploymentId, InstanceId, Name, Status, Timestamp};
use audrey_core::rows::{Instance, InstanceRegistration, InstanceState, Service, Stamp};

use crate::error::StoreError;

/// The tag of a whole row: then the stable part's length (u32, LE), the
/// stable part and the progress part.
const WHOLE_ROW: u8 = 0;
/// The tag of a progress operand: then the progress part.
const PROGRESS: u8 = 1;
/// The tag and the stable part's length.
const WHOLE_ROW_HEADER: usize = 5;

/// An instance as committed, with what the writer knows of its stored row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredInstance {
    pub(crate) state: InstanceState,
    pub(crate) row: StoredRow,
}

/// What the writer knows of an instance's stored row: the writer compares
/// a changed instance's stable part with `stable` and writes only the
/// progress when they are the same.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct StoredRow {
    /// The stable part's bytes as stored.
    pub(crate) stable: Vec<u8>,
    /// The progress operands written over the last whole row, as far as
    /// this writer knows.
    pub(crate) operands: u8,
}

/// Progress operands an instance's whole row may carry before the writer
/// writes the whole row again: a read walks every operand over the row
/// still in the memtable (which keeps them until it is flushed), and an
/// instance whose agent contacts every few seconds while it waits would
/// otherwise gather thousands. Counted by the writer rather than left to
/// RocksDB's `max_successive_merges`, which looks the key up in the
/// memtable on every merge (12 % of the apply time of a batch over 1,000
/// instances, BENCHMARKS.md).
pub(crate) const MAX_PROGRESS_OPERANDS: u8 = 16;

/// How an instance is written: its whole row, or only its progress.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum InstanceWrite {
    /// A put of the whole row.
    Whole(Vec<u8>),
    /// A progress operand, merged into the row under it.
    Progress(Vec<u8>),
}

/// How to write `state` over the stored row `before` (`None`: nothing
/// stored), and what the row is once written. A row read from the store
/// carries an unknown number of operands: its next write is whole.
pub(crate) fn instance_write(
    before: Option<&StoredRow>,
    state: &InstanceState,
) -> (InstanceWrite, StoredRow) {
    let stable = encode_stable(state);
    let operands = before
        .filter(|before| before.stable == stable)
        .map(|before| before.operands);
    write_over(operands, stable, encode_progress(state))
}

/// How to write `state` over the stored row `before` when only its
/// progress changed since that row was written (the projection says so:
/// `ViewWrite::put_instance_progress`): its stable part is the stored one,
/// so it is neither encoded nor compared. At 1,000 instances a batch
/// touches ~95 instances, each of which would otherwise be encoded whole
/// (BENCHMARKS.md, scale).
pub(crate) fn progress_write(
    before: StoredRow,
    state: &InstanceState,
) -> (InstanceWrite, StoredRow) {
    write_over(Some(before.operands), before.stable, encode_progress(state))
}

/// The write of a row whose stable part is `stable`, with `progress`:
/// only the progress when the stored row has the same stable part under
/// `operands` operands (fewer than [`MAX_PROGRESS_OPERANDS`]), otherwise
/// the whole row.
fn write_over(
    operands: Option<u8>,
    stable: Vec<u8>,
    progress: Vec<u8>,
) -> (InstanceWrite, StoredRow) {
    match operands.filter(|n| *n < MAX_PROGRESS_OPERANDS) {
        Some(operands) => (
            InstanceWrite::Progress(progress),
            StoredRow {
                stable,
                operands: operands + 1,
            },
        ),
        None => {
            let row = whole_row(&stable, &progress);
            (
                InstanceWrite::Whole(row),
                StoredRow {
                    stable,
                    operands: 0,
                },
            )
        }
    }
}

/// What a typical part is first given room for, instead of growing from
/// empty a few times per row.
const STABLE_PART_BYTES: usize = 512;
const PROGRESS_PART_BYTES: usize = 128;

/// The stable part (no tag).
pub(crate) fn encode_stable(state: &InstanceState) -> Vec<u8> {
    let i = &state.instance;
    let part = StableRef {
        uuid: &i.uuid,
        deployment: &i.deployment,
        claimed: &i.claimed,
        first_registered: &i.first_registered,
        registration: &i.registration,
        expected: &i.expected,
        provided: &i.provided,
        ended_services: &i.ended_services,
        dependents: &i.dependents,
        waiting_deployments: &i.waiting_deployments,
        services: PerService(&state.services, |s| (&s.name, &s.parameters)),
        other_claims: &state.other_claims,
    };
    postcard::to_extend(&part, Vec::with_capacity(STABLE_PART_BYTES))
        .expect("view rows always serialise")
}

/// The progress part as a merge operand (tagged).
pub(crate) fn encode_progress(state: &InstanceState) -> Vec<u8> {
    let i = &state.instance;
    let part = ProgressRef {
        first_contacted: &i.first_contacted,
        last_contacted: &i.last_contacted,
        status: &i.status,
        completed: &i.completed,
        runs: PerService(&state.services, |s| (&s.started, &s.ended)),
    };
    let mut operand = Vec::with_capacity(PROGRESS_PART_BYTES);
    operand.push(PROGRESS);
    postcard::to_extend(&part, operand).expect("view rows always serialise")
}

/// The whole row from the stable part and a progress operand.
pub(crate) fn whole_row(stable: &[u8], progress: &[u8]) -> Vec<u8> {
    let progress = &progress[1..];
    let length = u32::try_from(stable.len()).expect("an instance's stable part is under 4 GiB");
    let mut row = Vec::with_capacity(WHOLE_ROW_HEADER + stable.len() + progress.len());
    row.push(WHOLE_ROW);
    row.extend_from_slice(&length.to_le_bytes());
    row.extend_from_slice(stable);
    row.extend_from_slice(progress);
    row
}

/// The whole instance, encoded as one row.
#[cfg(test)]
pub(crate) fn encode_instance(state: &InstanceState) -> Vec<u8> {
    whole_row(&encode_stable(state), &encode_progress(state))
}

/// The stable and progress parts of a stored whole row.
pub(crate) fn split_row(row: &[u8]) -> Result<(&[u8], &[u8]), StoreError> {
    let damaged = |why: &str| Err(StoreError::corrupt("instances", why));
    match row.first() {
        Some(&WHOLE_ROW) if row.len() >= WHOLE_ROW_HEADER => {}
        Some(&PROGRESS) => return damaged("an instance's progress without the rest of its row"),
        _ => return damaged("not an instance row"),
    }
    let length: [u8; 4] = row[1..WHOLE_ROW_HEADER].try_into().expect("four bytes");
    let length = u32::from_le_bytes(length) as usize;
    let rest = &row[WHOLE_ROW_HEADER..];
    if rest.len() < length {
        return damaged("an instance row shorter than its stable part");
    }
    Ok(rest.split_at(length))
}

/// The merge of a stored value (`existing`) with the newest progress
/// operand written over it: the row with that progress in place of its
/// own. Operands only replace, so older ones between the two do not
/// matter. `None` (a failed merge, which RocksDB reports as corruption)
/// when there is no whole row under the operand or either is damaged.
pub(crate) fn merge_progress(existing: Option<&[u8]>, newest: &[u8]) -> Option<Vec<u8>> {
    let (stable, _) = split_row(existing?).ok()?;
    (newest.first() == Some(&PROGRESS)).then(|| whole_row(stable, newest))
}

/// The whole instance from its stored row.
pub(crate) fn decode_instance(row: &[u8]) -> Result<InstanceState, StoreError> {
    let (stable, progress) = split_row(row)?;
    decode_parts(stable, progress)
}

/// The whole instance from its two parts.
fn decode_parts(stable: &[u8], progress: &[u8]) -> Result<InstanceState, StoreError> {
    let (stable_fields, parameters, other_claims): Stable =
        postcard::from_bytes(stable).map_err(corrupt)?;
    let (progress_fields, runs): Progress = postcard::from_bytes(progress).map_err(corrupt)?;
    if parameters.len() != runs.len() {
        return Err(StoreError::corrupt(
            "instances",
            format!(
                "{} services in the stable part, {} in the progress part",
                parameters.len(),
                runs.len()
            ),
        ));
    }
    let instance = instance(stable_fields, progress_fields);
    let services = parameters
        .into_iter()
        .zip(runs)
        .map(|((name, parameters), (started, ended))| {
            let service = Service {
                instance: instance.uuid,
                name: name.clone(),
                parameters,
                started,
                ended,
            };
            (name, service)
        })
        .collect();
    Ok(InstanceState {
        instance,
        services,
        other_claims,
    })
}

/// The whole instance from its stored row, with its stable part's bytes
/// (and, since how many operands lie over it is not known, its next write
/// whole).
pub(crate) fn decode_stored_instance(row: &[u8]) -> Result<StoredInstance, StoreError> {
    let (stable, progress) = split_row(row)?;
    let state = decode_parts(stable, progress)?;
    let row = StoredRow {
        stable: stable.to_vec(),
        operands: MAX_PROGRESS_OPERANDS,
    };
    Ok(StoredInstance { state, row })
}

/// Only the instance fields (a reference's source, who owns an instance):
/// the services and other claims are not decoded.
pub(crate) fn decode_instance_row(row: &[u8]) -> Result<Instance, StoreError> {
    let (stable, progress) = split_row(row)?;
    let (stable, _): (StableFields, &[u8]) = postcard::take_from_bytes(stable).map_err(corrupt)?;
    let (progress, _): (ProgressFields, &[u8]) =
        postcard::take_from_bytes(progress).map_err(corrupt)?;
    Ok(instance(stable, progress))
}

fn corrupt(e: postcard::Error) -> StoreError {
    StoreError::corrupt("instances", e)
}

fn instance(stable: StableFields, progress: ProgressFields) -> Instance {
    Instance {
        uuid: stable.uuid,
        deployment: stable.deployment,
        claimed: stable.claimed,
        first_registered: stable.first_registered,
        registration: stable.registration,
        expected: stable.expected,
        first_contacted: progress.first_contacted,
        last_contacted: progress.last_contacted,
        provided: stable.provided,
        ended_services: stable.ended_services,
        dependents: stable.dependents,
        waiting_deployments: stable.waiting_deployments,
        status: progress.status,
        completed: progress.completed,
    }
}

/// The stable part as written: the fields of [`StableFields`] in their
/// order, then the services' parameters, then the other claims.
#[derive(Serialize)]
struct StableRef<'a> {
    uuid: &'a InstanceId,
    deployment: &'a DeploymentId,
    claimed: &'a Option<Stamp>,
    first_registered: &'a Option<Stamp>,
    registration: &'a Option<InstanceRegistration>,
    expected: &'a bool,
    provided: &'a BTreeMap<Name, Timestamp>,
    ended_services: &'a BTreeSet<Name>,
    dependents: &'a BTreeMap<Awaited, u32>,
    waiting_deployments: &'a BTreeMap<DeploymentId, u32>,
    services: PerService<'a, (&'a Name, &'a Option<Vec<Parameter>>)>,
    other_claims: &'a Vec<InstanceState>,
}

/// The instance's own fields at the head of the stable part.
#[derive(Deserialize)]
struct StableFields {
    uuid: InstanceId,
    deployment: DeploymentId,
    claimed: Option<Stamp>,
    first_registered: Option<Stamp>,
    registration: Option<InstanceRegistration>,
    expected: bool,
    provided: BTreeMap<Name, Timestamp>,
    ended_services: BTreeSet<Name>,
    dependents: BTreeMap<Awaited, u32>,
    waiting_deployments: BTreeMap<DeploymentId, u32>,
}

/// The whole stable part, read back: postcard writes a struct as its
/// fields one after the other, so the fields, the services' names and
/// parameters (in name order) and the other claims read as this tuple.
type Stable = (
    StableFields,
    Vec<(Name, Option<Vec<Parameter>>)>,
    Vec<InstanceState>,
);

/// One element per service, in name order (the map's): what `part` takes
/// of each. The stable part lists the services' names and parameters, the
/// progress part their runs, in the same order.
struct PerService<'a, T>(&'a BTreeMap<Name, Service>, fn(&'a Service) -> T);

impl<'a, T: Serialize> Serialize for PerService<'a, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.values().map(self.1))
    }
}

/// The progress part as written.
#[derive(Serialize)]
struct ProgressRef<'a> {
    first_contacted: &'a Option<Timestamp>,
    last_contacted: &'a Option<Timestamp>,
    status: &'a Status,
    completed: &'a Option<Timestamp>,
    runs: PerService<'a, RunRef<'a>>,
}

/// The instance's own fields at the head of the progress part.
#[derive(Deserialize)]
struct ProgressFields {
    first_contacted: Option<Timestamp>,
    last_contacted: Option<Timestamp>,
    status: Status,
    completed: Option<Timestamp>,
}

/// A service's latest start, and latest end with its return code.
type Run = (Option<Stamp>, Option<(Stamp, i32)>);
/// The same, as written.
type RunRef<'a> = (&'a Option<Stamp>, &'a Option<(Stamp, i32)>);

/// The whole progress part, read back: the fields, then the runs in the
/// order of the stable part's services.
type Progress = (ProgressFields, Vec<Run>);

#[cfg(test)]
mod tests {
    use audrey_core::domain::{DeploymentId, InstanceId, Timestamp};

    use super::*;

    /// Progress alone is written as an operand, at most
    /// [`MAX_PROGRESS_OPERANDS`] times in a row; then, or when the stable
    /// part changed, or over a row read from the store, the whole row.
    #[test]
    fn progress_operands_over_a_row_are_bounded() {
        let mut state = InstanceState::new(
            InstanceId::from_bytes([2; 16]),
            DeploymentId::from_bytes([1; 16]),
        );
        let is_whole = |write: &InstanceWrite| matches!(write, InstanceWrite::Whole(_));
        let (write, mut row) = instance_write(None, &state);
        assert!(is_whole(&write), "nothing stored yet");
        let mut kinds = Vec::new();
        for second in 1..=2 * i64::from(MAX_PROGRESS_OPERANDS) + 2 {
            state.instance.last_contacted = Some(Timestamp::from_unix_seconds(second));
            let (write, next) = instance_write(Some(&row), &state);
            kinds.push(is_whole(&write));
            row = next;
        }
        let every = usize::from(MAX_PROGRESS_OPERANDS) + 1;
        let whole: Vec<usize> = (0..kinds.len()).filter(|at| kinds[*at]).collect();
        assert_eq!(whole, vec![every - 1, 2 * every - 1]);
        state.instance.expected = true;
        let (write, after) = instance_write(Some(&row), &state);
        assert!(is_whole(&write), "the stable part changed");
        assert_eq!(after.operands, 0);
        let read = decode_stored_instance(&encode_instance(&state)).unwrap();
        let (write, _) = instance_write(Some(&read.row), &state);
        assert!(is_whole(&write), "a row read from the store");
        assert_eq!(read.state, state);
    }
}
