//! Realistic event streams: what config servers publish while a deployment
//! boots. Conductor registers the instances and the deployment; each agent
//! contacts, reports its provided parameters, polls while its services
//! wait on other instances (wordpress waits for mysql's `ipaddress`), runs
//! its services (some fail, some are retried) or gives up.

use super::rng::Rng;
use crate::contract::{
    DeploymentEvent, Event, EventData, Heartbeat, InstanceRegistration, Parameter, ParameterSource,
    ServiceConfig,
};
use crate::domain::{DeploymentId, EventId, InstanceId, Name, Source, Timestamp};

/// The shape of the deployments to generate.
#[derive(Debug, Clone)]
pub struct Shape {
    pub instances: usize,
    pub services_per_instance: usize,
    /// Probability that a service run fails (non-zero return code).
    pub failure_rate: f64,
    /// Probability that a failed service is retried (a new run).
    pub retry_rate: f64,
    /// Probability that an instance's agent gives up before its services
    /// (the instance stays incomplete: a stalled deployment).
    pub give_up_rate: f64,
    /// Probability that Conductor re-posts an instance-config.
    pub reregister_rate: f64,
}

impl Shape {
    /// A deployment of the default size (three instances of two services)
    /// in which nothing goes wrong: every service runs once and succeeds.
    pub fn succeeding() -> Self {
        Self {
            failure_rate: 0.0,
            retry_rate: 0.0,
            give_up_rate: 0.0,
            reregister_rate: 0.0,
            ..Self::default()
        }
    }

    /// The same deployment with every agent giving up before its services
    /// run: it stays incomplete, a stall.
    pub fn stalling() -> Self {
        Self {
            give_up_rate: 1.0,
            ..Self::succeeding()
        }
    }
}

impl Default for Shape {
    fn default() -> Self {
        Self {
            instances: 3,
            services_per_instance: 2,
            failure_rate: 0.1,
            retry_rate: 0.5,
            give_up_rate: 0.05,
            reregister_rate: 0.05,
        }
    }
}

const ASSEMBLIES: [&str; 6] = [
    "mysql",
    "wordpress",
    "haproxy",
    "memcached",
    "postfix",
    "jboss",
];
const PROVIDED: [&str; 2] = ["ipaddress", "hostname"];

/// Publishes events as one config server, with fresh ids.
#[derive(Debug, Clone)]
pub struct ConfigServerScript {
    /// The config server's CloudEvents `source`.
    pub source: Source,
    /// Ids, UUIDs and every random choice come from here.
    rng: Rng,
}

impl ConfigServerScript {
    /// A config server named `source` (a valid CloudEvents source).
    pub fn new(source: &str, seed: u64) -> Self {
        Self {
            source: Source::parse(source).expect("a valid source"),
            rng: Rng::new(seed),
        }
    }

    /// A fresh event id.
    fn next_id(&mut self) -> EventId {
        EventId::parse(&self.rng.uuid().to_string()).expect("a UUID is a valid event id")
    }

    /// An event of `deployment` observed at `time`.
    pub fn event(&mut self, time: Timestamp, deployment: DeploymentId, data: EventData) -> Event {
        Event::Deployment(DeploymentEvent {
            id: self.next_id(),
            source: self.source.clone(),
            time,
            deployment,
            data,
        })
    }

    /// One heartbeat at `time`, promising the next within `interval_seconds`.
    pub fn heartbeat(&mut self, time: Timestamp, interval_seconds: u32) -> Event {
        Event::Heartbeat(Heartbeat {
            id: self.next_id(),
            source: self.source.clone(),
            time,
            version: "0.4.2".into(),
            interval_seconds,
        })
    }

    /// Heartbeats every `interval_seconds` from `start` to `end`.
    pub fn heartbeats(
        &mut self,
        start: Timestamp,
        end: Timestamp,
        interval_seconds: u32,
    ) -> Vec<Event> {
        let mut out = Vec::new();
        let mut t = start;
        while t <= end {
            out.push(self.heartbeat(t, interval_seconds));
            t = t.plus_seconds(f64::from(interval_seconds));
        }
        out
    }

