//! Builders for the events of the named scenarios.
#![allow(dead_code)]

use audrey_views::event::{InstanceRegistration, Parameter, ParameterSource, ServiceConfig};
use audrey_views::memory::MemoryViews;
use audrey_views::model::{Counts, StatusCounts};
use audrey_views::{DeploymentId, Event, EventData, InstanceId, Name, Timestamp};

pub const BLOG: &str = "3c9e8f2a-5b1d-4c7e-9f10-2a6b8d4e1c53";
pub const MYSQL: &str = "0b6a4d1e-7c2f-4a8b-9e3d-5f1a2b3c4d5e";
pub const WORDPRESS: &str = "9d8c7b6a-5e4f-4a3b-8c2d-1e0f9a8b7c6d";

pub fn deployment(s: &str) -> DeploymentId {
    DeploymentId::parse(s).unwrap()
}
pub fn instance(s: &str) -> InstanceId {
    InstanceId::parse(s).unwrap()
}
pub fn name(s: &str) -> Name {
    Name::parse(s).unwrap()
}
/// 2026-11-25T14:00:00Z plus `seconds`.
pub fn at(seconds: i64) -> Timestamp {
    Timestamp::from_unix_seconds(1_795_615_200 + seconds)
}

/// One config server publishing for one deployment.
pub struct Cs {
    pub source: String,
    pub deployment: DeploymentId,
    next_id: u64,
}

impl Cs {
    pub fn new(deployment: &str) -> Self {
        Self {
            source: "/configserver/cs-01".into(),
            deployment: self::deployment(deployment),
            next_id: 0,
        }
    }

    pub fn event(&mut self, t: i64, data: EventData) -> Event {
        self.next_id += 1;
        Event {
            id: format!("event-{}", self.next_id),
            source: self.source.clone(),
            time: at(t),
            deployment: Some(self.deployment),
            data,
        }
    }

    pub fn register(
        &mut self,
        t: i64,
        uuid: &str,
        assembly: &str,
        provided: &[&str],
        services: Vec<ServiceConfig>,
    ) -> Event {
        self.event(
            t,
            EventData::InstanceRegistered(InstanceRegistration {
                deployment_name: name("blog"),
                instance: instance(uuid),
                assembly: name(assembly),
                provided_parameters: provided.iter().map(|p| name(p)).collect(),
                services,
            }),
        )
    }

    pub fn register_deployment(&mut self, t: i64, instances: &[&str]) -> Event {
        self.event(
            t,
            EventData::DeploymentRegistered {
                name: name("blog"),
                instances: instances.iter().map(|i| instance(i)).collect(),
            },
        )
    }

    pub fn contacted(&mut self, t: i64, uuid: &str) -> Event {
        self.event(
            t,
            EventData::InstanceContacted {
                instance: instance(uuid),
                request: Some("GET /configs".into()),
            },
        )
    }

    pub fn started(&mut self, t: i64, uuid: &str, service: &str) -> Event {
        self.event(
            t,
            EventData::ConfigurationStarted {
                instance: instance(uuid),
                service: name(service),
            },
        )
    }

    pub fn ended(&mut self, t: i64, uuid: &str, service: &str, code: i32) -> Event {
        self.event(
            t,
            EventData::ConfigurationEnded {
                instance: instance(uuid),
                service: name(service),
                return_code: code,
            },
        )
    }

    pub fn provided(&mut self, t: i64, uuid: &str, parameters: &[&str]) -> Event {
        self.event(
            t,
            EventData::ParametersProvided {
                instance: instance(uuid),
                parameters: parameters.iter().map(|p| name(p)).collect(),
            },
        )
    }

    pub fn deleted(&mut self, t: i64) -> Event {
        self.event(t, EventData::DeploymentDeleted)
    }
}

pub fn service(service_name: &str, parameters: Vec<Parameter>) -> ServiceConfig {
    ServiceConfig {
        name: name(service_name),
        parameters,
    }
}
pub fn static_param(n: &str) -> Parameter {
    Parameter {
        name: name(n),
        source: ParameterSource::Static,
    }
}
pub fn param_ref(n: &str, source: &str, parameter: &str) -> Parameter {
    Parameter {
        name: name(n),
        source: ParameterSource::ProvidedParameter {
            instance: instance(source),
            parameter: name(parameter),
        },
    }
}
pub fn service_ref(n: &str, source: &str, service: &str) -> Parameter {
    Parameter {
        name: name(n),
        source: ParameterSource::ServiceReturnCode {
            instance: instance(source),
            service: name(service),
        },
    }
}

/// Recounts everything from the rows, the slow way, to check the counts
/// the projection keeps incrementally.
pub fn recount(views: &MemoryViews) -> Counts {
    let mut counts = Counts::default();
    for d in views.deployments.values().filter(|d| d.deleted.is_none()) {
        counts.deployments.add(d.status(), 1);
    }
    for state in views.instances.values() {
        counts.instances.add(state.instance.status, 1);
        for s in state.services.values().filter(|s| s.is_configured()) {
            counts.services.add(s.status(), 1);
        }
    }
    for state in views.instances.values() {
        for s in state.services.values() {
            for p in s.parameters.iter().flatten() {
                if let Some((source, awaited)) = p.source.reference() {
                    let provided = views
                        .instances
                        .get(&source)
                        .is_some_and(|src| src.instance.has_provided(&awaited));
                    counts.unresolved_dependencies += i64::from(!provided);
                }
            }
        }
    }
    counts
}

pub fn status_counts(success: i64, incomplete: i64, error: i64) -> StatusCounts {
    StatusCounts {
        success,
        incomplete,
        error,
    }
}
