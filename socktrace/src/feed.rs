//! Where a view's records come from: the kernel, through the event loop,
//! or a recording, through its replay. A view is the same consumer either
//! way.
use crate::{
    cli::{NetnsArgs, RingArgs},
    event_loop::{self, Consumer, LoopSummary, LossNotices, Started, Tracing},
    host::namespaces::Namespaces,
    recording::playback::Playback,
    render::output::Style,
    render::stdout_queue::Output,
    seed::Existing,
    state::table::{SocketTable, TrackedSocket},
};

#[expect(
    clippy::large_enum_variant,
    reason = "one per run, moved twice: boxing the kernel's side saves nothing"
)]
pub enum Feed {
    /// The attached programs, in the namespaces followed.
    Kernel {
        tracing: Tracing,
        namespaces: Namespaces,
    },
    Recording(Playback),
}

/// What a view starts from, whichever its feed.
pub struct ViewStart {
    pub feed: Feed,
    /// Seeded with the sockets that existed when tracing began.
    pub table: SocketTable,
    /// Every socket listed then, as the table names it.
    pub existing: Vec<TrackedSocket>,
    /// When tracing began (CLOCK_MONOTONIC).
    pub started_ns: u64,
    pub style: Style,
}

impl ViewStart {
    /// Attaches the programs and seeds the table (see
    /// [`event_loop::attach_and_seed`]).
    pub fn traced(ring: &RingArgs, netns: &NetnsArgs, which: Existing) -> anyhow::Result<Self> {
        let Started {
            tracing,
            namespaces,
            table,
            existing,
            started_ns,
            clock,
        } = event_loop::attach_and_seed(ring, netns, which)?;
        let style = Style {
            clock,
            netns_column: namespaces.several_in_play(),
        };
        Ok(ViewStart {
            feed: Feed::Kernel {
                tracing,
                namespaces,
            },
            table,
            existing,
            started_ns,
            style,
        })
    }
}

impl Feed {
    /// Says on stderr that tracing began; a replay has nothing to say.
    pub fn ready(&self, what: &str) {
        if let Feed::Kernel { .. } = self {
            eprintln!("socktrace: ready: {what}");
        }
    }

    /// Hands every record to `consumer` until the end (of the recording, or
    /// SIGINT and SIGTERM); its lines go to `stdout`.
    pub async fn run<C: Consumer>(
        self,
        consumer: &mut C,
        stdout: Output,
    ) -> anyhow::Result<LoopSummary> {
        match self {
            Feed::Kernel {
                tracing,
                mut namespaces,
            } => {
                event_loop::run(
                    tracing,
                    &mut namespaces,
                    consumer,
                    Some(stdout),
                    None,
                    LossNotices::Stderr,
                )
                .await
            }
            Feed::Recording(playback) => playback.run(consumer, stdout),
        }
    }
}
