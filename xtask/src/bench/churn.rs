//! The load: TCP connection churn on loopback inside a network namespace.
//! Client threads connect, the server accepts and closes at once (so the
//! server side takes TIME-WAIT and client ports are reused), the client
//! reads the end of stream and closes. About ten state transitions per
//! connection, all in the kernel's fast paths.
use std::{
    fs::File,
    io::Read,
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
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

impl Churn {
    /// Starts `clients` client threads and one acceptor in the namespace
    /// at `netns_path` (`/run/netns/NAME`).
    pub fn start(netns_path: &str, clients: usize) -> Result<Self> {
        let netns = File::open(netns_path).with_context(|| format!("opening {netns_path}"))?;
        // The listener is made by a thread that enters the namespace, so
        // that the caller's thread stays where it is.
        let listener = thread::scope(|scope| {
            scope
                .spawn(|| -> Result<TcpListener> {
                    enter(&netns)?;
                    TcpListener::bind("127.0.0.1:0").context("binding the churn listener")
                })
                .join()
                .expect("listener thread")
        })?;
        let server: SocketAddr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(AtomicU64::new(0));
        let mut threads = Vec::new();
        {
            let stop = stop.clone();
            threads.push(thread::spawn(move || accept_loop(&listener, &stop)));
        }
        for _ in 0..clients {
            let netns = netns.try_clone()?;
            let (stop, connections, failures) =
                (stop.clone(), connections.clone(), failures.clone());
            threads.push(thread::spawn(move || {
                if enter(&netns).is_err() {
                    failures.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                client_loop(server, &stop, &connections, &failures);
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

    fn counts(&self) -> (u64, u64) {
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

/// Moves the calling thread into the network namespace `netns`.
fn enter(netns: &File) -> Result<()> {
    // SAFETY: a valid namespace descriptor; setns affects this thread only.
    if unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!(
            "setns into the bench namespace: {}",
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

/// Connects, waits for the server's close, closes; counts each round.
fn client_loop(
    server: SocketAddr,
    stop: &AtomicBool,
    connections: &AtomicU64,
    failures: &AtomicU64,
) {
    let mut buffer = [0u8; 64];
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut stream) = TcpStream::connect_timeout(&server, Duration::from_secs(1)) else {
            failures.fetch_add(1, Ordering::Relaxed);
            continue;
        };
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
