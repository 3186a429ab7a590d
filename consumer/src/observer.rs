//! What the consume loop tells the rest of the service.

use std::time::Duration;

/// One batch made durable.
#[derive(Debug, Clone, Default)]
pub struct AppliedBatch {
    /// The type of each new event.
    pub applied_types: Vec<audrey_core::EventType>,
    /// Redelivered or re-published events that changed nothing.
    pub duplicates: usize,
    /// How long the synced write of the batch took.
    pub apply_duration: Duration,
    /// For each new event: seconds from its `time` to now (0 when a config
    /// server's clock runs ahead).
    pub lags_seconds: Vec<f64>,
    /// What the batch completed: deployments, instances and service runs
    /// with their durations (the histograms count them).
    pub completions: Vec<audrey_core::projection::Completion>,
}

/// Receives the loop's reports. Implementations must be cheap: they run on
/// the consume path.
pub trait Observer: Send + Sync {
    fn connected(&self, connected: bool);
    fn batch_applied(&self, batch: &AppliedBatch);
    /// An invalid message sent to the dead-letter queue, by this service.
    fn dead_lettered(&self, reason: &'static str);
    /// An invalid message on a replica's own queue: counted, not
    /// dead-lettered (the screening replica does that, once).
    fn refused(&self, reason: &'static str);
    /// Every event published before barrier `id` is in the store.
    fn barrier_passed(&self, id: &str);
    /// Messages waiting in the service's queue, as the broker counts them.
    fn waiting(&self, messages: u32);
}

/// An observer that ignores everything (tools, tests).
pub struct Unobserved;

impl Observer for Unobserved {
    fn connected(&self, _: bool) {}
    fn batch_applied(&self, _: &AppliedBatch) {}
    fn dead_lettered(&self, _: &'static str) {}
    fn refused(&self, _: &'static str) {}
    fn barrier_passed(&self, _: &str) {}
    fn waiting(&self, _: u32) {}
}
