//! Which container or service a process runs in, read from its cgroup path,
//! so that a socket's owner can be shown as `nginx/1234 docker:3f2a9c1b7d4e`
//! and metrics can be labelled by workload.
//!
//! Container runtimes and systemd name the cgroups they create after the
//! container id or the unit, and `/proc/PID/cgroup` shows that path to
//! anyone: no runtime API, socket or privilege is needed. The parsing is
//! pure ([`cgroup_path`], [`label_from_cgroup`]); [`ContainerLabels`] adds a
//! bounded per-pid cache over a `/proc` tree.
//!
//! Labels are kept few and stable, because they become metric labels: ids
//! are cut to the 12 hex digits `docker ps` shows, login sessions, transient
//! `systemd-run` units and other scopes get no label, and the instances
//! that socket-activated services spawn per connection are folded into
//! their template.
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use crate::{model::owner::ContainerLabel, support::fast_hash::FastMap};

/// Who created the cgroup a process runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Runtime {
    /// Docker (`/docker/ID`, `docker-ID.scope`).
    Docker,
    /// containerd through Kubernetes' CRI (`cri-containerd-ID.scope`) or
    /// nerdctl (`nerdctl-ID.scope`).
    Containerd,
    /// CRI-O (`crio-ID.scope`, `crio-ID`), and its per-container monitor
    /// (`crio-conmon-ID.scope`).
    CriO,
    /// Podman (`libpod-ID.scope`, `libpod-ID`) and its monitor
    /// (`libpod-conmon-ID.scope`).
    Podman,
    /// A Kubernetes container under kubelet's cgroupfs driver
    /// (`/kubepods/.../podUID/ID`): the path does not say which runtime
    /// made it (containerd and cri-dockerd both use the bare id), so none
    /// is guessed.
    Kubernetes,
    /// LXC, LXD and Incus (`/lxc.payload.NAME`, `/lxc/NAME`).
    Lxc,
    /// A systemd service (`/system.slice/nginx.service`).
    Systemd,
}

impl Runtime {
    /// The label prefix: short, lowercase, stable (metric labels use it).
    pub fn kind(self) -> &'static str {
        match self {
            Runtime::Docker => "docker",
            Runtime::Containerd => "containerd",
            Runtime::CriO => "cri-o",
            Runtime::Podman => "podman",
            Runtime::Kubernetes => "k8s",
            Runtime::Lxc => "lxc",
            Runtime::Systemd => "systemd",
        }
    }
}

/// The container or service a process belongs to.
///
/// Displayed as `KIND:ID`, then ` pod:UID` for Kubernetes containers:
/// `docker:3f2a9c1b7d4e`, `systemd:nginx.service`,
/// `containerd:3f2a9c1b7d4e pod:8d4c6a1e-5b7f-4c3d-9e2a-1f0b6c8d7e9a`.
/// The kind and id come first so that `grep docker:3f2a` finds a
/// container whatever else follows.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Workload {
    pub runtime: Runtime,
    /// A container id cut to its first 12 hex digits (as `docker ps` shows
    /// it), an LXC container name, or a systemd unit name.
    pub id: String,
    /// The Kubernetes pod's uid, dashed as `kubectl get pod -o
    /// jsonpath={.metadata.uid}` prints it, when the container is in a pod.
    pub pod_uid: Option<String>,
}

impl Workload {
    /// The label prefix of the runtime, such as `docker` or `systemd`.
    pub fn kind(&self) -> &'static str {
        self.runtime.kind()
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind(), self.id)?;
        if let Some(uid) = &self.pod_uid {
            write!(f, " pod:{uid}")?;
        }
        Ok(())
    }
}

/// The cgroup path to label a process by, from the text of its
/// `/proc/PID/cgroup` (lines `HIERARCHY-ID:CONTROLLERS:PATH`).
///
/// On a pure cgroup v2 host that is the single `0::PATH` line. On hybrid
/// and v1 hosts the `name=systemd` line comes first, then the `0::` line,
/// then the first other line with a non-root path, then any root path:
/// in hybrid mode a runtime using its cgroupfs driver moves its containers
/// in the v1 hierarchies only, so the `0::` line still shows the daemon's
/// own service (`/system.slice/docker.service`) while `name=systemd` and
/// the controllers show `/docker/ID`. Root paths are kept only as a last
/// resort because some hosts leave the v2 or systemd line at `/` and put
/// processes in a group of one controller. A ` (deleted)` mark (the
/// process's v2 cgroup was removed while it exits) is dropped. `None` for
/// text without any cgroup line.
pub fn cgroup_path(proc_cgroup_text: &str) -> Option<&str> {
    let mut systemd = None;
    let mut unified = None;
    let mut other = None;
    let mut root = None;
    for line in proc_cgroup_text.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(hierarchy), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let path = path.strip_suffix(" (deleted)").unwrap_or(path);
        if !path.starts_with('/') {
            continue;
        }
        let slot = if path == "/" {
            &mut root
        } else if hierarchy == "0" && controllers.is_empty() {
            &mut unified
        } else if controllers.split(',').any(|name| name == "name=systemd") {
            &mut systemd
        } else {
            &mut other
        };
        slot.get_or_insert(path);
    }
    systemd.or(unified).or(other).or(root)
}

