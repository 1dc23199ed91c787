//! Polling with a deadline, for conditions nothing notifies us about (such as
//! a socket showing up in `ss`). Never a fixed sleep.
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

/// Pause between two polls.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// One poll's outcome.
pub enum Poll<T> {
    /// Done, with this value.
    Ready(T),
    /// Not yet; the text says what was seen, for the timeout message.
    Pending(String),
}

/// Calls `poll` until it is [`Poll::Ready`] and returns its value. Fails when
/// `poll` fails, or when `timeout` passes (showing `what` and the last
/// [`Poll::Pending`] text).
pub fn until<T>(
    what: &str,
    timeout: Duration,
    mut poll: impl FnMut() -> Result<Poll<T>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        match poll()? {
            Poll::Ready(value) => return Ok(value),
            Poll::Pending(seen) if Instant::now() >= deadline => {
                bail!("timed out after {timeout:?} waiting for {what}; last seen:\n{seen}")
            }
            Poll::Pending(_) => thread::sleep(POLL_INTERVAL),
        }
    }
}
