//! `cargo xtask bench`: socktrace against the tracers users would pick
//! instead, in one run on one machine. Under each load in turn (loopback
//! connection churn, then nginx answering wrk), both in a network
//! namespace, each configuration (no tracer, socktrace's agent, `socktrace
//! trace`, tcpstates, tcplife, bpftrace's tcplife.bt) gets a measurement
//! window in turn, in an order rotated every round, and the report takes
//! medians over rounds. See README "Performance".
//!
//! Each traced window is two: churn with `kernel.bpf_stats_enabled` off
//! (connections per second, tracer CPU), then a shorter one with it on
//! (the programs' run time and run count). The kernel's statistics cost
//! every program run two clock reads, which would count against the
//! tracers with more programs in the churn figures.
pub mod churn;
mod http;
mod peers;
pub mod programs;
pub mod report;
pub mod tracer;

use std::{fs, time::Duration};

use anyhow::{Context, Result, bail};

use crate::{
    cmd::{self, is_root},
    netns::Netns,
    setup,
};
use churn::{Churn, Window};
use http::HttpLoad;
use report::{Measurement, Outcome, Report};
use tracer::{Running, TracerSpec};

/// What `cargo xtask bench` was asked for.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Seconds of churn measured per configuration and round (1 to 3600).
    /// The kernel side alone is measured only while its stopped agent's
    /// ring holds every record of the window (`peers::PAUSED_RING_KIB`);
    /// a window that fills it is reported as not run.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub seconds: u64,
    /// Rounds: every configuration is measured once per round (1 to 100);
    /// the report takes medians.
    #[arg(long, default_value_t = 5, value_parser = rounds)]
    pub rounds: usize,
    /// Replace the table in README.md's performance section.
    #[arg(long)]
    pub update_readme: bool,
    /// Skip the userspace benchmarks (criterion ingest, table memory).
    #[arg(long)]
    pub kernel_only: bool,
    /// Measure only the configurations whose name contains this (and the
    /// untraced one); repeatable. For working on one tracer's figures.
    #[arg(long, value_name = "NAME")]
    pub only: Vec<String>,
    /// The loads to measure under (default both): `churn`, the loopback
    /// connection churn, and `http`, nginx answering wrk.
    #[arg(long = "load", value_enum, value_name = "LOAD")]
    pub loads: Vec<LoadKind>,
}

/// The loads the configurations are measured under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LoadKind {
    Churn,
    Http,
}

/// A load the configurations are measured under, running while it lives.
pub trait Load {
    /// Counts the connections it made over the next `length`.
    fn window(&mut self, length: Duration) -> Result<Window>;
}

impl Load for Churn {
    fn window(&mut self, length: Duration) -> Result<Window> {
        Ok(Churn::window(self, length))
    }
}

/// A round count from 1 to 100: a median needs one, and each takes minutes.
fn rounds(text: &str) -> Result<usize, String> {
    match text.parse() {
        Ok(rounds @ 1..=100) => Ok(rounds),
        _ => Err(format!("`{text}` is not a number in 1..=100")),
    }
}

/// Churn not counted after a tracer attaches, while caches settle.
const WARMUP: Duration = Duration::from_secs(1);
/// The window with `kernel.bpf_stats_enabled` on, after each churn window.
const COST_WINDOW: Duration = Duration::from_secs(2);
/// Client thread counts tried to find this machine's top churn rate.
const CLIENT_COUNTS: [usize; 4] = [1, 2, 4, 8];

pub fn run(args: &BenchArgs) -> Result<()> {
    if !is_root() {
        bail!(
            "cargo xtask bench loads BPF programs and creates a network namespace: run it as root \
             (sudo -E cargo xtask bench)"
        );
    }
    let agent = cmd::build_release_agent()?;
    let (mut specs, mut unavailable) = peers::specs(&agent)?;
    if !args.only.is_empty() {
        specs.retain(|spec| {
            args.only
                .iter()
                .any(|only| spec.name.contains(only.as_str()))
        });
    }
    let stats = BpfStats::off()?;
    let netns = Netns::create("bench")?;
    let loads = if args.loads.is_empty() {
        vec![LoadKind::Churn, LoadKind::Http]
    } else {
        args.loads.clone()
    };

    let mut measurements: Vec<Measurement> = Vec::new();
    for kind in loads {
        let (name, description, mut load): (&str, String, Box<dyn Load>) = match kind {
            LoadKind::Churn => {
                let count = fastest_client_count(&netns)?;
                eprintln!("xtask: bench: churning with {count} client threads");
                (
                    "loopback churn",
                    format!("{count} client threads on loopback in a namespace"),
                    Box::new(Churn::start(&netns.path(), count)?),
                )
            }
            LoadKind::Http => {
                if let Err(error) = setup::apt_install(&http::PACKAGES) {
                    eprintln!("xtask: bench: could not install nginx and wrk: {error:#}");
                }
                (
                    "HTTP",
                    http::description(),
                    Box::new(HttpLoad::start(&netns)?),
                )
            }
        };
        for round in 0..args.rounds {
            let mut order: Vec<Option<usize>> = std::iter::once(None)
                .chain((0..specs.len()).map(Some))
                .collect();
            let turn = round % order.len();
            order.rotate_left(turn);
            for config in order {
                let spec = config.map(|index| &specs[index]);
                match measure(
                    load.as_mut(),
                    &stats,
                    spec,
                    Duration::from_secs(args.seconds),
                ) {
                    Ok(measurement) => {
                        eprintln!("xtask: bench: {name}: round {round}: {measurement}");
                        measurements.push(measurement.under(name, &description, round));
                    }
                    Err(error) => {
                        let Some(spec) = spec else {
                            return Err(error.context(format!("{name}: the untraced window")));
                        };
                        eprintln!("xtask: bench: {} could not run: {error:#}", spec.name);
                        unavailable.push((spec.name.clone(), format!("under {name}: {error:#}")));
                    }
                }
            }
            // A tracer that could not start is not retried.
            specs.retain(|spec| !unavailable.iter().any(|(name, _)| *name == spec.name));
        }
    }

    let userspace = if args.kernel_only {
        None
    } else {
        Some(report::userspace_benchmarks()?)
    };
    let report = Report::new(args, measurements, unavailable, userspace);
    let directory = cmd::workspace_root().join("target/bench");
    fs::create_dir_all(&directory)?;
    let json = directory.join("results.json");
    fs::write(&json, serde_json::to_string_pretty(&report.to_json())?)?;
    let table = report.markdown();
    fs::write(directory.join("results.md"), &table)?;
    println!("{table}");
    eprintln!("xtask: bench: results in {}", json.display());
    if args.update_readme {
        report::update_readme(
            &cmd::workspace_root().join("README.md"),
            report::README_BEGIN,
            report::README_END,
            &table,
        )?;
        eprintln!("xtask: bench: README.md's performance table replaced");
    }
    Ok(())
}

