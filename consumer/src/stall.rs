//! Noticing a consumer the broker has silently stopped feeding.
//!
//! A dead connection is noticed by AMQP heartbeats, a cancelled consumer by
//! the broker's `basic.cancel`. What neither shows is a channel that stays
//! open while the broker sends it nothing: a queue leader that died with
//! deliveries on their way, a consumer whose credit the broker lost track
//! of, a client library that missed a frame. For a service whose purpose is
//! paging, that is the worst way to fail (it looks healthy and applies
//! nothing), so the session watches for it: when this service holds
//! nothing unacknowledged, the broker has counted events ready in the queue
//! at every look for [`STALL_AFTER`], and the reader has waited for a
//! delivery all that time, the session ends and the loop reconnects. A new
//! channel gets every message the old one held, redelivered (the store's
//! dedup absorbs any that were applied).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long events may wait ready in the queue while an idle consumer gets
/// none of them before the session is restarted: far longer than any
/// broker takes to deliver to a consumer with free credit (milliseconds),
/// longer than two missed heartbeats (20 s, which end the connection
/// anyway).
pub const STALL_AFTER: Duration = Duration::from_secs(30);

/// What the three stages of a session tell the watchdog.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// Since when the reader has been waiting for a delivery, with nothing
    /// of its own left to decode; `None` while it works.
    waiting_since: Mutex<Option<Instant>>,
    /// Batches handed to the writer and not yet acknowledged: while one is
    /// in flight, the broker may rightly hold back (prefetch), so no
    /// silence counts as a stall.
    in_flight: AtomicUsize,
    /// Since when every look at the queue has counted events ready in it;
    /// `None` after a look that counted none.
    ready_since: Mutex<Option<Instant>>,
}

impl Progress {
    /// The reader starts waiting for its next delivery.
    pub(crate) fn waiting(&self) {
        *self.waiting_since.lock().unwrap() = Some(Instant::now());
    }

    /// The reader has a delivery.
    pub(crate) fn delivered(&self) {
        *self.waiting_since.lock().unwrap() = None;
    }

    /// A batch goes to the writer.
    pub(crate) fn batch_sent(&self) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
    }

    /// A batch is acknowledged.
    pub(crate) fn batch_settled(&self) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }

    /// The broker counted `ready` events waiting in the queue.
    pub(crate) fn looked(&self, ready: u32) {
        let mut since = self.ready_since.lock().unwrap();
        match (ready, *since) {
            (0, _) => *since = None,
            (_, None) => *since = Some(Instant::now()),
            (_, Some(_)) => {}
        }
    }

    /// How long the consumer has been starved, if it is stalled by the
    /// rule above.
    pub(crate) fn stalled(&self, now: Instant) -> Option<Duration> {
        is_stalled(
            now,
            *self.waiting_since.lock().unwrap(),
            *self.ready_since.lock().unwrap(),
            self.in_flight.load(Ordering::SeqCst),
            STALL_AFTER,
        )
    }
}

/// The rule, on its own: stalled when nothing is in flight and both the
/// reader's wait and the queue's ready events go back `after` or more.
/// Returns the shorter of the two (how long the stall is known to have
/// lasted).
fn is_stalled(
    now: Instant,
    waiting_since: Option<Instant>,
    ready_since: Option<Instant>,
    in_flight: usize,
    after: Duration,
) -> Option<Duration> {
    if in_flight > 0 {
        return None;
    }
    let waited = now.checked_duration_since(waiting_since?)?;
    let ready = now.checked_duration_since(ready_since?)?;
    let starved = waited.min(ready);
    (starved >= after).then_some(starved)
}

#[cfg(test)]
mod tests {
    use super::*;

    const AFTER: Duration = Duration::from_secs(30);

    fn ago(now: Instant, seconds: u64) -> Option<Instant> {
        now.checked_sub(Duration::from_secs(seconds))
    }

    #[test]
    fn an_idle_reader_and_events_ready_all_along_is_a_stall() {
        let now = Instant::now() + Duration::from_secs(100);
        assert_eq!(
            is_stalled(now, ago(now, 45), ago(now, 31), 0, AFTER),
            Some(Duration::from_secs(31))
        );
    }

    #[test]
    fn anything_else_is_not() {
        let now = Instant::now() + Duration::from_secs(100);
        // Not long enough, on either side.
        assert_eq!(is_stalled(now, ago(now, 29), ago(now, 60), 0, AFTER), None);
        assert_eq!(is_stalled(now, ago(now, 60), ago(now, 29), 0, AFTER), None);
        // A batch in flight: the broker may hold back for the prefetch.
        assert_eq!(is_stalled(now, ago(now, 60), ago(now, 60), 1, AFTER), None);
        // The reader is working, or the queue is empty.
        assert_eq!(is_stalled(now, None, ago(now, 60), 0, AFTER), None);
        assert_eq!(is_stalled(now, ago(now, 60), None, 0, AFTER), None);
    }

    #[test]
    fn progress_follows_the_stages() {
        let progress = Progress::default();
        let later = Instant::now() + STALL_AFTER + Duration::from_secs(1);
        progress.looked(5);
        progress.waiting();
        assert!(progress.stalled(later).is_some());
        // A delivery, a batch in flight, or an empty queue: no stall.
        progress.delivered();
        assert!(progress.stalled(later).is_none());
        progress.waiting();
        progress.batch_sent();
        assert!(progress.stalled(later).is_none());
        progress.batch_settled();
        assert!(progress.stalled(later).is_some());
        progress.looked(0);
        assert!(progress.stalled(later).is_none());
    }
}
