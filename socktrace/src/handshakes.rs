//! `socktrace handshakes`: every handshake attempt through the socket table
//! and the handshake tracker, with sock_diag snapshots of request sockets
//! and listeners at every listing the loop takes.

use crate::{
    cli::{HandshakesArgs, HandshakesView},
    event_loop::{Consumer, LoopSummary},
    feed::ViewStart,
    host::listing::HostListing,
    host::namespaces::NamespaceDump,
    host::sock_diag::DumpRequest,
    kernel::event::Event,
    model::tcp_state::TcpState,
    model::tuple::NetnsInode,
    render::handshake_output,
    render::output::{Format, Style},
    render::socket_filter::SocketFilter,
    render::stdout_queue::Output,
    seed::Existing,
    state::handshake_summary::{HandshakeSummary, KEPT_PER_SIDE, ListenCounters, ListenerSample},
    state::handshake_tracker::{Handshake, Retrying},
    state::pipeline::{Applied, Pipeline, Trackers},
    state::time_wait_tracker::ListingTime,
};

pub async fn run(args: HandshakesArgs) -> anyhow::Result<()> {
    let start = ViewStart::traced(
        &args.ring,
        &args.view.filter.netns,
        Existing::WithoutTimeWait,
    )?;
    show(start, args.view).await
}

/// The view, live or replayed.
pub async fn show(start: ViewStart, args: HandshakesView) -> anyhow::Result<()> {
    let format = Format::from_json_flag(args.json);
    let ViewStart {
        feed,
        table,
        started_ns,
        style,
        ..
    } = start;
    let mut out = Output::new();
    if format == Format::Human {
        out.line(&handshake_output::header(&style));
    }
    out.flush()?;
    feed.ready("tracing TCP handshakes");
    let mut printer = HandshakePrinter {
        pipeline: Pipeline::new(
            table,
            Trackers {
                handshakes: true,
                time_wait: false,
            },
        ),
        summary: HandshakeSummary::new(),
        filter: SocketFilter::from(args.filter),
        problems_only: args.problems,
        format,
        style,
        summary_every_ns: args.summary_every.as_ns(),
        top: args.top,
        last_summary_ns: started_ns,
    };
    let summary = feed.run(&mut printer, out).await?;
    summary.report();
    printer.report();
    Ok(())
}

struct HandshakePrinter {
    pipeline: Pipeline,
    summary: HandshakeSummary,
    filter: SocketFilter,
    problems_only: bool,
    format: Format,
    style: Style,
    summary_every_ns: u64,
    /// Rows in each of the summary's lists.
    top: usize,
    last_summary_ns: u64,
}

impl HandshakePrinter {
    fn resolved(&mut self, handshake: Handshake, out: &mut String) {
        if !self
            .filter
            .matches(&handshake.tuple, handshake.owner.as_ref())
        {
            return;
        }
        self.summary.record(&handshake);
        let problem = handshake.retransmits() > 0 || !handshake.outcome.succeeded();
        if problem || !self.problems_only {
            handshake_output::write_handshake(out, &handshake, self.format, &self.style);
        }
    }

    fn retrying(&self, retrying: Retrying, out: &mut String) {
        if self
            .filter
            .matches(&retrying.tuple, retrying.owner.as_ref())
        {
            handshake_output::write_retrying(out, &retrying, self.format, &self.style);
        }
    }

    fn apply_snapshot(&mut self, snapshot: HostListing, out: &mut String) {
        let time = ListingTime {
            began_ns: snapshot.began_ns,
            ended_ns: snapshot.ended_ns,
        };
        let mut listeners = Vec::new();
        for dump in &snapshot.dumps {
            let reconciled = self.pipeline.on_listing(dump.netns, &dump.sockets, time);
            for expired in reconciled.expired {
                self.resolved(expired, out);
            }
            listeners.extend(self.listener_samples(dump));
        }
        self.summary.observe_listeners(&listeners);
        for (netns, reading) in &snapshot.readings {
            if let (Some(overflows), Some(drops)) = (reading.listen_overflows, reading.listen_drops)
            {
                self.summary
                    .observe_listen_counters(*netns, ListenCounters { overflows, drops });
            }
        }
    }

    /// One namespace's listeners, with their queues and drops.
    fn listener_samples(&self, dump: &NamespaceDump) -> Vec<ListenerSample> {
        dump.sockets
            .iter()
            .filter(|s| s.state == TcpState::Listen)
            .filter(|s| {
                let ports = &self.filter.ports;
                ports.is_empty() || ports.contains(&s.tuple.local.port())
            })
            .map(|s| ListenerSample {
                local: s.tuple.local,
                inode: s.inode,
                drops: s.drops.unwrap_or(0),
                accept_queue: s.recv_queue,
                backlog: s.send_queue,
            })
            .collect()
    }

    /// What the tracker could not account for, on stderr at exit.
    fn report(&self) {
        let stats = self.pipeline.handshakes().stats();
        if stats.server_unlisted > 0 {
            eprintln!(
                "socktrace: {} half-open connections were seen only in SYN-ACK retransmits, never listed",
                stats.server_unlisted
            );
        }
        if stats.torn_down > 0 {
            eprintln!(
                "socktrace: {} handshake attempts were dropped with their network namespace",
                stats.torn_down
            );
        }
        if stats.client_ends_missed > 0 {
            eprintln!(
                "socktrace: {} client attempts lost their end (events lost)",
                stats.client_ends_missed
            );
        }
        let pending = self.pipeline.handshakes().pending();
        if pending > 0 {
            eprintln!("socktrace: {pending} handshake attempts were still in progress at exit");
        }
        for (merged, what) in [
            (self.summary.peers_merged(), "peers"),
            (self.summary.subnets_merged(), "subnets"),
        ] {
            if merged.keys > 0 {
                eprintln!(
                    "socktrace: the handshake summary kept at most {KEPT_PER_SIDE} {what} per \
                     side: {} more were merged, their {} attempts in no row",
                    merged.keys, merged.attempts
                );
            }
        }
    }
}

impl Consumer for HandshakePrinter {
    fn event(&mut self, event: &Event, out: &mut String) {
        match self.pipeline.apply(event) {
            Applied::Transition {
                handshake: Some(handshake),
                ..
            } => self.resolved(handshake, out),
            Applied::Retrying(retrying) => self.retrying(retrying, out),
            Applied::Transition { .. } | Applied::Noted => {}
        }
    }

    fn listing_request(&self) -> Option<DumpRequest> {
        Some(DumpRequest::states(&[TcpState::SynRecv, TcpState::Listen]).with_memory())
    }

    fn listed(&mut self, listing: HostListing, out: &mut String) {
        self.apply_snapshot(listing, out);
    }

    fn namespace_gone(&mut self, netns: NetnsInode, now_ns: u64, _out: &mut String) {
        self.pipeline.tear_down(netns, now_ns);
        self.summary.forget_namespace(netns);
    }

    fn settle(&mut self, now_ns: u64, out: &mut String) {
        self.pipeline.settled();
        let every = self.summary_every_ns;
        if every > 0 && now_ns.saturating_sub(self.last_summary_ns) >= every {
            self.last_summary_ns = now_ns;
            handshake_output::write_summary(out, &self.summary, self.format, self.top);
        }
    }

    fn finish(&mut self, now_ns: u64, _totals: &LoopSummary, out: &mut String) {
        self.settle(now_ns, out);
        handshake_output::write_summary(out, &self.summary, self.format, self.top);
    }
}
