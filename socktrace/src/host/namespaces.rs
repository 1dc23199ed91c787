//! The network namespaces the agent follows: which exist (rescanned when a
//! record names an unknown one, when an entry stops working, and every few
//! seconds; a scan that fails changes nothing), which the user selected,
//! and the sock_diag dumps made inside each of them. The kernel records name a socket's namespace by inode;
//! sock_diag answers only for the namespace its socket was opened in.
use std::{collections::BTreeSet, io, path::PathBuf};

use crate::{
    host::netns::{self, NamespaceRegistry, NetNamespace, NetnsError},
    host::sock_diag::{self, DiagSocket, DumpRequest, SockDiagError},
    model::tuple::NetnsInode,
    support::error_line::ErrorLine,
    support::log_throttle::LogThrottle,
};

/// Where processes' namespaces are found.
const PROC_ROOT: &str = "/proc";
/// Where `ip netns` keeps its named namespaces (what `ss -N` takes).
pub const RUN_NETNS: &str = "/run/netns";

/// Longest time between two full rescans when nothing asks for one.
const RESCAN_EVERY_NS: u64 = 5_000_000_000;

/// At most one warning this often about scans that fail.
const SCAN_WARNING_EVERY_NS: u64 = 60_000_000_000;

/// Why namespaces could not be selected or listed.
#[derive(Debug, thiserror::Error)]
pub enum NamespacesError {
    #[error("cannot read the agent's own network namespace (/proc/thread-self/ns/net)")]
    Own(#[source] std::io::Error),
    #[error(transparent)]
    Name(#[from] NetnsError),
    #[error(
        "no network namespace has inode {0} (`lsns -t net` lists them, `ls -l /proc/PID/ns/net` shows one process's)"
    )]
    NoSuchInode(NetnsInode),
    #[error("network namespace {0} is not followed (the agent was started with -N/--netns)")]
    NotFollowed(NetnsInode),
    #[error(transparent)]
    Dump(#[from] DumpError),
}

/// Which namespaces a command reports on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Selection {
    /// Every namespace, including those created later.
    #[default]
    All,
    /// Only these.
    Only(BTreeSet<NetnsInode>),
}

impl Selection {
    pub fn contains(&self, netns: NetnsInode) -> bool {
        match self {
            Selection::All => true,
            Selection::Only(chosen) => chosen.contains(&netns),
        }
    }

    /// The namespaces chosen, `None` for every one.
    pub fn inodes(&self) -> Option<Vec<NetnsInode>> {
        match self {
            Selection::All => None,
            Selection::Only(chosen) => Some(chosen.iter().copied().collect()),
        }
    }

    /// The one namespace selected, if exactly one is.
    pub fn single(&self) -> Option<NetnsInode> {
        match self {
            Selection::Only(chosen) if chosen.len() == 1 => chosen.first().copied(),
            _ => None,
        }
    }
}

/// One namespace's dump.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NamespaceDump {
    pub netns: NetnsInode,
    pub sockets: Vec<DiagSocket>,
}

/// Why one namespace could not be dumped.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    /// Opening or entering it failed; the error names the namespace.
    #[error(transparent)]
    Enter(NetnsError),
    #[error("network namespace {netns}")]
    Dump {
        netns: NetnsInode,
        #[source]
        source: SockDiagError,
    },
}

/// The namespaces known, the agent's own, and the user's selection.
#[derive(Debug)]
pub struct Namespaces {
    registry: NamespaceRegistry,
    own: NetnsInode,
    selection: Selection,
    proc_root: PathBuf,
    run_netns: PathBuf,
    /// A record named a namespace no scan found, or an entry failed.
    rescan_wanted: bool,
    last_scan_ns: u64,
    /// The last namespace passed to [`Namespaces::note`]: most records
    /// come from the same one as the record before.
    last_noted: NetnsInode,
    /// Scans that failed, and when one was last said so.
    failed_scans: LogThrottle,
    /// Periodic listings that failed in a namespace, and when one was last
    /// said so.
    failed_listings: LogThrottle,
}

impl Namespaces {
    /// Finds the namespaces that exist now, and resolves the user's
    /// selection: `names` under /run/netns and `inodes` that must exist.
    pub fn discover(
        names: &[String],
        inodes: &[NetnsInode],
        now_ns: u64,
    ) -> Result<Self, NamespacesError> {
        let own = netns::own().map_err(NamespacesError::Own)?;
        let mut namespaces = Namespaces {
            registry: NamespaceRegistry::new(),
            own,
            selection: Selection::All,
            proc_root: PathBuf::from(PROC_ROOT),
            run_netns: PathBuf::from(RUN_NETNS),
            rescan_wanted: false,
            last_scan_ns: now_ns,
            last_noted: own,
            failed_scans: LogThrottle::new(SCAN_WARNING_EVERY_NS),
            failed_listings: LogThrottle::new(SCAN_WARNING_EVERY_NS),
        };
        let first = netns::scan(&namespaces.proc_root, &namespaces.run_netns)?;
        namespaces.registry.update(first);
        if names.is_empty() && inodes.is_empty() {
            return Ok(namespaces);
        }
        let mut chosen = BTreeSet::new();
        for name in names {
            chosen.insert(netns::inode_of_name(&namespaces.run_netns, name)?);
        }
        for &inode in inodes {
            if inode != own && namespaces.registry.get(inode).is_none() {
                return Err(NamespacesError::NoSuchInode(inode));
            }
            chosen.insert(inode);
        }
        namespaces.selection = Selection::Only(chosen);
        Ok(namespaces)
    }

