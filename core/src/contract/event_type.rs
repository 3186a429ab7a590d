//! The Audrey event types: the CloudEvents `type` (and AMQP routing key).

use std::fmt;

/// The prefix of every Audrey event type (and routing key).
pub const TYPE_PREFIX: &str = "org.aeolusproject.audrey.";

/// One of the eight event types a config server publishes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum EventType {
    InstanceRegistered,
    DeploymentRegistered,
    InstanceContacted,
    ConfigurationStarted,
    ConfigurationEnded,
    ParametersProvided,
    DeploymentDeleted,
    ConfigServerHeartbeat,
}

impl EventType {
    /// Every type, in the contract's order (metrics pre-register them).
    pub const ALL: [EventType; 8] = [
        EventType::InstanceRegistered,
        EventType::DeploymentRegistered,
        EventType::InstanceContacted,
        EventType::ConfigurationStarted,
        EventType::ConfigurationEnded,
        EventType::ParametersProvided,
        EventType::DeploymentDeleted,
        EventType::ConfigServerHeartbeat,
    ];

    /// The type without the `org.aeolusproject.audrey.` prefix (the metric
    /// label).
    pub const fn short_name(self) -> &'static str {
        match self {
            EventType::InstanceRegistered => "instance.registered",
            EventType::DeploymentRegistered => "deployment.registered",
            EventType::InstanceContacted => "instance.contacted",
            EventType::ConfigurationStarted => "service.configuration_started",
            EventType::ConfigurationEnded => "service.configuration_ended",
            EventType::ParametersProvided => "instance.parameters_provided",
            EventType::DeploymentDeleted => "deployment.deleted",
            EventType::ConfigServerHeartbeat => "configserver.heartbeat",
        }
    }

    /// The full CloudEvents type, e.g. `org.aeolusproject.audrey.instance.contacted`.
    pub const fn name(self) -> &'static str {
        match self {
            EventType::InstanceRegistered => "org.aeolusproject.audrey.instance.registered",
            EventType::DeploymentRegistered => "org.aeolusproject.audrey.deployment.registered",
            EventType::InstanceContacted => "org.aeolusproject.audrey.instance.contacted",
            EventType::ConfigurationStarted => {
                "org.aeolusproject.audrey.service.configuration_started"
            }
            EventType::ConfigurationEnded => "org.aeolusproject.audrey.service.configuration_ended",
            EventType::ParametersProvided => {
                "org.aeolusproject.audrey.instance.parameters_provided"
            }
            EventType::DeploymentDeleted => "org.aeolusproject.audrey.deployment.deleted",
            EventType::ConfigServerHeartbeat => "org.aeolusproject.audrey.configserver.heartbeat",
        }
    }

    /// The type a full CloudEvents `type` names, if it is an Audrey one.
    pub fn parse(full: &str) -> Option<EventType> {
        Self::ALL.into_iter().find(|t| t.name() == full)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_names_are_the_prefix_and_the_short_name() {
        for t in EventType::ALL {
            assert_eq!(t.name(), format!("{TYPE_PREFIX}{}", t.short_name()));
            assert_eq!(EventType::parse(t.name()), Some(t));
        }
        assert_eq!(EventType::parse("instance.registered"), None);
    }
}
