//! The network namespaces the agent follows: which exist (rescanned when a
//! record names an unknown one, when an entry stops working, and every few
//! seconds), which the user selected, and the sock_diag dumps made inside
//! each of them. The kernel records name a socket's namespace by inode;
//! sock_diag answers only for the namespace its socket was opened in.
use std::{collections::BTreeSet, path::PathBuf};

use crate::{
    cli::NetnsArgs,
    clock::{WallClock, monotonic_now_ns},
    netns::{self, NamespaceRegistry, NetNamespace, NetnsError},
    output::Style,
    sock_diag::{self, DiagSocket, DumpRequest, SockDiagError},
    tuple::NetnsInode,
};

/// Where processes' namespaces are found.
const PROC_ROOT: &str = "/proc";
/// Where `ip netns` keeps its named namespaces (what `ss -N` takes).
pub const RUN_NETNS: &str = "/run/netns";

/// Longest time between two full rescans when nothing asks for one.
const RESCAN_EVERY_NS: u64 = 5_000_000_000;

/// Why namespaces could not be selected or listed.
#[derive(Debug, thiserror::Error)]
pub enum NamespacesError {
    #[error("cannot read the agent's own network namespace (/proc/thread-self/ns/net): {0}")]
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

    /// The one namespace selected, if exactly one is.
    pub fn single(&self) -> Option<NetnsInode> {
        match self {
            Selection::Only(chosen) if chosen.len() == 1 => chosen.first().copied(),
            _ => None,
        }
    }
}

/// One namespace's dump.
pub struct NamespaceDump {
    pub netns: NetnsInode,
    pub sockets: Vec<DiagSocket>,
}

/// Why one namespace could not be dumped.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error("entering network namespace {netns}: {source}")]
    Enter {
        netns: NetnsInode,
        #[source]
        source: NetnsError,
    },
    #[error("network namespace {netns}: {source}")]
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
    /// Namespaces a scan outside [`Namespaces::rescan_if_due`] found gone.
    gone_unreported: Vec<NetnsInode>,
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
            gone_unreported: Vec::new(),
        };
        namespaces.scan(now_ns);
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

    /// The namespaces a command's `-N`/`--netns` options select.
    pub fn from_args(args: &NetnsArgs) -> Result<Self, NamespacesError> {
        Self::discover(&args.names, &args.inodes, monotonic_now_ns())
    }

    /// How human output looks with these namespaces: a `NETNS` column when
    /// several can show up.
    pub fn style(&self) -> Style {
        Style {
            clock: WallClock::now(),
            netns_column: self.several_in_play(),
        }
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
    /// namespaces found gone (sorted).
    pub fn rescan_if_due(&mut self, now_ns: u64) -> Vec<NetnsInode> {
        let mut gone = std::mem::take(&mut self.gone_unreported);
        if self.rescan_wanted || now_ns.saturating_sub(self.last_scan_ns) >= RESCAN_EVERY_NS {
            gone.extend(self.scan(now_ns));
        }
        gone.sort_unstable();
        gone
    }

    fn scan(&mut self, now_ns: u64) -> Vec<NetnsInode> {
        self.rescan_wanted = false;
        self.last_scan_ns = now_ns;
        let scan = netns::scan(&self.proc_root, &self.run_netns);
        let gone = self.registry.update(scan);
        // The agent's own namespace lives as long as the agent.
        gone.into_iter()
            .filter(|&inode| inode != self.own)
            .collect()
    }

    /// Runs `job` inside every selected namespace that can be entered: one
    /// result per namespace, the others left out. A job reading
    /// per-namespace files uses `/proc/thread-self/net` (see
    /// [`netns::run_in`]).
    pub fn in_each<T: Send>(&self, job: impl Fn() -> T + Sync) -> Vec<(NetnsInode, T)> {
        self.registry
            .namespaces()
            .filter(|ns| self.selection.contains(ns.inode))
            .filter_map(|ns| Some((ns.inode, netns::run_in(ns, self.own, &job).ok()?)))
            .collect()
    }

    /// Dumps `request` in every selected namespace that can be entered. A
    /// namespace that fails is left out of the result (its sockets wait for
    /// the next dump) and asks for a rescan; one that vanished since the
    /// last scan (its last process exited, its name was deleted) is left
    /// out silently: the rescan will find it gone.
    pub fn dump_each(&mut self, request: &DumpRequest) -> Vec<Result<NamespaceDump, DumpError>> {
        let targets: Vec<NetNamespace> = self
            .registry
            .namespaces()
            .filter(|ns| self.selection.contains(ns.inode))
            .cloned()
            .collect();
        let mut dumps = Vec::with_capacity(targets.len());
        for ns in &targets {
            match dump_in(ns, self.own, request) {
                Err(DumpError::Enter {
                    source: NetnsError::Open { .. } | NetnsError::Replaced { .. },
                    netns,
                }) => {
                    log::debug!("network namespace {netns} vanished since the last scan");
                    self.rescan_wanted = true;
                }
                Err(error) => {
                    self.rescan_wanted = true;
                    dumps.push(Err(error));
                }
                Ok(dump) => dumps.push(Ok(dump)),
            }
        }
        dumps
    }
}

impl Namespaces {
    /// Dumps `request` in each of `inodes`, all of which must be followed
    /// and must exist (a rescan looks for one not known yet): what a view
    /// asks for, where a namespace left out would be a lie.
    pub fn dump_in(
        &mut self,
        inodes: &[NetnsInode],
        request: &DumpRequest,
    ) -> Result<Vec<NamespaceDump>, NamespacesError> {
        let mut dumps = Vec::with_capacity(inodes.len());
        for &inode in inodes {
            if !self.selection.contains(inode) {
                return Err(NamespacesError::NotFollowed(inode));
            }
            if self.registry.get(inode).is_none() {
                let gone = self.scan(monotonic_now_ns());
                self.gone_unreported.extend(gone);
            }
            let ns = self
                .registry
                .get(inode)
                .ok_or(NamespacesError::NoSuchInode(inode))?
                .clone();
            dumps.push(dump_in(&ns, self.own, request)?);
        }
        Ok(dumps)
    }

    /// The agent's own network namespace.
    pub fn own(&self) -> NetnsInode {
        self.own
    }
}

/// `request` dumped inside `ns`.
fn dump_in(
    ns: &NetNamespace,
    own: NetnsInode,
    request: &DumpRequest,
) -> Result<NamespaceDump, DumpError> {
    let netns = ns.inode;
    netns::run_in(ns, own, || dump_here(netns, request))
        .map_err(|source| DumpError::Enter { netns, source })?
}

/// `request` dumped in the calling thread's namespace, `netns`.
fn dump_here(netns: NetnsInode, request: &DumpRequest) -> Result<NamespaceDump, DumpError> {
    let sockets =
        sock_diag::dump(request, netns).map_err(|source| DumpError::Dump { netns, source })?;
    Ok(NamespaceDump { netns, sockets })
}
