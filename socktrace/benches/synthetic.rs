//! A deterministic synthetic recording: the kernel records of TCP
//! connections churning on a busy host, for the ingest benchmark until a
//! real capture (`socktrace trace --record FILE`) replaces
//! `benches/data/churn.rec`. `ingest.rs` writes that file from here when
//! asked (`SOCKTRACE_WRITE_SYNTHETIC`); it never generates one on its own.
//!
//! What it models, as the kernel reports it:
//! - active opens: `CLOSE -> SYN_SENT` in process context before the local
//!   port is bound (port 0), then `SYN_SENT -> ESTABLISHED` (softirq),
//!   `ESTABLISHED -> FIN_WAIT1` (process: close(2)), `FIN_WAIT1 ->
//!   FIN_WAIT2` and `FIN_WAIT2 -> CLOSE` (softirq); a few retransmit their
//!   SYN, are refused (RST, then `SYN_SENT -> CLOSE` with `ECONNREFUSED`)
//!   or are reset once established;
//! - passive opens, children of a few listeners that open first and close
//!   last: `LISTEN -> SYN_RECV`, `SYN_RECV -> ESTABLISHED`, `ESTABLISHED ->
//!   CLOSE_WAIT` (softirq), `CLOSE_WAIT -> LAST_ACK` (process: the server's
//!   close), `LAST_ACK -> CLOSE` (softirq); a few have their SYN-ACK
//!   retransmitted first (a record on the listener's address);
//! - IPv4 and IPv6, the host's and a container's network namespace;
//! - softirq records carry whatever task was interrupted;
//! - socket addresses from one slab per family, the most recently freed
//!   handed out first, so addresses are reused right after a `CLOSE`.
use std::{
    cmp::Reverse,
    collections::BinaryHeap,
    net::{Ipv4Addr, Ipv6Addr},
};

use socktrace::{
    event::Event,
    recording::{self, Recorder},
    table::{SocketTable, TableStats},
    tcp_state::TcpState,
};
use socktrace_ebpf::{
    AF_INET, AF_INET6, CONTEXT_PROCESS, CONTEXT_SOFTIRQ, RECORD_RESET_RECEIVED, RECORD_SIZE,
    RECORD_STATE, RECORD_SYN_RETRANSMIT, RECORD_SYNACK_RETRANSMIT, Record,
};

/// A recording (header and records) of `connections` connections.
pub fn recording(connections: usize, seed: u64) -> Vec<u8> {
    let mut bytes = Vec::new();
    {
        let mut recorder = Recorder::new(&mut bytes).expect("writing to memory");
        for record in churn(connections, seed) {
            recorder.record(&wire(&record)).expect("writing to memory");
        }
    }
    bytes
}

/// Checks that a synthetic recording is what it claims: every record
/// decodes, and the table, replaying it from empty, sees every socket born
/// and closed with no anomaly. Returns the number of records.
pub fn verify(bytes: &[u8]) -> usize {
    let mut table = SocketTable::new();
    let mut count = 0;
    for raw in recording::records(bytes).expect("a recording") {
        count += 1;
        match Event::try_from(raw) {
            Ok(Event::State(event)) => {
                table.apply(&event);
            }
            Ok(_) => {}
            Err(error) => panic!("record {count} does not decode: {error}"),
        }
    }
    assert_eq!(table.len(), 0, "sockets left open");
    assert_eq!(table.stats(), TableStats::default(), "anomalies");
    count
}

