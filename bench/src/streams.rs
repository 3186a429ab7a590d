//! The event streams the benchmarks publish or apply: realistic deployments
//! (several instances and services, dependencies between them, failures,
//! retries, agents that give up, re-registrations) from a few config
//! servers, built with `audrey_core::scenario` so they are the same for a
//! seed on every run.

use std::collections::HashSet;

use audrey_core::contract::EventType;
use audrey_core::scenario::{ConfigServerScript, Rng, Shape};
use audrey_core::{DeploymentId, Event, InstanceId, Timestamp};

/// Config servers publishing the streams.
const SOURCES: usize = 4;

/// Makes deployments one after another, each starting `spacing` seconds
/// after the previous one, from several config servers.
pub struct DeploymentMaker {
    servers: Vec<ConfigServerScript>,
    rng: Rng,
    next_start: Timestamp,
    spacing: f64,
    made: usize,
    /// `None`: a shape drawn for each deployment (2-8 instances, 1-4
    /// services each); `Some`: this shape for all.
    fixed: Option<Shape>,
}

impl DeploymentMaker {
    pub fn new(seed: u64, start: Timestamp, spacing: f64, fixed: Option<Shape>) -> Self {
        Self {
            servers: (0..SOURCES)
                .map(|i| {
                    ConfigServerScript::new(
                        &format!("/configserver/bench-{:02}", i + 1),
                        seed.wrapping_mul(31).wrapping_add(i as u64),
                    )
                })
                .collect(),
            rng: Rng::new(seed ^ 0x5eed),
            next_start: start,
            spacing,
            made: 0,
            fixed,
        }
    }

    /// The whole life of the next deployment, in time order.
    pub fn next_deployment(&mut self) -> Vec<Event> {
        let shape = match &self.fixed {
            Some(shape) => shape.clone(),
            None => Shape {
                instances: 2 + self.rng.below(7) as usize,
                services_per_instance: 1 + self.rng.below(4) as usize,
                failure_rate: 0.15,
                ..Shape::default()
            },
        };
        let server = self.made % self.servers.len();
        let events = self.servers[server].deployment(self.next_start, &shape);
        self.made += 1;
        self.next_start = self.next_start.plus_seconds(self.spacing);
        events
    }

    /// Conductor deletes a deployment, from the config server that saw it.
    pub fn delete(&mut self, time: Timestamp, deployment: DeploymentId) -> Event {
        let server = self.rng.below(self.servers.len() as u64) as usize;
        self.servers[server].delete(time, deployment)
    }

    /// Heartbeats of every config server over `[start, end]`.
    pub fn heartbeats(&mut self, start: Timestamp, end: Timestamp) -> Vec<Event> {
        self.servers
            .iter_mut()
            .flat_map(|s| s.heartbeats(start, end, 30))
            .collect()
    }
}

/// Exactly `count` realistic events: many deployments in flight at once
/// (one starts every `spacing` seconds and each takes a minute or two),
/// heartbeats, and, when `deletes`, 2 % of the deployments deleted a
/// minute after they end. In time order.
pub fn realistic(seed: u64, count: usize, start: Timestamp, deletes: bool) -> Vec<Event> {
    let mut maker = DeploymentMaker::new(seed, start, 0.25, None);
    let mut rng = Rng::new(seed ^ 0xde1e7e);
    let mut events = Vec::with_capacity(count + count / 10);
    let mut last = start;
    while events.len() < count + count / 20 {
        let deployment = maker.next_deployment();
        let end = deployment.last().map_or(start, |e| e.time());
        let id = deployment.first().and_then(|e| e.deployment());
        events.extend(deployment);
        if let (true, Some(id)) = (deletes && rng.chance(0.02), id) {
            events.push(maker.delete(end.plus_seconds(60.0), id));
        }
        last = last.max(end);
    }
    events.extend(maker.heartbeats(start, last));
    events.sort_by_key(|e| e.time());
    events.truncate(count);
    events
}

/// The instances the events register (or otherwise name).
pub fn instances(events: &[Event]) -> HashSet<InstanceId> {
    events.iter().filter_map(Event::instance).collect()
}

/// The deployments the events name.
pub fn deployments(events: &[Event]) -> HashSet<DeploymentId> {
    events.iter().filter_map(Event::deployment).collect()
}

/// Whether the event changes what an instance report shows in a way a
/// poller can recognise (see `freshness`).
pub fn observable(event: &Event) -> bool {
    matches!(
        event.event_type(),
        EventType::InstanceContacted | EventType::ConfigurationEnded
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn realistic_streams_have_the_size_asked_and_are_in_order() {
        let start = Timestamp::from_unix_seconds(1_800_000_000);
        let events = realistic(1, 5_000, start, true);
        assert_eq!(events.len(), 5_000);
        assert!(events.windows(2).all(|w| w[0].time() <= w[1].time()));
        assert!(deployments(&events).len() > 50);
        assert_eq!(realistic(1, 5_000, start, true), events);
    }
}
