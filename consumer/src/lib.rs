//! The AMQP side of audrey-reporting.
//!
//! - [`connect`]: reaching the broker over TCP or TLS.
//! - [`delivery`]: a delivery's event, in structured or binary content mode.
//! - [`topology`]: the exchanges and queues, declared idempotently on every
//!   (re)connection.
//! - [`ingest`]: the consume loop: batches deliveries, decodes them,
//!   dead-letters what is invalid (with the reason in a header), applies the
//!   rest to the store in one synced batch, then acknowledges them all at
//!   once; reconnects with backoff when the broker goes away.
//! - [`publisher`]: the reference publisher a config server embeds:
//!   persistent CloudEvents with publisher confirms.
//! - `dead_letter`: sending an invalid message to the dead-letter queue;
//!   `screen`: on replicas, the one consumer of the shared screening queue
//!   that dead-letters for all.
//! - [`stall`]: noticing a channel the broker has silently stopped feeding
//!   (events ready, nothing in flight, no delivery for 30 s): the session
//!   is restarted.
//! - [`observer`]: how the loop reports what it did (the binary wires it to
//!   the metrics and health of the API), so this crate knows nothing of HTTP.
#![forbid(unsafe_code)]

pub mod connect;
mod dead_letter;
pub mod delivery;
pub mod ingest;
pub mod observer;
pub mod publisher;
mod screen;
pub mod stall;
pub mod topology;

pub use connect::Broker;
pub use ingest::{run, IngestConfig};
pub use observer::{AppliedBatch, Observer};
pub use publisher::{ContentMode, Publisher};
pub use topology::Topology;

/// An AMQP URL with its password hidden, for logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            let user = credentials.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_never_reach_the_logs() {
        assert_eq!(
            super::redact_url("amqps://audrey:s3cret@mq.example:5671/%2f"),
            "amqps://audrey:***@mq.example:5671/%2f"
        );
        assert_eq!(
            super::redact_url("amqp://127.0.0.1:5672"),
            "amqp://127.0.0.1:5672"
        );
    }
}
