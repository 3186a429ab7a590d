//! The event contract: CloudEvents 1.0 (structured JSON mode) with the
//! `deployment` extension attribute, and the data of each Audrey event type.
//!
//! - [`event`]: the accepted events, typed (a heartbeat is not a
//!   deployment's event);
//! - [`event_type`]: the eight types and their names;
//! - [`decode`]: the only way in, strict, with precise errors;
//! - `json`: the document decoded from, borrowed from the message body;
//! - [`binary`]: binary content mode (attributes in message headers), turned
//!   into the structured form and decoded the same way;
//! - [`encode`]: the canonical JSON back out;
//! - [`error`]: why an event was refused, with a stable reason label;
//! - [`trust`]: the optional allow-list of sources.

pub mod binary;
pub mod decode;
pub mod encode;
pub mod error;
pub mod event;
pub mod event_type;
mod json;
pub mod trust;

pub use binary::HeaderValue;
pub use decode::{
    DEFAULT_MAX_EVENT_BYTES, EARLIEST_EVENT_TIME_SECONDS, MAX_CLOCK_AHEAD_SECONDS,
    MAX_EVENT_BYTES_LIMIT,
};
pub use error::DecodeError;
pub use event::{
    Awaited, DeploymentEvent, Event, EventData, Heartbeat, InstanceRegistration, Parameter,
    ParameterSource, ServiceConfig,
};
pub use event_type::{EventType, TYPE_PREFIX};
pub use trust::{SourcePattern, TrustedSources};
