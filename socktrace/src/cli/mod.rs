//! Command line.
pub mod probe;
pub mod replay;
pub mod view_namespaces;
use clap::{Args, Parser, Subcommand};

mod views;

pub use self::views::{AgentArgs, AgentChoice, SsArgs, SsView, TopArgs};
use crate::{
    host::namespaces::{Namespaces, NamespacesError},
    model::cidr::Cidr,
    render::socket_filter::SocketFilter,
    support::clock::monotonic_now_ns,
};

/// `socktrace --version`: what was built from what (`-V`: the version only).
const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\ncommit: ",
    env!("SOCKTRACE_COMMIT"),
    "\nBPF object sha256: ",
    env!("SOCKTRACE_BPF_SHA256"),
    "\nBPF toolchain: ",
    env!("SOCKTRACE_BPF_TOOLCHAIN"),
);

/// socktrace: every TCP state transition on this host, from a real eBPF
/// program, with the owning process and time spent in each state.
///
/// Needs root, or CAP_BPF + CAP_PERFMON and read access to tracefs
/// (CAP_DAC_READ_SEARCH where it is root's, mode 0700), and tracefs
/// mounted.
#[derive(Debug, Parser)]
#[command(name = "socktrace", version, long_version = LONG_VERSION, about, long_about)]
pub struct Cli {
    /// More diagnostics on stderr (-v info, -vv debug). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
#[allow(
    rustdoc::broken_intra_doc_links,
    reason = "the help text names ss's syntax, such as PREFIX[:PORT]"
)]
pub enum Command {
    /// Stream TCP state transitions (like tcpstates, with owners that
    /// survive softirq and sockets that existed before start).
    ///
    /// Columns: time (UTC), owner pid and comm, local and remote address,
    /// old -> new state, milliseconds spent in the old state ("-" when its
    /// start was not seen). Stops on Ctrl-C / SIGTERM and reports lost
    /// events, if any.
    Trace(TraceArgs),
    /// Every TCP handshake attempt, both sides, resolved with its outcome
    /// (what `ss -o state syn-sent` / `state syn-recv` show for a moment).
    ///
    /// Client attempts end established, timeout, refused, unreachable,
    /// aborted (the application closed first) or no_local_port. Server
    /// attempts (half-open connections) end completed or expired. Each SYN
    /// or SYN-ACK retransmit of an attempt in progress is printed as it
    /// happens; columns: time (UTC), side, owner pid and comm, local and
    /// remote address, outcome (errno), retransmits, first SYN (or SYN-ACK)
    /// to outcome in ms ("-" when that start was not seen), and the
    /// retransmit times in ms from the first SYN. At exit (and every
    /// --summary-every seconds) a summary of the --top busiest peers, /24 or
    /// /64 subnets and listening ports, with a count of those left out:
    /// outcomes, retransmit distribution, latency p50/p99 and SYNs the
    /// listener dropped with a full accept queue.
    Handshakes(HandshakesArgs),
    /// TIME-WAIT sockets: when each took over from its closed connection,
    /// how long it really lived and why it ended, and who produces them
    /// (what `ss -tan state time-wait` shows for a moment).
    ///
    /// The kernel reports no transition to TIME-WAIT: an active close is
    /// seen as FIN-WAIT-2 (or CLOSING) -> CLOSE while a timewait socket
    /// takes the connection's place, and sock_diag listings (once a second)
    /// confirm it and notice when it is gone. Each ended socket is printed:
    /// time (UTC), how it ended (expired: its timer ran out; reused: a new
    /// connection took its 4-tuple, as tcp_tw_reuse allows; killed: gone
    /// before its timer, by a RST; teardown: its network namespace was
    /// deleted), the owner
    /// of the closed connection, local and remote address, and its lifetime
    /// in ms with the uncertainty of the listing interval ("-" when its
    /// entry predates tracing). Sockets that stay in CLOSE-WAIT longer than
    /// --close-wait-after are printed too (close-wait: still there; closed:
    /// left at last), with their age.
    ///
    /// Every --summary-every seconds and at exit, a summary: TIME-WAIT
    /// sockets now (and orphans still in FIN-WAIT-2), entries and ends per
    /// second, lifetime p50/p99/max, the top local ports, remote endpoints
    /// and processes holding them, ephemeral-port pressure per destination
    /// against ip_local_port_range, and timewait sockets the kernel refused
    /// to create (TcpExtTCPTimeWaitOverflow).
    Timewait(TimewaitArgs),
    /// The tracer as a daemon, one per host: follows every network
    /// namespace and serves its live state to `socktrace ss` and
    /// `socktrace top` over a Unix socket that only root (and --group) can
    /// use. Stops on SIGINT / SIGTERM.
    Agent(AgentArgs),
    /// The TCP sockets of this network namespace (or -N's) as `ss -tan`
    /// lists them, with what ss cannot show: time in the current state
    /// (TIME-WAIT age) and handshake retransmits so far.
    ///
    /// Takes ss's options and filter: -a, -l, -4, -6, -p, -o, -s, -H,
    /// `state NAME` / `exclude NAME` (established, syn-sent, syn-recv,
    /// fin-wait-1, fin-wait-2, time-wait, close-wait, last-ack, listening,
    /// closing, closed, all, connected, synchronized, bucket, big), then an
    /// expression of dst/src PREFIX[:PORT], dport/sport OP :PORT (OP: = !=
    /// < > <= >=), and/or/not and parentheses. Without -a, -l or a state,
    /// lists connected sockets but TIME-WAIT and SYN-RECV, as ss does.
    ///
    /// Uses the running agent (--agent) for the tracer's columns; without
    /// one, lists in-process from sock_diag, where times and retries are
    /// not known yet ("-").
    Ss(SsArgs),
    /// A live full-screen view, refreshed every second: sockets per state
    /// with sparklines, new connections, handshake failures and TIME-WAIT
    /// entries per second, the remote addresses and subnets holding or
    /// opening the most connections. Keys: q quit, s sort, Tab switch
    /// table, / filter, c clear the filter.
    ///
    /// Uses the running agent (--agent); without one, runs the tracer
    /// in-process (root needed).
    Top(TopArgs),
    /// Can this host reach HOST:PORT, and if not, where does it stop? Opens
    /// real TCP connections through the kernel and tells each from
    /// socktrace's own trace of it, with times from the first SYN: the SYN
    /// and the local address it left from, each SYN retransmit as it
    /// leaves, then the SYN-ACK (the handshake time), a RST (refused), an
    /// ICMP error (unreachable, with its kind) or no answer by --timeout.
    /// A refusal by an address of this host says what listens on that port
    /// instead (127.0.0.1 only, say). Needs the same privileges as trace.
    ///
    /// Exit status: 0 reachable, 3 refused, 4 timeout, 5 unreachable, 6 no
    /// local port (the ephemeral range is used up), 7 the TLS handshake
    /// failed, 8 the certificate is not trusted for HOST (with --tls); 1
    /// any other error, 2 a usage error. With --count, the status of the
    /// first probe that did not get through.
    Probe(probe::ProbeArgs),
    /// Runs trace, handshakes or timewait over a recording made with
    /// `--record FILE` instead of the kernel: the same view, filters, JSON
    /// and summaries, on any machine, without root; or lists the sockets
    /// at a moment of it, as ss (`ss --at TIME`). What the view printed
    /// live, it prints again (the recording keeps the sockets that existed
    /// at start, every listing and counter reading, and when the tracer
    /// settled), with the times of the day it was recorded. `--netns`
    /// narrows the namespaces the recording followed. A file cut short
    /// (the tracer killed, the disk full) replays up to its last whole
    /// record and says how much it skipped.
    Replay(replay::ReplayArgs),
}

