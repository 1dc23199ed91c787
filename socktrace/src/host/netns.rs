//! Network namespaces: finding them, entering them, noticing they are gone.
//!
//! The kernel tracepoints fire for TCP sockets of every network namespace,
//! but a NETLINK_SOCK_DIAG dump lists only the namespace of the thread that
//! asks. So the agent finds the namespaces that exist ([`scan`]), runs its
//! dumps inside each one ([`run_in`]) and forgets those that are gone
//! ([`NamespaceRegistry`]).
//!
//! The agent must never keep a namespace alive: it holds no descriptor of a
//! namespace file, and no thread or socket living in one, beyond a single
//! call. Every entry opens the path afresh, checks that it still leads to the
//! same namespace, enters it on a short-lived thread and lets it all go.
use std::collections::BTreeMap;
use std::ffi::{CString, OsStr};
use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

pub use crate::model::tuple::NetnsInode;

/// How many scans in a row must miss a namespace before it counts as gone.
///
/// Two, not one: a scan can miss a namespace that still exists, e.g. when
/// its only process is between `fork` and `exec` or a name under
/// `/run/netns` is being replaced. A namespace absent twice, a scan period
/// apart, has almost surely been destroyed; if it was not, its sockets are
/// found again by the next dump that enters it.
pub const MISSING_SCANS_TO_FORGET: u32 = 2;

/// The `f_type` statfs reports for nsfs, the file system of namespace files
/// (`/proc/PID/ns/*` and their bind mounts). libc does not define it.
const NSFS_MAGIC: u64 = 0x6e73_6673;

/// A namespace the agent can enter, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetNamespace {
    /// Its inode number: the identity that survives renames and pid reuse.
    pub inode: NetnsInode,
    /// Its names under /run/netns (as `ip netns` / `ss -N` name them),
    /// sorted; empty if none.
    pub names: Vec<String>,
    /// A path that opens it now: /run/netns/NAME when it has a name (a bind
    /// mount lives as long as the name), else /proc/PID/ns/net of one process
    /// in it (the lowest pid, usually the longest-lived).
    pub entry: PathBuf,
}

/// One pass over the places namespaces are found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamespaceScan {
    /// Every namespace found, by inode.
    pub namespaces: BTreeMap<NetnsInode, NetNamespace>,
}

/// Why a namespace could not be named or entered.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// No namespace of that name: the message lists those that exist, since
    /// a typo is the usual cause.
    #[error("no network namespace named `{name}` in {} ({})", .dir.display(), name_list(.available))]
    NotFound {
        /// The name asked for.
        name: String,
        /// Where names live (normally /run/netns).
        dir: PathBuf,
        /// The names that exist there, sorted.
        available: Vec<String>,
    },
    /// The name is not a single path component, so it cannot be a name
    /// under /run/netns (and must not reach outside it).
    #[error("`{0}` is not a namespace name: it must be one path component, not empty, `.` or `..`")]
    BadName(String),
    /// The path exists but is not a mounted namespace: typically the empty
    /// file a failed `ip netns add` leaves behind.
    #[error("{} is not a mounted network namespace (left over from a failed `ip netns add`?)", .path.display())]
    NotNamespace { path: PathBuf },
    /// The path could not be opened or examined: the process exited or the
    /// name was deleted since the scan, or access was denied.
    #[error("cannot open {}", .path.display())]
    Open { path: PathBuf, source: io::Error },
    /// The path now leads to another namespace: the pid was reused or the
    /// name deleted and added again since the scan.
    #[error("{} is now namespace {found}, not {expected}", .path.display())]
    Replaced {
        path: PathBuf,
        expected: NetnsInode,
        /// The inode found instead; 64 bits, as a file that is no namespace
        /// may have a larger one.
        found: u64,
    },
    /// setns refused: it needs CAP_SYS_ADMIN, and the file must be a network
    /// namespace.
    #[error("cannot enter network namespace {inode} (setns needs CAP_SYS_ADMIN)")]
    Enter {
        inode: NetnsInode,
        source: io::Error,
    },
    /// A directory where namespaces are found could not be listed: a scan
    /// that would miss every namespace in it, so it fails instead.
    #[error("cannot list {}", .path.display())]
    List { path: PathBuf, source: io::Error },
    /// No thread could be started to enter the namespace on.
    #[error("cannot start a thread to enter network namespace {inode}")]
    Thread {
        inode: NetnsInode,
        source: io::Error,
    },
}

