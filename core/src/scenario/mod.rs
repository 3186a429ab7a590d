//! Event streams for tests, `simulate` and the benchmarks, deterministic
//! for a seed so that all of them replay the same streams.
//!
//! - [`rng`]: the seeded generator;
//! - [`realistic`]: whole deployments booting, as config servers see them;
//! - [`script`]: hand-written scenarios (wordpress waits for mysql);
//! - [`workload`]: what `simulate` plans, and what the reports should say
//!   once it is consumed.

pub mod realistic;
pub mod rng;
pub mod script;
pub mod workload;

pub use realistic::{ConfigServerScript, Shape};
pub use rng::Rng;