#[derive(Debug, Args)]
pub struct TraceArgs {
    #[command(flatten)]
    pub view: TraceView,

    #[command(flatten)]
    pub ring: RingArgs,
}

/// What `trace` shows, traced live or replayed.
#[derive(Debug, Args)]
pub struct TraceView {
    /// One JSON object per line instead of columns.
    #[arg(long)]
    pub json: bool,

    /// First print the sockets that exist at start-up (what `ss -tan` would
    /// list in each network namespace followed), then stream transitions.
    #[arg(long)]
    pub list_existing: bool,

    #[command(flatten)]
    pub netns: NetnsArgs,
}

#[derive(Debug, Args)]
pub struct RingArgs {
    /// Kernel ring buffer size in KiB: a power of two, at least one page
    /// (4 KiB on x86-64) and at most 1 GiB (1048576). Larger absorbs bigger
    /// bursts before events are lost.
    #[arg(long, value_name = "KIB", default_value_t = socktrace_ebpf::RING_BUFFER_BYTES / 1024,
          value_parser = parse_ring_kib)]
    pub ring_buffer_kib: u32,

    /// Also write every record the kernel hands over, raw and unfiltered,
    /// to FILE (a socktrace recording, as the ingest benchmark replays).
    #[arg(long, value_name = "FILE")]
    pub record: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct HandshakesArgs {
    #[command(flatten)]
    pub view: HandshakesView,

    #[command(flatten)]
    pub ring: RingArgs,
}

