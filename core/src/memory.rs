//! Views held in plain maps: the projection's reference implementation of
//! [`ViewRead`]/[`ViewWrite`] (it cannot fail), used by the tests (no RocksDB needed) and to
//! compare against what the store built.

use std::collections::BTreeMap;

use std::convert::Infallible;

use crate::contract::Event;
use crate::domain::{DeploymentId, InstanceId, Source, Status, Timestamp};
use crate::projection::{self, Effect};
use crate::rows::{ConfigServer, Counts, Deployment, InstanceState};
use crate::views::{ListDeployments, ViewRead, ViewWrite};

/// Every view row, in memory. Two of these are equal exactly when the views
/// are equal, field for field.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryViews {
    pub deployments: BTreeMap<DeploymentId, Deployment>,
    pub instances: BTreeMap<InstanceId, InstanceState>,
    pub config_servers: BTreeMap<Source, ConfigServer>,
    pub counts: Counts,
}

impl MemoryViews {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one event (no dedup here: the projection is idempotent).
    pub fn apply(&mut self, event: &Event) -> Effect {
        match projection::apply(self, event) {
            Ok(effect) => effect,
            Err(never) => match never {},
        }
    }

    /// Applies events in the order given.
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a Event>) -> Self {
        let mut views = Self::new();
        for event in events {
            views.apply(event);
        }
        views
    }
}

impl ViewRead for MemoryViews {
    type Error = Infallible;

    fn deployment(&self, id: DeploymentId) -> Result<Option<Deployment>, Infallible> {
        Ok(self.deployments.get(&id).cloned())
    }

    fn instance(&self, id: InstanceId) -> Result<Option<InstanceState>, Infallible> {
        Ok(self.instances.get(&id).cloned())
    }

    fn deployment_instances(&self, id: DeploymentId) -> Result<Vec<InstanceId>, Infallible> {
        Ok(self
            .instances
            .values()
            .filter(|s| s.claim(id).is_some())
            .map(|s| s.instance.uuid)
            .collect())
    }

    fn config_server(&self, source: &str) -> Result<Option<ConfigServer>, Infallible> {
        Ok(self.config_servers.get(source).cloned())
    }

    fn config_servers(&self) -> Result<Vec<ConfigServer>, Infallible> {
        Ok(self.config_servers.values().cloned().collect())
    }

    fn counts(&self) -> Result<Counts, Infallible> {
        Ok(self.counts)
    }
}

impl ViewWrite for MemoryViews {
    fn put_deployment(&mut self, row: Deployment) -> Result<(), Infallible> {
        self.deployments.insert(row.uuid, row);
        Ok(())
    }

    fn put_instance(&mut self, state: InstanceState) -> Result<(), Infallible> {
        self.instances.insert(state.instance.uuid, state);
        Ok(())
    }

    fn delete_instance(&mut self, id: InstanceId) -> Result<(), Infallible> {
        self.instances.remove(&id);
        Ok(())
    }

    fn put_config_server(&mut self, row: ConfigServer) -> Result<(), Infallible> {
        self.config_servers.insert(row.source.clone(), row);
        Ok(())
    }

    fn put_counts(&mut self, counts: Counts) -> Result<(), Infallible> {
        self.counts = counts;
        Ok(())
    }
}

impl ListDeployments for MemoryViews {
    fn deployments_with_status(
        &self,
        status: Option<Status>,
        visit: &mut dyn FnMut(DeploymentId, Option<Timestamp>) -> Result<bool, Infallible>,
    ) -> Result<(), Infallible> {
        for row in self.deployments.values() {
            if row.deleted.is_none()
                && status.is_none_or(|s| s == row.status())
                && !visit(row.uuid, row.last_progress)?
            {
                break;
            }
        }
        Ok(())
    }
}
