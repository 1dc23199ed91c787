//! `cargo xtask soak`: the release agent for N minutes under steady churn
//! of every kind its trackers follow, with clients asking it what `ss` and
//! `top` ask, sampled every few seconds; fails if its memory, descriptors,
//! threads or CPU per transition grow after the warm-up, if it loses
//! events or if a query fails. See README "Soak".
mod load;
mod queries;
mod report;
mod sample;
mod verdict;

use std::{
    fs,
    os::unix::fs::MetadataExt,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use aya::sys::{Stats, enable_stats};

use crate::{
    bench::{
        self,
        tracer::{LostReport, Ready, Running, TracerSpec},
    },
    cmd::{self, is_root},
    netns::Netns,
};
use load::Load;
use queries::{Queries, Target};
use sample::{Process, Sample};

/// What `cargo xtask soak` was asked for.
#[derive(Debug, clap::Args)]
pub struct SoakArgs {
    /// Minutes of load (the first fifth, and at least 90 s, is warm-up).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(3..))]
    pub minutes: u64,
    /// Connections per second, steady.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(100..))]
    pub rate: u32,
    /// Seconds between samples.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=60))]
    pub sample_every: u64,
    /// Replace the table in README.md's soak section.
    #[arg(long)]
    pub update_readme: bool,
}

pub fn run(args: &SoakArgs) -> Result<()> {
    if !is_root() {
        bail!(
            "cargo xtask soak loads BPF programs and creates a network namespace: run it as root \
             (sudo -E cargo xtask soak)"
        );
    }
    // Ctrl-C (which the agent gets too) and SIGTERM end the run through
    // the cleanup below.
    let interrupted = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, interrupted.clone())?;
    }
    let agent_program = cmd::build_release_agent()?;
    let directory = cmd::workspace_root().join("target/soak");
    fs::create_dir_all(&directory)?;
    // A summary is of the run that wrote the samples beside it.
    let _ = fs::remove_file(directory.join("summary.md"));

    let netns = Netns::create("soak")?;
    let netns_inode = fs::metadata(netns.path())?.ino();
    // The kernel counts its programs' runs (the transitions) while this is
    // held.
    let _stats = enable_stats(Stats::RunTime).context("turning on BPF program statistics")?;
    let socket = std::env::temp_dir().join(format!("socktrace-soak-{}.sock", std::process::id()));
    let load_average_start = load_average()?;
    let mut agent = Running::start(&agent_spec(&agent_program, &socket, netns.name()))?;
    let started = Instant::now();
    let load = Load::start(&netns, f64::from(args.rate))?;
    let queries = Queries::start(Target {
        agent_program,
        socket,
        netns_name: netns.name().to_owned(),
        netns_inode,
        output_dir: directory.clone(),
    });

    let run_s = (args.minutes * 60) as f64;
    let mut samples = Vec::new();
    let sampled = sample_run(
        &mut agent,
        &load,
        &queries,
        Schedule {
            started,
            every: Duration::from_secs(args.sample_every),
            run_s,
        },
        &interrupted,
        &mut samples,
    );
    let first_query_failure = queries.seen().first_failure;
    drop(queries);
    drop(load);
    let lost_at_exit = agent.stop(LostReport::Cumulative)?.total;
    fs::write(directory.join("samples.csv"), report::csv(&samples))?;
    sampled?;

    if let Some(last) = samples.last_mut() {
        last.lost = last.lost.max(lost_at_exit);
    }
    let verdict = verdict::judge(&samples, run_s, f64::from(args.rate));
    let run = report::Run {
        minutes: args.minutes,
        rate: args.rate,
        warmup_s: verdict::warmup_s(run_s),
        load_average: (load_average_start, load_average()?),
        first_query_failure,
    };
    let summary = report::summary(&run, &samples, &verdict);
    fs::write(directory.join("summary.md"), &summary)?;
    println!("\n{summary}");
    eprintln!(
        "xtask: soak: samples in {}",
        directory.join("samples.csv").display()
    );
    if args.update_readme {
        bench::report::update_readme(
            &cmd::workspace_root().join("README.md"),
            report::README_BEGIN,
            report::README_END,
            &report::table(&run, &samples, &verdict),
        )?;
        eprintln!("xtask: soak: README.md's soak table replaced");
    }
    match verdict.reason() {
        Some(reason) => bail!("soak failed: {reason}"),
        None => Ok(()),
    }
}