/// What `handshakes` shows, traced live or replayed.
#[derive(Debug, Args)]
pub struct HandshakesView {
    /// One JSON object per line instead of columns.
    #[arg(long)]
    pub json: bool,

    /// Only attempts that retransmitted or failed (the summary still counts
    /// every attempt that passes the other filters).
    #[arg(long)]
    pub problems: bool,

    #[command(flatten)]
    pub filter: FilterArgs,

    /// Also print the summary every SECS seconds (0: only at exit; at most
    /// a year).
    #[arg(long, value_name = "SECS", default_value = "0", value_parser = parse_seconds)]
    pub summary_every: Seconds,

    /// Rows in each of the summary's lists, per side for peers and subnets
    /// (1 to 1000); the rest are counted as omitted.
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = parse_top)]
    pub top: usize,
}

#[derive(Debug, Args)]
pub struct TimewaitArgs {
    #[command(flatten)]
    pub view: TimewaitView,

    #[command(flatten)]
    pub ring: RingArgs,
}

/// What `timewait` shows, traced live or replayed.
#[derive(Debug, Args)]
pub struct TimewaitView {
    /// One JSON object per line instead of columns.
    #[arg(long)]
    pub json: bool,

    /// Also print each timewait socket as a listing confirms it, with the
    /// moment it took over from the closed connection.
    #[arg(long)]
    pub entries: bool,

    /// Print the summary every SECS seconds (0: only at exit; at most a
    /// year).
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_seconds)]
    pub summary_every: Seconds,

    /// Report sockets that stay in CLOSE-WAIT (the application never closed
    /// its side) longer than SECS seconds (1 to a year).
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = parse_positive_seconds)]
    pub close_wait_after: Seconds,

    /// Rows in each of the summary's top lists (1 to 1000); the rest are
    /// counted as omitted.
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = parse_top)]
    pub top: usize,

    #[command(flatten)]
    pub filter: FilterArgs,
}

/// Which sockets to report, shared by the commands that filter.
#[derive(Debug, Args)]
pub struct FilterArgs {
    /// Only sockets with this local or remote port (repeatable).
    #[arg(long = "port", value_name = "PORT")]
    pub ports: Vec<u16>,

    /// Only sockets whose remote address is in this prefix, such as
    /// 10.0.0.0/8 or 2001:db8::/32; a bare address is one host (repeatable).
    #[arg(long = "host", value_name = "ADDR[/LEN]")]
    pub hosts: Vec<Cidr>,

    /// Only sockets owned by this process id (repeatable).
    #[arg(long = "pid", value_name = "PID",
          value_parser = clap::value_parser!(u32).range(1..=i64::from(PID_MAX_LIMIT)))]
    pub pids: Vec<u32>,

    /// Only sockets owned by a process with this name (repeatable).
    #[arg(long = "comm", value_name = "COMM")]
    pub comms: Vec<String>,

    #[command(flatten)]
    pub netns: NetnsArgs,
}

/// Which network namespaces to follow. The kernel's events come from every
/// namespace on the host; without these options every one is followed
/// (containers included), each listed with sock_diag from inside it.
#[derive(Debug, Args)]
pub struct NetnsArgs {
    /// Only the network namespace with this name under /run/netns, as
    /// `ip netns` names it and `ss -N` takes it (repeatable).
    #[arg(short = 'N', long = "net", value_name = "NAME")]
    pub names: Vec<String>,