    /// The whole life of one deployment of `shape`, starting at `start`,
    /// in the order the config server observed it (sorted by time).
    pub fn deployment(&mut self, start: Timestamp, shape: &Shape) -> Vec<Event> {
        let rng = &mut self.rng;
        let deployment = DeploymentId::from_uuid(rng.uuid());
        let name = Name::parse(&format!("deployment-{}", rng.below(100_000))).expect("valid");
        let instances: Vec<InstanceId> = (0..shape.instances.max(1))
            .map(|_| InstanceId::from_uuid(rng.uuid()))
            .collect();
        let name_of = |s: &str| Name::parse(s).expect("valid name");

        // Plan the configs: services reference earlier instances (so there
        // is always an order in which everything can finish).
        let mut configs = Vec::new();
        for (i, uuid) in instances.iter().enumerate() {
            let assembly = ASSEMBLIES[i % ASSEMBLIES.len()];
            let mut services = Vec::new();
            for s in 0..shape.services_per_instance {
                let mut parameters = vec![Parameter {
                    name: name_of("port"),
                    source: ParameterSource::Static,
                }];
                if i > 0 {
                    let source = instances[rng.below(i as u64) as usize];
                    parameters.push(Parameter {
                        name: name_of(&format!("peer_ip_{s}")),
                        source: ParameterSource::ProvidedParameter {
                            instance: source,
                            parameter: name_of("ipaddress"),
                        },
                    });
                    if shape.services_per_instance > 0 && rng.chance(0.3) {
                        parameters.push(Parameter {
                            name: name_of(&format!("peer_ready_{s}")),
                            source: ParameterSource::ServiceReturnCode {
                                instance: source,
                                service: name_of(&format!("{}-0", ASSEMBLIES[0])),
                            },
                        });
                    }
                }
                services.push(ServiceConfig {
                    name: name_of(&format!("{assembly}-{s}")),
                    parameters,
                });
            }
            configs.push(InstanceRegistration {
                deployment_name: name.clone(),
                instance: *uuid,
                assembly: name_of(assembly),
                provided_parameters: PROVIDED.iter().map(|p| name_of(p)).collect(),
                services,
            });
        }
        // Service references point at "mysql-0" of the source: only keep
        // those whose source really has that service.
        let has_first: Vec<bool> = configs
            .iter()
            .map(|c| c.services.iter().any(|s| s.name.as_str() == "mysql-0"))
            .collect();
        for config in &mut configs {
            for service in &mut config.services {
                service.parameters.retain(|p| match &p.source {
                    ParameterSource::ServiceReturnCode { instance, .. } => {
                        let index = instances.iter().position(|i| i == instance).unwrap_or(0);
                        has_first[index]
                    }
                    _ => true,
                });
            }
        }

        let mut events: Vec<(Timestamp, DeploymentId, EventData)> = Vec::new();
        let d = deployment;
        let ms = |t: Timestamp, n: u64| t.plus_seconds(n as f64 / 1000.0);
        for (i, config) in configs.iter().enumerate() {
            events.push((
                ms(start, 10 * i as u64),
                d,
                EventData::InstanceRegistered(config.clone()),
            ));
            if rng.chance(shape.reregister_rate) {
                events.push((
                    ms(start, 10 * i as u64 + 5),
                    d,
                    EventData::InstanceRegistered(config.clone()),
                ));
            }
        }
        events.push((
            ms(start, 10 * instances.len() as u64 + 5),
            d,
            EventData::DeploymentRegistered {
                name: name.clone(),
                instances: instances.clone(),
            },
        ));

        // Agents, in instance order (sources before their waiters).
        let mut provided_at: Vec<Timestamp> = Vec::new();
        let mut first_service_end: Vec<Option<Timestamp>> = Vec::new();
        for config in &configs {
            let instance = config.instance;
            let boot = ms(start, 20_000 + rng.below(40_000));
            let contact = |request: &str| EventData::InstanceContacted {
                instance,
                request: Some(request.into()),
            };
            events.push((boot, d, contact("GET /configs")));
            let provide = ms(boot, 500 + rng.below(1_000));
            events.push((
                provide,
                d,
                EventData::ParametersProvided {
                    instance,
                    parameters: config.provided_parameters.clone(),
                },
            ));
            provided_at.push(provide);
            if rng.chance(shape.give_up_rate) {
                // Polls five times without progress, then exits for good.
                for round in 1..=5 {
                    events.push((ms(provide, 10_000 * round), d, contact("GET /configs")));
                }
                first_service_end.push(None);
                continue;
            }
            let mut clock = provide;
            let mut first_end = None;
            for service in &config.services {
                // Wait for every source, polling every 10 s.
                let mut ready = clock;
                for p in &service.parameters {
                    let index = |u: &InstanceId| instances.iter().position(|x| x == u).unwrap_or(0);
                    match &p.source {
                        ParameterSource::ProvidedParameter { instance, .. } => {
                            ready = ready.max(provided_at[index(instance)]);
                        }
                        ParameterSource::ServiceReturnCode { instance, .. } => {
                            if let Some(end) = first_service_end[index(instance)] {
                                ready = ready.max(end);
                            }
                        }
                        ParameterSource::Static => {}
                    }
                }
                while clock < ready {
                    clock = ms(clock, 10_000);
                    events.push((clock, d, contact("GET /params")));
                }
                let mut attempt_start = ms(clock, 200);
                loop {
                    events.push((
                        attempt_start,
                        d,
                        EventData::ConfigurationStarted {
                            instance,
                            service: service.name.clone(),
                        },
                    ));
                    let end = ms(attempt_start, 1_000 + rng.below(20_000));
                    let failed = rng.chance(shape.failure_rate);
                    events.push((
                        end,
                        d,
                        EventData::ConfigurationEnded {
                            instance,
                            service: service.name.clone(),
                            return_code: if failed { 1 + rng.below(126) as i32 } else { 0 },
                        },
                    ));
                    first_end.get_or_insert(end);
                    clock = end;
                    if !(failed && rng.chance(shape.retry_rate)) {
                        break;
                    }
                    attempt_start = ms(end, 5_000);
                }
            }
            first_service_end.push(first_end.or(Some(clock)));
        }
        events.sort_by_key(|(t, _, _)| *t);
        events
            .into_iter()
            .map(|(time, deployment, data)| self.event(time, deployment, data))
            .collect()
    }

    /// Conductor deletes a deployment.
    pub fn delete(&mut self, time: Timestamp, deployment: DeploymentId) -> Event {
        self.event(time, deployment, EventData::DeploymentDeleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_stream() {
        let start = Timestamp::from_unix_seconds(1_800_000_000);
        let a = ConfigServerScript::new("/cs", 7).deployment(start, &Shape::default());
        let b = ConfigServerScript::new("/cs", 7).deployment(start, &Shape::default());
        assert_eq!(a, b);
        let c = ConfigServerScript::new("/cs", 8).deployment(start, &Shape::default());
        assert_ne!(a, c);
    }

    #[test]
    fn streams_are_in_time_order_and_decode() {
        let start = Timestamp::from_unix_seconds(1_800_000_000);
        let shape = Shape {
            instances: 5,
            services_per_instance: 3,
            ..Shape::default()
        };
        let events = ConfigServerScript::new("/cs", 1).deployment(start, &shape);
        assert!(events.windows(2).all(|w| w[0].time() <= w[1].time()));
        for e in &events {
            let decoded = Event::decode(&e.to_bytes(), 1 << 20).unwrap();
            assert_eq!(&decoded, e);
        }
    }
}
