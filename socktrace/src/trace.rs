//! `socktrace trace`: kernel events through the socket table to stdout.
use anyhow::Context as _;

use crate::{
    cli::TraceArgs,
    clock::WallClock,
    event::Event,
    event_loop::{self, Consumer, Output},
    loader,
    output::{self, Format},
    seed,
    table::SocketTable,
};

pub async fn run(args: TraceArgs) -> anyhow::Result<()> {
    let format = if args.json {
        Format::Json
    } else {
        Format::Human
    };
    // Attach before listing existing sockets, so nothing falls in between.
    let probes = loader::load_and_attach(args.ring.ring_buffer_kib * 1024)?;
    let mut table = SocketTable::new();
    table.seed(seed::existing_sockets().context("listing existing sockets")?);

    let mut out = Output::new();
    if args.list_existing {
        if format == Format::Human {
            out.line(&output::socket_header());
        }
        for socket in table.sockets() {
            output::write_socket(&mut out.buffer, socket, format);
        }
    }
    if format == Format::Human {
        out.line(&output::transition_header());
    }
    out.flush()?;
    eprintln!(
        "socktrace: ready: tracing TCP state transitions, {} existing sockets in the table",
        table.len()
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
