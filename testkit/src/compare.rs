//! A store's reports against those the pure projection builds from the
//! same events: the check behind every "nothing lost, nothing counted
//! twice" test.

use audrey_core::domain::{Status, Timestamp};
use audrey_core::memory::MemoryViews;
use audrey_core::query::{self, DeploymentFilter, ReportContext};
use audrey_core::views::ViewRead;
use audrey_store::Store;

/// Every report the store serves at `now` equals the one built in memory:
/// counts, every deployment and instance report, every list, config
/// servers; and every instance row equals the one built in memory.
pub fn assert_store_matches(store: &Store, expected: &MemoryViews, now: Timestamp) {
    let reader = store.reader();
    let ctx = ReportContext::at(now);
    let Ok(expected_counts) = query::counts(expected);
    assert_eq!(query::counts(&reader).unwrap(), expected_counts, "counts");
    for id in expected.deployments.keys() {
        let Ok(report) = query::deployment_report(expected, *id, &ctx);
        assert_eq!(
            query::deployment_report(&reader, *id, &ctx).unwrap(),
            report,
            "deployment {id}"
        );
    }
    // Row by row too: what no report shows (the references waiting on an
    // instance, other deployments' claims, when each parameter was
    // provided) is what later events build on.
    for (id, state) in &expected.instances {
        assert_eq!(
            reader.instance(*id).unwrap().as_ref(),
            Some(state),
            "instance row {id}"
        );
    }
    for id in expected.instances.keys() {
        let Ok(report) = query::instance_report(expected, *id, &ctx);
        assert_eq!(
            query::instance_report(&reader, *id, &ctx).unwrap(),
            report,
            "instance {id}"
        );
    }
    for filter in [
        DeploymentFilter::All,
        DeploymentFilter::Stalled,
        DeploymentFilter::Status(Status::Incomplete),
        DeploymentFilter::Status(Status::Error),
        DeploymentFilter::Status(Status::Success),
    ] {
        let Ok(page) = query::deployment_page(expected, filter, 0, 1000, &ctx);
        assert_eq!(
            query::deployment_page(&reader, filter, 0, 1000, &ctx).unwrap(),
            page,
            "{filter:?}"
        );
    }
    let Ok(servers) = query::config_servers(expected, &ctx);
    assert_eq!(query::config_servers(&reader, &ctx).unwrap(), servers);
}
