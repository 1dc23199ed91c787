//! A recording played back for `socktrace replay`: its frames handed to a
//! view's consumer in the order the event loop handed them over live: the
//! records of the namespaces followed (labelled as they were), each
//! listing, each settle, each namespace gone, and the end.
use std::{collections::HashMap, path::Path, time::Duration};

use anyhow::{Context as _, bail};

use super::{
    format::{self, Frame},
    frame::{End, HostFrame, Start},
};
use crate::{
    cli::NetnsArgs,
    event_loop::{Consumer, LoopSummary},
    feed::{Feed, ViewStart},
    host::namespaces::Selection,
    kernel::event::{DecodeError, Event, RejectCounts, TaskContext},
    kernel::lost::Lost,
    model::owner::ContainerLabel,
    render::output::Style,
    render::stdout_queue::Output,
    seed::{self, Existing},
    state::table::{SocketTable, TrackedSocket},
    support::clock::WallClock,
};

/// Output handed to stdout's writer once this much is buffered.
const WRITE_EVERY: usize = 64 * 1024;

/// A recording opened for a view.
pub struct Playback {
    bytes: Vec<u8>,
    path: String,
    selection: Selection,
}

/// A recording opened, and what a view starts from.
pub struct Opened {
    pub playback: Playback,
    /// Seeded as the view would have seeded it live.
    pub table: SocketTable,
    pub existing: Vec<TrackedSocket>,
    pub started_ns: u64,
    pub style: Style,
}

impl Opened {
    pub fn into_view(self) -> ViewStart {
        ViewStart {
            feed: Feed::Recording(self.playback),
            table: self.table,
            existing: self.existing,
            started_ns: self.started_ns,
            style: self.style,
        }
    }
}

/// Reads the recording at `path` and its start: the table seeded as the
/// view would have seeded it live, in the namespaces `netns` narrows the
/// recording's to.
pub fn open(path: &Path, netns: &NetnsArgs, which: Existing) -> anyhow::Result<Opened> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).with_context(|| format!("reading {shown}"))?;
    let mut frames = format::frames(&bytes).with_context(|| shown.clone())?;
    let start = match frames.next() {
        Some(Ok(Frame::Host(HostFrame::Start(start)))) => start,
        Some(Err(error)) => return Err(error).context(shown),
        None => bail!("{shown}: the recording is empty (not even its start was written)"),
        Some(Ok(_)) => bail!("{shown}: the recording does not begin with its start"),
    };
    let selection = narrowed(&start, netns)?;
    let netns_column = selection_is_several(&selection, start.several_namespaces);
    let existing: Vec<_> = start
        .existing
        .iter()
        .filter(|socket| selection.contains(socket.tuple.netns))
        .cloned()
        .collect();
    let mut table = SocketTable::new();
    let existing = table.seed(seed::keep(existing, which), start.started_ns);
    Ok(Opened {
        playback: Playback {
            bytes,
            path: shown,
            selection,
        },
        table,
        existing,
        started_ns: start.started_ns,
        style: Style {
            clock: WallClock::with_offset_ns(i128::from(start.wall_clock_offset_ns)),
            netns_column,
        },
    })
}

/// The recording's namespaces, narrowed to `--netns`'s.
fn narrowed(start: &Start, netns: &NetnsArgs) -> anyhow::Result<Selection> {
    if !netns.names.is_empty() {
        bail!(
            "a recording keeps namespaces by inode, not by name: use --netns INODE instead of -N"
        );
    }
    if netns.inodes.is_empty() {
        return Ok(match &start.selection {
            None => Selection::All,
            Some(inodes) => Selection::Only(inodes.iter().copied().collect()),
        });
    }
    if let Some(recorded) = &start.selection
        && let Some(missing) = netns.inodes.iter().find(|inode| !recorded.contains(inode))
    {
        bail!("network namespace {missing} was not followed when the recording was made");
    }
    Ok(Selection::Only(netns.inodes.iter().copied().collect()))
}

/// Whether the view shows a namespace column, as it would have live.
fn selection_is_several(selection: &Selection, recorded: bool) -> bool {
    selection.single().is_none() && recorded
}

impl Playback {
    /// Drives `consumer` through the recording; its lines go to `out`,
    /// waiting for stdout's reader rather than dropping them.
    pub fn run<C: Consumer>(self, consumer: &mut C, out: Output) -> anyhow::Result<LoopSummary> {
        self.run_until(consumer, out, None)
    }

