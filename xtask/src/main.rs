//! socktrace's developer tasks. `cargo xtask --help` lists them.
mod bench;
mod cmd;
mod debian_root;
mod dist;
mod fuzz;
mod netns;
mod setup;
mod soak;
mod toolchain;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "socktrace developer tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install every build and test prerequisite that is missing (apt
    /// packages, nightly rust-src, bpf-linker, cargo-fuzz, tracefs mount).
    /// Idempotent.
    Setup,
    /// Build socktrace and run it as root, e.g. `cargo xtask run -- trace`.
    Run {
        /// Arguments for socktrace.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run every test: unit tests, then the privileged integration tests
    /// (real BPF program, per-test network namespaces) as root.
    Test {
        /// Only tests whose name contains this (passed to the test binaries).
        filter: Option<String>,
    },
    /// cargo fmt --check and clippy -D warnings on every crate and target.
    Lint,
    /// Compare socktrace's overhead with tcpstates, tcplife and bpftrace
    /// under loopback connection churn (as root), plus the userspace
    /// ingest and memory benchmarks; writes target/bench/results.json.
    Bench(bench::BenchArgs),
    /// Run the release agent for N minutes under steady churn with `ss`
    /// and `top` clients querying it (as root); fails if its memory,
    /// descriptors or threads grow or it loses events. Writes
    /// target/soak/samples.csv and summary.md.
    Soak(soak::SoakArgs),
    /// Build the static x86_64 musl binary (BPF object embedded) and a
    /// Debian package with the agent's systemd unit, in target/dist/.
    Dist,
    /// Run each fuzz target of socktrace/fuzz (record decoder, recording
    /// reader, ss filter parser, agent protocol reader) for --seconds,
    /// from the seed corpus; fails on a crash.
    Fuzz(fuzz::FuzzArgs),
}

fn main() -> Result<()> {
    match Cli::parse().task {
        Task::Setup => setup::ensure(),
        Task::Run { args } => {
            setup::ensure()?;
            let agent = cmd::build_agent()?;
            cmd::run_as_root(&agent, &args, &[])
        }
        Task::Test { filter } => {
            setup::ensure()?;
            cmd::unit_tests(filter.as_deref())?;
            let agent = cmd::build_agent()?;
            let dist = dist::build()?;
            let debian_root = debian_root::ensure()?;
            cmd::integration_tests(
                filter.as_deref(),
                &[
                    ("SOCKTRACE_BIN", &agent),
                    ("SOCKTRACE_DIST_BIN", &dist.binary),
                    ("SOCKTRACE_DEB", &dist.deb),
                    ("SOCKTRACE_DEBIAN_ROOT", &debian_root),
                ],
            )
        }
        Task::Bench(args) => {
            setup::ensure()?;
            bench::run(&args)
        }
        Task::Soak(args) => {
            setup::ensure()?;
            soak::run(&args)
        }
        Task::Dist => {
            setup::ensure()?;
            dist::build().map(drop)
        }
        Task::Fuzz(args) => {
            setup::ensure()?;
            setup::cargo_fuzz()?;
            fuzz::run_all(&args)
        }
        Task::Lint => {
            setup::ensure()?;
            cmd::lint()
        }
    }
}
