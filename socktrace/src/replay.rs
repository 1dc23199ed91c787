//! `socktrace replay FILE VIEW`: a view run over a recording instead of the
//! kernel.
use std::io;

use crate::{
    agent::live_consumer::LiveConsumer,
    cli::replay::{ReplayArgs, ReplaySsArgs, ReplayView},
    handshakes,
    recording::playback,
    render::stdout_queue::Output,
    seed::Existing,
    ss::{self, recorded::SocketsAt},
    state::live::LiveState,
    timewait, trace,
};

pub async fn run(args: ReplayArgs) -> anyhow::Result<()> {
    match args.view {
        ReplayView::Trace(view) => {
            let opened = playback::open(&args.file, &view.netns, trace::existing_for(&view))?;
            trace::show(opened.into_view(), view).await
        }
        ReplayView::Handshakes(view) => {
            let opened = playback::open(&args.file, &view.filter.netns, Existing::WithoutTimeWait)?;
            handshakes::show(opened.into_view(), view).await
        }
        ReplayView::Timewait(view) => {
            let opened = playback::open(&args.file, &view.filter.netns, Existing::WithoutTimeWait)?;
            timewait::show(opened.into_view(), view).await
        }
        ReplayView::Ss(view) => ss_at(&args.file, view),
    }
}

/// The sockets at `--at`, as the agent would have listed them.
fn ss_at(file: &std::path::Path, args: ReplaySsArgs) -> anyhow::Result<()> {
    let query = ss::query(&args.view)?;
    let opened = playback::open(file, &args.netns, Existing::WithoutTimeWait)?;
    let until_ns = args
        .at
        .as_deref()
        .map(|at| ss::recorded::parse_at(at, opened.started_ns, &opened.style.clock))
        .transpose()?;
    let several = opened.style.netns_column;
    let mut at = SocketsAt::new(LiveConsumer::new(LiveState::new(opened.table)));
    opened
        .playback
        .run_until(&mut at, Output::to(io::sink()), until_ns)?;
    ss::print_listing(&args.view, &query, at.sockets(), several, |netns| {
        netns.to_string()
    })
}