/// One window of churn under `spec` (or no tracer), then for a tracer one
/// with the kernel's BPF statistics on.
fn measure(
    load: &mut dyn Load,
    stats: &BpfStats,
    spec: Option<&TracerSpec>,
    length: Duration,
) -> Result<Measurement> {
    let Some(spec) = spec else {
        std::thread::sleep(WARMUP);
        return Ok(Measurement::untraced(load.window(length)?));
    };
    let mut running = Running::start(spec)?;
    std::thread::sleep(WARMUP);
    running.check_running(&spec.name)?;
    let programs_at_start = programs::of_process(running.pid())?;
    let cpu_before = running.cpu_seconds()?;
    if spec.paused {
        running.pause();
    }
    let window = load.window(length)?;
    running.check_running(&spec.name)?;
    let cpu = running.cpu_seconds()? - cpu_before;

    let cost_before = programs::of_process(running.pid())?;
    let cost_window = {
        let _on = stats.on()?;
        load.window(COST_WINDOW)?
    };
    let programs_at_end = programs::of_process(running.pid())?;
    if spec.paused {
        running.resume();
    }
    running.check_running(&spec.name)?;
    let cost = programs::delta(&cost_before, &programs_at_end);
    let skipped = if spec.reports_skipped_runs {
        0
    } else {
        programs::delta(&programs_at_start, &programs_at_end)
            .values()
            .map(|p| p.recursion_misses)
            .sum()
    };
    let losses = running.stop(spec.lost)?;
    if spec.paused && losses.ring_full > 0 {
        bail!(
            "its ring buffer filled while it was stopped ({} records did not fit, and refusing \
             them costs less than writing them): measure with fewer --seconds",
            losses.ring_full
        );
    }
    let lost = losses.total + skipped;
    Ok(Measurement::traced(
        spec,
        window,
        Outcome {
            cost,
            cost_window,
            cpu_seconds: cpu,
            lost,
        },
    ))
}

/// The client thread count giving the most connections per second without
/// a tracer, tried for two seconds each.
fn fastest_client_count(netns: &Netns) -> Result<usize> {
    let mut best = (0.0, CLIENT_COUNTS[0]);
    for clients in CLIENT_COUNTS {
        let churn = Churn::start(&netns.path(), clients)?;
        std::thread::sleep(WARMUP);
        let rate = churn.window(Duration::from_secs(2)).rate();
        eprintln!("xtask: bench: {clients} clients: {rate:.0} connections/s untraced");
        if rate > best.0 {
            best = (rate, clients);
        }
    }
    Ok(best.1)
}

/// `kernel.bpf_stats_enabled`: off for the whole bench but while a cost
/// window holds [`BpfStats::on`]; restored to what it was on drop.
struct BpfStats {
    before: String,
}

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl BpfStats {
    fn off() -> Result<Self> {
        let before =
            fs::read_to_string(BPF_STATS).with_context(|| format!("reading {BPF_STATS}"))?;
        set_bpf_stats("0")?;
        Ok(BpfStats { before })
    }

    /// On until the guard drops.
    fn on(&self) -> Result<StatsOn> {
        set_bpf_stats("1")?;
        Ok(StatsOn)
    }
}

fn set_bpf_stats(value: &str) -> Result<()> {
    fs::write(BPF_STATS, value).with_context(|| format!("writing {value} to {BPF_STATS}"))
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = set_bpf_stats(self.before.trim());
    }
}

/// The statistics are on while it lives.
struct StatsOn;

impl Drop for StatsOn {
    fn drop(&mut self) {
        let _ = set_bpf_stats("0");
    }
}
