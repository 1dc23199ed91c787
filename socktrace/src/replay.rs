//! `socktrace replay FILE VIEW`: a view run over a recording instead of the
//! kernel.
use crate::{
    cli::replay::{ReplayArgs, ReplayView},
    handshakes,
    recording::playback,
    seed::Existing,
    timewait, trace,
};

pub async fn run(args: ReplayArgs) -> anyhow::Result<()> {
    match args.view {
        ReplayView::Trace(view) => {
            let start = playback::open(&args.file, &view.netns, trace::existing_for(&view))?;
            trace::show(start, view).await
        }
        ReplayView::Handshakes(view) => {
            let start = playback::open(&args.file, &view.filter.netns, Existing::WithoutTimeWait)?;
            handshakes::show(start, view).await
        }
        ReplayView::Timewait(view) => {
            let start = playback::open(&args.file, &view.filter.netns, Existing::WithoutTimeWait)?;
            timewait::show(start, view).await
        }
    }
}
