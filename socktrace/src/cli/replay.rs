//! Command line of `socktrace replay`.
use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{HandshakesView, TimewaitView, TraceView};

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The recording, as `--record FILE` wrote it.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    #[command(subcommand)]
    pub view: ReplayView,
}

/// The view to run over the recording, with its own options.
#[derive(Debug, Subcommand)]
pub enum ReplayView {
    /// As `socktrace trace` showed it.
    Trace(TraceView),
    /// As `socktrace handshakes` showed it.
    Handshakes(HandshakesView),
    /// As `socktrace timewait` showed it.
    Timewait(TimewaitView),
}
