//! The live state in the event loop: fed every record, reconciled with
//! sock_diag listings of request and timewait sockets (at most every
//! second, less often when listings are expensive), and answering the
//! views' requests. Serves the agent's clients and in-process views alike.
use std::{collections::HashMap, path::Path};

use crate::{
    agent_protocol::{Request, Response},
    agent_server::Answer,
    clock::monotonic_now_ns,
    event::Event,
    event_loop::{Consumer, JobContext},
    live::LiveState,
    log_throttle::LogThrottle,
    namespaces::{NamespaceDump, Namespaces, NamespacesError},
    proc_owners::socket_owners,
    sock_diag::{DiagSocket, DumpRequest},
    tcp_state::TcpState,
    time_wait::ListingTime,
    timewait::listing_interval_ns,
    tuple::NetnsInode,
};

/// At most one warning this often about reconciliation listings that fail.
const LISTING_WARNING_EVERY_NS: u64 = 60_000_000_000;

/// Request and timewait sockets of each namespace that could be listed.
struct Reconciliation {
    time: ListingTime,
    dumps: Vec<NamespaceDump>,
}

/// See the module documentation.
pub struct LiveConsumer {
    live: LiveState,
    pending: Option<Reconciliation>,
    /// No listing before this moment (see [`listing_interval_ns`]).
    next_listing_ns: u64,
    /// Namespaces that could not be listed for reconciliation.
    failed_listings: LogThrottle,
}

impl LiveConsumer {
    pub fn new(live: LiveState) -> Self {
        LiveConsumer {
            live,
            pending: None,
            next_listing_ns: 0,
            failed_listings: LogThrottle::new(LISTING_WARNING_EVERY_NS),
        }
    }

    fn sockets(&self, namespaces: &mut Namespaces, netns: &[NetnsInode], owners: bool) -> Response {
        let dumps = match namespaces.dump_in(netns, &DumpRequest::all()) {
            Ok(dumps) => dumps,
            Err(error) => return Response::Refused(error.to_string()),
        };
        let now_ns = monotonic_now_ns();
        let owners = if owners {
            match socket_owners(Path::new("/proc")) {
                Ok(owners) => owners,
                Err(error) => {
                    return Response::Refused(format!(
                        "reading the sockets' owners in /proc: {error}"
                    ));
                }
            }
        } else {
            HashMap::new()
        };
        let sockets: Vec<DiagSocket> = dumps.into_iter().flat_map(|d| d.sockets).collect();
        Response::Sockets(self.live.listing(&sockets, now_ns, &owners))
    }
}

impl Consumer for LiveConsumer {
    fn event(&mut self, event: Event, _out: &mut String) {
        self.live.event(event);
    }

    fn snapshot(&mut self, namespaces: &mut Namespaces) -> anyhow::Result<()> {
        let began_ns = monotonic_now_ns();
        if began_ns < self.next_listing_ns {
            return Ok(());
        }
        // FIN-WAIT-2 brings the orphans' timewait sockets (and full
        // FIN-WAIT-2 sockets, which the trackers leave out).
        let request =
            DumpRequest::states(&[TcpState::SynRecv, TcpState::TimeWait, TcpState::FinWait2]);
        let dumps = namespaces
            .dump_each(&request)
            .into_iter()
            .filter_map(|dump| {
                // That namespace keeps its state and waits for the next
                // listing.
                dump.inspect_err(|error| {
                    if let Some(times) = self.failed_listings.failed(began_ns) {
                        log::warn!("reconciliation listing failed {times} time(s): {error}");
                    }
                })
                .ok()
            })
            .collect();
        let ended_ns = monotonic_now_ns();
        // Provisional: `settle` adds what applying the listing cost.
        self.next_listing_ns = began_ns + listing_interval_ns(ended_ns - began_ns);
        self.pending = Some(Reconciliation {
            time: ListingTime { began_ns, ended_ns },
            dumps,
        });
        Ok(())
    }

    fn namespace_gone(&mut self, netns: NetnsInode, now_ns: u64, _out: &mut String) {
        self.live.tear_down(netns, now_ns);
    }

    fn settle(&mut self, _now_ns: u64, _out: &mut String) {
        if let Some(reconciliation) = self.pending.take() {
            let applying_ns = monotonic_now_ns();
            for dump in &reconciliation.dumps {
                self.live
                    .reconcile(dump.netns, &dump.sockets, reconciliation.time);
            }
            // The listing's cost is the dump and applying it (under
            // churn, applying a large timewait population costs more than
            // the dump).
            let ListingTime { began_ns, ended_ns } = reconciliation.time;
            let cost_ns = (ended_ns - began_ns) + (monotonic_now_ns() - applying_ns);
            self.next_listing_ns = began_ns + listing_interval_ns(cost_ns);
        }
    }
}

impl Answer for LiveConsumer {
    fn answer(&mut self, request: Request, context: JobContext<'_>) -> Response {
        match request {
            Request::Sockets { netns, owners } => self.sockets(context.namespaces, &netns, owners),
            Request::Overview { netns } => {
                if let Some(&missing) = netns
                    .iter()
                    .find(|&&n| !context.namespaces.selection().contains(n))
                {
                    return Response::Refused(NamespacesError::NotFollowed(missing).to_string());
                }
                let overview = self.live.overview(
                    monotonic_now_ns(),
                    |n| netns.contains(&n),
                    context.lost_events,
                );
                Response::Overview(Box::new(overview))
            }
        }
    }
}
