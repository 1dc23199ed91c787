//! The real agent, `$SOCKTRACE_BIN trace --json`, running inside a test's
//! namespace, and waits on what it prints.
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read};
use std::marker::PhantomData;
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStderr, ChildStdout, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use serde_json::Value;

use crate::NetNs;
use crate::wait::{self, Poll};

/// How long the agent may take to print `socktrace: ready` (the first BPF
/// load of a run can be slow).
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long the agent may take to exit after SIGTERM.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The stderr line that says the agent is attached.
const READY_PREFIX: &str = "socktrace: ready";

/// How many of the latest records a failure message shows.
const SHOWN_RECORDS: usize = 20;

/// What the reader threads send.
enum Message {
    Record(Value),
    /// A stdout line that is not a JSON object.
    BadLine {
        line: String,
        error: String,
    },
    StdoutClosed,
    Stderr(String),
    StderrClosed,
}

/// Whether the agent's stdout is read into records or handed to the test.
#[derive(Clone, Copy)]
enum Stdout {
    Read,
    Handed,
}

/// The agent, started by [`Agent::start`] inside a [`NetNs`] (which it
/// borrows, so it is stopped before the namespace goes). Every stdout line is
/// kept, in order, as a JSON value; the waits below search all of them, from
/// the first, and then wait for more.
///
/// Dropping it sends SIGTERM, then SIGKILL after a few seconds; [`Agent::stop`]
/// does the same and also checks the agent exits 0.
pub struct Agent<'ns> {
    child: Child,
    pid: u32,
    command_line: String,
    rx: Receiver<Message>,
    records: Vec<Value>,
    stderr: Vec<String>,
    /// False when the test took stdout ([`Agent::start_unread`]).
    stdout_read: bool,
    stdout_open: bool,
    stderr_open: bool,
    bad_line: Option<String>,
    exit: Option<ExitStatus>,
    _ns: PhantomData<&'ns NetNs>,
}

impl<'ns> Agent<'ns> {
    /// Starts `$SOCKTRACE_BIN trace --json EXTRA...` inside `ns` and waits for
    /// its ready line. Panics when `SOCKTRACE_BIN` is unset or not root.
    ///
    /// The agent enters the namespace by setns before exec (see
    /// [`NetNs::command`] for why not `ip netns exec`), so its sock_diag
    /// seeding sees the namespace's sockets.
    pub fn start(ns: &'ns NetNs, extra_args: &[&str]) -> Result<Self> {
        Self::start_command(ns, "trace", extra_args)
    }

    /// Starts `$SOCKTRACE_BIN trace --json -N NS EXTRA...` as
    /// [`Agent::start`] does, but hands its stdout to the test, to stream
    /// through a counter (millions of records) or to leave unread.
    pub fn start_unread(ns: &'ns NetNs, extra_args: &[&str]) -> Result<(Self, ChildStdout)> {
        let mut args = vec!["trace", "--json", "-N", ns.name()];
        args.extend_from_slice(extra_args);
        let binary = crate::agent_binary();
        let binary = binary.to_str().context("SOCKTRACE_BIN is not UTF-8")?;
        Self::spawn_program(ns, &[binary], &args, None, Stdout::Handed)
            .map(|(agent, stdout)| (agent, stdout.expect("stdout is handed over")))
    }

    /// Starts `$SOCKTRACE_BIN COMMAND --json -N NS EXTRA...` as
    /// [`Agent::start`] does: it follows `ns` only, so that the host's own
    /// traffic stays out of the test's counts.
    pub fn start_command(ns: &'ns NetNs, subcommand: &str, extra_args: &[&str]) -> Result<Self> {
        let mut args = vec!["-N", ns.name()];
        args.extend_from_slice(extra_args);
        Self::start_following_all(ns, subcommand, &args)
    }

    /// Starts `$SOCKTRACE_BIN COMMAND --json EXTRA...` inside `ns`, following
    /// every network namespace unless `extra_args` choose some.
    pub fn start_following_all(
        ns: &'ns NetNs,
        subcommand: &str,
        extra_args: &[&str],
    ) -> Result<Self> {
        let mut args = vec![subcommand, "--json"];
        args.extend_from_slice(extra_args);
        Self::spawn(ns, &args, None)
    }

