//! Command line of `socktrace probe`.
use clap::Args;

use super::{Seconds, parse_positive_seconds, parse_seconds};
use crate::probe::target::Target;

/// The most probes one run makes.
const MAX_COUNT: u32 = 100_000;

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// Where to connect: NAME:PORT, IPV4:PORT or [IPV6]:PORT. A name is
    /// resolved as nc resolves it; every address it has is tried in turn
    /// until one answers.
    #[arg(value_name = "HOST:PORT")]
    pub target: Target,

    /// Connections to make, one after the other (1 to 100000); with more
    /// than one, a summary ends the run, as ping's does.
    #[arg(short, long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_COUNT)))]
    pub count: u32,

    /// Give up on a connection still unanswered after SECS seconds (1 to a
    /// year; the kernel's own limit, net.ipv4.tcp_syn_retries, may come
    /// first).
    #[arg(short = 'w', long, value_name = "SECS", default_value = "10",
          value_parser = parse_positive_seconds)]
    pub timeout: Seconds,

    /// Seconds between the start of one connection and the next (0 to a
    /// year).
    #[arg(short = 'i', long, value_name = "SECS", default_value = "1",
          value_parser = parse_seconds)]
    pub interval: Seconds,

    /// Then complete a TLS handshake, and report the protocol, the cipher
    /// suite, the certificate's subject and days to expiry, and whether
    /// the certificate is trusted for HOST (the system's CA certificates,
    /// and --ca).
    #[arg(long)]
    pub tls: bool,

    /// Also trust the CA certificates in this PEM file (with --tls).
    #[arg(long, value_name = "FILE", requires = "tls")]
    pub ca: Option<std::path::PathBuf>,

    /// IPv4 addresses only.
    #[arg(short = '4', conflicts_with = "ipv6")]
    pub ipv4: bool,

    /// IPv6 addresses only.
    #[arg(short = '6')]
    pub ipv6: bool,

    /// One JSON object per line instead of text.
    #[arg(long)]
    pub json: bool,
}