    pub fn selection(&self) -> &Selection {
        &self.selection
    }

    /// Whether output has to say which namespace a socket is in: more than
    /// one can show up in it.
    pub fn several_in_play(&self) -> bool {
        self.selection.single().is_none() && self.registry.len() > 1
    }

    /// How output names a namespace: its /run/netns names, or its inode.
    pub fn label(&self, netns: NetnsInode) -> String {
        self.registry.label(netns)
    }

    /// A record named `netns`: an unknown one is remembered (so that it is
    /// forgotten once gone) and asks for a rescan to find a way into it.
    pub fn note(&mut self, netns: NetnsInode) {
        if netns == self.last_noted {
            return;
        }
        self.last_noted = netns;
        if self.registry.get(netns).is_none() {
            self.registry.note(netns);
            self.rescan_wanted = true;
        }
    }

    /// Rescans if asked to or if the last scan is old, and returns the
    /// namespaces found gone (sorted). A scan that fails (out of file
    /// descriptors, say) is logged and changes nothing: only a successful
    /// scan may find a namespace gone. It is tried again at the next call.
    pub fn rescan_if_due(&mut self, now_ns: u64) -> Vec<NetnsInode> {
        if !self.rescan_wanted && now_ns.saturating_sub(self.last_scan_ns) < RESCAN_EVERY_NS {
            return Vec::new();
        }
        self.last_scan_ns = now_ns;
        let scan = match netns::scan(&self.proc_root, &self.run_netns) {
            Ok(scan) => scan,
            Err(error) => {
                self.rescan_wanted = true;
                if let Some(times) = self.failed_scans.failed(now_ns) {
                    log::warn!(
                        "scanning network namespaces failed {times} time(s) ({} since start), \
                         keeping the {} known: {}",
                        self.failed_scans.total(),
                        self.registry.len(),
                        ErrorLine(&error)
                    );
                }
                return Vec::new();
            }
        };
        self.rescan_wanted = false;
        let mut gone: Vec<NetnsInode> = self
            .registry
            .update(scan)
            .into_iter()
            // The agent's own namespace lives as long as the agent.
            .filter(|&inode| inode != self.own)
            .collect();
        gone.sort_unstable();
        gone
    }

    /// The selected namespaces as the last scan found them, to dump or
    /// read beside the event loop: [`Namespaces::periodic_listing`] takes
    /// back what dumping them found.
    pub fn followed(&self) -> Followed {
        Followed {
            namespaces: self
                .registry
                .namespaces()
                .filter(|ns| self.selection.contains(ns.inode))
                .cloned()
                .collect(),
            own: self.own,
        }
    }

    /// Dumps `request` in every selected namespace (see
    /// [`Followed::dump_each`]).
    pub fn dump_each(&mut self, request: &DumpRequest) -> Vec<Result<NamespaceDump, DumpError>> {
        let dumps = self.followed().dump_each(request);
        self.dumped(dumps)
    }

    /// What dumping the [`Namespaces::followed`] found: a namespace that
    /// failed or vanished asks for a rescan.
    fn dumped(&mut self, dumps: FollowedDumps) -> Vec<Result<NamespaceDump, DumpError>> {
        self.rescan_wanted |= dumps.vanished || dumps.dumps.iter().any(Result::is_err);
        dumps.dumps
    }

    /// The dumps of a periodic listing that worked. A namespace that failed
    /// keeps its state until the next listing; the failure is logged, once
    /// a minute at most.
    pub fn periodic_listing(&mut self, dumps: FollowedDumps, now_ns: u64) -> Vec<NamespaceDump> {
        let mut listed = Vec::new();
        for dump in self.dumped(dumps) {
            match dump {
                Ok(dump) => listed.push(dump),
                Err(error) => {
                    if let Some(times) = self.failed_listings.failed(now_ns) {
                        log::warn!(
                            "sock_diag listing failed {times} time(s), the namespace's state \
                             waits for the next one: {}",
                            ErrorLine(&error)
                        );
                    }
                }
            }
        }
        listed
    }

    /// Where to enter each of `inodes` for a listing, all of which must be
    /// followed; those the last scan did not find are looked for when the
    /// listing is made (see [`Listing::dump`]) and ask for a rescan. Cheap:
    /// no I/O.
    pub fn listing(&mut self, inodes: &[NetnsInode]) -> Result<Listing, NamespacesError> {
        let mut known = Vec::with_capacity(inodes.len());
        let mut unknown = Vec::new();
        for &inode in inodes {
            if !self.selection.contains(inode) {
                return Err(NamespacesError::NotFollowed(inode));
            }
            match self.registry.get(inode) {
                Some(ns) => known.push(ns.clone()),
                None => unknown.push(inode),
            }
        }
        self.rescan_wanted |= !unknown.is_empty();
        Ok(Listing {
            known,
            unknown,
            own: self.own,
            proc_root: self.proc_root.clone(),
            run_netns: self.run_netns.clone(),
        })
    }

