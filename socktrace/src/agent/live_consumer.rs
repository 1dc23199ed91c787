//! The live state in the event loop: fed every record, reconciled with
//! sock_diag listings of request and timewait sockets (at most every
//! second, less often when listings are expensive), and answering the
//! views' requests ([`Answers`]). Serves the agent's clients and in-process
//! views alike.
use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
    sync::Arc,
    time::Duration,
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use crate::{
    agent::protocol::{Request, Response},
    event_loop::{Consumer, Job, JobContext},
    host::listing::HostListing,
    host::namespaces::{Listing, NamespaceDump, NamespacesError},
    host::proc_owners::socket_owners,
    host::self_usage::SelfUsage,
    host::sock_diag::{DiagSocket, DumpRequest},
    kernel::event::Event,
    metrics::snapshot::MetricsSnapshot,
    model::owner::Owner,
    model::tcp_state::TcpState,
    model::tuple::NetnsInode,
    state::live::{LiveState, PortListeners},
    state::time_wait_tracker::ListingTime,
    support::clock::monotonic_now_ns,
    support::error_line::ErrorLine,
};

/// Socket listings made at once. Each holds its dumps, then its answer
/// until the client has read it: this bounds the memory listings take.
const LISTINGS_AT_ONCE: usize = 2;

/// How long a listing waits for its turn before it is refused as busy.
const LISTING_WAIT: Duration = Duration::from_secs(5);

/// See the module documentation.
pub struct LiveConsumer {
    live: LiveState,
    /// What the last listing cost, dump and applying it.
    last_listing_ns: Option<u64>,
    /// Ports whose listeners the metrics report (`--metrics-port`).
    listen_ports: Vec<u16>,
}

impl LiveConsumer {
    pub fn new(live: LiveState) -> Self {
        LiveConsumer {
            live,
            last_listing_ns: None,
            listen_ports: Vec::new(),
        }
    }

    /// Also lists the listeners of `ports` at every listing, for the
    /// metrics.
    pub fn with_listen_ports(mut self, ports: &[u16]) -> Self {
        self.listen_ports = ports.to_vec();
        self
    }

    /// The live state, as the last settle left it.
    pub fn live(&self) -> &LiveState {
        &self.live
    }

    /// What a scrape of the agent's metrics reports now.
    fn metrics(&self, context: JobContext<'_>) -> MetricsSnapshot {
        let live = self.live.metrics(monotonic_now_ns());
        let namespace_names = live
            .states_by_namespace
            .iter()
            .flat_map(BTreeMap::keys)
            .chain(live.counts.by_namespace.iter().flat_map(BTreeMap::keys))
            .map(|&netns| (netns, context.namespaces.label(netns)))
            .collect();
        MetricsSnapshot {
            namespace_names,
            live,
            lost: context.lost,
            malformed_records: context.rejected.total(),
            usage: SelfUsage::read().ok(),
            listing_ns: self.last_listing_ns,
        }
    }

    /// Counts and top remotes of `netns` (sorted, without duplicates).
    fn overview(&mut self, netns: &[NetnsInode], context: JobContext<'_>) -> Response {
        if let Some(&missing) = netns
            .iter()
            .find(|&&n| !context.namespaces.selection().contains(n))
        {
            return Response::Refused(NamespacesError::NotFollowed(missing).to_string());
        }
        let overview = self.live.overview(
            monotonic_now_ns(),
            |n| netns.binary_search(&n).is_ok(),
            context.lost.total(),
        );
        Response::Overview(Box::new(overview))
    }
}

impl Consumer for LiveConsumer {
    fn event(&mut self, event: &Event, _out: &mut String) {
        self.live.event(event);
    }

    /// FIN-WAIT-2 brings the orphans' timewait sockets (and full FIN-WAIT-2
    /// sockets, which the trackers leave out); listeners only for the ports
    /// the metrics report.
    fn listing_request(&self) -> Option<DumpRequest> {
        let mut states = vec![TcpState::SynRecv, TcpState::TimeWait, TcpState::FinWait2];
        Some(if self.listen_ports.is_empty() {
            DumpRequest::states(&states)
        } else {
            states.push(TcpState::Listen);
            DumpRequest::states(&states).with_memory()
        })
    }

    fn listed(&mut self, listing: HostListing, _out: &mut String) {
        let applying_ns = monotonic_now_ns();
        let HostListing {
            began_ns,
            ended_ns,
            mut dumps,
            readings,
            ..
        } = listing;
        let time = ListingTime { began_ns, ended_ns };
        let listeners =
            (!self.listen_ports.is_empty()).then(|| take_listeners(&mut dumps, &self.listen_ports));
        for dump in &dumps {
            self.live.reconcile(dump.netns, &dump.sockets, time);
        }
        for (netns, reading) in &readings {
            self.live.observe_namespace(*netns, reading);
        }
        if let Some(listeners) = listeners {
            self.live.observe_listeners(listeners);
        }
        // The listing's cost is the dump and applying it (under churn,
        // applying a large timewait population costs more than the dump).
        self.last_listing_ns = Some((ended_ns - began_ns) + (monotonic_now_ns() - applying_ns));
    }

    fn namespace_gone(&mut self, netns: NetnsInode, now_ns: u64, _out: &mut String) {
        self.live.tear_down(netns, now_ns);
    }

    fn settle(&mut self, _now_ns: u64, _out: &mut String) {
        self.live.settled();
    }
}

/// The answers to the views' requests, from the event loop that runs a
/// [`LiveConsumer`]. What needs the live state is done in the loop, as jobs
/// between two drains of the ring; what takes long (the sock_diag dumps in
/// each namespace, reading /proc for owners) is done on a blocking thread,
/// `LISTINGS_AT_ONCE` at most, so that no request holds the loop up.
#[derive(Clone)]
pub struct Answers {
    jobs: mpsc::Sender<Job<LiveConsumer>>,
    listings: Arc<Semaphore>,
}