    /// Only the network namespace with this inode number, as `lsns -t net`
    /// and `ls -l /proc/PID/ns/net` show it (repeatable).
    #[arg(long = "netns", value_name = "INODE")]
    pub inodes: Vec<u32>,
}

impl NetnsArgs {
    /// The namespaces these arguments select, found now.
    pub fn namespaces(&self) -> Result<Namespaces, NamespacesError> {
        Namespaces::discover(&self.names, &self.inodes, monotonic_now_ns())
    }
}

impl From<FilterArgs> for SocketFilter {
    fn from(args: FilterArgs) -> Self {
        SocketFilter {
            ports: args.ports,
            hosts: args.hosts,
            pids: args.pids,
            comms: args.comms,
        }
    }
}

/// The largest pid Linux hands out on 64-bit machines (`PID_MAX_LIMIT`,
/// the ceiling of `kernel.pid_max`).
const PID_MAX_LIMIT: u32 = 4 * 1024 * 1024;

/// The longest interval a seconds option takes: a year, far below the
/// 584 years of nanoseconds a `u64` holds.
const MAX_SECONDS: u64 = 365 * 24 * 3600;

/// The largest ring buffer, in KiB: 1 GiB, whose byte count still fits the
/// `u32` the kernel's map size is.
const MAX_RING_KIB: u32 = 1 << 20;

/// The most rows a summary's top list takes.
const MAX_TOP: usize = 1000;

/// A number of seconds from the command line, at most `MAX_SECONDS`, so
/// that it converts to nanoseconds without overflow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seconds(u64);

impl Seconds {
    pub fn as_ns(self) -> u64 {
        self.0 * 1_000_000_000
    }
}

/// A decimal number from `min` to `max`, or a one-line reason.
fn parse_within<T>(text: &str, min: T, max: T) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let number: T = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number in {min}..={max}"))?;
    if number < min || number > max {
        return Err(format!("{number} is not in {min}..={max}"));
    }
    Ok(number)
}

fn parse_seconds(text: &str) -> Result<Seconds, String> {
    seconds_from(text, 0)
}

fn parse_positive_seconds(text: &str) -> Result<Seconds, String> {
    seconds_from(text, 1)
}

fn seconds_from(text: &str, min: u64) -> Result<Seconds, String> {
    parse_within(text, min, MAX_SECONDS)
        .map(Seconds)
        .map_err(|error| format!("{error} (seconds, at most a year)"))
}

fn parse_top(text: &str) -> Result<usize, String> {
    parse_within(text, 1, MAX_TOP)
}

/// A ring buffer size in KiB: the kernel takes a power of two number of
/// pages.
fn parse_ring_kib(text: &str) -> Result<u32, String> {
    let page_kib = u32::try_from(page_size() / 1024).unwrap_or(u32::MAX).max(1);
    ring_kib_within(text, page_kib)
}