    /// [`Playback::run`], ending before the first frame after `until_ns`
    /// (CLOCK_MONOTONIC), when given, as if the tracer had stopped then.
    pub fn run_until<C: Consumer>(
        self,
        consumer: &mut C,
        mut out: Output,
        until_ns: Option<u64>,
    ) -> anyhow::Result<LoopSummary> {
        let after = |ns: u64| until_ns.is_some_and(|until| ns > until);
        let mut stopped = false;
        let mut frames = format::frames(&self.bytes).with_context(|| self.path.clone())?;
        // The start, read by `open`.
        frames.next();
        let mut labels: HashMap<u32, Option<ContainerLabel>> = HashMap::new();
        let mut rejected = RejectCounts::default();
        let mut end: Option<End> = None;
        let mut last_ns = 0;
        // A listing waits for the settle that applied it live.
        let mut listing = None;
        for frame in frames.by_ref() {
            let frame = match frame.with_context(|| self.path.clone())? {
                Frame::Record(raw) => Played::Record(Event::try_from(raw)),
                Frame::Host(frame) => Played::Host(frame),
            };
            if frame.time().is_some_and(after) {
                stopped = true;
                break;
            }
            match frame {
                Played::Record(decoded) => match decoded {
                    Ok(mut event) if self.selection.contains(event.netns()) => {
                        if let Event::State(state) = &mut event {
                            last_ns = state.ts_ns;
                            if state.context == TaskContext::Process {
                                state.task.container =
                                    labels.get(&state.task.pid).cloned().flatten();
                            }
                        }
                        consumer.event(&event, &mut out.buffer);
                    }
                    Ok(_) => {}
                    Err(error) => rejected.count(error),
                },
                Played::Host(HostFrame::Label { pid, label }) => {
                    labels.insert(pid, label.map(|label| ContainerLabel::new(&label)));
                }
                Played::Host(HostFrame::Listing(taken)) => listing = Some(taken),
                Played::Host(HostFrame::Settle { now_ns }) => {
                    last_ns = now_ns;
                    if let (Some(taken), Some(request)) =
                        (listing.take(), consumer.listing_request())
                    {
                        consumer.listed(taken.narrowed(&request), &mut out.buffer);
                    }
                    consumer.settle(now_ns, &mut out.buffer);
                }
                Played::Host(HostFrame::NamespaceGone { netns, now_ns }) => {
                    if self.selection.contains(netns) {
                        consumer.namespace_gone(netns, now_ns, &mut out.buffer);
                    }
                }
                Played::Host(HostFrame::End(recorded)) => {
                    end = Some(recorded);
                    break;
                }
                Played::Host(HostFrame::Start(_)) => {
                    bail!("{}: a second start: two recordings in one file?", self.path)
                }
            }
            if out.buffer.len() >= WRITE_EVERY && !write_out(&mut out)? {
                return Ok(summary(end, rejected));
            }
        }
        if end.is_none() && !stopped {
            let why = match frames.cut_short() {
                Some(bytes) => {
                    format!("it was cut short, {bytes} bytes after its last whole frame skipped")
                }
                None => "the tracer did not stop cleanly".to_owned(),
            };
            eprintln!(
                "socktrace: {}: replayed up to its last whole frame: {why}",
                self.path
            );
        }
        let summary = summary(end, rejected);
        let now_ns = match (until_ns, end) {
            (Some(until), _) if stopped => until,
            (_, Some(end)) => end.now_ns,
            _ => last_ns,
        };
        consumer.finish(now_ns, &summary, &mut out.buffer);
        write_out(&mut out)?;
        out.finish()?;
        Ok(summary)
    }
}

/// A frame as the playback takes it: a kernel record decoded once.
enum Played {
    Record(Result<Event, DecodeError>),
    Host(HostFrame),
}

impl Played {
    /// When it happened, for those that tell.
    fn time(&self) -> Option<u64> {
        match self {
            Played::Record(decoded) => decoded.as_ref().ok().map(Event::ts_ns),
            Played::Host(HostFrame::Listing(listing)) => Some(listing.began_ns),
            Played::Host(
                HostFrame::Settle { now_ns } | HostFrame::NamespaceGone { now_ns, .. },
            ) => Some(*now_ns),
            Played::Host(HostFrame::End(end)) => Some(end.now_ns),
            Played::Host(HostFrame::Start(_) | HostFrame::Label { .. }) => None,
        }
    }
}

/// What the run lost, as the recording tells, and what did not decode.
fn summary(end: Option<End>, rejected: RejectCounts) -> LoopSummary {
    let end = end.unwrap_or_default();
    LoopSummary {
        lost: Lost {
            ring_full: end.lost_ring_full,
            skipped: end.lost_skipped,
            skipped_signals: end.lost_skipped_signals,
        },
        rejected,
        output_dropped: end.output_dropped,
    }
}

/// Hands the buffered lines to stdout's writer once it has room: a replay
/// waits for its reader instead of dropping lines. `false` when the reader
/// went away.
fn write_out(out: &mut Output) -> anyhow::Result<bool> {
    while !out.has_room() {
        std::thread::sleep(Duration::from_millis(1));
    }
    out.flush()
}