/// glibc's fixed mmap threshold for the agent: every allocation above it
/// (an answer of thousands of sockets) is mapped and unmapped on its own.
/// By default glibc raises the threshold to the largest block freed and
/// keeps such blocks in its heap afterwards, so that RSS would step up and
/// down by an answer's size at the allocator's whim, hiding or faking a
/// leak of that size.
const MALLOC_MMAP_THRESHOLD: &str = "MALLOC_MMAP_THRESHOLD_=131072";

/// `socktrace agent` on its own socket, following the soak's namespace.
fn agent_spec(program: &Path, socket: &Path, netns: &str) -> TracerSpec {
    TracerSpec {
        name: "socktrace agent".into(),
        // env(1) execs the agent: the process is the agent's.
        program: "env".into(),
        args: vec![
            MALLOC_MMAP_THRESHOLD.into(),
            program.display().to_string(),
            "agent".into(),
            "--socket".into(),
            socket.display().to_string(),
            "-N".into(),
            netns.into(),
        ],
        ready: Ready::StderrPrefix("socktrace: ready:"),
        lost: LostReport::Cumulative,
        state_programs: &[],
        reports_skipped_runs: true,
        paused: false,
    }
}

/// When samples are taken.
struct Schedule {
    started: Instant,
    every: Duration,
    run_s: f64,
}

/// Samples at `schedule` until the run ends; fails if the agent exits or
/// the run is interrupted.
fn sample_run(
    agent: &mut Running,
    load: &Load,
    queries: &Queries,
    schedule: Schedule,
    interrupted: &AtomicBool,
    samples: &mut Vec<Sample>,
) -> Result<()> {
    println!("{}", report::header());
    for index in 0u32.. {
        let due = schedule.started + schedule.every * index;
        while Instant::now() < due {
            if interrupted.load(Ordering::Relaxed) {
                bail!("interrupted (SIGINT or SIGTERM)");
            }
            thread::sleep(Duration::from_millis(50));
        }
        agent.check_running("the agent")?;
        let sample = take_sample(agent.pid(), load, queries, schedule.started)?;
        println!("{}", report::row(&sample, samples.last()));
        samples.push(sample);
        if sample.elapsed_s >= schedule.run_s {
            break;
        }
    }
    Ok(())
}

fn take_sample(pid: u32, load: &Load, queries: &Queries, started: Instant) -> Result<Sample> {
    let elapsed_s = started.elapsed().as_secs_f64();
    let process = Process::read(pid)?;
    let counts = load.counts();
    let seen = queries.seen();
    Ok(Sample {
        elapsed_s,
        rss_kib: process.rss_kib,
        cpu_s: process.cpu_s,
        fds: process.fds,
        threads: process.threads,
        lost: seen.overview.lost_events,
        host_transitions: process.host_transitions,
        connections: counts.connections,
        connection_failures: counts.failures,
        handshake_timeouts: counts.handshake_timeouts,
        time_wait: seen.overview.time_wait,
        close_wait: seen.overview.close_wait,
        listed: seen.listed,
        listing_ms: seen.listing_ms,
        queries: seen.queries,
        query_failures: seen.failures,
    })
}

/// The one-minute load average (`/proc/loadavg`'s first field).
fn load_average() -> Result<f64> {
    let text = fs::read_to_string("/proc/loadavg")?;
    text.split_whitespace()
        .next()
        .and_then(|field| field.parse().ok())
        .context("malformed /proc/loadavg")
}