    /// Dumps `request` in each of `inodes`, all of which must be followed
    /// and must exist: what a view asks for, where a namespace left out
    /// would be a lie.
    pub fn dump_in(
        &mut self,
        inodes: &[NetnsInode],
        request: &DumpRequest,
    ) -> Result<Vec<NamespaceDump>, NamespacesError> {
        self.listing(inodes)?.dump(request)
    }

    /// The agent's own network namespace.
    pub fn own(&self) -> NetnsInode {
        self.own
    }
}

/// Whether entering a namespace failed because it is gone (its entry
/// vanished or now leads elsewhere), rather than for want of resources.
fn vanished(error: &NetnsError) -> bool {
    match error {
        NetnsError::Open { source, .. } => source.kind() == io::ErrorKind::NotFound,
        NetnsError::Replaced { .. } => true,
        _ => false,
    }
}

/// The namespaces a view asked for, resolved by [`Namespaces::listing`]:
/// dumping them needs no access to the [`Namespaces`], so that it can be
/// done away from the event loop.
#[derive(Debug)]
pub struct Listing {
    known: Vec<NetNamespace>,
    /// Not found by the last scan: looked for again by one scan.
    unknown: Vec<NetnsInode>,
    own: NetnsInode,
    proc_root: PathBuf,
    run_netns: PathBuf,
}

impl Listing {
    /// Dumps `request` in each namespace. Fails if one
    /// does not exist or cannot be dumped.
    pub fn dump(self, request: &DumpRequest) -> Result<Vec<NamespaceDump>, NamespacesError> {
        let mut targets = self.known;
        if !self.unknown.is_empty() {
            let mut scan = netns::scan(&self.proc_root, &self.run_netns)?;
            for inode in self.unknown {
                let found = scan
                    .namespaces
                    .remove(&inode)
                    .ok_or(NamespacesError::NoSuchInode(inode))?;
                targets.push(found);
            }
        }
        targets
            .iter()
            .map(|ns| Ok(dump_in(ns, self.own, request)?))
            .collect()
    }
}

/// The selected namespaces as a scan found them, and the agent's own: what
/// a periodic listing enters, with no access to the [`Namespaces`].
#[derive(Debug)]
pub struct Followed {
    namespaces: Vec<NetNamespace>,
    own: NetnsInode,
}

/// The dumps of every followed namespace, for [`Namespaces::dump_each`] or
/// [`Namespaces::periodic_listing`] to take back.
#[derive(Debug)]
pub struct FollowedDumps {
    dumps: Vec<Result<NamespaceDump, DumpError>>,
    /// A namespace vanished since the scan (its last process exited, its
    /// name was deleted): left out silently, the rescan will find it gone.
    vanished: bool,
}

impl Followed {
    /// Dumps `request` in each namespace: one result each, an error for
    /// one that failed (its sockets wait for the next dump); one that
    /// vanished since the scan is left out.
    pub fn dump_each(&self, request: &DumpRequest) -> FollowedDumps {
        let mut dumps = Vec::with_capacity(self.namespaces.len());
        let mut any_vanished = false;
        for ns in &self.namespaces {
            match dump_in(ns, self.own, request) {
                Err(DumpError::Enter(error)) if vanished(&error) => {
                    log::debug!(
                        "network namespace {} vanished since the last scan: {}",
                        ns.inode,
                        ErrorLine(&error)
                    );
                    any_vanished = true;
                }
                dump => dumps.push(dump),
            }
        }
        FollowedDumps {
            dumps,
            vanished: any_vanished,
        }
    }

    /// Runs `job` inside each namespace that can be entered: one result
    /// per namespace, the others left out. A job reading per-namespace
    /// files uses `/proc/thread-self/net` (see [`netns::run_in`]).
    pub fn in_each<T: Send>(&self, job: impl Fn() -> T + Sync) -> Vec<(NetnsInode, T)> {
        self.namespaces
            .iter()
            .filter_map(|ns| Some((ns.inode, netns::run_in(ns, self.own, &job).ok()?)))
            .collect()
    }
}

/// `request` dumped inside `ns`.
fn dump_in(
    ns: &NetNamespace,
    own: NetnsInode,
    request: &DumpRequest,
) -> Result<NamespaceDump, DumpError> {
    let netns = ns.inode;
    netns::run_in(ns, own, || dump_here(netns, request)).map_err(DumpError::Enter)?
}

/// `request` dumped in the calling thread's namespace, `netns`.
fn dump_here(netns: NetnsInode, request: &DumpRequest) -> Result<NamespaceDump, DumpError> {
    let sockets =
        sock_diag::dump(request, netns).map_err(|source| DumpError::Dump { netns, source })?;
    Ok(NamespaceDump { netns, sockets })
}
