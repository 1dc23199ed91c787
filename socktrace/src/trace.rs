//! `socktrace trace`: kernel events through the socket table to stdout.
use crate::{
    cli::TraceArgs,
    clock::WallClock,
    event::Event,
    event_loop::{self, Consumer, Output},
    output::{self, Format},
    seed::Existing,
    table::SocketTable,
};

pub async fn run(args: TraceArgs) -> anyhow::Result<()> {
    let format = Format::from_json_flag(args.json);
    let event_loop::Started {
        probes,
        table,
        existing,
    } = event_loop::attach_and_seed(
        args.ring.ring_buffer_kib,
        if args.list_existing {
            Existing::All
        } else {
            Existing::WithoutTimeWait
        },
    )?;

    let mut out = Output::new();
    if args.list_existing {
        if format == Format::Human {
            out.line(&output::socket_header());
        }
        for socket in &existing {
            output::write_socket(&mut out.buffer, socket, format);
        }
    }
    if format == Format::Human {
        out.line(&output::transition_header());
    }
    out.flush()?;
    eprintln!(
        "socktrace: ready: tracing TCP state transitions, {} existing sockets",
        existing.len()
    );
    let mut printer = TransitionPrinter {
        table,
        format,
        clock: WallClock::now(),
    };
    let summary = event_loop::run(probes, &mut printer, &mut out).await?;
    summary.report();
    let inconsistent = printer.table.stats().inconsistent;
    if inconsistent > 0 {
        eprintln!(
            "socktrace: {inconsistent} transitions disagreed with the socket table (events missed before start or lost)"
        );
    }
    Ok(())
}

/// Applies transitions to the table and prints them; the handshake records
/// are other commands' business.
struct TransitionPrinter {
    table: SocketTable,
    format: Format,
    clock: WallClock,
}

impl Consumer for TransitionPrinter {
    fn event(&mut self, event: Event, out: &mut String) {
        if let Event::State(event) = event {
            let transition = self.table.apply(&event);
            output::write_transition(out, &transition, self.format, &self.clock);
        }
    }
}
