//! The heart of audrey-reporting: what config servers tell us, and what we
//! make of it.
//!
//! Data flows one way through these modules:
//!
//! - [`event`]: the event contract. CloudEvents 1.0 envelopes and the data of
//!   each Audrey event type, decoded strictly (precise errors, never a panic)
//!   and encoded back canonically.
//! - [`domain`]: the small vocabulary the rest is written in: deployment and
//!   instance UUIDs, names, timestamps, statuses.
//! - [`model`]: the view rows: one per deployment, instance, service and
//!   config server, plus the global counts. Plain data.
//! - [`projection`]: pure functions that fold one event into those rows. No
//!   I/O: rows are read and written through the [`projection::ViewRead`]
//!   and [`projection::ViewWrite`] traits, which an in-memory map
//!   ([`memory`]) or the RocksDB store implements.
//! - [`query`]: turns rows into the reports readers ask for (deployment with
//!   its instances and unresolved dependencies, instance with its services,
//!   one service, counts, lists by status).
//! - [`store`]: the RocksDB shell: column families, the raw event log, the
//!   dedup index, atomic synced batches, snapshot reads.
//! - [`log`]: what the event log serves besides dedup: an entity's
//!   history, `rebuild`, and retention.
//! - [`scenario`]: realistic and hand-written event streams (tests,
//!   `simulate`, benchmarks).
//!
//! Nothing here knows about AMQP or HTTP.
#![forbid(unsafe_code)]

pub mod domain;
pub mod event;
pub mod log;
pub mod memory;
pub mod model;
pub mod projection;
pub mod query;
pub mod scenario;
pub mod store;

pub use domain::{DeploymentId, InstanceId, Name, Status, Timestamp};
pub use event::{DecodeError, Event, EventData};
pub use store::{BatchOutcome, Encoded, Store, StoreError};
