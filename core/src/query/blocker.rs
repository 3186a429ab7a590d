//! Why a deployment is not done: what it waits for at the root. The
//! unresolved dependencies are followed from the instance furthest
//! downstream, source by source, to an instance that waits for nothing
//! (the root), or back to one already seen (a cycle); the root's own state
//! says why it is not done.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};

use serde::Serialize;

use super::report::{Seconds, UnresolvedDependency};
use crate::domain::{InstanceId, Name, Status, Timestamp};
use crate::projection::seconds_between;
use crate::rows::{Instance, InstanceState, Service};

/// What an unfinished deployment waits for at the root.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BlockedOn {
    /// The instance at the root.
    pub instance: InstanceId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assembly: Option<Name>,
    pub reason: BlockReason,
    /// The service the reason is about, when it is about one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<Name>,
    /// For a failed service: its return code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub return_code: Option<i32>,
    /// For parameters not provided: the ones it was asked to provide and
    /// has not (empty when only others' references wait on it).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<Name>,
    /// When what the reason says began (a registration, a start, a failure).
    #[serde(
        serialize_with = "super::report::rfc3339",
        skip_serializing_if = "Option::is_none"
    )]
    pub since: Option<Timestamp>,
    /// When the root's agent last contacted its config server.
    #[serde(
        serialize_with = "super::report::rfc3339",
        skip_serializing_if = "Option::is_none"
    )]
    pub last_contacted: Option<Timestamp>,
    /// For a service running: the longest run of the deployment's other
    /// services that ended, in seconds; set when this one has run longer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slower_than_peers_seconds: Option<Seconds>,
    /// The waits that lead to the root, from the instance furthest
    /// downstream.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<WaitStep>,
    /// The instances of a dependency cycle, when the waits go round.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cycle: Vec<InstanceId>,
    /// One line a person reads.
    pub explanation: String,
}

/// The state it names, without what moves with the clock (the
/// explanation's "ago", whether a run is slower than its peers yet).
impl Hash for BlockedOn {
    fn hash<H: Hasher>(&self, h: &mut H) {
        let BlockedOn {
            instance,
            assembly,
            reason,
            service,
            return_code,
            parameters,
            since,
            last_contacted,
            slower_than_peers_seconds: _,
            chain,
            cycle,
            explanation: _,
        } = self;
        (instance, assembly, reason, service, since, last_contacted).hash(h);
        (return_code, parameters, chain, cycle).hash(h);
    }
}

/// One wait on the way to the root.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct WaitStep {
    /// The waiting instance, and what of it waits.
    pub instance: InstanceId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assembly: Option<Name>,
    pub service: Name,
    pub parameter: Name,
    /// The instance it waits for.
    pub waits_for: InstanceId,
}

/// Why the root is not done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BlockReason {
    /// A service failed: what waits on the instance will not resolve
    /// unless the service is run again.
    ServiceFailed,
    /// The instances wait for each other.
    Cycle,
    /// A service started and has not ended.
    ServiceRunning,
    /// Conductor never posted its config (expected, or referenced).
    NeverRegistered,
    /// Registered, but its agent never contacted the config server.
    NeverContacted,
    /// Contacted, but a configured service was never started.
    ServiceNotStarted,
    /// Its services are done, but it has not provided parameters that
    /// others wait for (or that it was asked to return).
    ParametersNotProvided,
}

impl BlockReason {
    pub fn as_str(self) -> &'static str {
        match self {
            BlockReason::ServiceFailed => "service-failed",
            BlockReason::Cycle => "cycle",
            BlockReason::ServiceRunning => "service-running",
            BlockReason::NeverRegistered => "never-registered",
            BlockReason::NeverContacted => "never-contacted",
            BlockReason::ServiceNotStarted => "service-not-started",
            BlockReason::ParametersNotProvided => "parameters-not-provided",
        }
    }
}

