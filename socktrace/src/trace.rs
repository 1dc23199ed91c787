//! `socktrace trace`: kernel events through the socket table to stdout.
use std::{
    io::{self, Write},
    time::Duration,
};

use anyhow::Context as _;
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    cli::TraceArgs,
    clock::WallClock,
    event::{RejectCounts, StateEvent},
    loader::{self, KernelProbes},
    output::{self, Format},
    ring_reader::RingReader,
    seed,
    table::SocketTable,
};

/// Records handled before yielding to signals and timers.
const BATCH: usize = 1024;

/// The kernel wakes the agent only once a batch is waiting (see
/// `loader::wakeup_threshold`); this timer bounds how long a lone
/// transition can wait in the ring before it is printed.
const DRAIN_INTERVAL: Duration = Duration::from_millis(50);

pub async fn run(args: TraceArgs) -> anyhow::Result<()> {
    let format = if args.json {
        Format::Json
    } else {
        Format::Human
    };
    // Attach before listing existing sockets, so nothing falls in between.
    let probes = loader::load_and_attach(args.ring_buffer_kib * 1024)?;
    let mut table = SocketTable::new();
    table.seed(seed::existing_sockets().context("listing existing sockets")?);

    let mut out = Output::new(format);
    if args.list_existing {
        if format == Format::Human {
            out.line(&output::socket_header());
        }
        for socket in table.sockets() {
            output::write_socket(&mut out.buffer, socket, format);
        }
        out.flush()?;
    }
    if format == Format::Human {
        out.line(&output::transition_header());
        out.flush()?;
    }
    eprintln!(
        "socktrace: ready: tracing TCP state transitions, {} existing sockets in the table",
        table.len()
    );
    let summary = stream(probes, &mut table, &mut out).await?;
    summary.report();
    Ok(())
}

/// Counters reported at exit.
struct Summary {
    lost: u64,
    rejected: RejectCounts,
    inconsistent: u64,
}

impl Summary {
    fn report(&self) {
        if self.lost > 0 {
            eprintln!(
                "socktrace: {} events lost (kernel ring buffer full; try a larger --ring-buffer-kib)",
                self.lost
            );
        }
        if self.rejected.total() > 0 {
            eprintln!(
                "socktrace: {} malformed records skipped: {:?}",
                self.rejected.total(),
                self.rejected
            );
        }
        if self.inconsistent > 0 {
            eprintln!(
                "socktrace: {} transitions disagreed with the socket table (events missed before start or lost)",
                self.inconsistent
            );
        }
    }
}

async fn stream(
    probes: KernelProbes,
    table: &mut SocketTable,
    out: &mut Output,
) -> anyhow::Result<Summary> {
    // `_attached` keeps the programs attached until this function returns.
    let KernelProbes {
        attached: _attached,
        events,
        lost,
    } = probes;
    let clock = WallClock::now();
    let mut rejected = RejectCounts::default();
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut lost_check = tokio::time::interval(Duration::from_secs(1));
    let mut drain = tokio::time::interval(DRAIN_INTERVAL);
    drain.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut lost_seen = 0u64;
    let mut reader = RingReader::new(events)?;

    let mut handle = |bytes: &[u8], out: &mut Output| match StateEvent::try_from(bytes) {
        Ok(event) => {
            let transition = table.apply(&event);
            output::write_transition(&mut out.buffer, &transition, out.format, &clock);
        }
        Err(error) => {
            log::debug!("skipping record: {error}");
            rejected.count(error);
        }
    };

    loop {
        tokio::select! {
            batch = reader.next_batch(BATCH, |bytes| handle(bytes, out)) => {
                batch.context("reading the ring buffer")?;
                if !out.flush()? {
                    break;
                }
            }
            _ = drain.tick() => {
                if !drain_waiting(&mut reader, &mut handle, out)? {
                    break;
                }
            }
            _ = lost_check.tick() => {
                let lost = lost.total()?;
                if lost > lost_seen {
                    eprintln!("socktrace: {} events lost so far (kernel ring buffer full)", lost);
                    lost_seen = lost;
                }
            }
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
        }
    }
    // What the kernel produced before we stopped is still reported.
    drain_waiting(&mut reader, &mut handle, out)?;
    Ok(Summary {
        lost: lost.total()?,
        rejected,
        inconsistent: table.stats().inconsistent,
    })
}

/// Handles and prints every record already in the ring, batch by batch.
/// `Ok(false)` when stdout's reader went away.
fn drain_waiting(
    reader: &mut RingReader,
    handle: &mut impl FnMut(&[u8], &mut Output),
    out: &mut Output,
) -> anyhow::Result<bool> {
    while reader.drain_now(BATCH, |bytes| handle(bytes, out)) > 0 {
        if !out.flush()? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Buffered stdout that notices a closed pipe (`socktrace trace | head`).
struct Output {
    format: Format,
    buffer: String,
    stdout: io::Stdout,
}

impl Output {
    fn new(format: Format) -> Self {
        Self {
            format,
            buffer: String::with_capacity(64 * 1024),
            stdout: io::stdout(),
        }
    }

    fn line(&mut self, text: &str) {
        self.buffer.push_str(text);
        self.buffer.push('\n');
    }

    /// Writes what is buffered. `Ok(false)` when the reader went away.
    fn flush(&mut self) -> anyhow::Result<bool> {
        let mut stdout = self.stdout.lock();
        let written = stdout
            .write_all(self.buffer.as_bytes())
            .and_then(|()| stdout.flush());
        self.buffer.clear();
        match written {
            Ok(()) => Ok(true),
            Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(false),
            Err(error) => Err(error).context("writing to stdout"),
        }
    }
}
