//! The config server row.

use serde::{Deserialize, Serialize};

use super::stamp::Stamp;
use crate::domain::{Source, Timestamp};

/// One config server, from its heartbeats.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ConfigServer {
    pub source: Source,
    /// The latest heartbeat.
    pub last_heartbeat: Stamp,
    pub version: String,
    /// How often it promised to beat; it counts as down after a few missed.
    pub interval_seconds: u32,
}

impl ConfigServer {
    /// Running while its last heartbeat is younger than `tolerance` times
    /// its announced interval.
    pub fn is_running(&self, now: Timestamp, tolerance: f64) -> bool {
        let deadline = self
            .last_heartbeat
            .time
            .plus_seconds(f64::from(self.interval_seconds) * tolerance);
        now <= deadline
    }
}
