//! Drains the BPF ring buffer from tokio, in bounded batches so a flood of
//! events cannot starve signal handling or periodic work.
use std::io;

use aya::maps::{MapData, RingBuf};
use tokio::io::unix::AsyncFd;

pub struct RingReader {
    ring: AsyncFd<RingBuf<MapData>>,
}

impl RingReader {
    pub fn new(ring: RingBuf<MapData>) -> io::Result<Self> {
        // SAFETY: the descriptor is the ring buffer map's, owned by `ring`,
        // which the AsyncFd owns: it stays open and the same for its life.
        let ring = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
            .map_err(io::Error::from)?;
        Ok(Self { ring })
    }

    /// Waits for records, then hands up to `max` of them to `handle`.
    /// Returns how many it handed over (at least one).
    pub async fn next_batch(
        &mut self,
        max: usize,
        mut handle: impl FnMut(&[u8]),
    ) -> io::Result<usize> {
        loop {
            let mut guard = self.ring.readable_mut().await?;
            let handled = Self::drain(guard.get_inner_mut(), max, &mut handle);
            if handled < max {
                // Empty now; a record submitted after this point re-arms
                // readiness (tokio keeps events newer than this guard).
                guard.clear_ready();
            }
            if handled > 0 {
                return Ok(handled);
            }
        }
    }

    /// Hands over what is already in the ring without waiting.
    pub fn drain_now(&mut self, max: usize, mut handle: impl FnMut(&[u8])) -> usize {
        Self::drain(self.ring.get_mut(), max, &mut handle)
    }

    fn drain(ring: &mut RingBuf<MapData>, max: usize, handle: &mut impl FnMut(&[u8])) -> usize {
        let mut handled = 0;
        while handled < max {
            let Some(item) = ring.next() else { break };
            handle(&item);
            handled += 1;
        }
        handled
    }
}
