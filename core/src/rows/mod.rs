//! The view rows. Each row holds the *facts* the events established, merged
//! so that the result does not depend on arrival order (latest by event
//! time, earliest first contact, union of provided parameters), plus a few
//! derived fields kept up to date by [`crate::projection`] so that an event
//! never has to read a whole deployment to recompute an aggregate.
//!
//! - [`stamp`]: "latest" made deterministic;
//! - [`counts`]: tallies by status;
//! - [`deployment`], [`instance`] (with its services), [`config_server`].

pub mod config_server;
pub mod counts;
pub mod deployment;
pub mod instance;
pub mod stamp;

pub use config_server::ConfigServer;
pub use counts::{Counts, StatusCounts, Tally};
pub use deployment::{Deployment, DeploymentRegistration, MAX_SOURCES};
pub use instance::{Instance, InstanceRegistration, InstanceState, Service};
pub use stamp::{fnv1a, stable_hash, Stamp};
