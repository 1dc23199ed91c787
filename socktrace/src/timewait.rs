//! `socktrace timewait`: every timewait socket through the socket table and
//! the TIME-WAIT tracker, with a sock_diag listing of timewait sockets at
//! every listing the loop takes; CLOSE-WAIT sockets the application never
//! closed; a periodic summary.
use crate::{
    cli::{TimewaitArgs, TimewaitView},
    event_loop::{Consumer, LoopSummary},
    feed::ViewStart,
    host::listing::HostListing,
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
    state::time_wait_summary::{Observed, TimeWaitSummary},
    state::time_wait_tracker::{ListingTime, TimeWaitOutcome, listed_time_wait},
};

pub async fn run(args: TimewaitArgs) -> anyhow::Result<()> {
    let start = ViewStart::traced(
        &args.ring,
        &args.view.filter.netns,
        Existing::WithoutTimeWait,
    )?;
    show(start, args.view).await
}

/// The view, live or replayed.
pub async fn show(start: ViewStart, args: TimewaitView) -> anyhow::Result<()> {
    let format = Format::from_json_flag(args.json);
    let ViewStart {
        feed,
        table,
        existing,
        started_ns,
        style,
    } = start;
    let mut close_wait = CloseWaitWatch::new(args.close_wait_after.as_ns(), started_ns);
    close_wait.seed(&existing);
    drop(existing);
    let mut out = Output::new();
    if format == Format::Human {
        out.line(&time_wait_output::header(&style));
    }
    out.flush()?;
    feed.ready("tracing TIME-WAIT and CLOSE-WAIT sockets");
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
        observed: Observed::default(),
        overflows: CounterSince::new(),
        summary_every_ns: args.summary_every.as_ns(),
        last_summary_ns: started_ns,
        top: args.top,
    };
    let summary = feed.run(&mut printer, out).await?;
    summary.report();
    printer.report();
    Ok(())
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
    /// The namespaces as the last listing saw them, and how often listings
    /// come.
    observed: Observed,
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

    fn apply_listing(&mut self, listing: HostListing, out: &mut String) {
        let time = ListingTime {
            began_ns: listing.began_ns,
            ended_ns: listing.ended_ns,
        };
        for dump in &listing.dumps {
            let sockets = listed_time_wait(&dump.sockets);
            let outcome = self
                .pipeline
                .on_time_wait_listing(dump.netns, &sockets, time);
            self.publish(outcome, out);
        }
        for (netns, reading) in &listing.readings {
            if let Some(value) = reading.time_wait_overflows {
                self.overflows.observe(*netns, value);
            }
        }
        self.observed.overflows = self.overflows.total();
        self.observed.port_ranges = listing
            .readings
            .iter()
            .filter_map(|(netns, reading)| Some((*netns, reading.port_range?)))
            .collect();
        self.observed.listing_interval_ns = listing.interval_ns;
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
    fn event(&mut self, event: &Event, out: &mut String) {
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

    /// The kernel filters timewait sockets by substate: orphans still in
    /// FIN-WAIT-2 need that state's bit (full FIN-WAIT-2 sockets come with
    /// it and are left out).
    fn listing_request(&self) -> Option<DumpRequest> {
        Some(DumpRequest::states(&[
            TcpState::TimeWait,
            TcpState::FinWait2,
        ]))
    }

    fn listed(&mut self, listing: HostListing, out: &mut String) {
        self.apply_listing(listing, out);
    }

    fn namespace_gone(&mut self, netns: NetnsInode, now_ns: u64, out: &mut String) {
        self.close_wait.tear_down(netns);
        self.overflows.forget(netns);
        let outcome = self.pipeline.tear_down(netns, now_ns);
        self.publish(outcome, out);
    }

    fn settle(&mut self, now_ns: u64, out: &mut String) {
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