/// The container or systemd service a cgroup path (as returned by
/// [`cgroup_path`]) belongs to; `None` for the root, `init.scope`, login
/// sessions, slices and paths no known runtime makes.
///
/// The path is read from its deepest component up. The deepest component a
/// container runtime made wins, so a container in a container (kind nodes,
/// Docker in Docker, Docker in LXD) is labelled by the inner one, and
/// sub-cgroups a runtime makes inside a container (crun's `container` and
/// `exec`) still get the container's label. Only without any container is
/// the deepest systemd service taken, so a service inside a system
/// container gets the container's label.
///
/// Deliberately not recognised:
/// - containerd without a CRI or nerdctl prefix (`/default/ID`,
///   `/k8s.io/ID`: a namespace then a bare id), too easily confused with
///   anything else under a one-word directory;
/// - scopes other than containers': login sessions (`session-3.scope`)
///   and desktop applications are numbered without bound, which metric
///   labels cannot afford, and the owner column already names the
///   process;
/// - transient `systemd-run` services (`run-u12.service`,
///   `run-r1f3c….service`, `run-p12-i34.service`), numbered without bound:
///   the service that contains them, if any, labels them.
///
/// Monitors (CRI-O's and Podman's `conmon`, LXC's `lxc.monitor.NAME`) get
/// the label of the container they serve: each exists for exactly one
/// container, so this adds no label values.
pub fn label_from_cgroup(path: &str) -> Option<Workload> {
    let mut components = path.rsplit('/').filter(|part| !part.is_empty()).peekable();
    while let Some(component) = components.next() {
        let parent = components.peek().copied();
        if let Some(workload) = container(component, parent) {
            return Some(workload);
        }
    }
    path.rsplit('/')
        .find_map(systemd_service)
        .map(|unit| Workload {
            runtime: Runtime::Systemd,
            id: unit,
            pod_uid: None,
        })
}

/// The scope (or cgroupfs directory) name prefixes runtimes put before the
/// 64-hex-digit container id. A monitor's name matches only its own
/// prefix: after `crio-`, `conmon-ID` is no id.
const CONTAINER_PREFIXES: [(&str, Runtime); 7] = [
    ("docker-", Runtime::Docker),
    ("cri-containerd-", Runtime::Containerd),
    ("nerdctl-", Runtime::Containerd),
    ("crio-", Runtime::CriO),
    ("crio-conmon-", Runtime::CriO),
    ("libpod-", Runtime::Podman),
    ("libpod-conmon-", Runtime::Podman),
];

/// The container a cgroup directory named `component`, inside one named
/// `parent`, belongs to.
fn container(component: &str, parent: Option<&str>) -> Option<Workload> {
    if let Some(name) = lxc_name(component, parent) {
        return Some(Workload {
            runtime: Runtime::Lxc,
            id: name.to_owned(),
            pod_uid: None,
        });
    }
    let (runtime, id) = if is_container_id(component) {
        // A bare id: Docker's cgroupfs driver, or kubelet's.
        match parent {
            Some("docker") => (Runtime::Docker, component),
            Some(parent) if pod_uid(parent).is_some() => (Runtime::Kubernetes, component),
            _ => return None,
        }
    } else {
        let name = component.strip_suffix(".scope").unwrap_or(component);
        CONTAINER_PREFIXES.iter().find_map(|&(prefix, runtime)| {
            let id = name.strip_prefix(prefix)?;
            is_container_id(id).then_some((runtime, id))
        })?
    };
    Some(Workload {
        runtime,
        id: id.get(..SHORT_ID_LEN)?.to_owned(),
        pod_uid: parent.and_then(pod_uid),
    })
}

