//! Encoding: the canonical CloudEvents JSON of an event, what the reference
//! publisher sends, what the event log stores and what `export` writes.
//!
//! Canonical means compact, with every object's keys in byte order (the
//! order a `serde_json::Value` keeps them in). The shapes below declare
//! their fields in that order and are serialised straight to bytes: the log
//! entry of every ingested event is written here, and building a `Value`
//! tree first cost an allocation per key and value.

use serde::{Serialize, Serializer};
use serde_json::Value;

use super::event::{Event, EventData, Parameter, ParameterSource, ServiceConfig};
use crate::domain::{DeploymentId, InstanceId, Name, Timestamp};

impl Event {
    /// The canonical CloudEvents JSON of this event.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self.canonical()).expect("an event always serialises")
    }

    /// The canonical JSON bytes of this event.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.canonical()).expect("an event always serialises")
    }

    /// The `data` object alone.
    pub fn data_json(&self) -> Value {
        serde_json::to_value(self.canonical().data).expect("an event always serialises")
    }

    fn canonical(&self) -> Envelope<'_> {
        let (deployment, data) = match self {
            Event::Heartbeat(h) => (
                None,
                Data::Heartbeat {
                    interval_seconds: h.interval_seconds,
                    version: &h.version,
                },
            ),
            Event::Deployment(e) => (Some(e.deployment), Data::of(e.deployment, &e.data)),
        };
        Envelope {
            data,
            datacontenttype: "application/json",
            deployment,
            id: self.id().as_str(),
            source: self.source().as_str(),
            specversion: "1.0",
            time: self.time(),
            event_type: self.event_type().name(),
        }
    }
}

/// The envelope, its keys in byte order.
#[derive(Serialize)]
struct Envelope<'a> {
    data: Data<'a>,
    datacontenttype: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    deployment: Option<DeploymentId>,
    id: &'a str,
    source: &'a str,
    specversion: &'static str,
    #[serde(serialize_with = "rfc3339")]
    time: Timestamp,
    #[serde(rename = "type")]
    event_type: &'static str,
}

/// Each event type's `data`, its keys in byte order.
#[derive(Serialize)]
#[serde(untagged)]
enum Data<'a> {
    Heartbeat {
        interval_seconds: u32,
        version: &'a str,
    },
    InstanceRegistered {
        deployment: NamedDeployment<'a>,
        instance: RegisteredInstance<'a>,
        provided_parameters: &'a [Name],
        #[serde(serialize_with = "each_service")]
        services: &'a [ServiceConfig],
    },
    DeploymentRegistered {
        deployment: NamedDeployment<'a>,
        instances: &'a [InstanceId],
    },
    InstanceContacted {
        instance: InstanceId,
        #[serde(skip_serializing_if = "Option::is_none")]
        request: Option<&'a str>,
    },
    ConfigurationStarted {
        instance: InstanceId,
        service: &'a Name,
    },
    ConfigurationEnded {
        instance: InstanceId,
        return_code: i32,
        service: &'a Name,
    },
    ParametersProvided {
        instance: InstanceId,
        parameters: &'a [Name],
    },
    DeploymentDeleted {
        deployment: DeploymentId,
    },
}

impl<'a> Data<'a> {
    fn of(deployment: DeploymentId, data: &'a EventData) -> Self {
        match data {
            EventData::InstanceRegistered(r) => Data::InstanceRegistered {
                deployment: NamedDeployment {
                    name: &r.deployment_name,
                    uuid: deployment,
                },
                instance: RegisteredInstance {
                    assembly: &r.assembly,
                    uuid: r.instance,
                },
                provided_parameters: &r.provided_parameters,
                services: &r.services,
            },
            EventData::DeploymentRegistered { name, instances } => Data::DeploymentRegistered {
                deployment: NamedDeployment {
                    name,
                    uuid: deployment,
                },
                instances,
            },
            EventData::InstanceContacted { instance, request } => Data::InstanceContacted {
                instance: *instance,
                request: request.as_deref(),
            },
            EventData::ConfigurationStarted { instance, service } => Data::ConfigurationStarted {
                instance: *instance,
                service,
            },
            EventData::ConfigurationEnded {
                instance,
                service,
                return_code,
            } => Data::ConfigurationEnded {
                instance: *instance,
                return_code: *return_code,
                service,
            },
            EventData::ParametersProvided {
                instance,
                parameters,
            } => Data::ParametersProvided {
                instance: *instance,
                parameters,
            },
            EventData::DeploymentDeleted => Data::DeploymentDeleted { deployment },
        }
    }
}

#[derive(Serialize)]
struct NamedDeployment<'a> {
    name: &'a Name,
    uuid: DeploymentId,
}

#[derive(Serialize)]
struct RegisteredInstance<'a> {
    assembly: &'a Name,
    uuid: InstanceId,
}

/// A service of a registration: `{"name", "parameters"}`.
fn each_service<S: Serializer>(
    services: &&[ServiceConfig],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Service<'a> {
        name: &'a Name,
        #[serde(serialize_with = "each_parameter")]
        parameters: &'a [Parameter],
    }
    serializer.collect_seq(services.iter().map(|s| Service {
        name: &s.name,
        parameters: &s.parameters,
    }))
}

/// A service's parameters, each with its `kind` and, for a reference, the
/// instance (`assembly`) and what of it is awaited.
fn each_parameter<S: Serializer>(
    parameters: &&[Parameter],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    #[serde(untagged)]
    enum Wire<'a> {
        Static {
            kind: &'static str,
            name: &'a Name,
        },
        ProvidedParameter {
            assembly: InstanceId,
            kind: &'static str,
            name: &'a Name,
            parameter: &'a Name,
        },
        ServiceReturnCode {
            assembly: InstanceId,
            kind: &'static str,
            name: &'a Name,
            service: &'a Name,
        },
    }
    serializer.collect_seq(parameters.iter().map(|p| match &p.source {
        ParameterSource::Static => Wire::Static {
            kind: "static",
            name: &p.name,
        },
        ParameterSource::ProvidedParameter {
            instance,
            parameter,
        } => Wire::ProvidedParameter {
            assembly: *instance,
            kind: "parameter-reference",
            name: &p.name,
            parameter,
        },
        ParameterSource::ServiceReturnCode { instance, service } => Wire::ServiceReturnCode {
            assembly: *instance,
            kind: "service-reference",
            name: &p.name,
            service,
        },
    }))
}

fn rfc3339<S: Serializer>(time: &Timestamp, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(time)
}
