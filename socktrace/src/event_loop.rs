//! The agent's main loop, shared by every streaming command: records from
//! the kernel ring buffer are decoded and handed to a [`Consumer`], which
//! writes what it has to say into a buffer flushed to stdout after every
//! batch. Timers drive draining, reconciliation against the kernel's own
//! tables and loss reports; SIGINT and SIGTERM end it cleanly.
use std::{path::PathBuf, sync::mpsc::RecvTimeoutError, time::Duration};

use anyhow::Context as _;
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::{
    cli::{NetnsArgs, RingArgs},
    host::container::ContainerLabels,
    host::listing::{HostListing, ListingSchedule, TakenListing},
    host::namespaces::Namespaces,
    host::sock_diag::DumpRequest,
    kernel::event::{Event, RejectCounts, TaskContext},
    kernel::loader::{self, KernelProbes},
    kernel::lost::Lost,
    kernel::ring_reader::RingReader,
    model::tcp_state::TcpState,
    model::tuple::NetnsInode,
    recording::frame::{End, HostFrame, Start},
    recording::recorder::RunRecorder,
    render::stdout_queue::Output,
    seed::{self, Existing},
    state::table::{SocketTable, TrackedSocket},
    support::clock::{WallClock, monotonic_now_ns},
};

/// Processes whose container label is cached (see [`ContainerLabels`]):
/// far more than a host runs sockets from, about 100 bytes each.
const LABELLED_PROCESSES: usize = 65_536;

/// Records handled before yielding to signals and timers.
const BATCH: usize = 1024;

/// The kernel wakes the agent only once a batch is waiting (see
/// `loader::wakeup_threshold`); this timer bounds how long a lone record can
/// wait in the ring before it is handled.
const DRAIN_INTERVAL: Duration = Duration::from_millis(50);

/// How often the ring is drained while a listing is taken.
const DRAIN_DURING_LISTING: Duration = Duration::from_millis(5);

/// How often a listing may be due (see [`ListingSchedule`]), and how often
/// lost events are reported.
pub const RECONCILE_INTERVAL: Duration = Duration::from_secs(1);

/// What a command does with the records.
pub trait Consumer {
    /// One decoded record; output goes to `out`.
    fn event(&mut self, event: &Event, out: &mut String);

    /// The sockets the consumer compares its state with, listed by
    /// sock_diag in each namespace when a listing is due (see
    /// [`ListingSchedule`]); `None` for a consumer that follows none.
    fn listing_request(&self) -> Option<DumpRequest> {
        None
    }

    /// A listing of [`Consumer::listing_request`], to apply now: the ring
    /// was drained while it was taken and after, so whatever happened
    /// before it began has reached [`Consumer::event`].
    /// [`Consumer::settle`] comes next.
    fn listed(&mut self, _listing: HostListing, _out: &mut String) {}

    /// A network namespace is gone, found so at `now_ns`, after every
    /// record about it was handled: drop what is left of its sockets.
    fn namespace_gone(&mut self, _netns: NetnsInode, _now_ns: u64, _out: &mut String) {}

    /// After every drain of the ring: resolve what time or the last
    /// listing decided. `now_ns` is CLOCK_MONOTONIC, the records' clock.
    fn settle(&mut self, _now_ns: u64, _out: &mut String) {}

    /// Once, after the last records were handled; `totals` says what did
    /// not reach the consumer or the output.
    fn finish(&mut self, _now_ns: u64, _totals: &LoopSummary, _out: &mut String) {}
}

/// Counters reported at exit.
#[derive(Debug, Default)]
pub struct LoopSummary {
    pub lost: Lost,
    pub rejected: RejectCounts,
    /// Output lines dropped because stdout was not read fast enough.
    pub output_dropped: u64,
}

impl LoopSummary {
    /// Tells the user on stderr what did not reach the output.
    pub fn report(&self) {
        if self.lost.total() > 0 {
            eprintln!("socktrace: {}", self.lost);
        }
        if self.rejected.total() > 0 {
            eprintln!(
                "socktrace: {} malformed records skipped: {:?}",
                self.rejected.total(),
                self.rejected
            );
        }
        if self.output_dropped > 0 {
            eprintln!(
                "socktrace: {} output lines dropped: stdout was not read as fast as transitions came",
                self.output_dropped
            );
        }
    }
}