/// The records of `connections` connections, in time order.
pub fn churn(connections: usize, seed: u64) -> Vec<Record> {
    let mut rng = Rng(seed);
    let mut sockets = Vec::new();
    let mut at_ns = START_NS;
    for listener in &LISTENERS {
        sockets.push(listening(listener, at_ns));
        at_ns += 20_000;
    }
    for _ in 0..connections {
        at_ns += rng.between(5_000, 75_000);
        let socket = if rng.chance(55) {
            active(&mut rng, at_ns)
        } else {
            passive(&mut rng, at_ns)
        };
        sockets.push(socket);
    }
    let last_ns = sockets
        .iter()
        .filter_map(|s| s.steps.last())
        .map(|step| step.at_ns)
        .max()
        .unwrap_or(at_ns);
    for (index, listener) in LISTENERS.iter().enumerate() {
        let closing = step(last_ns + 1_000_000 + index as u64 * 20_000)
            .process(listener.task)
            .states(TcpState::Listen, TcpState::Close);
        sockets[index].steps.push(closing);
    }
    replay(sockets)
}

/// One record's bytes as the ring buffer hands them over (the record's
/// layout, native byte order).
pub fn wire(raw: &Record) -> [u8; RECORD_SIZE] {
    let mut out = [0u8; RECORD_SIZE];
    let mut at = 0;
    let mut put = |bytes: &[u8]| {
        out[at..at + bytes.len()].copy_from_slice(bytes);
        at += bytes.len();
    };
    put(&[raw.kind, raw.task_context]);
    put(&raw.family.to_ne_bytes());
    put(&raw.tgid.to_ne_bytes());
    put(&raw.ts_ns.to_ne_bytes());
    put(&raw.skaddr.to_ne_bytes());
    put(&raw.netns.to_ne_bytes());
    put(&raw.sport.to_ne_bytes());
    put(&raw.dport.to_ne_bytes());
    put(&raw.saddr);
    put(&raw.daddr);
    put(&raw.comm);
    put(&[raw.oldstate, raw.newstate]);
    put(&raw._pad);
    put(&raw.value.to_ne_bytes());
    out
}

/// An hour after boot, in CLOCK_MONOTONIC nanoseconds.
const START_NS: u64 = 3_600_000_000_000;
/// The initial SYN and SYN-ACK retransmission timeout.
const RTO_NS: u64 = 1_000_000_000;
const ECONNREFUSED: u64 = 111;

const HOST_NETNS: u32 = 4026531840;
const APP_NETNS: u32 = 4026532281;

#[derive(Clone, Copy)]
struct Task {
    pid: u32,
    comm: &'static str,
}

const CURL: Task = Task {
    pid: 40211,
    comm: "curl",
};
const PYTHON: Task = Task {
    pid: 3301,
    comm: "python3",
};
const NGINX: Task = Task {
    pid: 812,
    comm: "nginx",
};
const ENVOY: Task = Task {
    pid: 1290,
    comm: "envoy",
};
const JAVA: Task = Task {
    pid: 23011,
    comm: "java",
};

/// Processes that connect out, and the namespace they run in.
const CLIENTS: [(Task, u32); 4] = [
    (CURL, HOST_NETNS),
    (PYTHON, HOST_NETNS),
    (ENVOY, HOST_NETNS),
    (JAVA, APP_NETNS),
];

/// Tasks a softirq may interrupt: a softirq record carries one of them.
const INTERRUPTED: [Task; 6] = [
    Task {
        pid: 0,
        comm: "swapper/0",
    },
    Task {
        pid: 0,
        comm: "swapper/1",
    },
    Task {
        pid: 14,
        comm: "ksoftirqd/0",
    },
    Task {
        pid: 22,
        comm: "ksoftirqd/1",
    },
    ENVOY,
    PYTHON,
];

/// A listening socket on the wildcard address.
struct Listen {
    task: Task,
    netns: u32,
    family: u16,
    port: u16,
}

const LISTENERS: [Listen; 3] = [
    Listen {
        task: NGINX,
        netns: HOST_NETNS,
        family: AF_INET,
        port: 80,
    },
    Listen {
        task: ENVOY,
        netns: HOST_NETNS,
        family: AF_INET6,
        port: 443,
    },
    Listen {
        task: JAVA,
        netns: APP_NETNS,
        family: AF_INET,
        port: 8080,
    },
];

