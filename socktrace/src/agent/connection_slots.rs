//! Connections served a bounded number at a time, for the agent's socket
//! and its metrics endpoint: those beyond wait in the listen backlog, and a
//! full house or a failed accept is logged at most every
//! [`WARNING_EVERY_NS`], with a count.
use std::{future::Future, io, sync::Arc, time::Duration};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{
    agent::live_consumer::Answers,
    support::{clock::monotonic_now_ns, log_throttle::LogThrottle},
};

/// How long accepting pauses after it failed (out of file descriptors,
/// say): the connection waits in the listen backlog, and trying again at
/// once would fail the same way.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(250);

/// At most one warning this often about each kind of trouble.
pub const WARNING_EVERY_NS: u64 = 10_000_000_000;

/// See the module documentation.
pub struct ConnectionSlots {
    slots: Arc<Semaphore>,
    max: usize,
    /// What the log calls one peer, and several (`client`, `clients`).
    peer: (&'static str, &'static str),
    full: LogThrottle,
    failed_accepts: LogThrottle,
}

impl ConnectionSlots {
    pub fn new(max: usize, peer: (&'static str, &'static str)) -> Self {
        ConnectionSlots {
            slots: Arc::new(Semaphore::new(max)),
            max,
            peer,
            full: LogThrottle::new(WARNING_EVERY_NS),
            failed_accepts: LogThrottle::new(WARNING_EVERY_NS),
        }
    }

    /// The next connection `accept` gives once a slot is free, with the
    /// slot to hold while it is served; `None` once the loop behind
    /// `answers` is gone.
    pub async fn next<T, A: Future<Output = io::Result<T>>>(
        &mut self,
        mut accept: impl FnMut() -> A,
        answers: &Answers,
    ) -> Option<(T, OwnedSemaphorePermit)> {
        let (one, several) = self.peer;
        loop {
            let slot = match Arc::clone(&self.slots).try_acquire_owned() {
                Ok(slot) => slot,
                Err(_) => {
                    if let Some(times) = self.full.failed(monotonic_now_ns()) {
                        log::warn!(
                            "all {} {one} slots taken ({times} time(s)): \
                             new {several} wait in the listen backlog",
                            self.max
                        );
                    }
                    tokio::select! {
                        slot = Arc::clone(&self.slots).acquire_owned() => slot.ok()?,
                        () = answers.closed() => return None,
                    }
                }
            };
            let accepted = tokio::select! {
                accepted = accept() => accepted,
                () = answers.closed() => return None,
            };
            match accepted {
                Ok(connection) => return Some((connection, slot)),
                Err(error) => {
                    if let Some(times) = self.failed_accepts.failed(monotonic_now_ns()) {
                        log::warn!(
                            "accepting a {one} failed {times} time(s): {error}; \
                             retrying every {}ms meanwhile",
                            ACCEPT_BACKOFF.as_millis()
                        );
                    }
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
    }
}