/// What a command starts from: the attached programs, the namespaces it
/// follows, and a socket table holding the sockets that existed in them
/// when the programs were attached.
pub struct Started {
    pub tracing: Tracing,
    pub namespaces: Namespaces,
    pub table: SocketTable,
    /// Every socket listed at start-up, full or not, as the table names it.
    pub existing: Vec<TrackedSocket>,
    /// When tracing began (CLOCK_MONOTONIC), and the wall clock then.
    pub started_ns: u64,
    pub clock: WallClock,
}

/// What [`run`] drains and answers to: the attached programs, the
/// recording, and the stop signals.
pub struct Tracing {
    pub probes: KernelProbes,
    /// Where the run is also written (`--record`).
    pub recorder: Option<RunRecorder>,
    /// SIGINT and SIGTERM, listened for from the start: one that comes
    /// while the programs load or sockets are listed still ends the run
    /// cleanly, at its first turn.
    signals: StopSignals,
}

struct StopSignals {
    interrupt: Signal,
    terminate: Signal,
}

/// Finds the namespaces `netns` selects, loads and attaches the programs,
/// then fills a socket table with the sockets that exist now in them: attached first, so
/// that no transition falls between the listing and the tracing.
pub fn attach_and_seed(
    ring: &RingArgs,
    netns: &NetnsArgs,
    which: Existing,
) -> anyhow::Result<Started> {
    let signals = StopSignals {
        interrupt: signal(SignalKind::interrupt())?,
        terminate: signal(SignalKind::terminate())?,
    };
    let mut namespaces = netns.namespaces()?;
    let mut recorder = ring
        .record
        .as_deref()
        .map(RunRecorder::create)
        .transpose()?;
    let probes = loader::load_and_attach(ring.ring_buffer_kib * 1024)?;
    let mut table = SocketTable::new();
    // A recording keeps every socket, for whichever view replays it.
    let listed = seed::existing_sockets(
        &mut namespaces,
        if recorder.is_some() {
            Existing::All
        } else {
            which
        },
    )
    .context("listing existing sockets")?;
    let started_ns = monotonic_now_ns();
    let clock = WallClock::now();
    if let Some(recorder) = &mut recorder {
        recorder.host(&HostFrame::Start(Start {
            started_ns,
            wall_clock_offset_ns: clock.offset_ns() as i64,
            selection: namespaces.selection().inodes(),
            several_namespaces: namespaces.several_in_play(),
            existing: listed.clone(),
        }));
        recorder.check()?;
    }
    let existing = table.seed(seed::keep(listed, which), started_ns);
    Ok(Started {
        tracing: Tracing {
            probes,
            recorder,
            signals,
        },
        namespaces,
        table,
        existing,
        started_ns,
        clock,
    })
}

/// What a job handed to the loop can use besides the consumer.
pub struct JobContext<'a> {
    pub namespaces: &'a mut Namespaces,
    /// Records the kernel could not hand over so far.
    pub lost: Lost,
    /// Records the loop could not decode so far.
    pub rejected: &'a RejectCounts,
}

/// Work for the loop to do between two batches, with the consumer's state
/// current: every record produced before it was picked up is handled first.
pub type Job<C> = Box<dyn FnOnce(&mut C, JobContext<'_>) + Send>;

/// Where jobs come from (the agent's clients, an in-process view). When
/// every sender is gone, the loop ends.
pub type Inbox<C> = tokio::sync::mpsc::Receiver<Job<C>>;

/// Where the loop tells of records lost while it runs; at the end they are
/// in its [`LoopSummary`] either way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossNotices {
    /// A line on stderr whenever the total grows.
    Stderr,
    /// Only in the consumer's own view: a full-screen `top` shows lost
    /// events per second, and a line on stderr would tear its screen.
    InView,
}

