//! Connection churn in a test's namespace until dropped, at a steady pace:
//! client threads connect to a loopback listener, an acceptor closes each
//! connection at once (the server side takes TIME-WAIT, so client ports
//! are reused), the client reads the end of stream and closes. About ten
//! transitions per connection.
use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::{
    Family, NetNs, tcp,
    wait::{self, Poll},
};

/// How long a blocked accept or read waits before looking at the stop flag.
const POLL: Duration = Duration::from_millis(50);

/// See the module documentation.
pub struct Churn {
    stop: Arc<AtomicBool>,
    connections: Arc<AtomicU64>,
    threads: Vec<JoinHandle<()>>,
}

impl Churn {
    /// Starts `clients` client threads and one acceptor in `ns`, making
    /// `per_second` connections a second between them (fewer if the
    /// machine cannot).
    pub fn start(ns: &NetNs, clients: usize, per_second: u32) -> Result<Self> {
        let listener = ns.run(|| tcp::listen(Family::V4))?;
        let server = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicU64::new(0));
        let mut churn = Churn {
            stop: Arc::clone(&stop),
            connections: Arc::clone(&connections),
            threads: Vec::new(),
        };
        let acceptor_stop = Arc::clone(&stop);
        churn.threads.push(
            thread::Builder::new()
                .name("churn-accept".into())
                .spawn(move || accept_and_close(&listener, &acceptor_stop))
                .context("spawning the acceptor")?,
        );
        let interval = Duration::from_secs(clients as u64) / per_second;
        for _ in 0..clients {
            let (stop, connections) = (Arc::clone(&stop), Arc::clone(&connections));
            churn
                .threads
                .push(ns.spawn(move || connect_until(server, interval, &stop, &connections))?);
        }
        Ok(churn)
    }

    /// Connections completed so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// Waits until it has completed `count` connections in all, for at
    /// most `timeout`.
    pub fn wait_for(&self, count: u64, timeout: Duration) -> Result<()> {
        wait::until("the churn's connections", timeout, || {
            let made = self.connections();
            Ok(if made >= count {
                Poll::Ready(())
            } else {
                Poll::Pending(format!("{made} of {count} connections"))
            })
        })
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

/// Accepts and closes at once until stopped.
fn accept_and_close(listener: &TcpListener, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        // A short poll, so that the stop flag is seen.
        if let Ok(stream) = tcp::accept(listener, POLL) {
            drop(stream);
        }
    }
}

/// Connects, waits for the server's close, closes, one round every
/// `interval` (or as fast as it can); counts each round.
fn connect_until(
    server: SocketAddr,
    interval: Duration,
    stop: &AtomicBool,
    connections: &AtomicU64,
) {
    let mut buffer = [0u8; 64];
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        // The pace itself, not a wait for something to happen.
        thread::sleep(next.saturating_duration_since(Instant::now()));
        next = (next + interval).max(Instant::now());
        let Ok(mut stream) = TcpStream::connect_timeout(&server, POLL) else {
            continue;
        };
        let _ = stream.set_read_timeout(Some(POLL));
        let ended = loop {
            match stream.read(&mut buffer) {
                Ok(0) => break true,
                Ok(_) => continue,
                Err(error) if error.kind() == ErrorKind::WouldBlock => {
                    if stop.load(Ordering::Relaxed) {
                        break false;
                    }
                }
                Err(_) => break false,
            }
        };
        if ended {
            connections.fetch_add(1, Ordering::Relaxed);
        }
    }
}