/// The names that do exist, or that none does, for an error message.
fn name_list(names: &[String]) -> String {
    if names.is_empty() {
        "none exist".to_string()
    } else {
        format!("named: {}", names.join(", "))
    }
}

/// Scans `proc_root` (normally `/proc`) and `run_netns` (normally
/// `/run/netns`) for network namespaces.
///
/// For processes it reads every numeric directory's `ns/net` link with
/// readlink and never opens it, so the scan holds no namespace even for a
/// moment. Entries of `run_netns` that are not nsfs files are skipped: a
/// failed `ip netns add` leaves an empty file there whose inode is not a
/// namespace's. Processes that exit or deny access mid-scan are skipped
/// silently: that is normal on a busy system. A directory that cannot be
/// listed (out of file descriptors, say) fails the scan: a scan that missed
/// every namespace would have them all taken for gone. A missing
/// `run_netns` just means no namespace was ever named.
pub fn scan(proc_root: &Path, run_netns: &Path) -> Result<NamespaceScan, NetnsError> {
    let mut names: BTreeMap<NetnsInode, Vec<String>> = BTreeMap::new();
    for (name, inode) in named(run_netns)? {
        names.entry(inode).or_default().push(name);
    }
    let mut namespaces = BTreeMap::new();
    for (inode, mut names) in names {
        names.sort();
        let entry = run_netns.join(&names[0]);
        namespaces.insert(
            inode,
            NetNamespace {
                inode,
                names,
                entry,
            },
        );
    }
    for (inode, pid) in lowest_pids(proc_root)? {
        namespaces.entry(inode).or_insert_with(|| NetNamespace {
            inode,
            names: Vec::new(),
            entry: proc_root.join(pid.to_string()).join("ns/net"),
        });
    }
    Ok(NamespaceScan { namespaces })
}

/// The entries of directory `dir`; an error in the middle of the listing
/// fails it, as a failure to open it does.
fn list(dir: &Path) -> Result<Vec<fs::DirEntry>, NetnsError> {
    let failed = |source| NetnsError::List {
        path: dir.to_path_buf(),
        source,
    };
    fs::read_dir(dir)
        .map_err(failed)?
        .collect::<io::Result<Vec<_>>>()
        .map_err(failed)
}

/// The namespaces mounted under `run_netns`, with their names. A missing
/// directory just means no namespace was ever named.
fn named(run_netns: &Path) -> Result<Vec<(String, NetnsInode)>, NetnsError> {
    let entries = match list(run_netns) {
        Ok(entries) => entries,
        Err(NetnsError::List { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            return Ok(Vec::new());
        }
        Err(error) => return Err(error),
    };
    Ok(entries
        .into_iter()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let inode = mounted_inode(&entry.path()).ok()??;
            Some((name, inode))
        })
        .collect())
}

/// The namespace inode of a bind-mounted namespace file at `path`, `None`
/// when the path is something else (not on nsfs).
fn mounted_inode(path: &Path) -> io::Result<Option<NetnsInode>> {
    let inode = fs::metadata(path)?.ino();
    if !is_nsfs(path)? {
        return Ok(None);
    }
    Ok(NetnsInode::try_from(inode).ok())
}

/// Whether `path` is on nsfs.
fn is_nsfs(path: &Path) -> io::Result<bool> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error))?;
    // SAFETY: statfs is plain old data, valid when zeroed.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a valid out pointer.
    if unsafe { libc::statfs(c_path.as_ptr(), &mut stat) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // f_type's width and sign differ between architectures; the magic is
    // positive and fits 32 bits everywhere.
    Ok(stat.f_type as u64 == NSFS_MAGIC)
}