/// Runs until SIGINT, SIGTERM, a closed stdout, or (with an `inbox`) until
/// every sender of jobs is gone. `stdout` is where the consumer's lines go;
/// `None` for a consumer that prints nothing (the agent and `top` answer
/// requests instead).
pub async fn run<C: Consumer>(
    tracing: Tracing,
    namespaces: &mut Namespaces,
    consumer: &mut C,
    stdout: Option<Output>,
    mut inbox: Option<&mut Inbox<C>>,
    loss_notices: LossNotices,
) -> anyhow::Result<LoopSummary> {
    let Tracing {
        probes,
        recorder,
        signals: StopSignals {
            mut interrupt,
            mut terminate,
        },
    } = tracing;
    // `_attached` keeps the programs attached until this function returns.
    let KernelProbes {
        attached: _attached,
        events,
        lost,
        mut kernel_log,
    } = probes;
    let mut decoder = Decoder {
        rejected: RejectCounts::default(),
        namespaces,
        labels: ContainerLabels::new(PathBuf::from("/proc"), LABELLED_PROCESSES),
        recorder,
    };
    let mut reconcile = tokio::time::interval(RECONCILE_INTERVAL);
    reconcile.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut drain = tokio::time::interval(DRAIN_INTERVAL);
    drain.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut lost_seen = 0u64;
    let mut schedule = ListingSchedule::default();
    let mut reader = RingReader::new(events)?;
    let mut out = Lines::from(stdout);

    loop {
        tokio::select! {
            // While stdout's queue is full, records wait in the ring (and
            // the kernel counts what does not fit there).
            batch = reader.next_batch(BATCH, |bytes| {
                decoder.decode(bytes, &mut |event| consumer.event(event, out.buffer()));
            }), if out.has_room() => {
                batch.context("reading the ring buffer")?;
                decoder.check_recording()?;
                if !out.flush()? {
                    break;
                }
            }
            _ = drain.tick() => {
                if let Some(kernel_log) = &mut kernel_log {
                    kernel_log.flush();
                }
                if drain_and_settle(&mut reader, &mut decoder, consumer, &mut out, Room::Wait, None)?.is_none() {
                    break;
                }
            }
            _ = reconcile.tick() => {
                let gone = decoder.namespaces.rescan_if_due(monotonic_now_ns());
                decoder.labels.refresh();
                let mut taken =
                    list_if_due(&mut reader, &mut decoder, consumer, &mut out, &schedule)?;
                // Read before the drain: a warning then follows every record
                // the ring held when the losses it names were counted.
                let lost = lost.read()?;
                let listing = taken.as_mut().and_then(|taken| taken.listing.take());
                let Some(settle_ns) = drain_and_settle(
                    &mut reader,
                    &mut decoder,
                    consumer,
                    &mut out,
                    Room::Wait,
                    listing,
                )?
                else {
                    break;
                };
                if let Some(taken) = taken {
                    // Applying it is part of what it cost.
                    schedule.done(taken.began_ns, taken.dump_ns + settle_ns);
                }
                for netns in gone {
                    let now_ns = monotonic_now_ns();
                    decoder.host(&HostFrame::NamespaceGone { netns, now_ns });
                    consumer.namespace_gone(netns, now_ns, out.buffer());
                }
                if !out.flush()? {
                    break;
                }
                if lost.total() > lost_seen && loss_notices == LossNotices::Stderr {
                    eprintln!("socktrace: so far {lost}");
                    lost_seen = lost.total();
                }
                if let Some(dropped) = out.newly_dropped() {
                    eprintln!(
                        "socktrace: so far {dropped} output lines dropped: stdout is not read as fast as transitions come"
                    );
                }
            }
            job = next_job(&mut inbox) => {
                let Some(job) = job else { break };
                if drain_and_settle(&mut reader, &mut decoder, consumer, &mut out, Room::Wait, None)?.is_none() {
                    break;
                }
                let lost = lost.read()?;
                job(consumer, JobContext {
                    namespaces: decoder.namespaces,
                    lost,
                    rejected: &decoder.rejected,
                });
            }
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
        }
    }
    // What the kernel produced before we stopped is still reported, or
    // counted as dropped output if stdout's queue has no room for it.
    drain_and_settle(
        &mut reader,
        &mut decoder,
        consumer,
        &mut out,
        Room::Ignore,
        None,
    )?;
    if let Some(kernel_log) = &mut kernel_log {
        kernel_log.flush();
    }
    let mut summary = LoopSummary {
        lost: lost.read()?,
        rejected: decoder.rejected,
        output_dropped: out.dropped_lines(),
    };
    let now_ns = monotonic_now_ns();
    if let Some(recorder) = &mut decoder.recorder {
        recorder.host(&HostFrame::End(End {
            now_ns,
            lost_ring_full: summary.lost.ring_full,
            lost_skipped: summary.lost.skipped,
            lost_skipped_signals: summary.lost.skipped_signals,
            output_dropped: summary.output_dropped,
        }));
        recorder.check()?;
    }
    consumer.finish(now_ns, &summary, out.buffer());
    summary.output_dropped = out.finish()?;
    Ok(summary)
}

/// What a recording lists, whatever the view: every state a view follows
/// through listings, for any view to replay.
fn recorded_listing() -> DumpRequest {
    DumpRequest::states(&[
        TcpState::SynRecv,
        TcpState::Listen,
        TcpState::TimeWait,
        TcpState::FinWait2,
    ])
    .with_memory()
}

