//! `socktrace ss` output: the columns of `ss -tan` (State, Recv-Q, Send-Q,
//! Local Address:Port, Peer Address:Port, Process with `-p` and `-o`), with
//! what ss cannot show between the addresses and Process: time in the
//! current state (for TIME-WAIT, the socket's age) and handshake
//! retransmits seen so far. JSON: one object per socket per line.
use serde::Serialize;

use crate::{
    host::sock_diag::DiagTimer,
    model::tcp_state::TcpState,
    model::tuple::{NetnsInode, SocketTuple},
    render::cells::{endpoint, or_missing},
    render::columns::{Column, Columns},
    render::json::{OwnerJson, TupleJson, push_record},
    state::listed_socket::ListedSocket,
};

/// What to print beside the ss columns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Shown {
    /// The State column (ss leaves it out when one state is selected).
    pub state: bool,
    /// A NETNS column first, when sockets of several namespaces show.
    pub netns: bool,
    /// `-p`: `users:(("comm",pid=N))`, then `container:docker:3f2a9c1b7d4e`
    /// for a process in a container or service (as ss's `--cgroup` adds
    /// `cgroup:PATH`).
    pub processes: bool,
    /// `-o`: `timer:(on,1.569ms,1)`.
    pub timers: bool,
    /// `-H`: no header line.
    pub no_header: bool,
}

/// `sockets` as ss prints them, columns aligned.
pub fn table(
    sockets: &[ListedSocket],
    shown: Shown,
    label: impl Fn(NetnsInode) -> String,
) -> String {
    let mut columns = Columns::new();
    if shown.netns {
        columns = columns.with(Column::left("NETNS", 0));
    }
    if shown.state {
        columns = columns.with(Column::left("State", 0));
    }
    let columns = columns.with_all([
        Column::left("Recv-Q", 0),
        Column::left("Send-Q", 0),
        Column::right("Local Address:Port", 0),
        Column::right("Peer Address:Port", 0),
        Column::left("In-State", 0),
        Column::left("Retries", 0),
        Column::left("Process", 0),
    ]);
    let rows: Vec<Vec<String>> = sockets
        .iter()
        .map(|socket| {
            let mut row = Vec::with_capacity(10);
            if shown.netns {
                row.push(label(socket.netns));
            }
            if shown.state {
                row.push(socket.state.ss_name().to_owned());
            }
            row.push(or_missing(socket.recv_queue, |q| q.to_string()));
            row.push(or_missing(socket.send_queue, |q| q.to_string()));
            row.push(endpoint(socket.local, !socket.v6only));
            row.push(endpoint(socket.remote, !socket.v6only));
            row.push(or_missing(socket.in_state_ns, duration));
            row.push(or_missing(socket.retries, |r| r.to_string()));
            row.push(process_column(socket, shown));
            row
        })
        .collect();
    let columns = columns.fitted(&rows, !shown.no_header);
    let mut out = String::new();
    if !shown.no_header {
        columns.push_header(&mut out);
    }
    for row in &rows {
        columns.push_line(&mut out, row);
    }
    out
}

/// What ss prints in its Process column: `users:((..))` with `-p`, then
/// `timer:(..)` with `-o`.
fn process_column(socket: &ListedSocket, shown: Shown) -> String {
    let mut parts = Vec::new();
    if shown.processes
        && let Some(owner) = &socket.owner
    {
        parts.push(format!("users:((\"{}\",pid={}))", owner.comm, owner.pid));
        if let Some(label) = &owner.container {
            parts.push(format!("container:{label}"));
        }
    }
    if shown.timers
        && let Some(timer) = socket.timer.and_then(timer)
    {
        parts.push(timer);
    }
    parts.join(" ")
}

/// `timer:(name,time left,retransmits)` as `ss -o` prints it.
pub fn timer(timer: DiagTimer) -> Option<String> {
    let (name, expires_ms, count) = timer_parts(timer)?;
    Some(format!("timer:({name},{},{count})", ms_timer(expires_ms)))
}

