//! An instance's row, stored in two parts: what changes with its progress
//! (contacts, each service's latest start and end, status, completion),
//! written on almost every event of the instance, and the rest
//! (registration, the services' parameters, provided parameters, the
//! references waiting on it, other deployments' claims), written only when
//! it changes. A batch of events spread over a large deployment rewrites
//! one small progress part per instance instead of the whole row: the
//! bytes that go through the encoder, the WAL, the memtables and the
//! flushes stop growing with how much each instance declares
//! (BENCHMARKS.md, "What bounds scale here").
//!
//! Both parts are postcard. The progress part lists the services' runs in
//! the order of the services in the stable part (their names), so it
//! carries no names: the two parts are always written from the same
//! state in the same batch, which [`Pending`](crate::pending) ensures by
//! comparing what it would write with what is stored.

use std::collections::{BTreeMap, BTreeSet};

use serde::ser::SerializeSeq;
use serde::{Deserialize, Serialize, Serializer};

use audrey_core::contract::{Awaited, Parameter};
use audrey_core::domain::{DeploymentId, InstanceId, Name, Status, Timestamp};
use audrey_core::rows::{Instance, InstanceRegistration, InstanceState, Service, Stamp};

use crate::error::StoreError;

/// An instance's two stored parts, encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EncodedInstance {
    /// Family `instances`: everything but the progress.
    pub(crate) stable: Vec<u8>,
    /// Family `instance_progress`.
    pub(crate) progress: Vec<u8>,
}

/// An instance as committed, with the bytes of its stable part as stored:
/// the writer compares a changed instance's stable part with them and
/// writes it only when it differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredInstance {
    pub(crate) state: InstanceState,
    pub(crate) stable: Vec<u8>,
}

/// What a typical part is first given room for, instead of growing from
/// empty a few times per row.
const STABLE_PART_BYTES: usize = 512;
const PROGRESS_PART_BYTES: usize = 128;

pub(crate) fn encode_instance(state: &InstanceState) -> EncodedInstance {
    EncodedInstance {
        stable: encode_stable(state),
        progress: encode_progress(state),
    }
}

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
        services: ServiceParameters(&state.services),
        other_claims: &state.other_claims,
    };
    postcard::to_extend(&part, Vec::with_capacity(STABLE_PART_BYTES))
        .expect("view rows always serialise")
}

fn encode_progress(state: &InstanceState) -> Vec<u8> {
    let i = &state.instance;
    let part = ProgressRef {
        first_contacted: &i.first_contacted,
        last_contacted: &i.last_contacted,
        status: &i.status,
        completed: &i.completed,
        runs: ServiceRuns(&state.services),
    };
    postcard::to_extend(&part, Vec::with_capacity(PROGRESS_PART_BYTES))
        .expect("view rows always serialise")
}

/// The whole instance from its two parts.
pub(crate) fn decode_instance(stable: &[u8], progress: &[u8]) -> Result<InstanceState, StoreError> {
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

/// Only the instance fields (a reference's source, who owns an instance):
/// the services and other claims are not decoded.
pub(crate) fn decode_instance_row(stable: &[u8], progress: &[u8]) -> Result<Instance, StoreError> {
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
    services: ServiceParameters<'a>,
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

/// Each service's name and parameters, in name order (the map's).
struct ServiceParameters<'a>(&'a BTreeMap<Name, Service>);

impl Serialize for ServiceParameters<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for service in self.0.values() {
            seq.serialize_element(&(&service.name, &service.parameters))?;
        }
        seq.end()
    }
}

/// The progress part as written.
#[derive(Serialize)]
struct ProgressRef<'a> {
    first_contacted: &'a Option<Timestamp>,
    last_contacted: &'a Option<Timestamp>,
    status: &'a Status,
    completed: &'a Option<Timestamp>,
    runs: ServiceRuns<'a>,
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

/// The whole progress part, read back: the fields, then the runs in the
/// order of the stable part's services.
type Progress = (ProgressFields, Vec<Run>);

/// Each service's latest start and end, in name order (the map's).
struct ServiceRuns<'a>(&'a BTreeMap<Name, Service>);

impl Serialize for ServiceRuns<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for service in self.0.values() {
            seq.serialize_element(&(&service.started, &service.ended))?;
        }
        seq.end()
    }
}