    /// Starts `$SOCKTRACE_BIN agent --socket SOCKET EXTRA...` in `ns` (it
    /// follows every namespace) and waits until it serves.
    pub fn start_daemon(
        ns: &'ns NetNs,
        socket: &std::path::Path,
        extra_args: &[&str],
    ) -> Result<Self> {
        Self::start_daemon_with_fd_limit(ns, socket, extra_args, None)
    }

    /// [`Agent::start_daemon`], the agent allowed at most `fd_limit` open
    /// file descriptors (`RLIMIT_NOFILE`, soft and hard) when given.
    pub fn start_daemon_with_fd_limit(
        ns: &'ns NetNs,
        socket: &std::path::Path,
        extra_args: &[&str],
        fd_limit: Option<u64>,
    ) -> Result<Self> {
        let socket = socket.to_str().context("socket path is not UTF-8")?;
        let mut args = vec!["agent", "--socket", socket];
        args.extend_from_slice(extra_args);
        Self::spawn(ns, &args, fd_limit)
    }

    /// Starts `WRAPPER... $SOCKTRACE_BIN COMMAND --json EXTRA...` inside
    /// `ns`, following every namespace unless `extra_args` choose some:
    /// `wrapper` execs the agent, such as `setpriv` running it as another
    /// user with some capabilities.
    pub fn start_wrapped(
        ns: &'ns NetNs,
        wrapper: &[&str],
        subcommand: &str,
        extra_args: &[&str],
    ) -> Result<Self> {
        let binary = crate::agent_binary();
        let mut program = wrapper.to_vec();
        program.push(binary.to_str().context("SOCKTRACE_BIN is not UTF-8")?);
        Self::start_program(ns, &program, subcommand, extra_args)
    }

    /// Starts `PROGRAM... COMMAND --json EXTRA...` inside `ns`: `program`
    /// runs socktrace itself (an installed copy, say), not `$SOCKTRACE_BIN`.
    pub fn start_program(
        ns: &'ns NetNs,
        program: &[&str],
        subcommand: &str,
        extra_args: &[&str],
    ) -> Result<Self> {
        let mut args = vec![subcommand, "--json"];
        args.extend_from_slice(extra_args);
        Self::spawn_program(ns, program, &args, None, Stdout::Read).map(|(agent, _)| agent)
    }

    fn spawn(ns: &'ns NetNs, args: &[&str], fd_limit: Option<u64>) -> Result<Self> {
        let binary = crate::agent_binary();
        let binary = binary.to_str().context("SOCKTRACE_BIN is not UTF-8")?;
        Self::spawn_program(ns, &[binary], args, fd_limit, Stdout::Read).map(|(agent, _)| agent)
    }