/// A pending timer's ss name, milliseconds left and count (retransmits or
/// probes).
fn timer_parts(timer: DiagTimer) -> Option<(&'static str, u32, u8)> {
    Some(match timer {
        DiagTimer::Off => return None,
        DiagTimer::Retransmit {
            expires_ms,
            retransmits,
        } => ("on", expires_ms, retransmits),
        DiagTimer::KeepAlive { expires_ms } => ("keepalive", expires_ms, 0),
        DiagTimer::TimeWait { expires_ms } => ("timewait", expires_ms, 0),
        DiagTimer::ZeroWindowProbe { expires_ms, probes } => ("persist", expires_ms, probes),
    })
}

/// iproute2's `print_ms_timer`: `1min3sec`, `59sec`, `1.569ms` (one second
/// and 569 ms), `200ms`.
fn ms_timer(timeout_ms: u32) -> String {
    let mut secs = timeout_ms / 1000;
    let minutes = secs / 60;
    secs %= 60;
    let mut msecs = timeout_ms % 1000;
    let mut out = String::new();
    if minutes > 0 {
        msecs = 0;
        out.push_str(&format!("{minutes}min"));
        if minutes > 9 {
            secs = 0;
        }
    }
    if secs > 0 {
        if secs > 9 {
            msecs = 0;
        }
        out.push_str(&format!("{secs}{}", if msecs > 0 { "." } else { "sec" }));
    }
    if msecs > 0 {
        out.push_str(&format!("{msecs:03}ms"));
    }
    out
}

/// A time in a state: `850ms`, `12.3s`, `4m05s`, `3h12m`.
pub fn duration(ns: u64) -> String {
    let ms = ns / 1_000_000;
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m{:02}s", ms / 60_000, ms / 1000 % 60),
        _ => format!("{}h{:02}m", ms / 3_600_000, ms / 60_000 % 60),
    }
}

/// `-s`: sockets per state, IPv4 and IPv6 apart, then the figures `ss -s`
/// prints for TCP in the same namespace.
pub fn summary(sockets: &[ListedSocket]) -> String {
    let counts = StateCounts::of(sockets);
    let mut rows = Vec::new();
    for state in TcpState::ALL {
        let [v4, v6] = counts.by_state[state.index()];
        if v4 + v6 > 0 {
            rows.push(vec![
                state.ss_name().to_owned(),
                (v4 + v6).to_string(),
                v4.to_string(),
                v6.to_string(),
            ]);
        }
    }
    let [v4, v6] = counts.total();
    rows.push(vec![
        "Total".to_owned(),
        (v4 + v6).to_string(),
        v4.to_string(),
        v6.to_string(),
    ]);
    let columns = Columns::new()
        .with(Column::left("State", 0))
        .with(Column::right("Total", 0))
        .with(Column::right("IPv4", 0))
        .with(Column::right("IPv6", 0))
        .fitted(&rows, true);
    let mut out = columns.header();
    out.push('\n');
    for row in &rows {
        columns.push_line(&mut out, row);
    }
    let [hashed_v4, hashed_v6] = counts.hashed();
    out.push_str(&format!(
        "As ss -s counts them: estab {}, timewait {}, TCP {} (IP {hashed_v4}, IPv6 {hashed_v6})\n",
        counts.estab(),
        counts.timewait.iter().sum::<u64>(),
        hashed_v4 + hashed_v6,
    ));
    out
}

/// Sockets per state and family, and what `ss -s` counts apart.
struct StateCounts {
    by_state: [[u64; 2]; TcpState::COUNT],
    /// Timewait sockets (TIME-WAIT, and orphaned FIN-WAIT-2 waiting in a
    /// timewait socket): `ss -s`'s `timewait`.
    timewait: [u64; 2],
    /// Request sockets (half-open passive connections).
    requests: [u64; 2],
}

impl StateCounts {
    fn of(sockets: &[ListedSocket]) -> Self {
        let mut counts = StateCounts {
            by_state: [[0; 2]; TcpState::COUNT],
            timewait: [0; 2],
            requests: [0; 2],
        };
        for socket in sockets {
            let family = usize::from(!socket.is_ipv4());
            counts.by_state[socket.state.index()][family] += 1;
            if matches!(socket.timer, Some(DiagTimer::TimeWait { .. })) {
                counts.timewait[family] += 1;
            } else if socket.state == TcpState::SynRecv {
                counts.requests[family] += 1;
            }
        }
        counts
    }