/// Length of a full container id (a SHA-256 in hex).
const CONTAINER_ID_LEN: usize = 64;
/// Length of the short id `docker ps`, `crictl ps` and `podman ps` show.
const SHORT_ID_LEN: usize = 12;

/// Whether `text` is a full container id: 64 lowercase hex digits.
fn is_container_id(text: &str) -> bool {
    text.len() == CONTAINER_ID_LEN && text.bytes().all(is_lower_hex)
}

fn is_lower_hex(byte: u8) -> bool {
    byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte)
}

/// The LXC container name in `lxc.payload.NAME` (LXC 4+, LXD, Incus),
/// `lxc.monitor.NAME` (its monitor) or legacy `/lxc/NAME`.
fn lxc_name<'a>(component: &'a str, parent: Option<&str>) -> Option<&'a str> {
    let name = component
        .strip_prefix("lxc.payload.")
        .or_else(|| component.strip_prefix("lxc.monitor."))
        .or((parent == Some("lxc")).then_some(component))?;
    (!name.is_empty()).then_some(name)
}

/// The pod uid in a pod's cgroup name, dashed: `pod<UID>` (cgroupfs
/// driver) or `kubepods[-QOS]-pod<UID_WITH_UNDERSCORES>.slice` (systemd
/// driver, where a dash in a slice name means nesting). Uids are
/// 36-character dashed UUIDs, or 32 hex digits for static pods (a hash of
/// the manifest).
fn pod_uid(parent: &str) -> Option<String> {
    let uid = match parent.strip_suffix(".slice") {
        Some(slice) => slice.rsplit_once("-pod")?.1,
        None => parent.strip_prefix("pod")?,
    };
    let uid = uid.replace('_', "-");
    let valid = match uid.len() {
        32 => uid.bytes().all(is_lower_hex),
        36 => uid.bytes().enumerate().all(|(at, byte)| match at {
            8 | 13 | 18 | 23 => byte == b'-',
            _ => is_lower_hex(byte),
        }),
        _ => false,
    };
    valid.then_some(uid)
}

/// The service unit a cgroup directory is, as it should label processes:
/// `None` for other units and transient `systemd-run` services; instances
/// of socket-activated per-connection services (`Accept=yes`, instance
/// `COUNTER-LOCAL-PEER`) as their template, e.g. `sshd@.service`.
fn systemd_service(component: &str) -> Option<String> {
    let name = component.strip_suffix(".service")?;
    if name.is_empty() || is_transient_run_unit(name) {
        return None;
    }
    match name.split_once('@') {
        Some((template, instance)) if is_connection_instance(instance) => {
            Some(format!("{template}@.service"))
        }
        _ => Some(component.to_owned()),
    }
}

/// Whether a service name is one `systemd-run` generated: `run-uN`,
/// `run-rHEX` or `run-pPID-iN`.
fn is_transient_run_unit(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("run-") else {
        return false;
    };
    let all = |text: &str, accept: fn(u8) -> bool| !text.is_empty() && text.bytes().all(accept);
    let digit = |byte: u8| byte.is_ascii_digit();
    if let Some(counter) = rest.strip_prefix('u') {
        all(counter, digit)
    } else if let Some(hex) = rest.strip_prefix('r') {
        all(hex, is_lower_hex)
    } else if let Some(pid_invocation) = rest.strip_prefix('p') {
        pid_invocation
            .split_once("-i")
            .is_some_and(|(pid, invocation)| all(pid, digit) && all(invocation, digit))
    } else {
        false
    }
}

/// Whether a unit instance is one systemd names per accepted connection:
/// a decimal counter, then `-` and the endpoints.
fn is_connection_instance(instance: &str) -> bool {
    let digits = instance.bytes().take_while(u8::is_ascii_digit).count();
    digits > 0 && instance.as_bytes().get(digits) == Some(&b'-')
}

/// The field of `/proc/PID/stat` holding the process start time, in clock
/// ticks since boot (`proc(5)` numbers fields from 1).
const STAT_START_TIME_FIELD: usize = 22;
/// The field that follows `(comm)` in `/proc/PID/stat` (the state).
const STAT_FIRST_FIELD_AFTER_COMM: usize = 3;

/// The start time in a `/proc/PID/stat` text. The command name in
/// parentheses may itself contain spaces and `)`, but no field after it
/// does, so the fields are counted from the last `)`. Bytes, because a
/// command name need not be UTF-8.
fn start_time(stat: &[u8]) -> Option<u64> {
    let after_comm = stat.iter().rposition(|&byte| byte == b')')? + 1;
    let fields = std::str::from_utf8(stat.get(after_comm..)?).ok()?;
    fields
        .split_ascii_whitespace()
        .nth(STAT_START_TIME_FIELD - STAT_FIRST_FIELD_AFTER_COMM)?
        .parse()
        .ok()
}