    fn spawn_program(
        ns: &'ns NetNs,
        program: &[&str],
        args: &[&str],
        fd_limit: Option<u64>,
        stdout: Stdout,
    ) -> Result<(Self, Option<ChildStdout>)> {
        crate::require_root();
        let (first, program_args) = program.split_first().context("no program to start")?;
        let mut command = ns.command(first)?;
        command.args(program_args);
        if let Some(limit) = fd_limit {
            let limit = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            // SAFETY: setrlimit is async-signal-safe and only changes the
            // child's own limits.
            unsafe {
                command.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let command_line = format!(
            "{} {} (in netns {})",
            program.join(" "),
            args.join(" "),
            ns.name()
        );
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start {command_line}"))?;
        let pid = child.id();
        let (tx, rx) = channel();
        let piped = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let handed = match stdout {
            Stdout::Read => {
                spawn_stdout_reader(piped, tx.clone(), pid)?;
                None
            }
            Stdout::Handed => Some(piped),
        };
        spawn_stderr_reader(stderr, tx, pid)?;
        let mut agent = Agent {
            child,
            pid,
            command_line,
            rx,
            records: Vec::new(),
            stderr: Vec::new(),
            stdout_read: handed.is_none(),
            stdout_open: handed.is_none(),
            stderr_open: true,
            bad_line: None,
            exit: None,
            _ns: PhantomData,
        };
        agent.wait_ready()?;
        Ok((agent, handed))
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let what = format!("the agent's `{READY_PREFIX}` line on stderr");
        while !self
            .stderr
            .iter()
            .any(|line| line.starts_with(READY_PREFIX))
        {
            if let Err(err) = self.receive(deadline) {
                return Err(self.failure(&what, err));
            }
        }
        Ok(())
    }

    /// The agent's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Every record received so far, in order.
    pub fn records(&self) -> &[Value] {
        &self.records
    }

    /// Every stderr line received so far.
    pub fn stderr_lines(&self) -> &[String] {
        &self.stderr
    }

    /// Every stderr line the agent printed by now (taking in what the
    /// readers have not handed over yet).
    pub fn stderr_now(&mut self) -> &[String] {
        while let Ok(message) = self.rx.try_recv() {
            let _ = self.handle(message);
        }
        &self.stderr
    }

    /// The first record (since the agent started) that satisfies `pred`,
    /// waiting up to `timeout` for it. `what` describes it for the error.
    pub fn wait_for(
        &mut self,
        what: &str,
        mut pred: impl FnMut(&Value) -> bool,
        timeout: Duration,
    ) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        let mut next = 0;
        loop {
            if let Some(found) = self.records[next..].iter().find(|record| pred(record)) {
                return Ok(found.clone());
            }
            next = self.records.len();
            if let Err(err) = self.receive(deadline) {
                return Err(self.failure(what, err));
            }
        }
    }

    /// The first stderr line (since the agent started) that satisfies
    /// `pred`, waiting up to `timeout` for it.
    pub fn wait_for_stderr(
        &mut self,
        what: &str,
        mut pred: impl FnMut(&str) -> bool,
        timeout: Duration,
    ) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = self.stderr.iter().find(|line| pred(line)) {
                return Ok(found.clone());
            }
            if let Err(err) = self.receive(deadline) {
                // Stdout may close (the agent exiting) before its last
                // stderr lines are read: take those in before failing.
                self.drain(Duration::from_secs(2));
                if let Some(found) = self.stderr.iter().find(|line| pred(line)) {
                    return Ok(found.clone());
                }
                return Err(self.failure(what, err));
            }
        }
    }

    /// The records (since the agent started) that satisfy `keep`, in order,
    /// once `done` holds for them; waits up to `timeout`. `what` describes
    /// the wait for the error, which also lists the records kept so far.
    pub fn collect_until(
        &mut self,
        what: &str,
        mut keep: impl FnMut(&Value) -> bool,
        mut done: impl FnMut(&[Value]) -> bool,
        timeout: Duration,
    ) -> Result<Vec<Value>> {
        let deadline = Instant::now() + timeout;
        let mut kept = Vec::new();
        let mut next = 0;
        loop {
            kept.extend(
                self.records[next..]
                    .iter()
                    .filter(|record| keep(record))
                    .cloned(),
            );
            next = self.records.len();
            if done(&kept) {
                return Ok(kept);
            }
            if let Err(err) = self.receive(deadline) {
                let mut shown = format!("{} records kept so far:", kept.len());
                for record in &kept {
                    let _ = write!(shown, "\n  {record}");
                }
                return Err(self.failure(what, err).context(shown));
            }
        }
    }

    /// Sends SIGTERM and checks the agent exits 0 within [`STOP_TIMEOUT`]
    /// and printed only valid JSON until then.
    pub fn stop(self) -> Result<()> {
        self.stop_with(libc::SIGTERM)
    }

    /// Sends `signal` (SIGTERM or SIGINT) and checks the agent exits 0
    /// within [`STOP_TIMEOUT`] and printed only valid JSON until then.
    pub fn stop_with(self, signal: libc::c_int) -> Result<()> {
        self.stop_with_stderr(signal).map(drop)
    }

    /// [`Agent::stop_with`], then every line the agent wrote on stderr.
    pub fn stop_with_stderr(mut self, signal: libc::c_int) -> Result<Vec<String>> {
        self.stopped(signal)?;
        Ok(std::mem::take(&mut self.stderr))
    }

    /// [`Agent::stop`], then every record it printed, the last ones
    /// included.
    pub fn stop_with_records(mut self) -> Result<Vec<Value>> {
        self.stopped(libc::SIGTERM)?;
        Ok(std::mem::take(&mut self.records))
    }

    /// Kills the agent with SIGKILL (it cannot end cleanly), then every
    /// record it printed.
    pub fn kill(mut self) -> Result<Vec<Value>> {
        self.signal(libc::SIGKILL);
        if self.wait_exit(STOP_TIMEOUT).is_none() {
            return Err(anyhow!("still running {STOP_TIMEOUT:?} after SIGKILL"));
        }
        self.drain(Duration::from_secs(5));
        Ok(std::mem::take(&mut self.records))
    }

    fn stopped(&mut self, signal: libc::c_int) -> Result<()> {
        self.signal(signal);
        let status = match self.wait_exit(STOP_TIMEOUT) {
            Some(status) => status,
            None => {
                let _ = self.child.kill();
                let status = self.child.wait().ok();
                self.exit = status;
                let err =
                    anyhow!("did not exit within {STOP_TIMEOUT:?} of signal {signal} (killed)");
                return Err(self.failure("the agent to exit after the signal", err));
            }
        };
        // Take in what it printed before exiting.
        self.drain(Duration::from_secs(5));
        if let Some(line) = self.bad_line.clone() {
            return Err(self.failure("the agent's last output", Stop::BadLine(line)));
        }
        if !status.success() {
            let err = anyhow!("exited with {status} after signal {signal}, expected exit status 0");
            return Err(self.failure("a clean exit", err));
        }
        Ok(())
    }

    /// Handles one message from the readers, waiting until `deadline`.
    fn receive(&mut self, deadline: Instant) -> std::result::Result<(), Stop> {
        if let Some(line) = &self.bad_line {
            return Err(Stop::BadLine(line.clone()));
        }
        if self.stdout_read && !self.stdout_open {
            return Err(Stop::StdoutClosed);
        }
        let timeout = deadline.saturating_duration_since(Instant::now());
        match self.rx.recv_timeout(timeout) {
            Ok(message) => self.handle(message),
            Err(RecvTimeoutError::Timeout) => Err(Stop::Timeout),
            Err(RecvTimeoutError::Disconnected) => {
                self.stdout_open = false;
                self.stderr_open = false;
                Err(Stop::StdoutClosed)
            }
        }
    }

    /// Takes in one reader message; says why waiting must stop, if it must.
    fn handle(&mut self, message: Message) -> std::result::Result<(), Stop> {
        match message {
            Message::Record(value) => self.records.push(value),
            Message::BadLine { line, error } => {
                let shown = format!("{line:?} ({error})");
                self.bad_line = Some(shown.clone());
                return Err(Stop::BadLine(shown));
            }
            Message::StdoutClosed => {
                self.stdout_open = false;
                return Err(Stop::StdoutClosed);
            }
            Message::Stderr(line) => self.stderr.push(line),
            Message::StderrClosed => self.stderr_open = false,
        }
        Ok(())
    }

    /// Takes in what the readers still have, until both pipes closed or
    /// `timeout` passed.
    fn drain(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.stdout_open || self.stderr_open {
            match self
                .rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(message) => {
                    let _ = self.handle(message);
                }
                Err(RecvTimeoutError::Timeout) => return,
                Err(RecvTimeoutError::Disconnected) => {
                    self.stdout_open = false;
                    self.stderr_open = false;
                }
            }
        }
    }

    /// An error for a failed wait for `what`, with the agent's exit status,
    /// all its stderr and its latest records.
    fn failure(&mut self, what: &str, stop: impl Into<anyhow::Error>) -> anyhow::Error {
        let stop = stop.into();
        if self.exit.is_none() && !self.stdout_open {
            // It is probably exiting: give it a moment, and its stderr too.
            self.exit = self.wait_exit(Duration::from_secs(3));
        }
        if self.exit.is_some() {
            self.drain(Duration::from_secs(1));
        } else {
            // Still running: take in what is already queued.
            while let Ok(message) = self.rx.try_recv() {
                let _ = self.handle(message);
            }
        }
        let status = match self.exit {
            Some(status) => format!("exited: {status}"),
            None => "still running".to_owned(),
        };
        let mut text = format!(
            "waiting for {what}: {stop:#}\nagent: pid {}, {}, {status}\nits stderr ({} lines):",
            self.pid,
            self.command_line,
            self.stderr.len()
        );
        for line in &self.stderr {
            let _ = write!(text, "\n  {line}");
        }
        let skip = self.records.len().saturating_sub(SHOWN_RECORDS);
        let _ = write!(
            text,
            "\nits stdout: {} records, the latest {}:",
            self.records.len(),
            self.records.len() - skip
        );
        for record in &self.records[skip..] {
            let _ = write!(text, "\n  {record}");
        }
        anyhow!(text)
    }

    /// Sends `signal` to the agent, unless it has exited.
    pub fn signal(&self, signal: libc::c_int) {
        if self.exit.is_none() {
            // SAFETY: kill has no memory preconditions; the child is not
            // reaped yet (exit is None), so its pid is still ours.
            unsafe { libc::kill(self.pid as libc::pid_t, signal) };
        }
    }

    /// Waits up to `timeout` for the agent to exit; its status, if it did.
    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if let Some(status) = self.exit {
            return Some(status);
        }
        let status = wait::until("the agent to exit", timeout, || {
            Ok(match self.child.try_wait()? {
                Some(status) => Poll::Ready(status),
                None => Poll::Pending("still running".into()),
            })
        })
        .ok()?;
        self.exit = Some(status);
        Some(status)
    }
}