    fn total(&self) -> [u64; 2] {
        self.by_state
            .iter()
            .fold([0, 0], |[a, b], [v4, v6]| [a + v4, b + v6])
    }

    /// `ss -s`'s `estab`: the kernel's `CurrEstab`, ESTABLISHED and
    /// CLOSE-WAIT.
    fn estab(&self) -> u64 {
        [TcpState::Established, TcpState::CloseWait]
            .iter()
            .flat_map(|state| self.by_state[state.index()])
            .sum()
    }

    /// `ss -s`'s TCP row: the full sockets in the kernel's hash tables
    /// (`/proc/net/sockstat`'s `inuse`), every listed socket but timewait
    /// and request sockets, per family.
    fn hashed(&self) -> [u64; 2] {
        let [v4, v6] = self.total();
        [
            v4 - self.timewait[0] - self.requests[0],
            v6 - self.timewait[1] - self.requests[1],
        ]
    }
}

/// `-s --json`: `{"type":"summary","total":N,"states":{"ESTABLISHED":{...}},
/// "estab":N,"timewait":N,"tcp":{...}}`, the last three as `ss -s` counts.
pub fn summary_json(sockets: &[ListedSocket]) -> String {
    #[derive(Serialize)]
    struct Count {
        total: u64,
        ipv4: u64,
        ipv6: u64,
    }
    impl Count {
        fn of([ipv4, ipv6]: [u64; 2]) -> Self {
            Count {
                total: ipv4 + ipv6,
                ipv4,
                ipv6,
            }
        }
    }
    #[derive(Serialize)]
    struct Summary {
        total: u64,
        states: std::collections::BTreeMap<&'static str, Count>,
        estab: u64,
        timewait: u64,
        tcp: Count,
    }
    let counts = StateCounts::of(sockets);
    let [v4, v6] = counts.total();
    let states = TcpState::ALL
        .into_iter()
        .filter_map(|state| {
            let count = counts.by_state[state.index()];
            (count != [0, 0]).then_some((state.name(), Count::of(count)))
        })
        .collect();
    let mut out = String::new();
    push_record(
        &mut out,
        "summary",
        &Summary {
            total: v4 + v6,
            states,
            estab: counts.estab(),
            timewait: counts.timewait.iter().sum(),
            tcp: Count::of(counts.hashed()),
        },
    );
    out
}

/// One JSON object per socket, one per line.
pub fn json(sockets: &[ListedSocket]) -> String {
    #[derive(Serialize)]
    struct TimerJson {
        kind: &'static str,
        expires_ms: u32,
        count: u8,
    }
    #[derive(Serialize)]
    struct SocketJson {
        #[serde(flatten)]
        tuple: TupleJson,
        state: &'static str,
        /// Null where the queues are not known (a replay).
        recv_q: Option<u32>,
        send_q: Option<u32>,
        timer: Option<TimerJson>,
        #[serde(flatten)]
        owner: OwnerJson,
        in_state_ms: Option<u64>,
        retries: Option<u32>,
    }
    let mut out = String::new();
    for socket in sockets {
        let tuple = SocketTuple {
            netns: socket.netns,
            local: socket.local,
            remote: socket.remote,
        };
        push_record(
            &mut out,
            "socket",
            &SocketJson {
                tuple: TupleJson::from(&tuple),
                state: socket.state.name(),
                recv_q: socket.recv_queue,
                send_q: socket.send_queue,
                timer: socket
                    .timer
                    .and_then(timer_parts)
                    .map(|(kind, expires_ms, count)| TimerJson {
                        kind,
                        expires_ms,
                        count,
                    }),
                owner: OwnerJson::from(socket.owner.as_ref()),
                in_state_ms: socket.in_state_ns.map(|ns| ns / 1_000_000),
                retries: socket.retries,
            },
        );
    }
    out
}

#[cfg(test)]
mod tests;
