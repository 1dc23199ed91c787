//! Command line.
use clap::{Args, Parser, Subcommand};

/// socktrace: every TCP state transition on this host, from a real eBPF
/// program, with the owning process and time spent in each state.
///
/// Needs root (or CAP_BPF + CAP_PERFMON) and tracefs mounted.
#[derive(Debug, Parser)]
#[command(name = "socktrace", version, about, long_about)]
pub struct Cli {
    /// More diagnostics on stderr (-v info, -vv debug). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Stream TCP state transitions (like tcpstates, with owners that
    /// survive softirq and sockets that existed before start).
    ///
    /// Columns: time (UTC), owner pid and comm, local and remote address,
    /// old -> new state, milliseconds spent in the old state ("-" when its
    /// start was not seen). Stops on Ctrl-C / SIGTERM and reports lost
    /// events, if any.
    Trace(TraceArgs),
}

#[derive(Debug, Args)]
pub struct TraceArgs {
    /// One JSON object per line instead of columns.
    #[arg(long)]
    pub json: bool,

    /// First print the sockets that exist at start-up in this network
    /// namespace (what `ss -tan` would list), then stream transitions.
    #[arg(long)]
    pub list_existing: bool,

    /// Kernel ring buffer size in KiB (a power of two, at least 4).
    /// Larger absorbs bigger bursts before events are lost.
    #[arg(long, default_value_t = socktrace_ebpf::RING_BUFFER_BYTES / 1024,
          value_parser = parse_ring_kib)]
    pub ring_buffer_kib: u32,
}

fn parse_ring_kib(text: &str) -> Result<u32, String> {
    let kib: u32 = text.parse().map_err(|e| format!("{e}"))?;
    if kib < 4 || !kib.is_power_of_two() || kib > 1 << 20 {
        return Err(format!(
            "{kib} is not a power of two between 4 and {} KiB",
            1 << 20
        ));
    }
    Ok(kib)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_size_must_be_a_power_of_two() {
        assert_eq!(parse_ring_kib("4096"), Ok(4096));
        assert!(parse_ring_kib("3000").is_err());
        assert!(parse_ring_kib("2").is_err());
        assert!(parse_ring_kib("big").is_err());
    }

    #[test]
    fn trace_flags_parse() {
        let cli = Cli::try_parse_from(["socktrace", "trace", "--json", "--list-existing"]).unwrap();
        let Command::Trace(args) = cli.command;
        assert!(args.json && args.list_existing);
        assert!(Cli::try_parse_from(["socktrace", "trace", "--bogus"]).is_err());
    }
}
