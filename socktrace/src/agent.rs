//! `socktrace agent`: the tracer as a long-lived daemon, one per host,
//! serving its live state to `socktrace ss` and `socktrace top` over a Unix
//! socket only root (and one configured group) can use.
use tokio::sync::mpsc;

use crate::{
    agent_server::{self, Access},
    cli::AgentArgs,
    event_loop::{self, LossNotices, Output},
    live::LiveState,
    live_consumer::LiveConsumer,
    seed::Existing,
};

/// Requests waiting for the loop; clients beyond wait in their send.
const QUEUED_REQUESTS: usize = 64;

pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let group = match &args.group {
        Some(name) => {
            let etc_group = std::fs::read_to_string("/etc/group").unwrap_or_default();
            Some(agent_server::group_id(&etc_group, name)?)
        }
        None => None,
    };
    let event_loop::Started {
        probes,
        recorder,
        mut namespaces,
        table,
        ..
    } = event_loop::attach_and_seed(&args.ring, &args.netns, Existing::WithoutTimeWait)?;
    let listening = agent_server::bind(&args.socket, Access { group })?;
    let (jobs, mut inbox) = mpsc::channel(QUEUED_REQUESTS);
    let server = tokio::spawn(agent_server::serve(listening, jobs));
    eprintln!("socktrace: ready: agent serving {}", args.socket.display());
    let mut consumer = LiveConsumer::new(LiveState::new(table));
    let mut out = Output::new();
    let summary = event_loop::run(
        probes,
        recorder,
        &mut namespaces,
        &mut consumer,
        &mut out,
        Some(&mut inbox),
        LossNotices::Stderr,
    )
    .await;
    // Closing the inbox ends the server, which removes its socket file.
    drop(inbox);
    let _ = server.await;
    summary?.report();
    Ok(())
}
