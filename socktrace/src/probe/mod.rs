//! `socktrace probe HOST:PORT`: can this host reach it, and if not, where
//! does it stop? Real connections through the kernel, each narrated from
//! socktrace's own trace of it, then a verdict and an exit status.
pub mod connection;
pub mod listener_hint;
pub mod narration;
pub mod report;
pub mod target;
pub mod tls;

use std::{
    io::{self, Write as _},
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use tokio::signal::unix::{SignalKind, signal};

use self::{
    connection::Tracer,
    narration::Verdict,
    report::{ProbeResult, Summary},
    target::{Families, Resolved, Target},
    tls::TrustAnchors,
};
use crate::{
    cli::probe::ProbeArgs, render::output::Format, render::probe_output,
    support::clock::monotonic_now_ns,
};

pub async fn run(args: ProbeArgs) -> anyhow::Result<ExitCode> {
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let families = match (args.ipv4, args.ipv6) {
        (true, _) => Families::V4,
        (_, true) => Families::V6,
        _ => Families::Both,
    };
    let resolved = args.target.resolve(families).await?;
    let anchors = args
        .tls
        .then(|| TrustAnchors::load(args.ca.as_deref()))
        .transpose()?;
    let mut probe = Probe {
        tracer: Tracer::attach()?,
        target: &args.target,
        resolved,
        anchors,
        timeout: Duration::from_nanos(args.timeout.as_ns()),
        out: Stdout::new(Format::from_json_flag(args.json)),
    };
    let format = probe.out.format;
    probe
        .out
        .write(|out| probe_output::write_resolved(out, probe.target, &probe.resolved, format))?;
    let interval = Duration::from_nanos(args.interval.as_ns());
    let mut results = Vec::new();
    let mut next = Instant::now();
    for attempt in 1..=args.count {
        tokio::select! {
            result = async {
                tokio::time::sleep_until(next.into()).await;
                next = Instant::now() + interval;
                probe.once(attempt).await
            } => results.push(result?),
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
        }
    }
    let summary = Summary::of(&results);
    if args.count > 1 {
        probe
            .out
            .write(|out| probe_output::write_summary(out, probe.target, &summary, format))?;
    }
    let (lost, malformed) = probe.tracer.losses()?;
    if lost.total() > 0 || malformed > 0 {
        eprintln!(
            "socktrace: while probing, {lost} and {malformed} malformed records: a step may be missing"
        );
    }
    if results.is_empty() {
        anyhow::bail!("interrupted before the first probe ended");
    }
    Ok(ExitCode::from(summary.exit_status))
}

/// A run of probes to one target.
struct Probe<'a> {
    tracer: Tracer,
    target: &'a Target,
    resolved: Resolved,
    anchors: Option<TrustAnchors>,
    timeout: Duration,
    out: Stdout,
}

impl Probe<'_> {
    /// One probe: each address in turn until one answers.
    async fn once(&mut self, attempt: u32) -> anyhow::Result<ProbeResult> {
        let format = self.out.format;
        let mut result = None;
        for &address in &self.resolved.addresses {
            self.out
                .write(|out| probe_output::write_connecting(out, attempt, address, format))?;
            let started = Instant::now();
            let mut failed_write = Ok(());
            let out = &mut self.out;
            let connection = self
                .tracer
                .connect(address, self.timeout, &mut |step| {
                    if failed_write.is_ok() {
                        failed_write = out.write(|out| {
                            probe_output::write_step(out, attempt, address, &step, format);
                        });
                    }
                })
                .await?;
            failed_write?;
            let watch = &connection.watch;
            let verdict = watch.verdict();
            let hint =
                (verdict == Verdict::Refused && listener_hint::is_local(address.ip())).then(|| {
                    listener_hint::listeners(self.tracer.netns())
                        .map(|listeners| listener_hint::hint(address, &listeners))
                        .unwrap_or_else(|error| {
                            format!("listing this host's listeners failed: {error}")
                        })
                });
            let tls = match (&self.anchors, connection.stream) {
                (Some(anchors), Some(stream)) => {
                    let left = self.timeout.saturating_sub(started.elapsed());
                    Some(
                        anchors
                            .handshake(stream, &self.target.host, left)
                            .await
                            .map_err(|error| {
                                crate::support::error_line::ErrorLine(error.as_ref()).to_string()
                            }),
                    )
                }
                _ => None,
            };
            // The connection is closed by now (with TLS, once its handshake
            // ended).
            if verdict == Verdict::Reachable {
                let closed = watch.closed(monotonic_now_ns());
                self.out.write(|out| {
                    probe_output::write_step(out, attempt, address, &closed, format);
                })?;
            }
            let found = ProbeResult {
                attempt,
                address,
                local: watch.local(),
                verdict,
                handshake_ns: watch.handshake_ns(),
                syn_retransmits: watch.retransmits(),
                errno: watch.errno(),
                hint,
                tls,
            };
            self.out
                .write(|out| probe_output::write_result(out, self.target, &found, format))?;
            let reached = found.verdict == Verdict::Reachable;
            result = Some(found);
            if reached {
                break;
            }
        }
        result.context("no address to try")
    }
}

/// Lines to stdout, each written as soon as it is told.
struct Stdout {
    format: Format,
    line: String,
}

impl Stdout {
    fn new(format: Format) -> Self {
        Stdout {
            format,
            line: String::new(),
        }
    }

    fn write(&mut self, render: impl FnOnce(&mut String)) -> anyhow::Result<()> {
        self.line.clear();
        render(&mut self.line);
        let mut stdout = io::stdout().lock();
        stdout
            .write_all(self.line.as_bytes())
            .and_then(|()| stdout.flush())
            .context("writing to stdout")
    }
}
