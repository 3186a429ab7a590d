//! What the tests and the benchmarks of audrey-reporting share (this crate
//! is never published):
//!
//! - [`http`]: a tiny blocking HTTP/1.1 client (one-shot or kept alive), so
//!   tests and benchmarks need no client library;
//! - [`metrics`]: reading samples out of the Prometheus text `/metrics`
//!   serves;
//! - [`compare`]: a store's reports against the pure projection's;
//! - [`broker`]: the real broker with names of a test's own, removed when
//!   done;
//! - [`wait`]: free ports and polling until something is true;
//! - [`cluster`]: a RabbitMQ cluster of a test's own, whose nodes it can
//!   kill and restart (`scripts/rabbitmq-cluster.sh`).
#![forbid(unsafe_code)]

pub mod broker;
pub mod cluster;
pub mod compare;
pub mod http;
pub mod metrics;
pub mod wait;
