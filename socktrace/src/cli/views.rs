//! Command line of the agent and of the views that use it.
use std::{path::PathBuf, time::Duration};

use clap::Args;

use super::{NetnsArgs, RingArgs};
use crate::{agent::protocol::DEFAULT_SOCKET, model::cidr::Cidr};

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Where to serve the live state. The file is mode 0600 (0660 with
    /// --group) and owned by root; a directory created for it is closed
    /// the same way.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,

    /// Also let the members of this group (a name or gid) query the agent.
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,

    /// Serve Prometheus metrics on http://ADDR:PORT/metrics (off unless
    /// given; 127.0.0.1:9977 keeps them on this host; port 0 picks a free
    /// port, printed at start).
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<std::net::SocketAddr>,

    /// Also count the handshakes with remotes in this prefix apart, as
    /// metrics labelled `peer` (repeatable, at most 64; a bare address is
    /// one host).
    #[arg(long = "metrics-peer", value_name = "ADDR[/LEN]", requires = "metrics")]
    pub metrics_peers: Vec<Cidr>,

    /// Also report the listeners on this port (accept queue, backlog,
    /// drops), as metrics labelled `port` (repeatable, at most 64).
    #[arg(long = "metrics-port", value_name = "PORT", requires = "metrics")]
    pub metrics_ports: Vec<u16>,

    /// Also report sockets by state and handshakes per network namespace,
    /// labelled `namespace` (its /run/netns name, or its inode): one set of
    /// series per namespace followed.
    #[arg(long, requires = "metrics")]
    pub metrics_namespaces: bool,

    #[command(flatten)]
    pub netns: NetnsArgs,

    #[command(flatten)]
    pub ring: RingArgs,
}

/// How a view finds the agent.
#[derive(Debug, Args)]
pub struct AgentChoice {
    /// The running agent's socket; without an agent there, the view works
    /// in-process.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    pub agent: PathBuf,

    /// Work in-process even if an agent is running.
    #[arg(long)]
    pub no_agent: bool,

    /// Give up on an agent that has not answered within SECONDS (it is
    /// stopped, or overloaded).
    #[arg(long, value_name = "SECONDS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub agent_timeout: u64,
}

impl AgentChoice {
    /// How long to wait for the agent's answer.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.agent_timeout)
    }
}

#[derive(Debug, Args)]
#[allow(
    rustdoc::broken_intra_doc_links,
    reason = "the help text names ss's syntax, such as [EXPRESSION]"
)]
pub struct SsArgs {
    #[command(flatten)]
    pub view: SsView,

    #[command(flatten)]
    pub netns: NetnsArgs,

    #[command(flatten)]
    pub agent: AgentChoice,
}

/// What `ss` shows and how, from the agent, in-process or replayed.
#[derive(Debug, Args)]
#[allow(
    rustdoc::broken_intra_doc_links,
    reason = "the help text names ss's syntax, such as [EXPRESSION]"
)]
pub struct SsView {
    /// TCP sockets: accepted as ss takes it; socktrace lists only TCP.
    #[arg(short = 't', long = "tcp")]
    pub tcp: bool,

    /// Sockets in every state: listening, TIME-WAIT and SYN-RECV too.
    #[arg(short = 'a', long = "all")]
    pub all: bool,

    /// Only listening sockets.
    #[arg(short = 'l', long = "listening")]
    pub listening: bool,

    /// Numeric addresses and ports: accepted as ss takes it; socktrace
    /// never resolves names.
    #[arg(short = 'n', long = "numeric")]
    pub numeric: bool,

    /// Only IPv4 sockets.
    #[arg(short = '4', long = "ipv4", conflicts_with = "ipv6")]
    pub ipv4: bool,

    /// Only IPv6 sockets (IPv4-mapped addresses included, as ss -6 shows).
    #[arg(short = '6', long = "ipv6")]
    pub ipv6: bool,

    /// Show the owning process: users:(("comm",pid=N)).
    #[arg(short = 'p', long = "processes")]
    pub processes: bool,

    /// Show timers as ss -o does: timer:(on,1.569ms,1) for a SYN or SYN-ACK
    /// being retransmitted, timer:(timewait,59sec,0) for TIME-WAIT.
    #[arg(short = 'o', long = "options")]
    pub timers: bool,

    /// Counts per state of every socket, as ss -s counts whatever -a, -l
    /// and the filter say, and ss -s's estab, timewait and TCP figures;
    /// followed by the list only with -t, -4, -6 or a filter, as ss does.
    #[arg(short = 's', long = "summary")]
    pub summary: bool,

    /// No header line.
    #[arg(short = 'H', long = "no-header")]
    pub no_header: bool,

    /// One JSON object per socket per line (with -s, one summary object).
    #[arg(long)]
    pub json: bool,

    /// An ss filter: [state STATE | exclude STATE]... [EXPRESSION], such as
    /// `state syn-sent`, `state time-wait dport = :443`,
    /// `'( sport = :http or sport = :https )' dst 10.0.0.0/8`.
    #[arg(value_name = "FILTER")]
    pub filter: Vec<String>,
}

#[derive(Debug, Args)]
pub struct TopArgs {
    #[command(flatten)]
    pub netns: NetnsArgs,

    #[command(flatten)]
    pub agent: AgentChoice,

    #[command(flatten)]
    pub ring: RingArgs,
}
