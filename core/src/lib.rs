//! The pure core of audrey-reporting: what config servers tell us, and what
//! we make of it. No I/O: nothing here reads a file, a socket or a clock
//! other than through what its callers pass in (and `Timestamp::now`).
//!
//! Imports go one way, down this list:
//!
//! - [`domain`]: the vocabulary: deployment and instance UUIDs, event ids
//!   and sources, names, timestamps, statuses; each parses instead of
//!   validating.
//! - [`contract`]: the event contract. CloudEvents 1.0 envelopes and the
//!   data of each Audrey event type, decoded strictly (precise errors,
//!   never a panic) and encoded back canonically.
//! - [`rows`]: the view rows: one per deployment, instance (with its
//!   services) and config server, plus the global counts. Plain data.
//! - [`views`]: the read/write traits over those rows, which the in-memory
//!   map ([`memory`]) and the RocksDB store (crate `audrey-store`)
//!   implement, each with its own error type.
//! - [`projection`]: pure functions that fold one event into the rows.
//! - [`query`]: turns rows into the reports readers ask for (deployment
//!   with its instances and unresolved dependencies, instance with its
//!   services, one service, counts, lists by status).
//! - [`memory`]: the views in plain maps: the projection's reference.
//! - [`scenario`]: realistic and hand-written event streams, and the
//!   workload `simulate` plans (tests, `simulate`, benchmarks).
#![forbid(unsafe_code)]

pub mod contract;
pub mod domain;
pub mod memory;
pub mod projection;
pub mod query;
pub mod rows;
pub mod scenario;
pub mod views;

pub use contract::{DecodeError, DeploymentEvent, Event, EventData, EventType, Heartbeat};
pub use domain::{DeploymentId, EventId, InstanceId, Name, Source, Status, Timestamp};
