//! The agent's clients during the soak, on a schedule: `top`'s overview
//! every second (asked in the agent's JSON-line protocol, as `top` asks
//! it), `socktrace ss -tanpo` and `socktrace ss -s` every few seconds (the
//! real command, through the agent). Any failure is counted and the first
//! one kept.
use std::{
    fs::{self, File},
    io::{BufRead, BufReader, Read, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

/// How often each client asks.
const OVERVIEW_EVERY: Duration = Duration::from_secs(1);
const SS_EVERY: Duration = Duration::from_secs(5);
/// Longest an answer may take before the query counts as failed.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest overview read.
const MAX_OVERVIEW_BYTES: u64 = 16 << 20;
/// What `socktrace ss` logs (at `RUST_LOG=info`) when no agent answered
/// and it listed in-process instead: a failed query here.
const NO_AGENT: &str = "no agent at";

/// TIME-WAIT and CLOSE-WAIT in the overview's `states` (by the kernel's
/// state number less one).
const TIME_WAIT_INDEX: usize = 5;
const CLOSE_WAIT_INDEX: usize = 7;

/// What the clients saw so far.
#[derive(Clone, Debug, Default)]
pub struct Seen {
    pub queries: u64,
    pub failures: u64,
    pub first_failure: Option<String>,
    /// From the last overview.
    pub overview: Overview,
    /// Sockets the last `ss -tanpo` listed, and how long it took.
    pub listed: u64,
    pub listing_ms: f64,
}

/// The part of `top`'s overview the soak follows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Overview {
    pub time_wait: u64,
    pub close_wait: u64,
    pub lost_events: u64,
}

/// The clients, running until dropped.
pub struct Queries {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
    threads: Vec<JoinHandle<()>>,
}

/// Where the agent listens and what it is asked about.
#[derive(Clone, Debug)]
pub struct Target {
    pub agent_program: PathBuf,
    pub socket: PathBuf,
    /// The namespace, by name for `ss -N` and by inode for the protocol.
    pub netns_name: String,
    pub netns_inode: u64,
    /// Where `ss`'s output goes (the last listing is kept there).
    pub output_dir: PathBuf,
}

impl Queries {
    pub fn start(target: Target) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let mut threads = Vec::new();
        {
            let (target, stop, seen) = (target.clone(), stop.clone(), seen.clone());
            threads.push(thread::spawn(move || {
                every(OVERVIEW_EVERY, &stop, || {
                    let result = overview(&target.socket, target.netns_inode);
                    record(&seen, "top's overview", result, |seen, overview| {
                        seen.overview = overview;
                    });
                });
            }));
        }
        let (ss_stop, ss_seen) = (stop.clone(), seen.clone());
        threads.push(thread::spawn(move || {
            let mut turn = 0u64;
            // The two listings take turns, each every SS_EVERY.
            every(SS_EVERY / 2, &ss_stop, || {
                turn += 1;
                if turn % 2 == 1 {
                    let result = ss(&target, &["-tanpo"]);
                    record(&ss_seen, "ss -tanpo", result, |seen, listing| {
                        // Less the header.
                        seen.listed = listing.lines.saturating_sub(1);
                        seen.listing_ms = listing.took.as_secs_f64() * 1e3;
                    });
                } else {
                    let result = ss(&target, &["-s"]);
                    record(&ss_seen, "ss -s", result, |_, _| {});
                }
            });
        }));
        Queries {
            stop,
            seen,
            threads,
        }
    }

    pub fn seen(&self) -> Seen {
        self.seen.lock().expect("queries lock").clone()
    }
}