/// Every namespace some process under `proc_root` is in, with the lowest
/// such pid.
fn lowest_pids(proc_root: &Path) -> Result<BTreeMap<NetnsInode, u32>, NetnsError> {
    let mut pids = BTreeMap::new();
    for entry in list(proc_root)? {
        let Some(pid) = parse_pid(&entry.file_name()) else {
            continue;
        };
        let Ok(target) = fs::read_link(entry.path().join("ns/net")) else {
            continue;
        };
        if let Some(inode) = parse_link(target.as_os_str()) {
            pids.entry(inode)
                .and_modify(|lowest: &mut u32| *lowest = (*lowest).min(pid))
                .or_insert(pid);
        }
    }
    Ok(pids)
}

/// A pid from a `/proc` entry name: decimal digits only.
fn parse_pid(name: &OsStr) -> Option<u32> {
    let name = name.to_str()?;
    if name.is_empty() || !name.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    name.parse().ok()
}

/// Parses a `net:[4026531840]` link target, as readlink on
/// `/proc/PID/ns/net` returns it.
pub fn parse_link(target: &OsStr) -> Option<NetnsInode> {
    let digits = target.to_str()?.strip_prefix("net:[")?.strip_suffix(']')?;
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The namespace the calling thread runs in: the agent's own, unless called
/// inside [`run_in`]. It reads `/proc/thread-self`, not `/proc/self`, which
/// shows the main thread's namespace from every thread.
pub fn own() -> io::Result<NetnsInode> {
    let inode = fs::metadata("/proc/thread-self/ns/net")?.ino();
    NetnsInode::try_from(inode).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("namespace inode {inode} does not fit 32 bits"),
        )
    })
}

/// `-N NAME` as `ss -N` takes it: the inode of the namespace mounted at
/// `run_netns/NAME` (normally /run/netns). NAME must be a single path
/// component, so that it cannot reach outside `run_netns`. When no such
/// name exists, the error lists the names that do.
pub fn inode_of_name(run_netns: &Path, name: &str) -> Result<NetnsInode, NetnsError> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return Err(NetnsError::BadName(name.to_string()));
    }
    let path = run_netns.join(name);
    match mounted_inode(&path) {
        Ok(Some(inode)) => Ok(inode),
        Ok(None) => Err(NetnsError::NotNamespace { path }),
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            let mut available: Vec<String> = named(run_netns)?
                .into_iter()
                .map(|(name, _)| name)
                .collect();
            available.sort();
            Err(NetnsError::NotFound {
                name: name.to_string(),
                dir: run_netns.to_path_buf(),
                available,
            })
        }
        Err(source) => Err(NetnsError::Open { path, source }),
    }
}

/// Runs `job` with the calling code inside `ns`, so that any socket `job`
/// creates (a sock_diag one, say) belongs to that namespace.
///
/// When `ns.inode` is `own_inode`, the agent's own namespace, `job` simply
/// runs on the current thread. Otherwise this opens `ns.entry`, checks that
/// it is still namespace `ns.inode` (a pid can be reused, a name deleted and
/// added again), and runs `job` on a scoped thread that first enters the
/// namespace with setns; setns itself rejects anything that is not a
/// network namespace. The descriptor is closed as soon as the thread has
/// entered, and the thread ends before this returns, so nothing stays in the
/// namespace, provided `job` returns data rather than sockets. A panic in
/// `job` is passed on to the caller.
///
/// Only the thread moves: a job that reads per-namespace /proc files must
/// use `/proc/thread-self/net/...`, because `/proc/net` and `/proc/self/net`
/// still show the main thread's namespace.
pub fn run_in<T: Send>(
    ns: &NetNamespace,
    own_inode: NetnsInode,
    job: impl FnOnce() -> T + Send,
) -> Result<T, NetnsError> {
    if ns.inode == own_inode {
        return Ok(job());
    }
    let open_error = |source| NetnsError::Open {
        path: ns.entry.clone(),
        source,
    };
    let file = File::open(&ns.entry).map_err(open_error)?;
    let found = file.metadata().map_err(open_error)?.ino();
    if found != u64::from(ns.inode) {
        return Err(NetnsError::Replaced {
            path: ns.entry.clone(),
            expected: ns.inode,
            found,
        });
    }
    let inode = ns.inode;
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name(format!("netns-{inode}"))
            .spawn_scoped(scope, move || {
                // SAFETY: plain system call on a descriptor `file` owns.
                let entered = match unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } {
                    0 => Ok(()),
                    _ => Err(io::Error::last_os_error()),
                };
                drop(file);
                entered.map_err(|source| NetnsError::Enter { inode, source })?;
                Ok(job())
            })
            .map_err(|source| NetnsError::Thread { inode, source })?;
        thread
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// What the registry knows of one namespace.
#[derive(Debug)]
struct Known {
    /// How to enter it and its names, from the last scan that found it;
    /// `None` for a namespace only [`NamespaceRegistry::note`]d so far.
    namespace: Option<NetNamespace>,
    /// Scans in a row that have not found it.
    misses: u32,
}