/// What is known of an instance the deployment waits on.
enum Known<'a> {
    /// One of the deployment's instances, with its services.
    Member(&'a InstanceState),
    /// An instance of another deployment (its row only).
    Elsewhere(&'a Instance),
    /// Nothing: never registered anywhere.
    Unknown,
}

/// What a deployment waits for at the root, as its rows say it: the
/// clock is read only by [`Blocker::at`], so that a blocker found once
/// serves every moment until the rows change.
#[derive(Debug, Clone)]
pub struct Blocker {
    /// The blocker with no explanation yet and no comparison with peers.
    block: BlockedOn,
    /// For a running service: the longest run of the deployment's other
    /// services that ended, which its run so far is compared with.
    peers_longest_run: Option<f64>,
}

impl Blocker {
    /// A blocker that compares nothing with peers.
    fn of(block: BlockedOn) -> Self {
        Blocker {
            block,
            peers_longest_run: None,
        }
    }

    /// The blocker as it reads at `now`: its "ago"s, and whether a running
    /// service has run longer than its peers by then.
    pub fn at(&self, now: Timestamp) -> BlockedOn {
        let mut block = self.block.clone();
        if let (Some(longest), Some(started)) = (self.peers_longest_run, block.since) {
            let running = seconds_between(started, now);
            block.slower_than_peers_seconds = (running > longest).then_some(Seconds(longest));
        }
        block.explanation = explain(&block, Some(now));
        block
    }

    /// When a running service's run becomes longer than its peers'
    /// longest: [`Blocker::at`] says it is slower from just after then.
    pub fn slower_than_peers_from(&self) -> Option<Timestamp> {
        Some(self.block.since?.plus_seconds(self.peers_longest_run?))
    }

    /// The longest ended run of its peers that a running service is
    /// compared with, if any.
    pub(crate) fn peers_longest_run(&self) -> Option<f64> {
        self.peers_longest_run
    }

    /// Heap and inline bytes it holds, roughly (a cache's budget).
    pub fn bytes(&self) -> usize {
        let b = &self.block;
        let name = |n: &Option<Name>| n.as_ref().map_or(0, |n| n.as_str().len());
        std::mem::size_of::<Self>()
            + name(&b.assembly)
            + name(&b.service)
            + b.parameters
                .iter()
                .map(|p| 24 + p.as_str().len())
                .sum::<usize>()
            + b.chain
                .iter()
                .map(|s| {
                    std::mem::size_of::<WaitStep>()
                        + name(&s.assembly)
                        + s.service.as_str().len()
                        + s.parameter.as_str().len()
                })
                .sum::<usize>()
            + b.cycle.len() * 16
    }
}

/// What the deployment of `members` waits for at the root, if it is not
/// done. `unresolved` are its unresolved dependencies; `sources` the rows
/// of the instances they wait on outside `members` (a member is looked up
/// in `members` first; absent from both: never seen).
pub fn blocker(
    members: &[InstanceState],
    unresolved: &[UnresolvedDependency],
    sources: &HashMap<InstanceId, Option<Instance>>,
    missing: &[InstanceId],
) -> Option<Blocker> {
    let by_id: HashMap<InstanceId, &InstanceState> =
        members.iter().map(|s| (s.instance.uuid, s)).collect();
    let known = |id: InstanceId| match by_id.get(&id) {
        Some(state) => Known::Member(state),
        None => match sources.get(&id) {
            Some(Some(row)) => Known::Elsewhere(row),
            _ => Known::Unknown,
        },
    };
    // Waits: each waiting instance to the first (by uuid) of its sources.
    let mut waits: BTreeMap<InstanceId, Vec<&UnresolvedDependency>> = BTreeMap::new();
    for dependency in unresolved {
        waits
            .entry(dependency.instance)
            .or_default()
            .push(dependency);
    }
    let unfinished = members
        .iter()
        .filter(|s| s.instance.status != Status::Success || s.instance.completed.is_none())
        .map(|s| s.instance.uuid);
    // A failed service blocks for good: it comes first.
    let failed = members.iter().find(|s| s.instance.status == Status::Error);
    let start = match failed {
        Some(state) => Some(state.instance.uuid),
        None => {
            // Furthest downstream: an unfinished instance nobody waits on,
            // preferring one that waits itself (the longest chain).
            let waited_on: std::collections::HashSet<InstanceId> =
                unresolved.iter().map(|d| d.source_instance).collect();
            let mut candidates: Vec<InstanceId> = unfinished
                .chain(missing.iter().copied())
                .filter(|id| !waited_on.contains(id))
                .collect();
            candidates.sort_by_key(|id| (!waits.contains_key(id), *id));
            candidates
                .first()
                .copied()
                .or_else(|| waits.keys().next().copied())
        }
    }?;
    let mut chain = Vec::new();
    let mut seen = vec![start];
    let mut at = start;
    while let Some(next) = waits.get(&at).and_then(|w| w.first()) {
        chain.push(WaitStep {
            instance: at,
            assembly: assembly(&known(at)),
            service: next.service.clone(),
            parameter: next.parameter.clone(),
            waits_for: next.source_instance,
        });
        at = next.source_instance;
        if let Some(from) = seen.iter().position(|id| *id == at) {
            let cycle: Vec<InstanceId> = seen[from..].to_vec();
            return Some(Blocker::of(cycle_block(cycle, chain)));
        }
        seen.push(at);
    }
    Some(root_block(at, chain, known(at), members))
}

impl BlockedOn {
    fn at(instance: InstanceId, assembly: Option<Name>, reason: BlockReason) -> Self {
        BlockedOn {
            instance,
            assembly,
            reason,
            service: None,
            return_code: None,
            parameters: Vec::new(),
            since: None,
            last_contacted: None,
            slower_than_peers_seconds: None,
            chain: Vec::new(),
            cycle: Vec::new(),
            explanation: String::new(),
        }
    }

    /// The explanation with timestamps instead of "ago": a text that stays
    /// the same while nothing changes (a metric label, an alert's text).
    pub fn summary(&self) -> String {
        explain(self, None)
    }
}

fn assembly(known: &Known<'_>) -> Option<Name> {
    let row = match *known {
        Known::Member(state) => &state.instance,
        Known::Elsewhere(row) => row,
        Known::Unknown => return None,
    };
    row.registration.as_ref().map(|r| r.assembly.clone())
}

/// `mysql (0b6a...)`, or the bare uuid when it has no assembly yet.
fn named(id: InstanceId, assembly: &Option<Name>) -> String {
    match assembly {
        Some(a) => format!("{a} ({id})"),
        None => id.to_string(),
    }
}

fn cycle_block(cycle: Vec<InstanceId>, chain: Vec<WaitStep>) -> BlockedOn {
    let first = chain
        .iter()
        .find(|s| cycle.contains(&s.instance))
        .expect("a cycle has a step");
    let mut block = BlockedOn::at(first.instance, first.assembly.clone(), BlockReason::Cycle);
    block.chain = chain;
    block.cycle = cycle;
    block
}

fn root_block(
    root: InstanceId,
    chain: Vec<WaitStep>,
    known: Known<'_>,
    members: &[InstanceState],
) -> Blocker {
    let mut block = BlockedOn::at(root, assembly(&known), BlockReason::NeverRegistered);
    block.chain = chain;
    let (row, services): (&Instance, Vec<&Service>) = match known {
        Known::Unknown => return Blocker::of(block),
        Known::Member(state) => (&state.instance, state.visible_services()),
        Known::Elsewhere(row) => (row, Vec::new()),
    };
    block.last_contacted = row.last_contacted;
    let Some(registration) = &row.registration else {
        return Blocker::of(block);
    };
    if row.first_contacted.is_none() {
        block.reason = BlockReason::NeverContacted;
        block.since = Some(registration.stamp.time);
        return Blocker::of(block);
    }
    if let Some((service, (end, code))) = services
        .iter()
        .find_map(|s| s.current_end().filter(|(_, c)| *c != 0).map(|e| (s, e)))
    {
        block.reason = BlockReason::ServiceFailed;
        block.service = Some(service.name.clone());
        block.since = Some(end.time);
        block.return_code = Some(code);
        return Blocker::of(block);
    }
    if let Some(service) = services
        .iter()
        .find(|s| s.started.is_some() && s.current_end().is_none())
    {
        let started = service.started.map(|s| s.time).expect("a started service");
        block.reason = BlockReason::ServiceRunning;
        block.service = Some(service.name.clone());
        block.since = Some(started);
        return Blocker {
            block,
            peers_longest_run: longest_ended_run(members),
        };
    }
    if let Some(service) = services
        .iter()
        .find(|s| s.started.is_none() && s.is_configured())
    {
        block.reason = BlockReason::ServiceNotStarted;
        block.service = Some(service.name.clone());
        block.since = row.first_contacted;
        return Blocker::of(block);
    }
    block.reason = BlockReason::ParametersNotProvided;
    block.parameters = row
        .pending_return_parameters()
        .into_iter()
        .cloned()
        .collect();
    Blocker::of(block)
}

/// The line a person reads. With `now`, times are said as "14 min ago";
/// without, as timestamps (a text that does not change as time passes).
fn explain(b: &BlockedOn, now: Option<Timestamp>) -> String {
    let when = |t: Timestamp| match now {
        Some(now) => ago(t, now),
        None => format!("at {}", t.to_rfc3339()),
    };
    let who = named(b.instance, &b.assembly);
    let service = b.service.as_ref().map_or("", Name::as_str);
    let since = b.since.map(when).unwrap_or_default();
    let contact = match b.last_contacted {
        Some(t) => format!("its agent last contacted {}", when(t)),
        None => "its agent never contacted".into(),
    };
    match b.reason {
        BlockReason::Cycle => {
            let names: Vec<String> = b
                .chain
                .iter()
                .filter(|s| b.cycle.contains(&s.instance))
                .map(|s| named(s.instance, &s.assembly))
                .collect();
            format!(
                "dependency cycle: {} wait for each other; none of them can finish",
                names.join(" -> ")
            )
        }
        BlockReason::NeverRegistered if b.last_contacted.is_none() => format!(
            "waiting for instance {who}: never registered (Conductor has not posted its config)"
        ),
        BlockReason::NeverRegistered => format!(
            "waiting for instance {who}: never registered (Conductor has not posted its config); {contact}"
        ),
        BlockReason::NeverContacted => format!(
            "waiting for instance {who}: registered {since}, its agent never contacted the config server"
        ),
        BlockReason::ServiceFailed => format!(
            "instance {who}: service {service} failed with return code {} {since}; what waits on it will not resolve unless it is run again; {contact}",
            b.return_code.unwrap_or_default()
        ),
        BlockReason::ServiceRunning => {
            let slower = match b.slower_than_peers_seconds {
                Some(longest) => format!(
                    " (longer than any other run of the deployment: the longest took {})",
                    span(longest.0)
                ),
                None => String::new(),
            };
            format!(
                "waiting for instance {who}: service {service} started {since}, never ended{slower}; {contact}"
            )
        }
        BlockReason::ServiceNotStarted => {
            format!("waiting for instance {who}: service {service} has not started; {contact}")
        }
        BlockReason::ParametersNotProvided if b.parameters.is_empty() => format!(
            "waiting for instance {who}: it has not provided what others wait for; {contact}"
        ),
        BlockReason::ParametersNotProvided => {
            let names: Vec<&str> = b.parameters.iter().map(Name::as_str).collect();
            format!(
                "waiting for instance {who}: it has not provided {}; {contact}",
                names.join(", ")
            )
        }
    }
}

/// The longest run that ended, among the deployment's services.
fn longest_ended_run(members: &[InstanceState]) -> Option<f64> {
    members
        .iter()
        .flat_map(|s| s.services.values())
        .filter_map(|s| {
            let (end, _) = s.current_end()?;
            let start = s.started?;
            Some(seconds_between(start.time, end.time))
        })
        .reduce(f64::max)
}

/// `14 min ago`, `3 h ago`, `42 s ago`, `just now`.
fn ago(t: Timestamp, now: Timestamp) -> String {
    ago_of_seconds(seconds_between(t, now))
}

fn ago_of_seconds(seconds: f64) -> String {
    if seconds < 1.0 {
        "just now".into()
    } else {
        format!("{} ago", span(seconds))
    }
}

/// The units a span of seconds is said in, smallest first: each is used
/// below the limit beside it, so `span` and `ago_reads_the_same_for` read
/// one table and cannot disagree on where the words change unit.
const SPAN_UNITS: [SpanUnit; 4] = [
    SpanUnit {
        seconds: 1.0,
        used_below: 90.0,
        suffix: "s",
    },
    SpanUnit {
        seconds: 60.0,
        used_below: 90.0 * 60.0,
        suffix: "min",
    },
    SpanUnit {
        seconds: 3600.0,
        used_below: 48.0 * 3600.0,
        suffix: "h",
    },
    SpanUnit {
        seconds: 86_400.0,
        used_below: f64::INFINITY,
        suffix: "d",
    },
];

/// One unit of `SPAN_UNITS`.
struct SpanUnit {
    /// How many seconds one of it is.
    seconds: f64,
    /// The span, in seconds, from which the next unit is used instead.
    used_below: f64,
    /// What follows the count: `42 s`, `14 min`.
    suffix: &'static str,
}

/// The unit a span of `seconds` (not negative) is said in. The last unit
/// has no limit; a NaN, below none, is said in it too.
fn span_unit(seconds: f64) -> &'static SpanUnit {
    SPAN_UNITS
        .iter()
        .find(|unit| seconds < unit.used_below)
        .unwrap_or(&SPAN_UNITS[SPAN_UNITS.len() - 1])
}

