//! The tracers compared: socktrace and the peers users would pick instead,
//! how to start each, know it is attached, count what it lost and stop it.
use std::{
    io::{BufRead, BufReader, Read},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc::{Receiver, RecvTimeoutError, channel},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

/// Stdout lines looked at for the ready header.
const HEADER_LINES: usize = 4;

/// How long a tracer may take to attach (bpftrace compiles its script).
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How a tracer tells it is attached.
#[derive(Clone, Copy, Debug)]
pub enum Ready {
    /// A stderr line starting with this.
    StderrPrefix(&'static str),
    /// A stdout line containing this (the column header it prints once
    /// attached; bpftrace prints `Attaching N probes...` before it
    /// attaches).
    StdoutContains(&'static str),
}

/// How a tracer reports lost events on stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LostReport {
    /// Lines carrying the running total (socktrace): the largest counts.
    Cumulative,
    /// One line per loss (libbpf-tools: `lost N events on CPU #C`,
    /// bpftrace: `Lost N events`): they add up.
    PerLine,
}

/// One configuration of the comparison.
#[derive(Clone, Debug)]
pub struct TracerSpec {
    /// Its name in the report.
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub ready: Ready,
    pub lost: LostReport,
    /// The names of its programs on `inet_sock_set_state`, each run once
    /// per transition: the first one's run count is the number of
    /// transitions it saw.
    pub state_programs: &'static [&'static str],
    /// Whether the tool counts the runs the kernel skipped among the events
    /// it reports lost; if not, the harness adds its programs'
    /// `recursion_misses`.
    pub reports_skipped_runs: bool,
    /// Stopped (SIGSTOP) through the churn and cost windows, then let go:
    /// what its kernel side costs alone. Its ring buffer must hold what
    /// both windows produce, which it drains once it continues.
    pub paused: bool,
}

/// A tracer running.
pub struct Running {
    child: Child,
    stderr: Receiver<String>,
    stderr_lines: Vec<String>,
}

impl Running {
    /// Starts `spec` and waits until it is attached.
    pub fn start(spec: &TracerSpec) -> Result<Self> {
        let mut child = Command::new(&spec.program)
            .args(&spec.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", spec.program.display()))?;
        let (stdout_tx, stdout_rx) = channel();
        let (stderr_tx, stderr_rx) = channel();
        let stdout = child.stdout.take().context("stdout")?;
        let stderr = child.stderr.take().context("stderr")?;
        // The output is read and thrown away as fast as it comes, like a
        // pipe into a file; only the first lines are passed on.
        thread::spawn(move || {
            let mut reader = BufReader::with_capacity(1 << 16, stdout);
            for _ in 0..HEADER_LINES {
                let mut line = String::new();
                if !matches!(reader.read_line(&mut line), Ok(n) if n > 0)
                    || stdout_tx.send(line).is_err()
                {
                    break;
                }
            }
            let mut sink = vec![0u8; 1 << 16];
            while matches!(reader.read(&mut sink), Ok(n) if n > 0) {}
        });
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if stderr_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut running = Running {
            child,
            stderr: stderr_rx,
            stderr_lines: Vec::new(),
        };
        running.wait_ready(spec, &stdout_rx)?;
        Ok(running)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_ready(&mut self, spec: &TracerSpec, stdout: &Receiver<String>) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            self.collect_stderr();
            let ready = match spec.ready {
                Ready::StderrPrefix(prefix) => {
                    self.stderr_lines.iter().any(|l| l.starts_with(prefix))
                }
                Ready::StdoutContains(text) => stdout.try_iter().any(|line| line.contains(text)),
            };
            if ready {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                self.collect_stderr();
                bail!(
                    "{} exited with {status} before attaching: {}",
                    spec.name,
                    self.stderr_tail()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not attach within {READY_TIMEOUT:?}: {}",
                    spec.name,
                    self.stderr_tail()
                );
            }
            match self.stderr.recv_timeout(Duration::from_millis(20)) {
                Ok(line) => self.stderr_lines.push(line),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {}
            }
        }
    }

    fn collect_stderr(&mut self) {
        while let Ok(line) = self.stderr.try_recv() {
            self.stderr_lines.push(line);
        }
    }

    fn stderr_tail(&self) -> String {
        let start = self.stderr_lines.len().saturating_sub(5);
        self.stderr_lines[start..].join(" | ")
    }

    /// Fails if the tracer has exited (it must run through the window).
    pub fn check_running(&mut self, name: &str) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            self.collect_stderr();
            bail!("{name} exited with {status}: {}", self.stderr_tail());
        }
        Ok(())
    }

    /// User plus system CPU seconds the tracer used so far.
    pub fn cpu_seconds(&self) -> Result<f64> {
        cpu_seconds(self.pid())
    }

    /// Stops its process (SIGSTOP) until [`Running::resume`].
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on our own child, not yet reaped.
        unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
    }

    /// Stops it (SIGINT, as a user would) and returns the events it said
    /// it lost.
    pub fn stop(mut self, lost: LostReport) -> Result<Losses> {
        self.signal(libc::SIGINT);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
        // The stderr reader ends with the process; take what it read.
        let quiet = Instant::now() + Duration::from_secs(2);
        while let Ok(line) = self
            .stderr
            .recv_timeout(quiet.saturating_duration_since(Instant::now()))
        {
            self.stderr_lines.push(line);
        }
        let count = lost_events(&self.stderr_lines, lost);
        if count > 0 && lost == LostReport::Cumulative {
            // What it said of its losses, and why.
            if let Some(last) = self
                .stderr_lines
                .iter()
                .rfind(|line| is_loss_line(line, lost))
            {
                eprintln!("xtask: bench: {last}");
            }
        }
        Ok(Losses {
            total: count,
            ring_full: ring_full_events(&self.stderr_lines),
        })
    }
}

