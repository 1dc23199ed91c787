//! The load: TCP connection churn on loopback inside a network namespace.
//! Client threads connect, the server accepts and closes at once (so the
//! server side takes TIME-WAIT and client ports are reused), the client
//! reads the end of stream and closes. About ten state transitions per
//! connection, all in the kernel's fast paths. The soak also paces it and
//! lets the client close first (see [`Shape`]).
use std::{
    collections::VecDeque,
    fs::File,
    io::Read,
    net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

/// Churn running in the background until dropped.
pub struct Churn {
    stop: Arc<AtomicBool>,
    connections: Arc<AtomicU64>,
    failures: Arc<AtomicU64>,
    threads: Vec<JoinHandle<()>>,
}

/// What one measurement window saw.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub connections: u64,
    pub failures: u64,
    pub seconds: f64,
}

impl Window {
    pub fn rate(&self) -> f64 {
        self.connections as f64 / self.seconds
    }
}

/// How a churn's connections go.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// The server's address (a loopback one).
    pub address: IpAddr,
    /// Client threads.
    pub clients: usize,
    /// Connections per second over all clients; `None`: as fast as they go.
    pub rate: Option<f64>,
    pub closer: Closer,
}

/// Which side closes first.
#[derive(Clone, Copy, Debug)]
pub enum Closer {
    /// The server, at once: the server side takes TIME-WAIT.
    Server,
    /// The client, at once: the server's socket sits in CLOSE-WAIT until
    /// the server closes it, `hold` after accepting it (and not before the
    /// client's FIN is in), and the client side takes TIME-WAIT.
    Client { hold: Duration },
}

/// A client more than this behind its pace starts again from now rather
/// than catching up in a burst.
const MOST_BEHIND: Duration = Duration::from_secs(1);

/// How long a server holding a connection waits for the client's FIN past
/// its hold before closing anyway (counted as a failure).
const PEER_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

impl Churn {
    /// Starts `clients` client threads and one acceptor in the namespace
    /// at `netns_path` (`/run/netns/NAME`), as fast as they go, the server
    /// closing first.
    pub fn start(netns_path: &str, clients: usize) -> Result<Self> {
        Self::start_shaped(
            netns_path,
            Shape {
                address: Ipv4Addr::LOCALHOST.into(),
                clients,
                rate: None,
                closer: Closer::Server,
            },
        )
    }

    /// Starts a churn of `shape` in the namespace at `netns_path`.
    pub fn start_shaped(netns_path: &str, shape: Shape) -> Result<Self> {
        let netns = File::open(netns_path).with_context(|| format!("opening {netns_path}"))?;
        let listener = listen_in(&netns, shape.address)?;
        let server: SocketAddr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(AtomicU64::new(0));
        let mut threads = Vec::new();
        {
            let (stop, failures) = (stop.clone(), failures.clone());
            threads.push(thread::spawn(move || match shape.closer {
                Closer::Server => accept_loop(&listener, &stop),
                Closer::Client { hold } => holding_accept_loop(&listener, hold, &stop, &failures),
            }));
        }
        let interval = shape
            .rate
            .map(|rate| Duration::from_secs_f64(shape.clients as f64 / rate));
        for _ in 0..shape.clients {
            let netns = netns.try_clone()?;
            let (stop, connections, failures) =
                (stop.clone(), connections.clone(), failures.clone());
            threads.push(thread::spawn(move || {
                if enter(&netns).is_err() {
                    failures.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                let mut pace = Pace::new(interval);
                client_loop(
                    server,
                    shape.closer,
                    &mut pace,
                    &stop,
                    &connections,
                    &failures,
                );
            }));
        }
        Ok(Churn {
            stop,
            connections,
            failures,
            threads,
        })
    }

    /// Counts connections made over the next `length`.
    pub fn window(&self, length: Duration) -> Window {
        let (connections, failures) = self.counts();
        let began = Instant::now();
        thread::sleep(length);
        let (connections_end, failures_end) = self.counts();
        Window {
            connections: connections_end - connections,
            failures: failures_end - failures,
            seconds: began.elapsed().as_secs_f64(),
        }
    }

    /// Connections made and failed so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.connections.load(Ordering::Relaxed),
            self.failures.load(Ordering::Relaxed),
        )
    }
}

