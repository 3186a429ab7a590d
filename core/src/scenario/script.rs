//! Hand-written scenarios, event by event, in the words of the reports:
//! what the named tests (and the API's lifecycle test) are written with.
//! Times are seconds after 2026-11-25T14:00:00Z.

use crate::contract::{
    DeploymentEvent, Event, EventData, InstanceRegistration, Parameter, ParameterSource,
    ServiceConfig,
};
use crate::domain::{DeploymentId, EventId, InstanceId, Name, Source, Timestamp};

/// An instance UUID written in a test.
pub fn instance(s: &str) -> InstanceId {
    InstanceId::parse(s).expect("an instance UUID")
}

/// A deployment UUID written in a test.
pub fn deployment(s: &str) -> DeploymentId {
    DeploymentId::parse(s).expect("a deployment UUID")
}

/// A name written in a test.
pub fn name(s: &str) -> Name {
    Name::parse(s).expect("a valid name")
}

/// The wordpress + mysql deployment of the original Audrey.
pub const BLOG: &str = "3c9e8f2a-5b1d-4c7e-9f10-2a6b8d4e1c53";
pub const MYSQL: &str = "0b6a4d1e-7c2f-4a8b-9e3d-5f1a2b3c4d5e";
pub const WORDPRESS: &str = "9d8c7b6a-5e4f-4a3b-8c2d-1e0f9a8b7c6d";

/// The original's example, registered: mysql provides `ipaddress` and
/// `hostname`; wordpress's service waits for mysql's `ipaddress` and for
/// its `mysql` service to end.
pub fn blog_registered(cs: &mut DeploymentScript) -> Vec<Event> {
    vec![
        cs.register(
            0,
            MYSQL,
            "mysql",
            &["ipaddress", "hostname"],
            vec![service("mysql", vec![static_param("root_pw")])],
        ),
        cs.register(
            1,
            WORDPRESS,
            "wordpress",
            &[],
            vec![
                service("http", vec![]),
                service(
                    "wordpress",
                    vec![
                        param_ref("mysql_ip", MYSQL, "ipaddress"),
                        service_ref("mysql_done", MYSQL, "mysql"),
                    ],
                ),
            ],
        ),
        cs.register_deployment(2, &[MYSQL, WORDPRESS]),
    ]
}

/// The blog registered, mysql's service running since 31 s and
/// wordpress's `http` service run from 40 to 50 s: a deployment whose
/// duration runs, blocked on mysql's service, which has run longer than
/// any other run of the deployment from 41 s on.
pub fn blog_with_mysql_running(cs: &mut DeploymentScript) -> Vec<Event> {
    let mut events = blog_registered(cs);
    events.extend([
        cs.contacted(30, MYSQL),
        cs.started(31, MYSQL, "mysql"),
        cs.contacted(40, WORDPRESS),
        cs.started(40, WORDPRESS, "http"),
        cs.ended(50, WORDPRESS, "http", 0),
    ]);
    events
}

/// 2026-11-25T14:00:00Z plus `seconds`.
pub fn at(seconds: i64) -> Timestamp {
    Timestamp::from_unix_seconds(1_795_615_200 + seconds)
}

/// One config server publishing for one deployment, event by event, with
/// ids `event-1`, `event-2`, ...
pub struct DeploymentScript {
    /// The config server's CloudEvents `source`.
    pub source: Source,
    /// The deployment every event belongs to.
    pub deployment: DeploymentId,
    /// The number in the last event id handed out.
    last_id: u64,
}

impl DeploymentScript {
    pub fn new(deployment_uuid: &str) -> Self {
        Self {
            source: Source::parse("/configserver/cs-01").expect("a valid source"),
            deployment: deployment(deployment_uuid),
            last_id: 0,
        }
    }

    /// Another config server publishing for the same deployment.
    pub fn with_source(mut self, source: &str) -> Self {
        self.source = Source::parse(source).expect("a valid source");
        self
    }

    pub fn event(&mut self, t: i64, data: EventData) -> Event {
        self.last_id += 1;
        Event::Deployment(DeploymentEvent {
            id: EventId::parse(&format!("event-{}", self.last_id)).expect("a valid id"),
            source: self.source.clone(),
            time: at(t),
            deployment: self.deployment,
            data,
        })
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