const SERVERS_V4: [([u8; 4], u16); 3] = [
    ([93, 184, 216, 34], 443),
    ([10, 0, 5, 20], 5432),
    ([10, 0, 5, 21], 6379),
];
const SERVERS_V6: [(u128, u16); 2] = [
    (0x2606_2800_0220_0001_0248_1893_25c8_1946, 443),
    (0x2001_0db8_0005_0000_0000_0000_0000_0020, 5432),
];

/// This host's address in a namespace.
fn local_address(netns: u32, family: u16) -> [u8; 16] {
    match (netns == HOST_NETNS, family == AF_INET6) {
        (true, false) => v4([10, 0, 3, 15]),
        (false, false) => v4([172, 17, 0, 2]),
        (true, true) => v6(0x2001_0db8_0001_0000_0000_0000_0000_0015),
        (false, true) => v6(0xfd00_0000_0000_0000_0000_0000_ac11_0002),
    }
}

fn v4(octets: [u8; 4]) -> [u8; 16] {
    let mut bytes = [0u8; 16];
    bytes[..4].copy_from_slice(&Ipv4Addr::from(octets).octets());
    bytes
}

fn v6(bits: u128) -> [u8; 16] {
    Ipv6Addr::from(bits).octets()
}

fn comm(text: &str) -> [u8; 16] {
    let mut bytes = [0u8; 16];
    let len = text.len().min(15);
    bytes[..len].copy_from_slice(&text.as_bytes()[..len]);
    bytes
}

/// A deterministic pseudo-random sequence (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// In `low..high`.
    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.next() as usize % items.len()]
    }

    /// A round trip: mostly the same data centre, some across the world.
    fn rtt_ns(&mut self) -> u64 {
        if self.chance(80) {
            self.between(50_000, 800_000)
        } else {
            self.between(5_000_000, 120_000_000)
        }
    }

    /// How long a connection stays open: mostly a request or two.
    fn hold_ns(&mut self) -> u64 {
        if self.chance(90) {
            self.between(100_000, 20_000_000)
        } else {
            self.between(20_000_000, 2_000_000_000)
        }
    }

    fn softirq(&mut self) -> Task {
        *self.pick(&INTERRUPTED)
    }
}

/// Whose `struct sock` a record names.
#[derive(Clone, Copy)]
enum Whose {
    /// The socket's own.
    Own,
    /// The listener's (by index in [`LISTENERS`]), for a SYN-ACK retransmit.
    Listener(usize),
}

/// One record of a socket's life, before its address is known.
#[derive(Clone, Copy)]
struct Step {
    at_ns: u64,
    kind: u8,
    context: u8,
    task: Task,
    old: u8,
    new: u8,
    /// Whether the local port shows (it does not in `CLOSE -> SYN_SENT`).
    port_bound: bool,
    value: u64,
    whose: Whose,
}

fn step(at_ns: u64) -> Step {
    Step {
        at_ns,
        kind: RECORD_STATE,
        context: CONTEXT_PROCESS,
        task: INTERRUPTED[0],
        old: 0,
        new: 0,
        port_bound: true,
        value: 0,
        whose: Whose::Own,
    }
}

impl Step {
    fn process(self, task: Task) -> Step {
        Step {
            context: CONTEXT_PROCESS,
            task,
            ..self
        }
    }

    fn softirq(self, rng: &mut Rng) -> Step {
        Step {
            context: CONTEXT_SOFTIRQ,
            task: rng.softirq(),
            ..self
        }
    }

    fn states(self, old: TcpState, new: TcpState) -> Step {
        Step {
            old: old as u8,
            new: new as u8,
            ..self
        }
    }

    fn kind(self, kind: u8) -> Step {
        Step { kind, ..self }
    }
}

/// A socket's endpoints and its life, record by record.
struct Socket {
    family: u16,
    netns: u32,
    local: [u8; 16],
    sport: u16,
    remote: [u8; 16],
    dport: u16,
    steps: Vec<Step>,
    next: usize,
    skaddr: Option<u64>,
}

