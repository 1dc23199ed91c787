//! The soak's load, in its own namespace, at a steady rate: the bench's
//! churn in three shapes (the server closing first, over IPv4: TIME-WAIT on
//! the server's side; the client closing first, over IPv6: TIME-WAIT on the
//! client's side, its ports reused; the client closing first and the server
//! holding the connection in CLOSE-WAIT for a while), plus handshakes that
//! never complete: SYNs dropped by iptables (the client times out) and
//! SYN-ACKs dropped (the server's half-open connection expires too).
use std::{
    fs::File,
    io::ErrorKind,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::{self, JoinHandle},
    time::Duration,
};

use anyhow::{Context, Result};

use crate::{
    bench::churn::{self, Churn, Closer, Shape},
    netns::Netns,
};

/// Share of the rate held in CLOSE-WAIT, and for how long: 20 connections
/// a second held 30 s at 2,000 a second, 600 in CLOSE-WAIT at any time.
const CLOSE_WAIT_SHARE: f64 = 0.01;
const CLOSE_WAIT_HOLD: Duration = Duration::from_secs(30);
/// Client threads of each TIME-WAIT churn.
const CLIENTS: usize = 2;
/// Client threads on each port whose handshakes go unanswered: each makes
/// an attempt every SYN timeout.
const UNANSWERED_CLIENTS: usize = 2;
/// The namespace's SYN and SYN-ACK retries: an unanswered handshake ends in
/// seconds rather than minutes.
const SYN_RETRIES: [&str; 2] = [
    "net.ipv4.tcp_syn_retries=2",
    "net.ipv4.tcp_synack_retries=2",
];

/// The load, running until dropped.
pub struct Load {
    churns: Vec<Churn>,
    unanswered: Unanswered,
}

/// Counts since the start.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counts {
    pub connections: u64,
    pub failures: u64,
    pub handshake_timeouts: u64,
}

impl Load {
    /// Starts the load in `netns` at `rate` connections per second (the
    /// unanswered handshakes come on top, a few a second).
    pub fn start(netns: &Netns, rate: f64) -> Result<Self> {
        let unanswered = Unanswered::start(netns)?;
        let close_wait_rate = rate * CLOSE_WAIT_SHARE;
        let time_wait_rate = (rate - close_wait_rate) / 2.0;
        let shapes = [
            Shape {
                address: Ipv4Addr::LOCALHOST.into(),
                clients: CLIENTS,
                rate: Some(time_wait_rate),
                closer: Closer::Server,
            },
            Shape {
                address: Ipv6Addr::LOCALHOST.into(),
                clients: CLIENTS,
                rate: Some(time_wait_rate),
                closer: Closer::Client {
                    hold: Duration::ZERO,
                },
            },
            Shape {
                address: Ipv4Addr::LOCALHOST.into(),
                clients: 1,
                rate: Some(close_wait_rate),
                closer: Closer::Client {
                    hold: CLOSE_WAIT_HOLD,
                },
            },
        ];
        let churns = shapes
            .into_iter()
            .map(|shape| Churn::start_shaped(&netns.path(), shape))
            .collect::<Result<_>>()?;
        Ok(Load { churns, unanswered })
    }

    pub fn counts(&self) -> Counts {
        let (connections, failures) = self
            .churns
            .iter()
            .map(Churn::counts)
            .fold((0, 0), |(c, f), (dc, df)| (c + dc, f + df));
        Counts {
            connections,
            failures: failures + self.unanswered.unexpected.load(Ordering::Relaxed),
            handshake_timeouts: self.unanswered.timeouts.load(Ordering::Relaxed),
        }
    }
}

/// Clients connecting to two listeners whose handshakes iptables breaks.
struct Unanswered {
    stop: Arc<AtomicBool>,
    timeouts: Arc<AtomicU64>,
    /// Attempts that did not time out.
    unexpected: Arc<AtomicU64>,
    threads: Vec<JoinHandle<()>>,
    /// Held so that their ports stay theirs; nothing connects to them.
    _listeners: [TcpListener; 2],
}

impl Unanswered {
    fn start(netns: &Netns) -> Result<Self> {
        let file = File::open(netns.path()).with_context(|| format!("opening {}", netns.path()))?;
        let mut args = vec!["-qw"];
        args.extend(SYN_RETRIES);
        netns.exec("sysctl", &args)?;
        let localhost = IpAddr::from(Ipv4Addr::LOCALHOST);
        let syn_dropped = churn::listen_in(&file, localhost)?;
        let synack_dropped = churn::listen_in(&file, localhost)?;
        let servers = [syn_dropped.local_addr()?, synack_dropped.local_addr()?];
        let [syn_port, synack_port] = servers.map(|server| server.port());
        let rules = [
            format!("-A INPUT -p tcp --dport {syn_port} --syn -j DROP"),
            format!("-A INPUT -p tcp --sport {synack_port} --tcp-flags SYN,ACK SYN,ACK -j DROP"),
        ];
        for rule in rules {
            let args: Vec<&str> = rule.split(' ').collect();
            netns.exec("iptables", &args)?;
        }
        let mut unanswered = Unanswered {
            stop: Arc::default(),
            timeouts: Arc::default(),
            unexpected: Arc::default(),
            threads: Vec::new(),
            _listeners: [syn_dropped, synack_dropped],
        };
        for server in servers {
            for _ in 0..UNANSWERED_CLIENTS {
                let file = file.try_clone()?;
                let (stop, timeouts, unexpected) = (
                    unanswered.stop.clone(),
                    unanswered.timeouts.clone(),
                    unanswered.unexpected.clone(),
                );
                unanswered.threads.push(thread::spawn(move || {
                    if churn::enter(&file).is_err() {
                        unexpected.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    while !stop.load(Ordering::Relaxed) {
                        // Blocks until the kernel gives up.
                        match TcpStream::connect(server) {
                            Err(error) if error.kind() == ErrorKind::TimedOut => {
                                timeouts.fetch_add(1, Ordering::Relaxed)
                            }
                            _ => unexpected.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                }));
            }
        }
        Ok(unanswered)
    }
}

impl Drop for Unanswered {
    /// Waits for the attempts in flight (one SYN timeout at most).
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}
