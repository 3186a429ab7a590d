//! How view rows are stored: postcard, compact and fast, not
//! self-describing (an instance's two parts: [`crate::instance_parts`]).
//! A change of a row's layout must bump [`VIEWS_VERSION`]; the
//! golden-bytes test below fails when one changes without it.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::StoreError;

/// Bumped whenever the projection or the row encoding changes meaning:
/// views of another version must be rebuilt from the event log.
/// Version 2 keeps an instance's services inside its row; version 3 keeps
/// every deployment's claim on an instance (ownership that does not depend
/// on the order of events) and where the references waiting on it come from;
/// version 4 stores an instance in two parts, its progress apart from the
/// rest ([`crate::instance_parts`]).
pub const VIEWS_VERSION: u32 = 4;

pub(crate) fn encode<T: Serialize>(row: &T) -> Vec<u8> {
    postcard::to_stdvec(row).expect("view rows always serialise")
}

pub(crate) fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, StoreError> {
    postcard::from_bytes(bytes).map_err(|e| StoreError::corrupt(what, e))
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use audrey_core::contract::{Awaited, Parameter, ParameterSource};
    use audrey_core::domain::{DeploymentId, InstanceId, Name, Source, Status, Timestamp};
    use audrey_core::rows::{
        ConfigServer, Counts, Deployment, DeploymentRegistration, Instance, InstanceRegistration,
        InstanceState, Service, Stamp, StatusCounts, Tally,
    };

    use super::*;
    use crate::instance_parts::{
        decode_instance, decode_instance_row, encode_instance, encode_progress, encode_stable,
        merge_progress, whole_row,
    };

    fn name(s: &str) -> Name {
        Name::parse(s).unwrap()
    }

    fn stamp(seconds: i64) -> Stamp {
        Stamp::new(Timestamp::from_unix_seconds(seconds), "/cs", "e")
    }

    /// One of each row, every field set, so that any change to a row's
    /// fields or their order changes these bytes.
    fn rows() -> (Deployment, InstanceState, ConfigServer, Counts) {
        let d = DeploymentId::from_bytes([1; 16]);
        let i = InstanceId::from_bytes([2; 16]);
        let counts = StatusCounts {
            success: 1,
            incomplete: 2,
            error: 3,
        };
        let deployment = Deployment {
            uuid: d,
            name: Some((stamp(1), name("blog"))),
            registration: Some(DeploymentRegistration {
                stamp: stamp(2),
                expected: 2,
            }),
            deleted: Some(Timestamp::from_unix_seconds(9)),
            last_progress: Some(Timestamp::from_unix_seconds(8)),
            first_event: Some(Timestamp::from_unix_seconds(1)),
            sources: BTreeSet::from([Source::parse("/cs").unwrap()]),
            more_sources: true,
            tally: Tally {
                instances: counts,
                completed: 4,
                registered: 5,
                expected_missing: 6,
                unresolved_dependencies: 7,
                services: counts,
            },
        };
        let mut instance = Instance::new(i, d);
        instance.registration = Some(InstanceRegistration {
            stamp: stamp(3),
            assembly: name("mysql"),
            provided_parameters: vec![name("ipaddress")],
            services: vec![name("mysql")],
        });
        instance.expected = true;
        instance.claimed = Some(stamp(2));
        instance.first_registered = Some(stamp(3));
        instance.first_contacted = Some(Timestamp::from_unix_seconds(4));
        instance.last_contacted = Some(Timestamp::from_unix_seconds(5));
        instance.provided = BTreeMap::from([(name("ipaddress"), Timestamp::from_unix_seconds(6))]);
        instance.ended_services = BTreeSet::from([name("mysql")]);
        instance.dependents = BTreeMap::from([(Awaited::Parameter(name("ipaddress")), 2)]);
        instance.waiting_deployments = BTreeMap::from([(d, 2)]);
        instance.status = Status::Error;
        instance.completed = Some(Timestamp::from_unix_seconds(7));
        let service = Service {
            instance: i,
            name: name("mysql"),
            parameters: Some(vec![Parameter {
                name: name("peer"),
                source: ParameterSource::ProvidedParameter {
                    instance: i,
                    parameter: name("ipaddress"),
                },
            }]),
            started: Some(stamp(5)),
            ended: Some((stamp(6), 1)),
        };
        let mut other = InstanceState::new(i, DeploymentId::from_bytes([3; 16]));
        other.instance.claimed = Some(stamp(4));
        let state = InstanceState {
            instance,
            services: BTreeMap::from([(name("mysql"), service)]),
            other_claims: vec![other],
        };
        let server = ConfigServer {
            source: Source::parse("/cs").unwrap(),
            last_heartbeat: stamp(7),
            version: "0.4.2".into(),
            interval_seconds: 30,
        };
        let totals = Counts {
            deployments: counts,
            instances: counts,
            services: counts,
            unresolved_dependencies: 8,
        };
        (deployment, state, server, totals)
    }

    fn hex(bytes: &[u8]) -> String {
        crate::keys::hex(bytes)
    }

    /// The stored bytes of version 4 rows. If this fails, a row's layout
    /// changed: bump VIEWS_VERSION (stores of the old version will then
    /// ask for a rebuild) and write the new bytes here.
    #[test]
    fn rows_keep_their_stored_bytes_within_a_views_version() {
        assert_eq!(VIEWS_VERSION, 4, "a new version: update the bytes below");
        let (deployment, state, server, counts) = rows();
        let golden = [
            ("deployment", hex(&encode(&deployment)), GOLDEN_DEPLOYMENT),
            ("instance", hex(&encode_instance(&state)), GOLDEN_INSTANCE),
            (
                "instance progress",
                hex(&encode_progress(&state)),
                GOLDEN_INSTANCE_PROGRESS,
            ),
            ("config server", hex(&encode(&server)), GOLDEN_CONFIG_SERVER),
            ("counts", hex(&encode(&counts)), GOLDEN_COUNTS),
        ];
        let changed: Vec<String> = golden
            .iter()
            .filter(|(_, actual, expected)| actual != expected)
            .map(|(what, actual, _)| format!("{what}: now {actual}"))
            .collect();
        assert!(
            changed.is_empty(),
            "the stored bytes of these rows changed:\n{}",
            changed.join("\n")
        );
    }

    #[test]
    fn rows_decode_to_what_was_encoded() {
        let (deployment, state, server, counts) = rows();
        assert_eq!(
            decode::<Deployment>("d", &encode(&deployment)).unwrap(),
            deployment
        );
        let row = encode_instance(&state);
        assert_eq!(decode_instance(&row).unwrap(), state);
        assert_eq!(decode_instance_row(&row).unwrap(), state.instance);
        assert_eq!(
            decode::<ConfigServer>("c", &encode(&server)).unwrap(),
            server
        );
        assert_eq!(decode::<Counts>("n", &encode(&counts)).unwrap(), counts);
        let corrupt = |row: &[u8]| matches!(decode_instance(row), Err(StoreError::Corrupt { .. }));
        assert!(corrupt(&row[..row.len() / 2]));
        // A progress operand alone is no row.
        assert!(corrupt(&encode_progress(&state)));
        // A progress part of another state's services does not pass for
        // this one's.
        let mut fewer = state.clone();
        fewer.services.clear();
        assert!(corrupt(&whole_row(
            &encode_stable(&state),
            &encode_progress(&fewer)
        )));
    }

    /// Merging a progress operand into a row gives the row of the state
    /// with that progress; without a row under it, the merge fails.
    #[test]
    fn a_progress_operand_merges_into_the_row_under_it() {
        let (_, state, _, _) = rows();
        let mut later = state.clone();
        later.instance.last_contacted = Some(Timestamp::from_unix_seconds(10));
        later.instance.status = Status::Success;
        for service in later.services.values_mut() {
            service.ended = Some((stamp(10), 0));
        }
        let merged = merge_progress(Some(&encode_instance(&state)), &encode_progress(&later));
        assert_eq!(merged, Some(encode_instance(&later)));
        assert_eq!(decode_instance(&merged.unwrap()).unwrap(), later);
        assert_eq!(merge_progress(None, &encode_progress(&later)), None);
        let operand = encode_progress(&state);
        assert_eq!(merge_progress(Some(&operand), &operand), None);
    }

    const GOLDEN_DEPLOYMENT: &str =
        "10010101010101010101010101010101010180a8d6b907c3b7dcb1cee6b9dd4b04626c6f670180d0acf30ec3b7dcb1cee6b9dd4b020180e88887430180c0b2cd3b0180a8d6b90701032f637301020406080a0c0e020406";
    const GOLDEN_INSTANCE: &str =
        "0008010000100202020202020202020202020202020210010101010101010101010101010101010180d0acf30ec3b7dcb1cee6b9dd4b0180f882ad16c3b7dcb1cee6b9dd4b0180f882ad16c3b7dcb1cee6b9dd4b056d7973716c010969706164647265737301056d7973716c01010969706164647265737380f085da2c01056d7973716c010009697061646472657373020110010101010101010101010101010101010201056d7973716c010104706565720110020202020202020202020202020202020969706164647265737301100202020202020202020202020202020210030303030303030303030303030303030180a0d9e61dc3b7dcb1cee6b9dd4b000000000000000000010000000180a0d9e61d0180c8afa02502018098dc9334010180c8afa025c3b7dcb1cee6b9dd4b0180f085da2cc3b7dcb1cee6b9dd4b02";
    const GOLDEN_INSTANCE_PROGRESS: &str =
        "010180a0d9e61d0180c8afa02502018098dc9334010180c8afa025c3b7dcb1cee6b9dd4b0180f085da2cc3b7dcb1cee6b9dd4b02";
    const GOLDEN_CONFIG_SERVER: &str = "032f63738098dc9334c3b7dcb1cee6b9dd4b05302e342e321e";
    const GOLDEN_COUNTS: &str = "02040602040602040610";
}