fn listening(listener: &Listen, at_ns: u64) -> Socket {
    Socket {
        family: listener.family,
        netns: listener.netns,
        local: [0; 16],
        sport: listener.port,
        remote: [0; 16],
        dport: 0,
        steps: vec![
            step(at_ns)
                .process(listener.task)
                .states(TcpState::Close, TcpState::Listen),
        ],
        next: 0,
        skaddr: None,
    }
}

/// connect(2) and its aftermath.
fn active(rng: &mut Rng, mut at_ns: u64) -> Socket {
    let (task, netns) = *rng.pick(&CLIENTS);
    let ipv6 = rng.chance(30);
    let (family, remote, dport) = if ipv6 {
        let (address, port) = *rng.pick(&SERVERS_V6);
        (AF_INET6, v6(address), port)
    } else {
        let (address, port) = *rng.pick(&SERVERS_V4);
        (AF_INET, v4(address), port)
    };
    let rtt = rng.rtt_ns();
    let mut steps = vec![Step {
        port_bound: false,
        ..step(at_ns)
            .process(task)
            .states(TcpState::Close, TcpState::SynSent)
    }];
    if rng.chance(2) {
        at_ns += RTO_NS;
        let retransmit = step(at_ns)
            .softirq(rng)
            .kind(RECORD_SYN_RETRANSMIT)
            .states(TcpState::SynSent, TcpState::SynSent);
        steps.push(retransmit);
    }
    at_ns += rtt;
    if rng.chance(3) {
        // Refused: the RST, then the connect's end with its verdict.
        steps.push(step(at_ns).softirq(rng).kind(RECORD_RESET_RECEIVED));
        let refused = Step {
            value: ECONNREFUSED,
            ..step(at_ns + 2_000)
                .softirq(rng)
                .states(TcpState::SynSent, TcpState::Close)
        };
        steps.push(refused);
    } else {
        let established = step(at_ns)
            .softirq(rng)
            .states(TcpState::SynSent, TcpState::Established);
        steps.push(established);
        at_ns += rng.hold_ns();
        if rng.chance(2) {
            steps.push(step(at_ns).softirq(rng).kind(RECORD_RESET_RECEIVED));
            let reset = step(at_ns + 2_000)
                .softirq(rng)
                .states(TcpState::Established, TcpState::Close);
            steps.push(reset);
        } else {
            let close = step(at_ns)
                .process(task)
                .states(TcpState::Established, TcpState::FinWait1);
            at_ns += rtt;
            let fin_acked = step(at_ns)
                .softirq(rng)
                .states(TcpState::FinWait1, TcpState::FinWait2);
            at_ns += rng.between(1_000, rtt);
            // The peer's FIN: the socket gives way to a timewait socket.
            let fin = step(at_ns)
                .softirq(rng)
                .states(TcpState::FinWait2, TcpState::Close);
            steps.extend([close, fin_acked, fin]);
        }
    }
    Socket {
        family,
        netns,
        local: local_address(netns, family),
        sport: rng.between(32768, 61000) as u16,
        remote,
        dport,
        steps,
        next: 0,
        skaddr: None,
    }
}

