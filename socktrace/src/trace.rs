//! `socktrace trace`: kernel events through the socket table to stdout.
use crate::{
    cli::{TraceArgs, TraceView},
    event_loop::{Consumer, LoopSummary},
    feed::ViewStart,
    kernel::event::Event,
    model::tuple::NetnsInode,
    render::output::{self, Format, Style, TraceSummary},
    render::stdout_queue::Output,
    seed::Existing,
    state::pipeline::{Applied, Pipeline, Trackers},
};

pub async fn run(args: TraceArgs) -> anyhow::Result<()> {
    let start = ViewStart::traced(&args.ring, &args.view.netns, existing_for(&args.view))?;
    show(start, args.view).await
}

/// The sockets that existed at start the view needs: all of them to list
/// them, else those the table keeps.
pub fn existing_for(view: &TraceView) -> Existing {
    if view.list_existing {
        Existing::All
    } else {
        Existing::WithoutTimeWait
    }
}

/// The view, live or replayed.
pub async fn show(start: ViewStart, view: TraceView) -> anyhow::Result<()> {
    let format = Format::from_json_flag(view.json);
    let ViewStart {
        feed,
        table,
        existing,
        style,
        ..
    } = start;
    let mut out = Output::new();
    if view.list_existing {
        if format == Format::Human {
            out.line(&output::socket_header(&style));
        }
        for socket in &existing {
            output::write_socket(&mut out.buffer, socket, format, &style);
        }
    }
    if format == Format::Human {
        out.line(&output::transition_header(&style));
    }
    out.flush()?;
    feed.ready(&format!(
        "tracing TCP state transitions, {} existing sockets",
        existing.len()
    ));
    let mut printer = TransitionPrinter {
        pipeline: Pipeline::new(table, Trackers::TABLE_ONLY),
        format,
        style,
    };
    let summary = feed.run(&mut printer, out).await?;
    summary.report();
    let stats = printer.pipeline.table().stats();
    let missed = stats.transitions_missed();
    if missed > 0 {
        eprintln!(
            "socktrace: at least {missed} transitions never arrived (seen as gaps in sockets' \
             lives; lost events included)"
        );
    }
    if stats.torn_down > 0 {
        eprintln!(
            "socktrace: {} sockets were dropped with their network namespace before their CLOSE was seen",
            stats.torn_down
        );
    }
    Ok(())
}

/// Applies transitions to the table and prints them; the handshake records
/// are other commands' business.
struct TransitionPrinter {
    pipeline: Pipeline,
    format: Format,
    style: Style,
}

impl Consumer for TransitionPrinter {
    fn event(&mut self, event: &Event, out: &mut String) {
        if let Applied::Transition { transition, .. } = self.pipeline.apply(event) {
            output::write_transition(out, &transition, self.format, &self.style);
        }
    }

    fn namespace_gone(&mut self, netns: NetnsInode, now_ns: u64, _out: &mut String) {
        self.pipeline.tear_down(netns, now_ns);
    }

    /// `--json` ends with what did not reach it (stderr says it either way).
    fn finish(&mut self, _now_ns: u64, totals: &LoopSummary, out: &mut String) {
        if self.format == Format::Json {
            let stats = self.pipeline.table().stats();
            output::write_trace_summary(
                out,
                &TraceSummary {
                    lost_events: totals.lost.total(),
                    transitions_missed: stats.transitions_missed(),
                    malformed_records: totals.rejected.total(),
                    output_lines_dropped: totals.output_dropped,
                    sockets_torn_down: stats.torn_down,
                },
            );
        }
    }
}