impl Drop for Queries {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Runs `job` every `period` until `stop`.
fn every(period: Duration, stop: &AtomicBool, mut job: impl FnMut()) {
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if Instant::now() >= next {
            job();
            next += period;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

fn record<T>(seen: &Mutex<Seen>, what: &str, result: Result<T>, keep: impl FnOnce(&mut Seen, T)) {
    let mut seen = seen.lock().expect("queries lock");
    seen.queries += 1;
    match result {
        Ok(answer) => keep(&mut seen, answer),
        Err(error) => {
            seen.failures += 1;
            seen.first_failure
                .get_or_insert_with(|| format!("{what}: {error:#}"));
        }
    }
}

/// Asks the agent at `socket` for the overview of namespace `inode`, as
/// `socktrace top` does.
pub fn overview(socket: &Path, inode: u64) -> Result<Overview> {
    let mut stream = UnixStream::connect(socket)
        .with_context(|| format!("connecting to {}", socket.display()))?;
    stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
    stream.set_write_timeout(Some(ANSWER_TIMEOUT))?;
    let mut request = serde_json::to_vec(&overview_request(inode))?;
    request.push(b'\n');
    stream.write_all(&request)?;
    let mut line = String::new();
    BufReader::new(stream.take(MAX_OVERVIEW_BYTES))
        .read_line(&mut line)
        .context("reading the agent's answer")?;
    parse_overview(&line)
}

fn overview_request(inode: u64) -> Value {
    json!({ "Overview": { "netns": [inode] } })
}

/// The counts the soak follows from the agent's answer line.
fn parse_overview(line: &str) -> Result<Overview> {
    let answer: Value = serde_json::from_str(line).context("malformed answer")?;
    if let Some(reason) = answer.get("Refused") {
        bail!("the agent refused: {reason}");
    }
    let overview = answer.get("Overview").context("not an overview")?;
    let state = |index: usize| overview["states"][index].as_u64();
    Ok(Overview {
        time_wait: state(TIME_WAIT_INDEX).context("no states")?,
        close_wait: state(CLOSE_WAIT_INDEX).context("no states")?,
        lost_events: overview["totals"]["lost_events"]
            .as_u64()
            .context("no lost_events")?,
    })
}

/// What `socktrace ss` printed, and how long it took.
struct Listing {
    lines: u64,
    took: Duration,
}

/// Runs `socktrace ss ARGS -N NAME --agent SOCKET` (its output kept in
/// `ssARGS.out` and `.err`); fails if it fails, takes too long or did not
/// use the agent.
fn ss(target: &Target, args: &[&str]) -> Result<Listing> {
    let name = format!("ss{}", args.concat());
    let stdout_path = target.output_dir.join(format!("{name}.out"));
    let stderr_path = target.output_dir.join(format!("{name}.err"));
    let mut child = Command::new(&target.agent_program)
        .arg("ss")
        .args(args)
        .args(["-N", &target.netns_name, "--agent"])
        .arg(&target.socket)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(File::create(&stdout_path)?)
        .stderr(File::create(&stderr_path)?)
        .spawn()
        .context("starting socktrace ss")?;
    let began = Instant::now();
    let deadline = began + ANSWER_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("no answer within {ANSWER_TIMEOUT:?}");
        }
        thread::sleep(Duration::from_millis(5));
    };
    let took = began.elapsed();
    let stderr = fs::read_to_string(&stderr_path).unwrap_or_default();
    if !status.success() {
        bail!("exited with {status}: {}", stderr.trim());
    }
    if stderr.contains(NO_AGENT) {
        bail!("listed in-process: {}", stderr.trim());
    }
    let stdout = BufReader::new(File::open(&stdout_path)?);
    Ok(Listing {
        lines: stdout.lines().count() as u64,
        took,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_overview_request_is_what_the_agent_reads() {
        // socktrace's agent_protocol::Request::Overview, serde's external
        // tagging.
        assert_eq!(
            overview_request(4026532281).to_string(),
            r#"{"Overview":{"netns":[4026532281]}}"#
        );
    }

    #[test]
    fn overview_answers_are_read_and_refusals_are_errors() {
        let answer = r#"{"Overview":{"at_ns":1,"states":[5,0,0,0,2,900,0,30,0,3,0,0],
            "totals":{"new_connections":9,"handshake_failures":0,"time_wait_entries":4,"lost_events":7},
            "top_remotes":[],"top_subnets":[],"top_opening_subnets":[],"window_secs":10}}"#
            .replace('\n', "");
        assert_eq!(
            parse_overview(&answer).unwrap(),
            Overview {
                time_wait: 900,
                close_wait: 30,
                lost_events: 7
            }
        );
        let refused = parse_overview(r#"{"Refused":"namespace 1 is not followed"}"#);
        assert!(refused.unwrap_err().to_string().contains("not followed"));
        assert!(parse_overview("").is_err());
    }
}
