//! Builders for the events of the named scenarios.
#![allow(dead_code)]

use audrey_core::memory::MemoryViews;
use audrey_core::rows::{Counts, StatusCounts};
#[allow(unused_imports)]
pub use audrey_core::scenario::script::*;

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