/// How many seconds from now "… ago" of something `elapsed` seconds back
/// reads as it does now, at least: it reads the same for any elapsed time
/// in `[elapsed, elapsed + returned)`. What a kept report's explanation
/// is good for; worked out instead of searched, since each try formats
/// the words (the search was 4 % of a deployment report's CPU,
/// BENCHMARKS.md).
pub fn ago_reads_the_same_for(elapsed: f64) -> f64 {
    if elapsed < 1.0 {
        return 1.0 - elapsed; // "just now"
    }
    let unit = span_unit(elapsed);
    // `{:.0}` rounds half to even: the count shown is `n` until the
    // elapsed time in units passes `n + 0.5` (or reaches it, for odd `n`).
    let shown = (elapsed / unit.seconds).round_ties_even();
    ((shown + 0.5) * unit.seconds).min(unit.used_below) - elapsed
}

/// A span of seconds as people say it: `42 s`, `14 min`, `3 h`, `2 d`.
pub fn span(seconds: f64) -> String {
    let s = seconds.max(0.0);
    let unit = span_unit(s);
    format!("{:.0} {}", s / unit.seconds, unit.suffix)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// `elapsed` spread over every unit `span` uses, ties included.
    fn elapsed_times() -> impl Strategy<Value = f64> {
        prop_oneof![
            -5.0..1.5f64,
            0.0..200.0f64,
            0.0..20_000.0f64,
            0.0..400_000.0f64,
            0.0..40_000_000.0f64,
            (0u32..2_000).prop_map(|n| f64::from(n) / 2.0),
            (0u32..2_000).prop_map(|n| f64::from(n) * 30.0),
            (0u32..200).prop_map(|n| f64::from(n) * 1_800.0),
            (0u32..200).prop_map(|n| f64::from(n) * 43_200.0),
        ]
    }

    proptest! {
        /// The words hold until a millisecond before the time given, and
        /// have changed a millisecond after it: never kept too long, and
        /// never thrown away much too soon.
        #[test]
        fn ago_reads_the_same_until_the_time_given(elapsed in elapsed_times()) {
            let same = ago_reads_the_same_for(elapsed);
            let shown = ago_of_seconds(elapsed);
            // Zero at a tie that rounds down: the words change just after.
            prop_assert!(same >= 0.0);
            prop_assert_eq!(&ago_of_seconds(elapsed + same - 0.001), &shown);
            prop_assert_ne!(&ago_of_seconds(elapsed + same + 0.001), &shown);
        }
    }

    #[test]
    fn ago_changes_where_people_would_say_it_differently() {
        assert_eq!(ago_reads_the_same_for(0.25), 0.75); // "just now" until 1 s
        assert_eq!(ago_reads_the_same_for(42.0), 0.5); // "42 s" until 42.5 s
        assert_eq!(ago_reads_the_same_for(89.75), 0.25); // "90 s" until "2 min"
        assert_eq!(ago_reads_the_same_for(14.0 * 60.0), 30.0); // "14 min"
        assert_eq!(ago_reads_the_same_for(3.0 * 86_400.0), 43_200.0); // "3 d"
    }
}
