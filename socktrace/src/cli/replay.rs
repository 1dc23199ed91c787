//! Command line of `socktrace replay`.
use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{HandshakesView, NetnsArgs, SsView, TimewaitView, TraceView};

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
    /// The sockets as `socktrace ss` would have listed them at --at TIME,
    /// from what the recording knows: every socket the tracer followed, its
    /// owner, time in state and retries; the queues of listeners as the
    /// last listing before showed them. Other queues and timers, which only
    /// a dump at that moment could tell, are `-`.
    Ss(ReplaySsArgs),
}

#[derive(Debug, Args)]
pub struct ReplaySsArgs {
    /// When: a time of day as the views print it, HH:MM:SS[.mmm] (UTC, the
    /// first such moment from the recording's start), or +SECS[.mmm] from
    /// its start; the end of the recording without it.
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,

    #[command(flatten)]
    pub view: SsView,

    #[command(flatten)]
    pub netns: NetnsArgs,
}