/// Which namespaces are known over time and which are gone. Pure: no I/O,
/// it only digests scans and notes.
///
/// A namespace has no event announcing its end: its last process exits or
/// its /run/netns name is deleted, and it vanishes from the places a scan
/// looks. So a namespace missing from [`MISSING_SCANS_TO_FORGET`] scans in a
/// row is reported gone, and the caller drops its sockets.
#[derive(Debug, Default)]
pub struct NamespaceRegistry {
    known: BTreeMap<NetnsInode, Known>,
}

impl NamespaceRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes a scan. Every namespace in it is known, its entry and names
    /// refreshed. A known namespace, or one announced with
    /// [`note`](Self::note), that [`MISSING_SCANS_TO_FORGET`] consecutive
    /// scans have missed is gone: it is forgotten and returned, sorted.
    pub fn update(&mut self, scan: NamespaceScan) -> Vec<NetnsInode> {
        let mut found = scan.namespaces;
        let mut gone = Vec::new();
        self.known.retain(|inode, known| {
            if let Some(namespace) = found.remove(inode) {
                known.namespace = Some(namespace);
                known.misses = 0;
                return true;
            }
            known.misses += 1;
            if known.misses >= MISSING_SCANS_TO_FORGET {
                gone.push(*inode);
                return false;
            }
            true
        });
        for (inode, namespace) in found {
            self.known.insert(
                inode,
                Known {
                    namespace: Some(namespace),
                    misses: 0,
                },
            );
        }
        gone
    }

    /// Remembers a namespace seen in kernel records that no scan may ever
    /// find (created and destroyed between scans, or kept alive only by an
    /// open descriptor), so that it, too, is reported gone once
    /// [`MISSING_SCANS_TO_FORGET`] scans have missed it. A no-op for a
    /// namespace already known.
    pub fn note(&mut self, inode: NetnsInode) {
        self.known.entry(inode).or_insert(Known {
            namespace: None,
            misses: 0,
        });
    }

    /// What the last scan that found `inode` said about it; `None` for an
    /// unknown namespace or one only noted.
    pub fn get(&self, inode: NetnsInode) -> Option<&NetNamespace> {
        self.known.get(&inode)?.namespace.as_ref()
    }

    /// The known namespaces that can be entered (found by the last scan), by
    /// inode.
    pub fn namespaces(&self) -> impl Iterator<Item = &NetNamespace> {
        self.known
            .values()
            .filter(|known| known.misses == 0)
            .filter_map(|known| known.namespace.as_ref())
    }

    /// How output names a namespace: its names joined by ",", or its inode
    /// in decimal when it has none (or is unknown).
    pub fn label(&self, inode: NetnsInode) -> String {
        match self.get(inode) {
            Some(namespace) if !namespace.names.is_empty() => namespace.names.join(","),
            _ => inode.to_string(),
        }
    }

    /// How many namespaces are known, noted ones included.
    pub fn len(&self) -> usize {
        self.known.len()
    }

    /// Whether no namespace is known.
    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }
}

#[cfg(test)]
mod tests;