/// A listing taken: what the consumer gets of it, when it began and what
/// its dumps cost.
struct Taken {
    listing: Option<HostListing>,
    began_ns: u64,
    dump_ns: u64,
}

/// Takes a listing when one is due and the consumer (or the recording)
/// follows one, writing it to the recording. The ring goes on being
/// drained while the listing is taken.
fn list_if_due<C: Consumer>(
    reader: &mut RingReader,
    decoder: &mut Decoder<'_>,
    consumer: &mut C,
    out: &mut Lines,
    schedule: &ListingSchedule,
) -> anyhow::Result<Option<Taken>> {
    let wanted = consumer.listing_request();
    let request = match (&wanted, decoder.recorder.is_some()) {
        (Some(wanted), true) => recorded_listing().union(wanted),
        (None, true) => recorded_listing(),
        (Some(wanted), false) => wanted.clone(),
        (None, false) => return Ok(None),
    };
    if !schedule.due(monotonic_now_ns()) {
        return Ok(None);
    }
    let followed = decoder.namespaces.followed();
    let taken = drain_during(reader, decoder, consumer, out, || {
        TakenListing::take(&followed, &request, schedule)
    })?;
    let listing = taken.into_listing(decoder.namespaces);
    let (began_ns, dump_ns) = (listing.began_ns, listing.ended_ns - listing.began_ns);
    let listing = match &mut decoder.recorder {
        Some(recorder) => {
            recorder.host(&HostFrame::Listing(listing.clone()));
            wanted.map(|wanted| listing.narrowed(&wanted))
        }
        None => Some(listing),
    };
    Ok(Some(Taken {
        listing,
        began_ns,
        dump_ns,
    }))
}

/// Runs `job` on a thread of its own and hands the ring's records to
/// `consumer` until it is done (while stdout's queue has room), so that a
/// long listing does not leave the ring to fill up. What the job returns
/// comes after those records, as if it had run between two drains. With
/// no thread to be had (a tasks limit), the job runs here, as listings
/// did before.
fn drain_during<T: Send>(
    reader: &mut RingReader,
    decoder: &mut Decoder<'_>,
    consumer: &mut impl Consumer,
    out: &mut Lines,
    job: impl Fn() -> T + Sync,
) -> anyhow::Result<T> {
    let (done, result) = std::sync::mpsc::sync_channel(1);
    let job = &job;
    std::thread::scope(|scope| {
        let spawned = std::thread::Builder::new()
            .name("listing".to_owned())
            .spawn_scoped(scope, move || {
                // Cannot fail: `result` outlives the scope, and the
                // channel has room for the one value.
                let _ = done.send(job());
            });
        let worker = match spawned {
            Ok(worker) => worker,
            Err(error) => {
                log::warn!(
                    "no thread for a listing ({error}): taking it without draining the ring meanwhile"
                );
                return Ok(job());
            }
        };
        let mut stdout_open = true;
        loop {
            let handled = if stdout_open && out.has_room() {
                reader.drain_now(BATCH, |bytes| {
                    decoder.decode(bytes, &mut |event| consumer.event(event, out.buffer()));
                })
            } else {
                0
            };
            if handled > 0 {
                decoder.check_recording()?;
                stdout_open = out.flush()?;
            }
            let wait = if handled == BATCH {
                Duration::ZERO
            } else {
                DRAIN_DURING_LISTING
            };
            match result.recv_timeout(wait) {
                Ok(value) => return Ok(value),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    return match worker.join() {
                        Err(panic) => std::panic::resume_unwind(panic),
                        Ok(()) => Err(anyhow::anyhow!("the listing's thread gave no listing")),
                    };
                }
            }
        }
    })
}

/// The next job, `None` once every sender is gone; never, without an inbox.
async fn next_job<C>(inbox: &mut Option<&mut Inbox<C>>) -> Option<Job<C>> {
    match inbox {
        Some(inbox) => inbox.recv().await,
        None => std::future::pending().await,
    }
}

/// Turns ring-buffer records into events for the consumer, counting the
/// rejected ones, leaving out those of namespaces not selected and telling
/// the namespaces which ones records come from. Transitions made in
/// process context get the container label of their process.
struct Decoder<'a> {
    rejected: RejectCounts,
    namespaces: &'a mut Namespaces,
    labels: ContainerLabels,
    recorder: Option<RunRecorder>,
}

