//! Stdout written by its own thread behind a queue of bounded size, so a
//! reader that stalls (`| less` left open, a stuck pipe) cannot stop the
//! tracing or the signals; what does not fit is dropped and counted.
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use anyhow::{Context, anyhow};

/// How many bytes may wait for the writer before the event loop leaves
/// records in the ring: a few seconds of the fastest churn's JSON.
pub const QUEUED_BYTES: usize = 16 << 20;

/// Beyond this, output is dropped and counted: only the end of a run (which
/// drains the ring whatever the queue holds) or a consumer's burst gets
/// past [`QUEUED_BYTES`].
pub const DROP_BYTES: usize = 2 * QUEUED_BYTES;

/// How long the end of a run waits for the writer to empty the queue.
const FINISH_TIMEOUT: Duration = Duration::from_secs(1);

/// Lines for stdout, gathered in [`Output::buffer`] and handed to the writer
/// thread on [`Output::flush`].
pub struct Output {
    pub buffer: String,
    queue: Option<Sender<String>>,
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
    /// Closed by the writer when it ends.
    writer_done: Receiver<()>,
    /// Lines dropped when the last warning was printed.
    dropped_reported: u64,
}

/// What the event loop and the writer thread both see.
#[derive(Default)]
struct Shared {
    queued: AtomicUsize,
    dropped_lines: AtomicU64,
    /// Stdout's reader went away (`socktrace trace | head`).
    closed: AtomicBool,
    /// Written once, by the writer, when a write failed otherwise.
    error: Mutex<Option<io::Error>>,
}

impl Output {
    pub fn new() -> Self {
        Self::to(io::stdout())
    }

    /// Lines for `sink` instead of stdout.
    pub fn to(sink: impl Write + Send + 'static) -> Self {
        let shared = Arc::new(Shared::default());
        let (queue, chunks) = channel();
        let (done, writer_done) = channel();
        let writer = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name("stdout".into())
                .spawn(move || {
                    write_chunks(sink, &chunks, &shared);
                    drop(done);
                })
                .ok()
        };
        Self {
            buffer: String::with_capacity(64 * 1024),
            queue: writer.is_some().then_some(queue),
            shared,
            writer,
            writer_done,
            dropped_reported: 0,
        }
    }

    pub fn line(&mut self, text: &str) {
        self.buffer.push_str(text);
        self.buffer.push('\n');
    }

    /// Whether the writer's queue can take more: below [`QUEUED_BYTES`].
    pub fn has_room(&self) -> bool {
        self.shared.queued.load(Ordering::Acquire) < QUEUED_BYTES
    }

    /// Hands what is buffered to the writer, or drops and counts it past
    /// [`DROP_BYTES`]. `Ok(false)` when the reader went away.
    pub fn flush(&mut self) -> anyhow::Result<bool> {
        if let Some(error) = self.shared.take_error()? {
            return Err(error).context("writing to stdout");
        }
        if self.shared.closed.load(Ordering::Acquire) {
            return Ok(false);
        }
        if self.buffer.is_empty() {
            return Ok(true);
        }
        let Some(queue) = &self.queue else {
            return Err(anyhow!("cannot start the thread writing stdout"));
        };
        let len = self.buffer.len();
        if self.shared.queued.load(Ordering::Acquire) + len > DROP_BYTES {
            let lines = self.buffer.matches('\n').count() as u64;
            self.shared
                .dropped_lines
                .fetch_add(lines, Ordering::Relaxed);
            self.buffer.clear();
            return Ok(true);
        }
        self.shared.queued.fetch_add(len, Ordering::AcqRel);
        let chunk = std::mem::replace(&mut self.buffer, String::with_capacity(64 * 1024));
        if queue.send(chunk).is_err() {
            // The writer ended: on a closed pipe or an error, seen above
            // at the next flush.
            self.shared.queued.fetch_sub(len, Ordering::AcqRel);
        }
        Ok(true)
    }

    /// Lines dropped so far because stdout was not read fast enough.
    pub fn dropped_lines(&self) -> u64 {
        self.shared.dropped_lines.load(Ordering::Relaxed)
    }

    /// The dropped total when it grew since the last call: for a warning.
    pub fn newly_dropped(&mut self) -> Option<u64> {
        let dropped = self.dropped_lines();
        (dropped > self.dropped_reported).then(|| {
            self.dropped_reported = dropped;
            dropped
        })
    }

    /// Flushes, then waits up to a second for the writer to write it all;
    /// if it could not, says on stderr how many bytes stay unwritten.
    /// Returns the lines dropped over the whole run.
    pub fn finish(mut self) -> anyhow::Result<u64> {
        self.flush()?;
        self.queue = None;
        let ended = matches!(
            self.writer_done.recv_timeout(FINISH_TIMEOUT),
            Err(RecvTimeoutError::Disconnected)
        );
        if ended {
            if let Some(writer) = self.writer.take() {
                let _ = writer.join();
            }
        } else {
            // The writer stays blocked in write(2) and ends with the
            // process; what it holds is not written.
            let pending = self.shared.queued.load(Ordering::Acquire);
            if pending > 0 {
                eprintln!(
                    "socktrace: {pending} bytes of output not written at exit: stdout is not read"
                );
            }
        }
        if let Some(error) = self.shared.take_error()? {
            return Err(error).context("writing to stdout");
        }
        Ok(self.dropped_lines())
    }
}

