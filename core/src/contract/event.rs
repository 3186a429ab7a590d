//! The accepted events, typed. A heartbeat and a deployment's event are
//! different types: an event that is not a heartbeat always names its
//! deployment.

use crate::domain::{DeploymentId, EventId, InstanceId, Name, Source, Timestamp};

use super::event_type::EventType;

/// One accepted event: a deployment's or a config server's heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Deployment(DeploymentEvent),
    Heartbeat(Heartbeat),
}

/// What a config server observed about one deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentEvent {
    /// Unique per source: with `source` it identifies the event for dedup.
    pub id: EventId,
    /// The config server that observed it.
    pub source: Source,
    /// When the config server observed it: every view timestamp comes from
    /// here, never from arrival time, so order of arrival does not matter.
    pub time: Timestamp,
    /// The deployment it belongs to (the `deployment` extension attribute).
    pub deployment: DeploymentId,
    pub data: EventData,
}

/// A config server saying it is alive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    pub id: EventId,
    /// The config server: heartbeats are per source.
    pub source: Source,
    pub time: Timestamp,
    /// The config server's version, shown in reports.
    pub version: String,
    /// How often it promises to beat; it counts as down after a few missed.
    pub interval_seconds: u32,
}

/// The typed `data` of each deployment event type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventData {
    InstanceRegistered(InstanceRegistration),
    DeploymentRegistered {
        name: Name,
        /// The instances Conductor posted configs for: the expected set.
        instances: Vec<InstanceId>,
    },
    InstanceContacted {
        instance: InstanceId,
        /// The agent's request, e.g. `GET /configs`, for the history.
        request: Option<String>,
    },
    ConfigurationStarted {
        instance: InstanceId,
        service: Name,
    },
    ConfigurationEnded {
        instance: InstanceId,
        service: Name,
        return_code: i32,
    },
    ParametersProvided {
        instance: InstanceId,
        parameters: Vec<Name>,
    },
    DeploymentDeleted,
}

/// An instance-config as Conductor posted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceRegistration {
    pub deployment_name: Name,
    pub instance: InstanceId,
    pub assembly: Name,
    /// Names of the parameters the agent must report back ("return values").
    pub provided_parameters: Vec<Name>,
    pub services: Vec<ServiceConfig>,
}

/// One service of an instance-config.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ServiceConfig {
    pub name: Name,
    pub parameters: Vec<Parameter>,
}

/// One parameter of a service.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Parameter {
    pub name: Name,
    pub source: ParameterSource,
}

/// Where a parameter's value comes from. References cross instances: this
/// is how one machine waits for another.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum ParameterSource {
    /// A literal value: never waits.
    Static,
    /// Provided parameter `parameter` of instance `instance`.
    ProvidedParameter {
        instance: InstanceId,
        parameter: Name,
    },
    /// The return code of service `service` on instance `instance`.
    ServiceReturnCode { instance: InstanceId, service: Name },
}

impl ParameterSource {
    /// The referenced instance and what of it is awaited, for references.
    pub fn reference(&self) -> Option<(InstanceId, Awaited)> {
        match self {
            ParameterSource::Static => None,
            ParameterSource::ProvidedParameter {
                instance,
                parameter,
            } => Some((*instance, Awaited::Parameter(parameter.clone()))),
            ParameterSource::ServiceReturnCode { instance, service } => {
                Some((*instance, Awaited::ServiceReturnCode(service.clone())))
            }
        }
    }
}

/// What a reference waits for on its source instance.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Awaited {
    Parameter(Name),
    ServiceReturnCode(Name),
}

impl EventData {
    pub fn event_type(&self) -> EventType {
        match self {
            EventData::InstanceRegistered(_) => EventType::InstanceRegistered,
            EventData::DeploymentRegistered { .. } => EventType::DeploymentRegistered,
            EventData::InstanceContacted { .. } => EventType::InstanceContacted,
            EventData::ConfigurationStarted { .. } => EventType::ConfigurationStarted,
            EventData::ConfigurationEnded { .. } => EventType::ConfigurationEnded,
            EventData::ParametersProvided { .. } => EventType::ParametersProvided,
            EventData::DeploymentDeleted => EventType::DeploymentDeleted,
        }
    }

    /// The instance the event is about, if it is about one.
    pub fn instance(&self) -> Option<InstanceId> {
        match self {
            EventData::InstanceRegistered(r) => Some(r.instance),
            EventData::InstanceContacted { instance, .. }
            | EventData::ConfigurationStarted { instance, .. }
            | EventData::ConfigurationEnded { instance, .. }
            | EventData::ParametersProvided { instance, .. } => Some(*instance),
            EventData::DeploymentRegistered { .. } | EventData::DeploymentDeleted => None,
        }
    }

    /// The service the event is about, if it is about one.
    pub fn service(&self) -> Option<&Name> {
        match self {
            EventData::ConfigurationStarted { service, .. }
            | EventData::ConfigurationEnded { service, .. } => Some(service),
            _ => None,
        }
    }
}

impl Event {
    pub fn id(&self) -> &EventId {
        match self {
            Event::Deployment(e) => &e.id,
            Event::Heartbeat(h) => &h.id,
        }
    }

    pub fn source(&self) -> &Source {
        match self {
            Event::Deployment(e) => &e.source,
            Event::Heartbeat(h) => &h.source,
        }
    }

    pub fn time(&self) -> Timestamp {
        match self {
            Event::Deployment(e) => e.time,
            Event::Heartbeat(h) => h.time,
        }
    }

    /// Moves the event to another time (`simulate` publishes planned
    /// events at the wall-clock time they are sent).
    pub fn set_time(&mut self, time: Timestamp) {
        match self {
            Event::Deployment(e) => e.time = time,
            Event::Heartbeat(h) => h.time = time,
        }
    }

    /// The deployment it belongs to; `None` for heartbeats.
    pub fn deployment(&self) -> Option<DeploymentId> {
        match self {
            Event::Deployment(e) => Some(e.deployment),
            Event::Heartbeat(_) => None,
        }
    }

    pub fn event_type(&self) -> EventType {
        match self {
            Event::Deployment(e) => e.data.event_type(),
            Event::Heartbeat(_) => EventType::ConfigServerHeartbeat,
        }
    }

    /// The instance the event is about, if it is about one.
    pub fn instance(&self) -> Option<InstanceId> {
        match self {
            Event::Deployment(e) => e.data.instance(),
            Event::Heartbeat(_) => None,
        }
    }

    /// The deployment's event, unless this is a heartbeat.
    pub fn as_deployment_event(&self) -> Option<&DeploymentEvent> {
        match self {
            Event::Deployment(e) => Some(e),
            Event::Heartbeat(_) => None,
        }
    }
}

impl From<DeploymentEvent> for Event {
    fn from(e: DeploymentEvent) -> Self {
        Event::Deployment(e)
    }
}

impl From<Heartbeat> for Event {
    fn from(h: Heartbeat) -> Self {
        Event::Heartbeat(h)
    }
}