/// The label of the process whose `/proc` directory is `proc_dir`, from
/// its `cgroup` file; `None` if it is gone or in no known workload.
pub fn label_of_process(proc_dir: &Path) -> Option<ContainerLabel> {
    let bytes = fs::read(proc_dir.join("cgroup")).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    let workload = cgroup_path(&text).and_then(label_from_cgroup)?;
    Some(ContainerLabel::new(&workload.to_string()))
}

/// A cached label and the start time of the process it was read from.
#[derive(Debug)]
struct Cached {
    /// `None` if the process was gone (or `stat` unreadable) when read.
    start_time: Option<u64>,
    label: Option<ContainerLabel>,
}

/// Workload labels of processes, read from `<proc_root>/PID/cgroup` on the
/// first request for a pid and cached, because sockets' owners repeat and
/// a read per event would cost more than the event.
///
/// Bounded: when a new pid would make the cache exceed its capacity the
/// whole cache is cleared first, with a warning. Clearing is simple and
/// honest about its cost: live processes are read once more when next
/// seen, and nothing stale survives it.
///
/// Pid reuse and cgroup moves are not checked on lookup (that would cost a
/// read per lookup). Call [`ContainerLabels::refresh`] periodically: it
/// drops the entries of processes that have exited or whose pid now
/// belongs to another process (a different start time). A process moved
/// to another cgroup after its first lookup (rare: `systemd-run --scope`,
/// `cgclassify`) keeps its old label until [`ContainerLabels::forget`].
#[derive(Debug)]
pub struct ContainerLabels {
    proc_root: PathBuf,
    capacity: usize,
    entries: FastMap<u32, Cached>,
    /// Times the cache was full and cleared.
    clears: u64,
}

impl ContainerLabels {
    /// A cache over the processes in `proc_root` (normally `/proc`) holding
    /// at most `capacity` pids (at least one).
    pub fn new(proc_root: PathBuf, capacity: usize) -> Self {
        ContainerLabels {
            proc_root,
            capacity: capacity.max(1),
            entries: FastMap::default(),
            clears: 0,
        }
    }

    /// The workload of process `pid`, read on first request. A process
    /// that is gone, or whose cgroup no known runtime made, has none, and
    /// that answer is cached too, until [`ContainerLabels::refresh`].
    pub fn of(&mut self, pid: u32) -> Option<ContainerLabel> {
        if !self.entries.contains_key(&pid) {
            if self.entries.len() >= self.capacity {
                // At most one line per `capacity` processes read.
                self.clears += 1;
                log::warn!(
                    "the container label cache held its {} processes: cleared ({} times so far), \
                     the labels of live processes are read again",
                    self.capacity,
                    self.clears
                );
                self.entries.clear();
            }
            let cached = self.read(pid);
            self.entries.insert(pid, cached);
        }
        self.entries.get(&pid)?.label.clone()
    }

    /// Drops what is cached for `pid`, for callers that see processes exit
    /// or change cgroup; the next [`ContainerLabels::of`] reads it afresh.
    pub fn forget(&mut self, pid: u32) {
        self.entries.remove(&pid);
    }

    /// Drops the entries whose process has exited or whose pid was reused
    /// (its start time changed), at the cost of one `stat` read per cached
    /// pid: meant to run every few seconds, not per event.
    pub fn refresh(&mut self) {
        let proc_root = &self.proc_root;
        self.entries.retain(|&pid, cached| {
            cached.start_time.is_some() && read_start_time(proc_root, pid) == cached.start_time
        });
    }

    /// Reads the label of `pid`. The start time is read first: if the pid
    /// is reused between the two reads, the label belongs to the newer
    /// process but the start time to the older, and the next refresh drops
    /// the entry.
    fn read(&self, pid: u32) -> Cached {
        let start_time = read_start_time(&self.proc_root, pid);
        let label = label_of_process(&self.proc_root.join(pid.to_string()));
        Cached { start_time, label }
    }
}

/// The start time of process `pid` under `proc_root`, `None` if it is gone.
fn read_start_time(proc_root: &Path, pid: u32) -> Option<u64> {
    start_time(&fs::read(proc_root.join(pid.to_string()).join("stat")).ok()?)
}

#[cfg(test)]
mod tests;
