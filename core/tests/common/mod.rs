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

/// What must hold of any views, whatever events made them: an instance's
/// claims are one per deployment, the owner's among them; a claim that
/// does not own the instance holds facts of its own; nothing belongs to a
/// deleted deployment.
pub fn assert_well_formed(views: &MemoryViews) {
    for (id, state) in &views.instances {
        let claims: Vec<_> = state.claim_deployments().collect();
        let mut unique = claims.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(
            unique.len(),
            claims.len(),
            "{id}: a deployment claims it twice"
        );
        assert!(
            state
                .other_claims
                .windows(2)
                .all(|w| w[0].instance.deployment < w[1].instance.deployment),
            "{id}: other claims out of order"
        );
        assert!(
            state.other_claims.iter().all(|c| c.has_facts()),
            "{id}: an empty claim"
        );
        for deployment in claims {
            assert!(
                views
                    .deployments
                    .get(&deployment)
                    .is_none_or(|d| d.deleted.is_none()),
                "{id}: claimed by deleted deployment {deployment}"
            );
        }
    }
    for d in views.deployments.values().filter(|d| d.deleted.is_some()) {
        assert_eq!(
            d.tally,
            Default::default(),
            "deleted {} keeps a tally",
            d.uuid
        );
    }
}

pub fn status_counts(success: i64, incomplete: i64, error: i64) -> StatusCounts {
    StatusCounts {
        success,
        incomplete,
        error,
    }
}