fn ring_kib_within(text: &str, page_kib: u32) -> Result<u32, String> {
    let kib = parse_within(text, page_kib, MAX_RING_KIB)?;
    if !kib.is_power_of_two() {
        return Err(format!(
            "{kib} is not a power of two (from {page_kib}, one page, to {MAX_RING_KIB} KiB)"
        ));
    }
    Ok(kib)
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_size_must_be_a_power_of_two_number_of_pages() {
        assert_eq!(parse_ring_kib("4096"), Ok(4096));
        assert!(parse_ring_kib("3000").is_err());
        assert!(parse_ring_kib("2").is_err());
        assert!(parse_ring_kib("0").is_err());
        assert!(parse_ring_kib("big").is_err());
        assert!(
            parse_ring_kib("2097152").is_err(),
            "2 GiB overflows u32 bytes"
        );
        assert!(parse_ring_kib("4294967296").is_err());
        assert_eq!(parse_ring_kib("1048576"), Ok(1 << 20));
        // 64 KiB pages (arm64, ppc64): 16 KiB is a quarter page.
        assert!(ring_kib_within("16", 64).is_err());
        assert_eq!(ring_kib_within("64", 64), Ok(64));
    }

    /// The error clap prints for `args`, which must not parse.
    fn refused(args: &[&str]) -> String {
        let error = Cli::try_parse_from(args).unwrap_err();
        assert_eq!(error.exit_code(), 2, "{error}");
        error.to_string()
    }

    #[test]
    fn seconds_that_overflow_nanoseconds_are_refused() {
        // 18446744074 s is 2^64 ns and 290 ms: it used to wrap around.
        for option in ["--summary-every", "--close-wait-after"] {
            let error = refused(&["socktrace", "timewait", option, "18446744074"]);
            assert!(error.contains("is not in"), "{error}");
            assert!(error.lines().next().unwrap().contains(option), "{error}");
        }
        refused(&["socktrace", "handshakes", "--summary-every", "18446744074"]);
        refused(&[
            "socktrace",
            "handshakes",
            "--summary-every",
            "99999999999999999999",
        ]);
        refused(&["socktrace", "timewait", "--summary-every", "-1"]);
        refused(&["socktrace", "timewait", "--close-wait-after", "0"]);
        let year = MAX_SECONDS.to_string();
        let cli =
            Cli::try_parse_from(["socktrace", "timewait", "--close-wait-after", &year]).unwrap();
        let Command::Timewait(args) = cli.command else {
            panic!("not timewait");
        };
        assert_eq!(
            args.view.close_wait_after.as_ns(),
            MAX_SECONDS * 1_000_000_000
        );
        assert_eq!(
            args.view.summary_every.as_ns(),
            10_000_000_000,
            "the default"
        );
        refused(&[
            "socktrace",
            "timewait",
            "--close-wait-after",
            &(MAX_SECONDS + 1).to_string(),
        ]);
    }

    #[test]
    fn counts_and_pids_have_bounds() {
        refused(&["socktrace", "timewait", "--top", "0"]);
        refused(&["socktrace", "timewait", "--top", "1001"]);
        refused(&["socktrace", "timewait", "--top", "18446744073709551616"]);
        refused(&["socktrace", "handshakes", "--pid", "0"]);
        refused(&["socktrace", "handshakes", "--pid", "4194305"]);
        refused(&["socktrace", "handshakes", "--port", "65536"]);
        refused(&["socktrace", "trace", "--netns", "4294967296"]);
        assert!(Cli::try_parse_from(["socktrace", "handshakes", "--pid", "4194304"]).is_ok());
    }

    #[test]
    fn trace_flags_parse() {
        let cli = Cli::try_parse_from(["socktrace", "trace", "--json", "--list-existing"]).unwrap();
        let Command::Trace(args) = cli.command else {
            panic!("not trace");
        };
        assert!(args.view.json && args.view.list_existing);
        assert!(Cli::try_parse_from(["socktrace", "trace", "--bogus"]).is_err());
    }

    #[test]
    fn namespaces_are_chosen_by_name_or_inode() {
        let cli = Cli::try_parse_from([
            "socktrace",
            "timewait",
            "-N",
            "blue",
            "--net",
            "red",
            "--netns",
            "4026532281",
        ])
        .unwrap();
        let Command::Timewait(args) = cli.command else {
            panic!("not timewait");
        };
        assert_eq!(args.view.filter.netns.names, ["blue", "red"]);
        assert_eq!(args.view.filter.netns.inodes, [4026532281]);
        assert!(Cli::try_parse_from(["socktrace", "trace", "--netns", "net:[1]"]).is_err());
    }

    #[test]
    fn socket_filters_repeat_and_validate() {
        let cli = Cli::try_parse_from([
            "socktrace",
            "handshakes",
            "--port",
            "443",
            "--port",
            "80",
            "--host",
            "10.0.0.0/8",
            "--comm",
            "curl",
            "--problems",
        ])
        .unwrap();
        let Command::Handshakes(args) = cli.command else {
            panic!("not handshakes");
        };
        assert_eq!(args.view.filter.ports, [443, 80]);
        assert_eq!(args.view.filter.hosts[0].to_string(), "10.0.0.0/8");
        assert!(args.view.problems && !args.view.json);
        assert!(
            args.view.filter.netns.names.is_empty() && args.view.filter.netns.inodes.is_empty()
        );
        let error = Cli::try_parse_from(["socktrace", "handshakes", "--host", "10.0.0.0/40"])
            .unwrap_err()
            .to_string();
        assert!(error.contains("prefix length `40`"), "{error}");
    }
}