/// The events a tracer said it lost.
#[derive(Clone, Copy, Debug)]
pub struct Losses {
    pub total: u64,
    /// Of those, the ones socktrace's full ring buffer refused.
    pub ring_full: u64,
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The events `lines` (a tracer's stderr) say were lost. socktrace's
/// lines say "N events lost"; its line on transitions that never arrived
/// (gaps in sockets' lives, lost events included) is another measure.
pub fn lost_events(lines: &[String], report: LostReport) -> u64 {
    let counts = lines
        .iter()
        .filter(|line| is_loss_line(line, report))
        .filter_map(|line| {
            line.split_whitespace()
                .find_map(|word| word.parse::<u64>().ok())
        });
    match report {
        LostReport::Cumulative => counts.max().unwrap_or(0),
        LostReport::PerLine => counts.sum(),
    }
}

/// Of the events socktrace's `lines` say were lost, those its full ring
/// buffer refused: the largest running total.
pub fn ring_full_events(lines: &[String]) -> u64 {
    lines
        .iter()
        .filter_map(|line| {
            let (_, count) = line.split_once("kernel ring buffer full: ")?;
            count
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .max()
        .unwrap_or(0)
}

fn is_loss_line(line: &str, report: LostReport) -> bool {
    match report {
        LostReport::Cumulative => line.contains("events lost"),
        LostReport::PerLine => line.to_ascii_lowercase().contains("lost"),
    }
}

/// User plus system CPU seconds of process `pid` (`/proc/PID/stat` fields
/// 14 and 15, in clock ticks).
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after_comm = stat.rfind(')').context("malformed stat")? + 1;
    let fields: Vec<&str> = stat[after_comm..].split_whitespace().collect();
    // Field 3 (state) is fields[0]; utime is field 14, stime field 15.
    let ticks: u64 = fields
        .get(11..13)
        .context("short stat")?
        .iter()
        .map(|f| f.parse::<u64>().unwrap_or(0))
        .sum();
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok(ticks as f64 / per_second)
}

/// Whether `program` can be found: a path, or a name on PATH.
pub fn find(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Path::new(program).is_file().then(|| PathBuf::from(program));
    }
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
        .map(|dir| Path::new(dir).join(program))
        .find(|path| path.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_counts_are_read_the_way_each_tool_reports_them() {
        let socktrace = [
            "socktrace: ready: agent serving /run/x".to_owned(),
            "socktrace: so far 120 events lost (kernel ring buffer full: 120, try a larger \
             --ring-buffer-kib)"
                .to_owned(),
            "socktrace: so far 480 events lost (kernel ring buffer full: 470, try a larger \
             --ring-buffer-kib; skipped by the kernel, nested in a BPF program running on the CPU: 10)"
                .to_owned(),
            "socktrace: 480 events lost (kernel ring buffer full: 470, try a larger \
             --ring-buffer-kib; skipped by the kernel, nested in a BPF program running on the CPU: 10)"
                .to_owned(),
            "socktrace: at least 500 transitions never arrived (seen as gaps in sockets' lives; \
             lost events included)"
                .to_owned(),
        ];
        assert_eq!(lost_events(&socktrace, LostReport::Cumulative), 480);
        assert_eq!(ring_full_events(&socktrace), 470);
        let skipped_only = [
            "socktrace: 10 events lost (skipped by the kernel, nested in a BPF \
                             program running on the CPU: 10)"
                .to_owned(),
        ];
        assert_eq!(lost_events(&skipped_only, LostReport::Cumulative), 10);
        assert_eq!(ring_full_events(&skipped_only), 0);
        let libbpf = [
            "lost 12 events on CPU #0".to_owned(),
            "lost 3 events on CPU #1".to_owned(),
            "Attaching 3 probes...".to_owned(),
        ];
        assert_eq!(lost_events(&libbpf, LostReport::PerLine), 15);
        assert_eq!(
            lost_events(&["Lost 7 events".to_owned()], LostReport::PerLine),
            7
        );
        assert_eq!(lost_events(&[], LostReport::PerLine), 0);
    }
}
