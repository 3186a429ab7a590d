//! The traits the projection and the queries run on: reading and writing
//! view rows. The in-memory map ([`crate::memory`]) and the RocksDB store
//! (crate `audrey-store`) implement them; each names its own error, so
//! nothing here knows what a backend can fail with.

use crate::contract::Awaited;
use crate::domain::{DeploymentId, InstanceId, Status, Timestamp};
use crate::rows::{ConfigServer, Counts, Deployment, Instance, InstanceState};

/// Reading view rows.
pub trait ViewRead {
    /// What a read can fail with (nothing, for plain memory).
    type Error;

    fn deployment(&self, id: DeploymentId) -> Result<Option<Deployment>, Self::Error>;
    fn instance(&self, id: InstanceId) -> Result<Option<InstanceState>, Self::Error>;
    /// The instance row alone, without its services (what a reference's
    /// source needs); stores may answer it more cheaply.
    fn instance_row(&self, id: InstanceId) -> Result<Option<Instance>, Self::Error> {
        Ok(self.instance(id)?.map(|s| s.instance))
    }
    /// Whether `source` is known, without reading its row, to have
    /// provided `awaited`: a store may remember it from its earlier reads
    /// (what an instance has provided stays provided while the instance
    /// and its owner stay). `false`: not known, read the row.
    fn remembered_provided(&self, _source: InstanceId, _awaited: &Awaited) -> bool {
        false
    }
    /// Several instances, in the order asked, leaving out those not known;
    /// stores may read them in one go.
    fn instances(&self, ids: &[InstanceId]) -> Result<Vec<InstanceState>, Self::Error> {
        let mut states = Vec::with_capacity(ids.len());
        for id in ids {
            states.extend(self.instance(*id)?);
        }
        Ok(states)
    }
    /// Every instance a deployment claims (known from any event of it,
    /// owned or not: see `InstanceState::other_claims`), in uuid order.
    fn deployment_instances(&self, id: DeploymentId) -> Result<Vec<InstanceId>, Self::Error>;
    fn config_server(&self, source: &str) -> Result<Option<ConfigServer>, Self::Error>;
    fn config_servers(&self) -> Result<Vec<ConfigServer>, Self::Error>;
    fn counts(&self) -> Result<Counts, Self::Error>;
}

/// Writing view rows. Writes must be visible to later reads through the
/// same value (the store batches them).
pub trait ViewWrite: ViewRead {
    fn put_deployment(&mut self, row: Deployment) -> Result<(), Self::Error>;
    /// A deployment row to change and then
    /// [`put_deployment`](Self::put_deployment) back: a store may hand over
    /// its own copy instead of a clone, so the caller must put it back even
    /// when it changed nothing.
    fn take_deployment(&mut self, id: DeploymentId) -> Result<Option<Deployment>, Self::Error> {
        self.deployment(id)
    }
    fn put_instance(&mut self, state: InstanceState) -> Result<(), Self::Error>;
    /// An instance to change and then [`put_instance`](Self::put_instance)
    /// back: a store may hand over its own copy instead of a clone, so the
    /// caller must put it back even when it changed nothing.
    fn take_instance(&mut self, id: InstanceId) -> Result<Option<InstanceState>, Self::Error> {
        self.instance(id)
    }
    /// Puts back an instance taken with
    /// [`take_instance`](Self::take_instance) that differs from what was
    /// taken only in its progress (see `InstanceState::without_progress`):
    /// a store may then write the progress alone, without encoding the
    /// rest. Anything else goes back through
    /// [`put_instance`](Self::put_instance).
    fn put_instance_progress(&mut self, state: InstanceState) -> Result<(), Self::Error> {
        self.put_instance(state)
    }
    fn delete_instance(&mut self, id: InstanceId) -> Result<(), Self::Error>;
    fn put_config_server(&mut self, row: ConfigServer) -> Result<(), Self::Error>;
    fn put_counts(&mut self, counts: Counts) -> Result<(), Self::Error>;
}

/// Listing deployments by status: an index in the store, a filter in memory.
pub trait ListDeployments: ViewRead {
    /// Visits the deployments (never deleted ones) with `status`, or all,
    /// in uuid order, with their last progress; stops when `visit` says so.
    fn deployments_with_status(
        &self,
        status: Option<Status>,
        visit: &mut dyn FnMut(DeploymentId, Option<Timestamp>) -> Result<bool, Self::Error>,
    ) -> Result<(), Self::Error>;
}
