//! The statuses the reports speak of.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The status of a service, instance or deployment, as the original Audrey
/// reported it. The derived order is "how bad": `Success < Incomplete <
/// Error`, so the status of a group is the `max` of its members.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Success,
    Incomplete,
    Error,
}

impl Status {
    pub const ALL: [Status; 3] = [Status::Success, Status::Incomplete, Status::Error];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Success => "success",
            Status::Incomplete => "incomplete",
            Status::Error => "error",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a config server is running, as its heartbeats say.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConfigServerStatus {
    /// Its latest heartbeat is younger than the tolerance allows.
    Running,
    /// Its heartbeats stopped.
    Down,
    /// It reported on a deployment but never sent a heartbeat.
    Unknown,
}

impl ConfigServerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConfigServerStatus::Running => "running",
            ConfigServerStatus::Down => "down",
            ConfigServerStatus::Unknown => "unknown",
        }
    }
}

impl fmt::Display for ConfigServerStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_order_is_worst_last() {
        assert_eq!(
            [Status::Incomplete, Status::Error, Status::Success]
                .iter()
                .max(),
            Some(&Status::Error)
        );
        assert!(Status::Success < Status::Incomplete);
    }
}