impl Shared {
    fn take_error(&self) -> anyhow::Result<Option<io::Error>> {
        let mut slot = self
            .error
            .lock()
            .map_err(|_| anyhow!("the thread writing stdout panicked"))?;
        Ok(slot.take())
    }
}

impl Default for Output {
    fn default() -> Self {
        Self::new()
    }
}

/// The writer thread: writes each chunk until the queue closes, the reader
/// goes away or a write fails.
fn write_chunks(mut sink: impl Write, chunks: &Receiver<String>, shared: &Shared) {
    for chunk in chunks {
        let written = sink.write_all(chunk.as_bytes()).and_then(|()| sink.flush());
        shared.queued.fetch_sub(chunk.len(), Ordering::AcqRel);
        match written {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::BrokenPipe => {
                shared.closed.store(true, Ordering::Release);
                break;
            }
            Err(error) => {
                if let Ok(mut slot) = shared.error.lock() {
                    *slot = Some(error);
                }
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// A sink that blocks until told to go on, then collects.
    #[derive(Clone, Default)]
    struct Gate {
        open: Arc<AtomicBool>,
        written: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Gate {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            while !self.open.load(Ordering::Acquire) {
                thread::sleep(Duration::from_millis(1));
            }
            self.written.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stalled_reader_costs_dropped_lines_not_a_blocked_caller() {
        let gate = Gate::default();
        let mut out = Output::to(gate.clone());
        let line = "x".repeat(1023);
        let lines = DROP_BYTES / 1024 + 100;
        for queued in 0..lines {
            assert_eq!(out.has_room(), queued < QUEUED_BYTES / 1024);
            out.line(&line);
            assert!(out.flush().unwrap());
        }
        assert_eq!(out.dropped_lines(), 100);
        assert_eq!(out.newly_dropped(), Some(100));
        assert_eq!(out.newly_dropped(), None);
        gate.open.store(true, Ordering::Release);
        assert_eq!(out.finish().unwrap(), 100);
        assert_eq!(gate.written.lock().unwrap().len(), DROP_BYTES);
    }

    #[test]
    fn the_end_of_a_run_does_not_wait_for_a_reader_that_never_comes() {
        let gate = Gate::default();
        let mut out = Output::to(gate);
        out.line("never read");
        let started = Instant::now();
        assert_eq!(out.finish().unwrap(), 0);
        assert!(started.elapsed() < FINISH_TIMEOUT * 3);
    }

    #[test]
    fn a_closed_pipe_ends_the_run() {
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut out = Output::to(Closed);
        out.line("to nobody");
        assert!(out.flush().unwrap());
        let deadline = Instant::now() + Duration::from_secs(5);
        while out.flush().unwrap() {
            assert!(Instant::now() < deadline, "the closed pipe was not seen");
            out.line("again");
            thread::sleep(Duration::from_millis(1));
        }
    }
}
