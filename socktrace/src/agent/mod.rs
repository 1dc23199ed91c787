//! `socktrace agent`: the tracer as a long-lived daemon, one per host,
//! serving its live state to `socktrace ss` and `socktrace top` over a Unix
//! socket only root (and one configured group) can use.
pub mod client;
pub mod connection_slots;
pub mod framing;
pub mod live_consumer;
pub mod protocol;
pub mod server;
use anyhow::Context as _;
use tokio::sync::mpsc;

use crate::{
    agent::live_consumer::{Answers, LiveConsumer},
    agent::server::Access,
    cli::AgentArgs,
    event_loop::{self, LossNotices},
    metrics,
    seed::Existing,
    state::live::LiveState,
};

/// Jobs waiting for the loop: one per client and scraper served, at most
/// (a listing sends its jobs one after the other).
const QUEUED_REQUESTS: usize = server::MAX_CLIENTS + metrics::server::MAX_SCRAPERS;

/// Prefixes `--metrics-peer` may name (each adds 18 series), and ports
/// `--metrics-port` may name (each adds 3).
pub const MAX_METRICS_PEERS: usize = 64;
pub const MAX_METRICS_PORTS: usize = 64;

pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    if args.metrics_peers.len() > MAX_METRICS_PEERS {
        anyhow::bail!(
            "{} --metrics-peer prefixes: at most {MAX_METRICS_PEERS}",
            args.metrics_peers.len()
        );
    }
    if args.metrics_ports.len() > MAX_METRICS_PORTS {
        anyhow::bail!(
            "{} --metrics-port ports: at most {MAX_METRICS_PORTS}",
            args.metrics_ports.len()
        );
    }
    let group = match &args.group {
        Some(name) => {
            let etc_group = std::fs::read_to_string("/etc/group").unwrap_or_default();
            Some(server::group_id(&etc_group, name)?)
        }
        None => None,
    };
    // Before attaching: a socket that cannot be served fails at once.
    // Clients that come meanwhile wait in the listen backlog.
    let listening = server::bind(&args.socket, Access { group })?;
    let metrics = match args.metrics {
        Some(address) => Some(
            tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| format!("serving metrics on {address}"))?,
        ),
        None => None,
    };
    let event_loop::Started {
        tracing,
        mut namespaces,
        table,
        ..
    } = event_loop::attach_and_seed(&args.ring, &args.netns, Existing::WithoutTimeWait)?;
    let (jobs, mut inbox) = mpsc::channel(QUEUED_REQUESTS);
    let answers = Answers::new(jobs);
    let server = tokio::spawn(server::serve(listening, answers.clone()));
    let mut serving = args.socket.display().to_string();
    if let Some(listener) = metrics {
        let address = listener.local_addr().context("the metrics address")?;
        serving = format!("{serving} and metrics on http://{address}/metrics");
        tokio::spawn(metrics::server::serve(listener, answers));
    }
    eprintln!("socktrace: ready: agent serving {serving}");
    let mut live = LiveState::new(table);
    live.count_peers(&args.metrics_peers);
    if args.metrics_namespaces {
        live.count_namespaces();
    }
    let mut consumer = LiveConsumer::new(live).with_listen_ports(&args.metrics_ports);
    let summary = event_loop::run(
        tracing,
        &mut namespaces,
        &mut consumer,
        None,
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