/// A response, and for a listing its turn, to hold until it is written.
pub struct Answer {
    pub response: Response,
    pub turn: Option<OwnedSemaphorePermit>,
}

impl Answer {
    pub fn refused(reason: String) -> Self {
        Answer {
            response: Response::Refused(reason),
            turn: None,
        }
    }
}

impl Answers {
    /// Answers through the loop that runs the jobs sent to `jobs`.
    pub fn new(jobs: mpsc::Sender<Job<LiveConsumer>>) -> Self {
        Answers {
            jobs,
            listings: Arc::new(Semaphore::new(LISTINGS_AT_ONCE)),
        }
    }

    /// Returns once the loop is gone.
    pub async fn closed(&self) {
        self.jobs.closed().await;
    }

    /// The answer to `request`; the namespaces it names are taken once
    /// each, whatever the repeats.
    pub async fn answer(&self, request: Request) -> Answer {
        let answered = match request {
            Request::Sockets { netns, owners } => self.sockets(unique(netns), owners).await,
            Request::Overview { netns } => {
                let netns = unique(netns);
                self.in_loop(move |consumer, context| consumer.overview(&netns, context))
                    .await
                    .map(|response| Answer {
                        response,
                        turn: None,
                    })
            }
        };
        answered.unwrap_or_else(Answer::refused)
    }

    /// A snapshot for the metrics endpoint, over every namespace traced.
    pub async fn metrics(&self) -> Result<MetricsSnapshot, String> {
        self.in_loop(|consumer, context| consumer.metrics(context))
            .await
    }

    /// The sockets of `netns` as `ss -tan` lists them, annotated from the
    /// live state once every record produced before the dumps was handled.
    async fn sockets(&self, netns: Vec<NetnsInode>, owners: bool) -> Result<Answer, String> {
        let listing = self
            .in_loop(move |_, context| context.namespaces.listing(&netns))
            .await?
            .map_err(|error| ErrorLine(&error).to_string())?;
        let turn = tokio::time::timeout(LISTING_WAIT, Arc::clone(&self.listings).acquire_owned())
            .await
            .map_err(|_| {
                format!(
                    "busy: {LISTINGS_AT_ONCE} socket listings in progress for {}s; try again",
                    LISTING_WAIT.as_secs()
                )
            })?
            .map_err(|_| STOPPING.to_owned())?;
        let read = tokio::task::spawn_blocking(move || read_listing(listing, owners))
            .await
            .map_err(|error| format!("listing sockets: {error}"))??;
        let sockets = self
            .in_loop(move |consumer, _| {
                consumer
                    .live
                    .listing(&read.sockets, monotonic_now_ns(), &read.owners)
            })
            .await?;
        Ok(Answer {
            response: Response::Sockets(sockets),
            turn: Some(turn),
        })
    }

    /// Runs `job` in the loop, with every record produced before it was
    /// picked up handled.
    async fn in_loop<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut LiveConsumer, JobContext<'_>) -> T + Send + 'static,
    ) -> Result<T, String> {
        let (reply, answer) = oneshot::channel();
        let job: Job<LiveConsumer> = Box::new(move |consumer, context| {
            let _ = reply.send(job(consumer, context));
        });
        self.jobs.send(job).await.map_err(|_| STOPPING.to_owned())?;
        answer.await.map_err(|_| STOPPING.to_owned())
    }
}

/// Why a request found no loop to answer it.
const STOPPING: &str = "the tracer is stopping";

/// Namespaces sorted, each once.
fn unique(mut netns: Vec<NetnsInode>) -> Vec<NetnsInode> {
    netns.sort_unstable();
    netns.dedup();
    netns
}

/// Takes the listening sockets out of `dumps` (the trackers want the
/// others), keeping the figures of those on `ports`, by port.
fn take_listeners(dumps: &mut [NamespaceDump], ports: &[u16]) -> BTreeMap<u16, PortListeners> {
    let mut listeners: BTreeMap<u16, PortListeners> = BTreeMap::new();
    for dump in dumps {
        dump.sockets.retain(|socket| {
            if socket.state != TcpState::Listen {
                return true;
            }
            let port = socket.tuple.local.port();
            if ports.contains(&port) {
                listeners.entry(port).or_default().add(
                    socket.recv_queue,
                    socket.send_queue,
                    socket.drops.unwrap_or(0),
                );
            }
            false
        });
    }
    listeners
}

/// What a socket listing reads away from the loop.
struct ListingRead {
    sockets: Vec<DiagSocket>,
    /// Owners from /proc, when asked for.
    owners: HashMap<u32, Owner>,
}

/// Dumps every socket of the listing's namespaces and, with `owners`,
/// reads their owners from /proc.
fn read_listing(listing: Listing, owners: bool) -> Result<ListingRead, String> {
    let dumps = listing
        .dump(&DumpRequest::all())
        .map_err(|error| ErrorLine(&error).to_string())?;
    let owners = if owners {
        socket_owners(Path::new("/proc"))
            .map_err(|error| format!("reading the sockets' owners: {}", ErrorLine(&error)))?
    } else {
        HashMap::new()
    };
    Ok(ListingRead {
        sockets: dumps.into_iter().flat_map(|dump| dump.sockets).collect(),
        owners,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_namespaces_are_taken_once() {
        assert_eq!(unique(vec![7; 5_000]), vec![7]);
        assert_eq!(unique(vec![9, 3, 9, 1, 3]), vec![1, 3, 9]);
    }
}
