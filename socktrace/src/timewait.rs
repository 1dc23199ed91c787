//! `socktrace timewait`: every timewait socket through the socket table and
//! the TIME-WAIT tracker, with a sock_diag listing of timewait sockets once
//! per reconciliation interval; CLOSE-WAIT sockets the application never
//! closed; a periodic summary.
use std::collections::BTreeMap;

use crate::{
    cli::TimewaitArgs,
    event_loop::{self, Consumer, LoopSummary, LossNotices, listing_interval_ns},
    host::namespaces::Namespaces,
    host::netstat::TcpExt,
    host::sock_diag::DumpRequest,
    kernel::event::Event,
    model::tcp_state::TcpState,
    model::tuple::NetnsInode,
    render::output::{Format, Style},
    render::socket_filter::SocketFilter,
    render::stdout_queue::Output,
    render::time_wait_output,
    seed::Existing,
    state::close_wait_watch::CloseWaitWatch,
    state::counter_since::CounterSince,
    state::pipeline::{Applied, Pipeline, Trackers},
    state::time_wait_summary::{Observed, PortRange, TimeWaitSummary},
    state::time_wait_tracker::{ListedTimeWait, ListingTime, TimeWaitOutcome, listed_time_wait},
    support::clock::monotonic_now_ns,
};

/// The ephemeral port range of the namespace that opens the file.
const PORT_RANGE: &str = "/proc/sys/net/ipv4/ip_local_port_range";

/// The kernel's count of timewait sockets it refused to create.
const OVERFLOW_COUNTER: &str = "TCPTimeWaitOverflow";

pub async fn run(args: TimewaitArgs) -> anyhow::Result<()> {
    let format = Format::from_json_flag(args.json);
    let event_loop::Started {
        tracing,
        mut namespaces,
        table,
        existing,
    } = event_loop::attach_and_seed(&args.ring, &args.filter.netns, Existing::WithoutTimeWait)?;
    let style = Style::of(&namespaces);
    let started_ns = monotonic_now_ns();
    let mut close_wait = CloseWaitWatch::new(args.close_wait_after.as_ns(), started_ns);
    close_wait.seed(&existing);
    drop(existing);
    let mut out = Output::new();
    if format == Format::Human {
        out.line(&time_wait_output::header(&style));
    }
    out.flush()?;
    eprintln!("socktrace: ready: tracing TIME-WAIT and CLOSE-WAIT sockets");
    let mut printer = TimeWaitPrinter {
        pipeline: Pipeline::new(
            table,
            Trackers {
                handshakes: false,
                time_wait: true,
            },
        ),
        close_wait,
        summary: TimeWaitSummary::new(started_ns),
        filter: SocketFilter::from(args.filter),
        entries: args.entries,
        format,
        style,
        listing: None,
        observed: Observed::default(),
        next_listing_ns: 0,
        overflows: CounterSince::new(),
        summary_every_ns: args.summary_every.as_ns(),
        last_summary_ns: started_ns,
        top: args.top,
    };
    let summary = event_loop::run(
        tracing,
        &mut namespaces,
        &mut printer,
        Some(out),
        None,
        LossNotices::Stderr,
    )
    .await?;
    summary.report();
    printer.report();
    Ok(())
}

/// sock_diag's timewait sockets of each namespace that could be listed,
/// and when the dumps began; each namespace's counters and port range read
/// with them.
struct Listing {
    taken_ns: u64,
    /// How long the dumps took.
    took_ns: u64,
    namespaces: Vec<(NetnsInode, Vec<ListedTimeWait>)>,
    counters: Vec<(NetnsInode, TcpExt)>,
    port_ranges: BTreeMap<NetnsInode, PortRange>,
}

struct TimeWaitPrinter {
    pipeline: Pipeline,
    close_wait: CloseWaitWatch,
    summary: TimeWaitSummary,
    filter: SocketFilter,
    /// Print confirmed entries too.
    entries: bool,
    format: Format,
    style: Style,
    listing: Option<Listing>,
    /// The namespaces as the last listing saw them, and the listing
    /// schedule.
    observed: Observed,
    /// No listing before this moment (see [`listing_interval_ns`]).
    next_listing_ns: u64,
    /// `TCPTimeWaitOverflow` of every namespace followed.
    overflows: CounterSince,
    summary_every_ns: u64,
    last_summary_ns: u64,
    top: usize,
}

impl TimeWaitPrinter {
    fn publish(&mut self, outcome: TimeWaitOutcome, out: &mut String) {
        for entered in &outcome.entered {
            if self.filter.matches(&entered.tuple, entered.owner.as_ref()) {
                self.summary.record_entered();
                if self.entries {
                    time_wait_output::write_entered(out, entered, self.format, &self.style);
                }
            }
        }
        for ended in &outcome.ended {
            let socket = &ended.socket;
            if self.filter.matches(&socket.tuple, socket.owner.as_ref()) {
                self.summary.record_ended(ended);
                time_wait_output::write_ended(out, ended, self.format, &self.style);
            }
        }
    }

