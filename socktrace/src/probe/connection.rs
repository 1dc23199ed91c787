//! One connection of `probe`: a real non-blocking `connect()` through the
//! kernel, with socktrace's programs attached; the ring is drained while
//! it runs and each step of the connection is handed out as it is read.
use std::{
    io,
    net::SocketAddr,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use aya::Ebpf;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::{io::Interest, net::TcpStream};

use super::narration::{Step, Watch};
use crate::{
    host::netns,
    kernel::event::{Event, RejectCounts},
    kernel::loader::{self, KernelLog, KernelProbes},
    kernel::lost::{Lost, LostCounter},
    kernel::ring_reader::RingReader,
    model::tuple::NetnsInode,
    state::pipeline::{Pipeline, Trackers},
    state::table::SocketTable,
    support::clock::monotonic_now_ns,
};

/// How often the ring is read while a connection is under way: the kernel
/// wakes readers only once a batch is waiting, and a probe's records come
/// one at a time.
const DRAIN_EVERY: Duration = Duration::from_millis(10);

/// Records handed over per read of the ring.
const BATCH: usize = 1024;

/// How long, after `connect()` answered, the records that tell how are
/// waited for (they are in the ring before it answers; this bounds a
/// flooded ring).
const SETTLE_WITHIN: Duration = Duration::from_secs(1);

/// socktrace's programs, attached for the probe's connections.
pub struct Tracer {
    /// Owns the programs: attached while it lives.
    _attached: Ebpf,
    reader: RingReader,
    lost: LostCounter,
    kernel_log: Option<KernelLog>,
    /// Only the probe's own records go through it.
    pipeline: Pipeline,
    rejected: RejectCounts,
    netns: NetnsInode,
    pid: u32,
}

/// A connection the probe made and how it went.
pub struct Connection {
    pub watch: Watch,
    /// The connected socket, when it got through.
    pub stream: Option<TcpStream>,
}

impl Tracer {
    pub fn attach() -> anyhow::Result<Self> {
        let KernelProbes {
            attached,
            events,
            lost,
            kernel_log,
        } = loader::load_and_attach(socktrace_ebpf::RING_BUFFER_BYTES)?;
        Ok(Tracer {
            _attached: attached,
            reader: RingReader::new(events).context("reading the ring buffer")?,
            lost,
            kernel_log,
            pipeline: Pipeline::new(
                SocketTable::new(),
                Trackers {
                    handshakes: true,
                    time_wait: false,
                },
            ),
            rejected: RejectCounts::default(),
            netns: netns::own().context("reading this process's network namespace")?,
            pid: std::process::id(),
        })
    }

    /// The network namespace the probe connects from.
    pub fn netns(&self) -> NetnsInode {
        self.netns
    }

    /// Records the kernel could not hand over, and those that did not decode.
    pub fn losses(&self) -> anyhow::Result<(Lost, u64)> {
        Ok((self.lost.read()?, self.rejected.total()))
    }

    /// Connects to `remote`, giving up after `timeout`; `tell` gets each step
    /// as it is read.
    pub async fn connect(
        &mut self,
        remote: SocketAddr,
        timeout: Duration,
        tell: &mut impl FnMut(Step),
    ) -> anyhow::Result<Connection> {
        // What is left of the last connection is not this one's.
        self.drain(None, tell);
        let deadline = Instant::now() + timeout;
        let socket = Socket::new(
            Domain::for_address(remote),
            Type::STREAM,
            Some(Protocol::TCP),
        )
        .context("opening a TCP socket")?;
        socket
            .set_nonblocking(true)
            .context("making the socket non-blocking")?;
        let answered = match socket.connect(&remote.into()) {
            Ok(()) => Some(None),
            Err(error) if error.raw_os_error() == Some(libc::EINPROGRESS) => None,
            Err(error) => Some(Some(error.raw_os_error().unwrap_or(libc::EIO))),
        };
        let local = socket
            .local_addr()
            .ok()
            .and_then(|addr| addr.as_socket())
            .filter(|addr| addr.port() != 0);
        let mut watch = Watch::new(remote, local, self.pid, self.netns);
        let stream = TcpStream::from_std(socket.into()).context("registering the socket")?;
        let answered = match answered {
            Some(answered) => Some(answered),
            None => self.wait(&stream, &mut watch, deadline, tell).await?,
        };
        let stream = match answered {
            Some(errno) => {
                watch.connect_returned(errno);
                errno.is_none().then_some(stream)
            }
            None => {
                tell(watch.gave_up(monotonic_now_ns()));
                // Closing it ends the attempt in the kernel too.
                drop(stream);
                None
            }
        };
        self.settle(&mut watch, tell).await;
        if let Some(step) = watch.failed_unseen() {
            tell(step);
        }
        Ok(Connection { watch, stream })
    }

    /// Until `connect()` answers (`Some`: `None` connected, or the errno),
    /// or the deadline passes (`None`).
    async fn wait(
        &mut self,
        stream: &TcpStream,
        watch: &mut Watch,
        deadline: Instant,
        tell: &mut impl FnMut(Step),
    ) -> anyhow::Result<Option<Option<i32>>> {
        let mut drain = tokio::time::interval(DRAIN_EVERY);
        let deadline = tokio::time::sleep_until(deadline.into());
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                ready = stream.writable() => {
                    ready.context("waiting for the connection")?;
                    if let Some(error) = stream.take_error().context("reading the socket's error")? {
                        return Ok(Some(Some(error.raw_os_error().unwrap_or(libc::EIO))));
                    }
                    if stream.peer_addr().is_ok() {
                        return Ok(Some(None));
                    }
                    // Woken with nothing to tell: wait for the next wake-up.
                    let _ = stream.try_io(Interest::WRITABLE, || {
                        Err::<(), _>(io::Error::from(io::ErrorKind::WouldBlock))
                    });
                }
                _ = drain.tick() => self.drain(Some(watch), tell),
                () = &mut deadline => return Ok(None),
            }
        }
    }

    /// Reads the ring until the connection's end is among the records, or
    /// [`SETTLE_WITHIN`] has passed.
    async fn settle(&mut self, watch: &mut Watch, tell: &mut impl FnMut(Step)) {
        let until = Instant::now() + SETTLE_WITHIN;
        loop {
            self.drain(Some(watch), tell);
            if watch.done() || Instant::now() >= until {
                break;
            }
            tokio::time::sleep(DRAIN_EVERY).await;
        }
        if let Some(kernel_log) = &mut self.kernel_log {
            kernel_log.flush();
        }
    }

    /// Everything in the ring now: the watched connection's records through
    /// the pipeline, the rest passed over.
    fn drain(&mut self, mut watch: Option<&mut Watch>, tell: &mut impl FnMut(Step)) {
        let Tracer {
            reader,
            pipeline,
            rejected,
            ..
        } = self;
        loop {
            let handled = reader.drain_now(BATCH, |bytes| match Event::try_from(bytes) {
                Ok(event) => {
                    if let Some(watch) = watch.as_deref_mut()
                        && watch.concerns(&event)
                        && let Some(step) = watch.observe(event, pipeline)
                    {
                        tell(step);
                    }
                }
                Err(error) => rejected.count(error),
            });
            if handled < BATCH {
                break;
            }
        }
    }
}