/// A connection a listener accepts, closed by the client first.
fn passive(rng: &mut Rng, mut at_ns: u64) -> Socket {
    let index = rng.next() as usize % LISTENERS.len();
    let listener = &LISTENERS[index];
    let remote = if listener.family == AF_INET6 {
        v6(0x2001_0db8_00ff_0000_0000_0000_0000_0000 | u128::from(rng.between(1, 4096)))
    } else {
        let host = rng.between(1, 255) as u8;
        if rng.chance(50) {
            v4([198, 51, 100, host])
        } else {
            v4([203, 0, 113, host])
        }
    };
    let rtt = rng.rtt_ns();
    let mut steps = Vec::new();
    if rng.chance(1) {
        // The SYN-ACK sent when the SYN came in is lost and resent.
        let first_synack_us = at_ns / 1_000;
        at_ns += RTO_NS;
        let retransmit = Step {
            value: first_synack_us,
            whose: Whose::Listener(index),
            ..step(at_ns).softirq(rng).kind(RECORD_SYNACK_RETRANSMIT)
        };
        steps.push(retransmit);
    }
    at_ns += rtt;
    // The client's ACK creates the child and establishes it at once.
    let child = step(at_ns)
        .softirq(rng)
        .states(TcpState::Listen, TcpState::SynRecv);
    let established = step(at_ns + 3_000)
        .softirq(rng)
        .states(TcpState::SynRecv, TcpState::Established);
    at_ns += rng.hold_ns();
    let fin = step(at_ns)
        .softirq(rng)
        .states(TcpState::Established, TcpState::CloseWait);
    at_ns += rng.between(5_000, 200_000);
    let close = step(at_ns)
        .process(listener.task)
        .states(TcpState::CloseWait, TcpState::LastAck);
    at_ns += rtt;
    let fin_acked = step(at_ns)
        .softirq(rng)
        .states(TcpState::LastAck, TcpState::Close);
    steps.extend([child, established, fin, close, fin_acked]);
    Socket {
        family: listener.family,
        netns: listener.netns,
        local: local_address(listener.netns, listener.family),
        sport: listener.port,
        remote,
        dport: rng.between(1024, 65536) as u16,
        steps,
        next: 0,
        skaddr: None,
    }
}

/// A slab cache of `struct sock`s: freed objects are handed out again
/// first, most recent first, as SLUB's per-CPU free list does.
struct Slab {
    base: u64,
    stride: u64,
    used: u64,
    free: Vec<u64>,
}

impl Slab {
    fn new(base: u64, stride: u64) -> Self {
        Slab {
            base,
            stride,
            used: 0,
            free: Vec::new(),
        }
    }

    fn take(&mut self) -> u64 {
        self.free.pop().unwrap_or_else(|| {
            self.used += 1;
            self.base + (self.used - 1) * self.stride
        })
    }
}

/// Plays every socket's steps in time order, handing out and taking back
/// socket addresses as it goes.
fn replay(mut sockets: Vec<Socket>) -> Vec<Record> {
    // `TCP` and `TCPv6` caches, objects of about the size of a tcp_sock
    // and a tcp6_sock.
    let mut slabs = [
        Slab::new(0xffff_8881_0a40_0000, 0x980),
        Slab::new(0xffff_8881_2c80_0000, 0xa80),
    ];
    let mut pending: BinaryHeap<Reverse<(u64, usize)>> = sockets
        .iter()
        .enumerate()
        .map(|(index, socket)| Reverse((socket.steps[0].at_ns, index)))
        .collect();
    let mut records = Vec::new();
    while let Some(Reverse((_, index))) = pending.pop() {
        let socket = &sockets[index];
        let step = socket.steps[socket.next];
        let slab = &mut slabs[usize::from(socket.family == AF_INET6)];
        let skaddr = match step.whose {
            Whose::Listener(listener) => sockets[listener]
                .skaddr
                .expect("a listener opens before its connections"),
            Whose::Own => *sockets[index].skaddr.get_or_insert_with(|| slab.take()),
        };
        let socket = &mut sockets[index];
        records.push(Record {
            kind: step.kind,
            task_context: step.context,
            family: socket.family,
            tgid: step.task.pid,
            ts_ns: step.at_ns,
            skaddr,
            netns: socket.netns,
            sport: if step.port_bound { socket.sport } else { 0 },
            dport: socket.dport,
            saddr: socket.local,
            daddr: socket.remote,
            comm: comm(step.task.comm),
            oldstate: step.old,
            newstate: step.new,
            _pad: [0; 6],
            value: step.value,
        });
        if step.kind == RECORD_STATE && step.new == TcpState::Close as u8 {
            slab.free.push(skaddr);
            socket.skaddr = None;
        }
        socket.next += 1;
        if let Some(next) = socket.steps.get(socket.next) {
            pending.push(Reverse((next.at_ns, index)));
        }
    }
    records
}
