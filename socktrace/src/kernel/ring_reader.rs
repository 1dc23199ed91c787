//! Drains the BPF ring buffer from tokio: records read in place from its
//! mapped pages, in bounded batches so a flood cannot starve signal
//! handling or periodic work, and released to the kernel once per batch.
//!
//! aya's `RingBuf` publishes the consumer position after every record.
//! Every reserve in the kernel reads that position, so each record the
//! agent read cost the producing CPUs a cache line written by another CPU
//! (README, "Performance"). The layout and the protocol are the kernel's
//! (`kernel/bpf/ringbuf.c`) and libbpf's (`ringbuf.c`).
use std::{
    io,
    os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd},
    ptr::NonNull,
    sync::atomic::{AtomicU32, AtomicUsize, Ordering},
};

use aya::maps::MapData;
use tokio::io::unix::AsyncFd;

/// A record's header: its length, and these two flags.
const HEADER_BYTES: usize = 8;
const BUSY_BIT: u32 = 1 << 31;
const DISCARD_BIT: u32 = 1 << 30;

/// The loaded ring buffer map and its size, before the agent maps it.
pub struct RingBuffer {
    pub map: MapData,
    pub data_bytes: usize,
}

pub struct RingReader {
    map: AsyncFd<RingMap>,
    ring: Ring,
    /// Where the next record starts: ahead of the published consumer
    /// position while a batch is read.
    position: usize,
}

/// The ring buffer map, for `AsyncFd`: readable when records wait.
struct RingMap(MapData);

impl AsRawFd for RingMap {
    fn as_raw_fd(&self) -> RawFd {
        self.0.fd().as_fd().as_raw_fd()
    }
}

/// The ring's mapped pages.
struct Ring {
    /// The consumer position's page, which the agent writes.
    consumer: Mapping,
    /// The producer position's page, then the data pages mapped twice in a
    /// row, so that a record running over the end reads as one slice.
    producer: Mapping,
    page: usize,
    /// `data bytes - 1`: positions grow forever, offsets wrap.
    mask: usize,
}

impl RingReader {
    /// Maps the ring buffer's pages.
    pub fn new(RingBuffer { map, data_bytes }: RingBuffer) -> io::Result<Self> {
        if !data_bytes.is_power_of_two() {
            return Err(io::Error::other(format!(
                "a ring buffer of {data_bytes} bytes: not a power of two"
            )));
        }
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
            .map_err(|_| io::Error::other("no page size"))?;
        let fd = map.fd().as_fd();
        let ring = Ring {
            consumer: Mapping::new(fd, page, libc::PROT_READ | libc::PROT_WRITE, 0)?,
            producer: Mapping::new(fd, page + 2 * data_bytes, libc::PROT_READ, page)?,
            page,
            mask: data_bytes - 1,
        };
        let position = ring.consumer.position().load(Ordering::Acquire);
        // SAFETY: the descriptor is the map's, owned by the AsyncFd: it
        // stays open and the same for the reader's life.
        let map =
            unsafe { AsyncFd::register_with_interest(RingMap(map), tokio::io::Interest::READABLE) }
                .map_err(io::Error::from)?;
        Ok(Self {
            map,
            ring,
            position,
        })
    }

    /// Waits for records, then hands up to `max` of them to `handle`.
    /// Returns how many it handed over (at least one).
    pub async fn next_batch(
        &mut self,
        max: usize,
        mut handle: impl FnMut(&[u8]),
    ) -> io::Result<usize> {
        loop {
            let mut guard = self.map.readable().await?;
            let handled = self.ring.drain(&mut self.position, max, &mut handle);
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
        self.ring.drain(&mut self.position, max, &mut handle)
    }
}

impl Ring {
    /// Hands up to `max` committed records from `position` on to `handle`,
    /// in place, then publishes the new position once: the kernel may
    /// reuse their space from then on.
    fn drain(&self, position: &mut usize, max: usize, handle: &mut impl FnMut(&[u8])) -> usize {
        let produced = self.producer.position().load(Ordering::Acquire);
        let data = self.producer.bytes(self.page);
        let start = *position;
        let mut handled = 0;
        while handled < max && *position != produced {
            let offset = *position & self.mask;
            // SAFETY: the header is a 4-byte aligned word inside the data
            // pages (records are 8-byte aligned), which the kernel writes
            // atomically. The acquire load pairs with the kernel's commit
            // (xchg), so the record's bytes are visible once BUSY is clear.
            let header =
                unsafe { &*data.as_ptr().add(offset).cast::<AtomicU32>() }.load(Ordering::Acquire);
            if header & BUSY_BIT != 0 {
                break;
            }
            let length = (header & !(BUSY_BIT | DISCARD_BIT)) as usize;
            let body = offset + HEADER_BYTES;
            // The data pages are mapped twice: a record is never cut, and
            // the kernel keeps each one shorter than the ring.
            let Some(record) = data.get(body..body + length) else {
                break;
            };
            if header & DISCARD_BIT == 0 {
                handle(record);
                handled += 1;
            }
            *position += (HEADER_BYTES + length).next_multiple_of(8);
        }
        if *position != start {
            self.consumer.position().store(*position, Ordering::Release);
        }
        handled
    }
}

/// One `mmap` of the ring buffer map, unmapped on drop.
struct Mapping {
    address: NonNull<u8>,
    length: usize,
}

// SAFETY: the mapping is plain shared memory; every access that races
// with the kernel goes through atomics.
unsafe impl Send for Mapping {}
unsafe impl Sync for Mapping {}

impl Mapping {
    fn new(fd: BorrowedFd<'_>, length: usize, protection: i32, offset: usize) -> io::Result<Self> {
        let offset = libc::off_t::try_from(offset).map_err(io::Error::other)?;
        // SAFETY: a fresh shared mapping of the map's descriptor; the
        // kernel checks the length, protection and offset against the map.
        let address = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                length,
                protection,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                offset,
            )
        };
        if address == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let address = NonNull::new(address.cast()).ok_or_else(|| io::Error::other("mmap: null"))?;
        Ok(Self { address, length })
    }

    /// The position word at the start of the mapping (a consumer or
    /// producer page).
    fn position(&self) -> &AtomicUsize {
        // SAFETY: page aligned, inside the mapping, and only ever accessed
        // atomically by both sides.
        unsafe { &*self.address.as_ptr().cast::<AtomicUsize>() }
    }

    /// The mapping's bytes from `from` on (the data pages of the producer
    /// mapping).
    fn bytes(&self, from: usize) -> &[u8] {
        // SAFETY: inside the mapping, which lives as long as `self`.
        // Bytes of committed records do not change until the consumer
        // position passes them.
        unsafe { std::slice::from_raw_parts(self.address.as_ptr().add(from), self.length - from) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe { libc::munmap(self.address.as_ptr().cast(), self.length) };
    }
}