    fn apply_listing(&mut self, listing: Listing, out: &mut String) {
        let applying_ns = monotonic_now_ns();
        let time = ListingTime {
            began_ns: listing.taken_ns,
            ended_ns: listing.taken_ns + listing.took_ns,
        };
        for (netns, sockets) in &listing.namespaces {
            let outcome = self.pipeline.on_time_wait_listing(*netns, sockets, time);
            self.publish(outcome, out);
        }
        let applied_ns = monotonic_now_ns() - applying_ns;
        self.schedule_listing(listing.taken_ns, listing.took_ns + applied_ns);
        for (netns, counters) in &listing.counters {
            if let Some(value) = counters.get(OVERFLOW_COUNTER) {
                self.overflows.observe(*netns, value);
            }
        }
        self.observed.overflows = self.overflows.total();
        self.observed.port_ranges = listing.port_ranges;
    }

    /// The next listing after one begun at `taken_ns` that cost `cost_ns`.
    fn schedule_listing(&mut self, taken_ns: u64, cost_ns: u64) {
        let interval_ns = listing_interval_ns(cost_ns);
        self.next_listing_ns = taken_ns + interval_ns;
        self.observed.listing_interval_ns = interval_ns;
    }

    fn write_summary(&mut self, now_ns: u64, out: &mut String) {
        self.observed.close_wait = self.close_wait.counts(now_ns);
        let filter = &self.filter;
        let sockets = self
            .pipeline
            .time_wait()
            .sockets()
            .filter(|s| filter.matches(&s.tuple, s.owner.as_ref()));
        let report = self
            .summary
            .report(now_ns, sockets, self.observed.clone(), self.top);
        time_wait_output::write_summary(out, &report, self.format, &self.style, now_ns);
    }

    /// What the tracker could not account for, on stderr at exit.
    fn report(&self) {
        let stats = self.pipeline.time_wait().stats();
        if stats.never_listed > 0 {
            eprintln!(
                "socktrace: {} closes into TIME-WAIT were never listed by sock_diag (another network namespace, or not created: see the overflow count)",
                stats.never_listed
            );
        }
        if stats.unseen + stats.replaced > 0 {
            eprintln!(
                "socktrace: {} timewait sockets appeared and {} were replaced without their events (events lost)",
                stats.unseen, stats.replaced
            );
        }
    }
}

impl Consumer for TimeWaitPrinter {
    fn event(&mut self, event: Event, out: &mut String) {
        if let Applied::Transition {
            transition,
            time_wait,
            ..
        } = self.pipeline.apply(event)
        {
            self.publish(time_wait, out);
            if let Some(report) = self.close_wait.on_transition(&transition)
                && self.filter.matches(&report.tuple, report.owner.as_ref())
            {
                time_wait_output::write_close_wait(out, &report, self.format, &self.style);
            }
        }
    }

    fn snapshot(&mut self, namespaces: &mut Namespaces) -> anyhow::Result<()> {
        let taken_ns = monotonic_now_ns();
        if taken_ns < self.next_listing_ns {
            return Ok(());
        }
        // The kernel filters timewait sockets by substate: orphans still
        // in FIN-WAIT-2 need that state's bit (full FIN-WAIT-2 sockets come
        // with it and are left out).
        let request = DumpRequest::states(&[TcpState::TimeWait, TcpState::FinWait2]);
        let listed: Vec<_> = namespaces
            .periodic_listing(&request, taken_ns)
            .into_iter()
            .map(|dump| (dump.netns, listed_time_wait(&dump.sockets)))
            .collect();
        let took_ns = monotonic_now_ns() - taken_ns;
        // Both files of a namespace in one visit.
        let read = namespaces.in_each(|| {
            let range = std::fs::read_to_string(PORT_RANGE).ok();
            (
                TcpExt::read_here(),
                range.and_then(|text| PortRange::parse(&text)),
            )
        });
        let port_ranges = read
            .iter()
            .filter_map(|(netns, (_, range))| Some((*netns, (*range)?)))
            .collect();
        self.listing = Some(Listing {
            taken_ns,
            took_ns,
            namespaces: listed,
            counters: read
                .into_iter()
                .map(|(netns, (counters, _))| (netns, counters))
                .collect(),
            port_ranges,
        });
        Ok(())
    }

    fn namespace_gone(&mut self, netns: NetnsInode, now_ns: u64, out: &mut String) {
        self.close_wait.tear_down(netns);
        self.overflows.forget(netns);
        let outcome = self.pipeline.tear_down(netns, now_ns);
        self.publish(outcome, out);
    }

    fn settle(&mut self, now_ns: u64, out: &mut String) {
        if let Some(listing) = self.listing.take() {
            self.apply_listing(listing, out);
        }
        for report in self.close_wait.check(now_ns) {
            if self.filter.matches(&report.tuple, report.owner.as_ref()) {
                time_wait_output::write_close_wait(out, &report, self.format, &self.style);
            }
        }
        let every = self.summary_every_ns;
        if every > 0 && now_ns.saturating_sub(self.last_summary_ns) >= every {
            self.last_summary_ns = now_ns;
            self.write_summary(now_ns, out);
        }
    }

    fn finish(&mut self, now_ns: u64, _totals: &LoopSummary, out: &mut String) {
        self.settle(now_ns, out);
        self.write_summary(now_ns, out);
    }
}