impl Decoder<'_> {
    /// Fails if writing the recording failed; flushes it otherwise.
    fn check_recording(&mut self) -> anyhow::Result<()> {
        match &mut self.recorder {
            Some(recorder) => recorder.check(),
            None => Ok(()),
        }
    }

    /// Writes `frame` to the recording, if there is one.
    fn host(&mut self, frame: &HostFrame) {
        if let Some(recorder) = &mut self.recorder {
            recorder.host(frame);
        }
    }

    fn decode(&mut self, bytes: &[u8], consumer: &mut dyn FnMut(&Event)) {
        // Matched in place: the event is lent, never moved.
        let mut decoded = Event::try_from(bytes);
        let selected = match &mut decoded {
            Ok(event) => {
                let netns = event.netns();
                let selected = self.namespaces.selection().contains(netns);
                if selected {
                    self.namespaces.note(netns);
                    if let Event::State(state) = event
                        && state.context == TaskContext::Process
                    {
                        state.task.container = self.labels.of(state.task.pid);
                        if let Some(recorder) = &mut self.recorder {
                            recorder.label(state.task.pid, &state.task.container);
                        }
                    }
                }
                selected
            }
            Err(error) => {
                log::debug!("skipping record: {error}");
                self.rejected.count(*error);
                false
            }
        };
        if let Some(recorder) = &mut self.recorder {
            recorder.record(bytes);
        }
        if let (true, Ok(event)) = (selected, &decoded) {
            consumer(event);
        }
    }
}

/// Where a consumer's lines go: stdout through its queue, or nowhere.
enum Lines {
    Stdout(Output),
    /// A consumer that prints nothing; anything written is discarded.
    Nowhere(String),
}

impl From<Option<Output>> for Lines {
    fn from(stdout: Option<Output>) -> Self {
        stdout.map_or_else(|| Lines::Nowhere(String::new()), Lines::Stdout)
    }
}

impl Lines {
    fn buffer(&mut self) -> &mut String {
        match self {
            Lines::Stdout(out) => &mut out.buffer,
            Lines::Nowhere(discarded) => discarded,
        }
    }

    fn has_room(&self) -> bool {
        match self {
            Lines::Stdout(out) => out.has_room(),
            Lines::Nowhere(_) => true,
        }
    }

    /// `Ok(false)` when stdout's reader went away.
    fn flush(&mut self) -> anyhow::Result<bool> {
        match self {
            Lines::Stdout(out) => out.flush(),
            Lines::Nowhere(discarded) => {
                discarded.clear();
                Ok(true)
            }
        }
    }

    fn newly_dropped(&mut self) -> Option<u64> {
        match self {
            Lines::Stdout(out) => out.newly_dropped(),
            Lines::Nowhere(_) => None,
        }
    }

    fn dropped_lines(&self) -> u64 {
        match self {
            Lines::Stdout(out) => out.dropped_lines(),
            Lines::Nowhere(_) => 0,
        }
    }

    /// The lines dropped over the whole run, once the rest is written.
    fn finish(self) -> anyhow::Result<u64> {
        match self {
            Lines::Stdout(out) => out.finish(),
            Lines::Nowhere(_) => Ok(0),
        }
    }
}

/// Whether a drain stops when stdout's queue is full.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Room {
    /// Leave the rest in the ring until the queue has room.
    Wait,
    /// Drain it all (the end of a run): the queue drops what it cannot hold.
    Ignore,
}

/// Handles the records already in the ring, batch by batch, while stdout's
/// queue has room (or to the end), then hands the consumer `listing`, if
/// one was taken, and lets it settle. What applying the listing and
/// settling took, or `None` when stdout's reader went away.
fn drain_and_settle(
    reader: &mut RingReader,
    decoder: &mut Decoder<'_>,
    consumer: &mut impl Consumer,
    out: &mut Lines,
    room: Room,
    listing: Option<HostListing>,
) -> anyhow::Result<Option<u64>> {
    while room == Room::Ignore || out.has_room() {
        let handled = reader.drain_now(BATCH, |bytes| {
            decoder.decode(bytes, &mut |event| consumer.event(event, out.buffer()));
        });
        if !out.flush()? {
            return Ok(None);
        }
        if handled == 0 {
            break;
        }
    }
    decoder.check_recording()?;
    let settling_ns = monotonic_now_ns();
    decoder.host(&HostFrame::Settle {
        now_ns: settling_ns,
    });
    if let Some(listing) = listing {
        consumer.listed(listing, out.buffer());
    }
    consumer.settle(settling_ns, out.buffer());
    let settled_ns = monotonic_now_ns() - settling_ns;
    Ok(out.flush()?.then_some(settled_ns))
}
