//! Applying a batch of events: dedup, log, projection, counts, all in one
//! `WriteBatch`, written with the WAL synced before returning, so a caller
//! may acknowledge the events once it returns.

use std::borrow::Cow;
use std::collections::HashSet;

use audrey_core::projection::{self, Completion, Effect};
use audrey_core::Event;

use crate::changes::Changed;
use crate::db::{Db, CF_DEDUP, CF_EVENTS, CF_META};
use crate::error::StoreError;
use crate::keys::{dedup_key, log_key, KEY_AS_OF};
use crate::pending::Pending;
use crate::raw::read_as_of;
use crate::recent::WriterMemory;
use crate::sorted_writes::SortedWrites;

/// An event with its log encoding made beforehand: the consumer encodes
/// while the single writer applies the previous batch, so the writer does
/// not spend its time on JSON.
#[derive(Debug, Clone)]
pub struct Encoded {
    event: Event,
    /// [`Event::to_bytes`]: what the log stores.
    bytes: Vec<u8>,
}

impl Encoded {
    pub fn new(event: Event) -> Self {
        let bytes = event.to_bytes();
        Self { event, bytes }
    }

    pub fn event(&self) -> &Event {
        &self.event
    }
}

/// What a batch takes: an event, encoded for the log now ([`Event`]) or
/// beforehand ([`Encoded`]).
pub trait Loggable {
    fn event(&self) -> &Event;
    fn log_bytes(&self) -> Cow<'_, [u8]>;
}

impl Loggable for Event {
    fn event(&self) -> &Event {
        self
    }
    fn log_bytes(&self) -> Cow<'_, [u8]> {
        Cow::Owned(self.to_bytes())
    }
}

impl Loggable for Encoded {
    fn event(&self) -> &Event {
        &self.event
    }
    fn log_bytes(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
}

/// What happened to each event of a batch, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventOutcome {
    /// New: logged and projected (see the effect).
    Applied(Effect),
    /// Seen before (same source and id): changed nothing.
    Duplicate,
}

/// The outcome of one synced batch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchOutcome {
    pub outcomes: Vec<EventOutcome>,
    /// What the batch's new events completed (live batches only): the
    /// duration histograms count these.
    pub completions: Vec<Completion>,
}

impl BatchOutcome {
    pub fn applied(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| matches!(o, EventOutcome::Applied(_)))
            .count()
    }

    pub fn duplicates(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| matches!(o, EventOutcome::Duplicate))
            .count()
    }
}

/// Where a batch's events come from, which decides what is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// Live events: deduplicated, logged with their dedup markers, and
    /// synced before returning.
    Live,
    /// Events replayed from the log by a rebuild: only the views are
    /// written, unsynced (the rebuild flushes at its end).
    Log,
}

/// Applies `events` with the writer lock held (`memory` is what it guards).
pub(crate) fn apply_events(
    db: &Db,
    memory: &mut WriterMemory,
    events: &[impl Loggable],
    origin: Origin,
) -> Result<BatchOutcome, StoreError> {
    // Taken out while the batch runs: if it fails, the rows it read are
    // forgotten with it.
    let empty = memory.emptied();
    let mut pending = Pending::new(db, std::mem::replace(memory, empty));
    let mut outcomes = Vec::with_capacity(events.len());
    let mut writes = SortedWrites::default();
    let mut seen = HashSet::new();
    let mut completions = Vec::new();
    for logged in events {
        let event = logged.event();
        if origin == Origin::Log {
            outcomes.push(EventOutcome::Applied(projection::apply(
                &mut pending,
                event,
            )?));
            continue;
        }
        let dedup_key = dedup_key(event.source(), event.id());
        let duplicate = !seen.insert((event.source(), event.id()))
            || db
                .rocks
                .get_pinned_cf(db.cf(CF_DEDUP), &dedup_key)?
                .is_some();
        if duplicate {
            outcomes.push(EventOutcome::Duplicate);
            continue;
        }
        let effect = projection::apply_noting(&mut pending, event, &mut completions)?;
        let log_key = log_key(event);
        writes.put(CF_EVENTS, log_key.clone(), logged.log_bytes());
        writes.put(CF_DEDUP, dedup_key, log_key);
        outcomes.push(EventOutcome::Applied(effect));
    }
    pending.write_into(&mut writes)?;
    // The freshness watermark moves to the latest event time applied.
    let latest = events.iter().map(|e| e.event().time()).max();
    let as_of = read_as_of(db)?;
    if let Some(latest) = latest.filter(|t| as_of.is_none_or(|known| *t > known)) {
        writes.put(
            CF_META,
            KEY_AS_OF.to_vec(),
            latest.nanos().to_be_bytes().to_vec(),
        );
    }
    let batch = writes.into_batch(db);
    let sync = origin == Origin::Live;
    let changed = Changed::Deployments {
        ids: &pending.changed_deployments,
        config_servers: pending.wrote_config_servers(),
    };
    if pending.provided_may_shrink {
        db.write(batch, sync, changed)?;
    } else {
        db.write_keeping_provided(batch, sync, changed)?;
    }
    *memory = pending.committed();
    Ok(BatchOutcome {
        outcomes,
        completions,
    })
}
