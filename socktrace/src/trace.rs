//! `socktrace trace`: kernel events through the socket table to stdout.
use crate::{
    cli::TraceArgs,
    event_loop::{self, Consumer, LoopSummary, LossNotices},
    kernel::event::Event,
    model::tuple::NetnsInode,
    render::output::{self, Format, Style, TraceSummary},
    render::stdout_queue::Output,
    seed::Existing,
    state::pipeline::{Applied, Pipeline, Trackers},
};

pub async fn run(args: TraceArgs) -> anyhow::Result<()> {
    let format = Format::from_json_flag(args.json);
    let event_loop::Started {
        tracing,
        mut namespaces,
        table,
        existing,
    } = event_loop::attach_and_seed(
        &args.ring,
        &args.netns,
        if args.list_existing {
            Existing::All
        } else {
            Existing::WithoutTimeWait
        },
    )?;
    let style = Style::of(&namespaces);

    let mut out = Output::new();
    if args.list_existing {
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
    eprintln!(
        "socktrace: ready: tracing TCP state transitions, {} existing sockets",
        existing.len()
    );
    let mut printer = TransitionPrinter {
        pipeline: Pipeline::new(table, Trackers::TABLE_ONLY),
        format,
        style,
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
    fn event(&mut self, event: Event, out: &mut String) {
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
