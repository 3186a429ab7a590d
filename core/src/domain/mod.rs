//! The vocabulary the rest is written in: identifiers that parse instead of
//! validate, names, event time and statuses.

mod duration;
mod ids;
mod status;
mod text;
mod time;

pub use duration::HumanDuration;
pub use ids::{DeploymentId, EventId, InstanceId, Source, MAX_ID_CHARS};
pub use status::{ConfigServerStatus, Status};
pub use text::{is_refused_char, refused_char_problem, truncate, Name, MAX_NAME_CHARS};
pub use time::{Rfc3339, Timestamp};