impl Drop for Churn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// A listener on an ephemeral port of `address` in the network namespace
/// `netns`, made by a thread that enters it, so that the caller's thread
/// stays where it is.
pub fn listen_in(netns: &File, address: IpAddr) -> Result<TcpListener> {
    thread::scope(|scope| {
        scope
            .spawn(|| -> Result<TcpListener> {
                enter(netns)?;
                TcpListener::bind((address, 0))
                    .with_context(|| format!("binding a listener on {address}"))
            })
            .join()
            .expect("listener thread")
    })
}

/// Moves the calling thread into the network namespace `netns`.
pub fn enter(netns: &File) -> Result<()> {
    // SAFETY: a valid namespace descriptor; setns affects this thread only.
    if unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!(
            "setns into the churn's namespace: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Accepts and closes at once until stopped. Non-blocking, so that it
/// notices the stop flag.
fn accept_loop(listener: &TcpListener, stop: &AtomicBool) {
    if listener.set_nonblocking(true).is_err() {
        return;
    }
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => drop(stream),
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_micros(50));
            }
            Err(_) => {}
        }
    }
}

/// Accepts, and closes each connection once it was held `hold` and the
/// client's FIN is in, until stopped.
fn holding_accept_loop(
    listener: &TcpListener,
    hold: Duration,
    stop: &AtomicBool,
    failures: &AtomicU64,
) {
    if listener.set_nonblocking(true).is_err() {
        return;
    }
    // Accepted in order, so due in order.
    let mut held: VecDeque<(Instant, TcpStream)> = VecDeque::new();
    let mut buffer = [0u8; 64];
    while !stop.load(Ordering::Relaxed) {
        let mut busy = false;
        while let Ok((stream, _)) = listener.accept() {
            busy = true;
            if stream.set_nonblocking(true).is_ok() {
                held.push_back((Instant::now(), stream));
            } else {
                failures.fetch_add(1, Ordering::Relaxed);
            }
        }
        while let Some((accepted, stream)) = held.front_mut() {
            let held_for = accepted.elapsed();
            if held_for < hold {
                break;
            }
            match stream.read(&mut buffer) {
                Ok(0) => {}
                Ok(_) => continue,
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                    if held_for < hold + PEER_CLOSE_TIMEOUT {
                        break;
                    }
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
            busy = true;
            held.pop_front();
        }
        if !busy {
            thread::sleep(Duration::from_micros(50));
        }
    }
}

/// Keeps a client to its share of the rate.
struct Pace {
    interval: Option<Duration>,
    next: Instant,
}

impl Pace {
    fn new(interval: Option<Duration>) -> Self {
        Pace {
            interval,
            next: Instant::now(),
        }
    }

    /// Waits for the client's next turn.
    fn wait(&mut self) {
        let Some(interval) = self.interval else {
            return;
        };
        let now = Instant::now();
        if self.next > now {
            thread::sleep(self.next - now);
        } else if now - self.next > MOST_BEHIND {
            self.next = now;
        }
        self.next += interval;
    }
}

/// Connects and closes as `closer` says, at `pace`; counts each round.
fn client_loop(
    server: SocketAddr,
    closer: Closer,
    pace: &mut Pace,
    stop: &AtomicBool,
    connections: &AtomicU64,
    failures: &AtomicU64,
) {
    let mut buffer = [0u8; 64];
    while !stop.load(Ordering::Relaxed) {
        pace.wait();
        let Ok(mut stream) = TcpStream::connect_timeout(&server, Duration::from_secs(1)) else {
            failures.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        if let Closer::Client { .. } = closer {
            drop(stream);
            connections.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let ended = loop {
            match stream.read(&mut buffer) {
                Ok(0) => break true,
                Ok(_) => continue,
                Err(_) => break false,
            }
        };
        let _ = stream.shutdown(Shutdown::Both);
        drop(stream);
        if ended {
            connections.fetch_add(1, Ordering::Relaxed);
        } else {
            failures.fetch_add(1, Ordering::Relaxed);
        }
    }
}