impl Drop for Agent<'_> {
    fn drop(&mut self) {
        if self.exit.is_some() {
            return;
        }
        self.signal(libc::SIGTERM);
        if self.wait_exit(Duration::from_secs(5)).is_none() {
            eprintln!(
                "socktrace[{}]: no exit 5 s after SIGTERM, killing it",
                self.pid
            );
            let _ = self.child.kill();
            self.exit = self.child.wait().ok();
        }
    }
}

/// Why a wait on the agent's output stopped early.
#[derive(Debug)]
enum Stop {
    Timeout,
    StdoutClosed,
    BadLine(String),
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::Timeout => f.write_str("timed out"),
            Stop::StdoutClosed => f.write_str("the agent closed its stdout (exited?)"),
            Stop::BadLine(line) => write!(
                f,
                "the agent printed a line that is not a JSON object: {line}"
            ),
        }
    }
}

impl std::error::Error for Stop {}

fn spawn_stdout_reader(stdout: ChildStdout, tx: Sender<Message>, pid: u32) -> Result<()> {
    thread::Builder::new()
        .name(format!("socktrace-{pid}-stdout"))
        .spawn(move || {
            for_each_line(stdout, |line| {
                let message = match serde_json::from_str::<Value>(&line) {
                    Ok(value) if value.is_object() => Message::Record(value),
                    Ok(_) => Message::BadLine {
                        line,
                        error: "not an object".to_owned(),
                    },
                    Err(err) => Message::BadLine {
                        line,
                        error: err.to_string(),
                    },
                };
                tx.send(message).is_ok()
            });
            let _ = tx.send(Message::StdoutClosed);
        })
        .context("spawning the stdout reader")?;
    Ok(())
}

fn spawn_stderr_reader(stderr: ChildStderr, tx: Sender<Message>, pid: u32) -> Result<()> {
    thread::Builder::new()
        .name(format!("socktrace-{pid}-stderr"))
        .spawn(move || {
            for_each_line(stderr, |line| {
                eprintln!("socktrace[{pid}] stderr: {line}");
                tx.send(Message::Stderr(line)).is_ok()
            });
            let _ = tx.send(Message::StderrClosed);
        })
        .context("spawning the stderr reader")?;
    Ok(())
}

/// Calls `f` with each line (without its newline, lossily decoded) until EOF,
/// a read error, or `f` returning false.
fn for_each_line(reader: impl Read, mut f: impl FnMut(String) -> bool) {
    let mut reader = BufReader::new(reader);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                if buf.last() == Some(&b'\n') {
                    buf.pop();
                }
                if !f(String::from_utf8_lossy(&buf).into_owned()) {
                    return;
                }
            }
        }
    }
}
