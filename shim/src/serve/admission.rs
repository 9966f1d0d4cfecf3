//! Admission: at most `max_concurrency` requests run at once, at most `max_queue` wait for a
//! slot, and anything past that is turned away at once (503) instead of piling up.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The slots and the queue of one server.
pub(crate) struct Admission {
    slots: Arc<Semaphore>,
    capacity: u32,
    waiting: AtomicU32,
    max_queue: u32,
}

impl Admission {
    pub(crate) fn new(max_concurrency: u32, max_queue: u32) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max_concurrency as usize)),
            capacity: max_concurrency,
            waiting: AtomicU32::new(0),
            max_queue,
        }
    }

    /// A slot, after waiting in the queue if needed; `None` when the queue is full.
    pub(crate) async fn admit(&self) -> Option<OwnedSemaphorePermit> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Some(permit);
        }
        let place = Waiting::enter(&self.waiting);
        if place.ahead >= self.max_queue {
            return None;
        }
        // A client that gives up while queued drops this future here: the place is given back
        // by `Waiting`'s drop, or the queue would shrink for good with every such client.
        self.slots.clone().acquire_owned().await.ok()
    }

    /// Requests waiting for a slot now.
    pub(crate) fn queued(&self) -> u32 {
        self.waiting.load(Ordering::Acquire)
    }

    /// Requests running now.
    pub(crate) fn running(&self) -> u32 {
        self.capacity
            .saturating_sub(self.slots.available_permits() as u32)
    }

    /// Waits until no request runs, for at most `limit`; `true` if none is left.
    pub(crate) async fn drained(&self, limit: Duration) -> bool {
        let all = self.slots.acquire_many(self.capacity);
        matches!(tokio::time::timeout(limit, all).await, Ok(Ok(_)))
    }
}

/// A place in the queue, held while waiting and given back when dropped.
struct Waiting<'a> {
    count: &'a AtomicU32,
    /// How many were waiting before this one.
    ahead: u32,
}

impl<'a> Waiting<'a> {
    fn enter(count: &'a AtomicU32) -> Self {
        let ahead = count.fetch_add(1, Ordering::AcqRel);
        Self { count, ahead }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn past_the_queue_requests_are_refused() {
        let admission = Arc::new(Admission::new(1, 1));
        let first = admission.admit().await.expect("a free slot");
        assert_eq!(admission.running(), 1);
        // The second waits in the queue; the third finds the queue full.
        let queued = {
            let admission = admission.clone();
            tokio::spawn(async move { admission.admit().await.is_some() })
        };
        while admission.waiting.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        assert!(admission.admit().await.is_none());
        drop(first);
        assert!(queued.await.unwrap());
        assert!(admission.drained(Duration::from_secs(1)).await);
    }

    #[tokio::test]
    async fn a_request_dropped_while_queued_gives_its_place_back() {
        let admission = Arc::new(Admission::new(1, 1));
        let running = admission.admit().await.expect("a free slot");
        let queued = {
            let admission = admission.clone();
            tokio::spawn(async move { admission.admit().await.is_some() })
        };
        while admission.queued() == 0 {
            tokio::task::yield_now().await;
        }
        // The client goes away: hyper drops the request's future.
        queued.abort();
        assert!(queued.await.unwrap_err().is_cancelled());
        assert_eq!(admission.queued(), 0);
        // The queue has its place again: the next request waits instead of being refused.
        let next = {
            let admission = admission.clone();
            tokio::spawn(async move { admission.admit().await.is_some() })
        };
        while admission.queued() == 0 {
            tokio::task::yield_now().await;
        }
        assert!(admission.admit().await.is_none(), "the queue of 1 is full");
        drop(running);
        assert!(next.await.unwrap());
    }

    #[tokio::test]
    async fn drain_gives_up_after_its_limit() {
        let admission = Admission::new(2, 0);
        let _held = admission.admit().await.expect("slot");
        assert!(!admission.drained(Duration::from_millis(20)).await);
    }
}
