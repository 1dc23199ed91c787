//! The agent's socket, set up and used wrongly: `--socket` on a file or a
//! directory that is not a socket, a path too long for a Unix socket, a
//! malformed or oversized request, and clients of an agent that is stopped.
//! Each gets one clear line, and nothing that is not the agent's is
//! deleted.
use std::fs;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use socktrace_integration_tests::{
    Agent, KillOnDrop, NetNs, SocketDir, TIMEOUT, agent_binary, agent_socket::ask_raw,
};

/// Runs `socktrace ARGS` and waits up to `deadline` for it to exit; killed
/// (and the test failed) if it does not.
fn socktrace_within(args: &[&str], deadline: Duration) -> Result<Output> {
    let child = Command::new(agent_binary())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting socktrace")?;
    let mut child = KillOnDrop::new(child);
    let status = child
        .wait_exit(deadline)
        .with_context(|| format!("`socktrace {}` still running", args.join(" ")))?;
    let mut output = Output {
        status,
        stdout: Vec::new(),
        stderr: Vec::new(),
    };
    use std::io::Read;
    if let Some(mut stdout) = child.stdout.take() {
        stdout.read_to_end(&mut output.stdout)?;
    }
    if let Some(mut stderr) = child.stderr.take() {
        stderr.read_to_end(&mut output.stderr)?;
    }
    Ok(output)
}

/// The one line a failed run printed on stderr; fails unless it failed
/// with exactly one line.
fn one_error_line(output: &Output) -> Result<String> {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    ensure!(!output.status.success(), "succeeded; stderr: {stderr}");
    ensure!(stderr.lines().count() == 1, "not one line: {stderr}");
    Ok(stderr.trim_end().to_owned())
}

fn agent_at(path: &Path) -> Result<Output> {
    let path = path.to_str().context("path")?;
    socktrace_within(&["agent", "--socket", path], TIMEOUT)
}

#[test]
fn the_agent_replaces_a_stale_socket_but_never_a_file_or_a_directory() -> Result<()> {
    let dir = SocketDir::new();
    fs::create_dir_all(dir.path())?;
    let path = dir.socket();

    fs::write(&path, "not the agent's")?;
    let said = one_error_line(&agent_at(&path)?)?;
    ensure!(
        said.contains(&path.display().to_string()) && said.contains("not a socket"),
        "{said}"
    );
    ensure!(
        fs::read_to_string(&path)? == "not the agent's",
        "the file changed"
    );

    fs::remove_file(&path)?;
    fs::create_dir(&path)?;
    fs::write(path.join("inside"), "")?;
    let said = one_error_line(&agent_at(&path)?)?;
    ensure!(said.contains("not a socket"), "{said}");
    ensure!(path.join("inside").is_file(), "the directory changed");

    // What a killed agent leaves: a socket nobody listens on. Replaced.
    fs::remove_dir_all(&path)?;
    drop(UnixListener::bind(&path)?);
    let ns = NetNs::new()?;
    let agent = Agent::start_daemon(&ns, &path, &[])?;
    agent.stop()
}

#[test]
fn a_socket_path_too_long_is_one_clear_line_for_the_agent_and_its_clients() -> Result<()> {
    let dir = SocketDir::new();
    let long = dir.path().join("d".repeat(120)).join("agent.sock");
    let long_text = long.to_str().context("path")?;
    let agent = one_error_line(&socktrace_within(
        &["agent", "--socket", long_text],
        TIMEOUT,
    )?)?;
    let ss = one_error_line(&socktrace_within(&["ss", "--agent", long_text], TIMEOUT)?)?;
    for said in [&agent, &ss] {
        ensure!(
            said.contains("at most 107") && !said.contains("No such file"),
            "{said}"
        );
    }
    ensure!(
        !dir.path().exists(),
        "the agent created {}",
        dir.path().display()
    );
    Ok(())
}

#[test]
fn a_malformed_or_oversized_request_is_answered_with_a_refusal() -> Result<()> {
    let ns = NetNs::new()?;
    let dir = SocketDir::new();
    let socket = dir.socket();
    let agent = Agent::start_daemon(&ns, &socket, &["-N", ns.name()])?;
    let oversized = format!(
        "{{\"Overview\":{{\"netns\":[{}]}}}}",
        vec!["1"; 40_000].join(",")
    );
    for (request, expected) in [
        (&b"{\"Sockets\":7}"[..], "malformed request: "),
        (b"not json", "malformed request: "),
        (
            b"{\"Uptime\":{}}",
            "malformed request: unknown variant `Uptime`",
        ),
        (oversized.as_bytes(), "request longer than 65536 bytes"),
    ] {
        let answer = ask_raw(&socket, request)?;
        let refused = answer["Refused"].as_str().unwrap_or_default();
        ensure!(
            refused.starts_with(expected) && !refused.contains('\n'),
            "{:?} answered {answer}",
            String::from_utf8_lossy(&request[..request.len().min(40)])
        );
    }
    // The agent still answers a good request.
    let good = format!("{{\"Overview\":{{\"netns\":[{}]}}}}", ns.inode()?);
    let answer = ask_raw(&socket, good.as_bytes())?;
    ensure!(answer["Overview"].is_object(), "{answer}");
    agent.stop()
}

/// Keeps a process stopped (SIGSTOP) until dropped (SIGCONT).
struct Stopped(u32);

impl Stopped {
    fn new(pid: u32) -> Result<Self> {
        // SAFETY: plain kill(2) on our own child.
        let rc = unsafe { libc::kill(pid as libc::pid_t, libc::SIGSTOP) };
        ensure!(rc == 0, "SIGSTOP: {}", std::io::Error::last_os_error());
        Ok(Stopped(pid))
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe { libc::kill(self.0 as libc::pid_t, libc::SIGCONT) };
    }
}

#[test]
fn clients_of_a_stopped_agent_give_up_with_one_line_that_says_how_to_do_without_it() -> Result<()> {
    let ns = NetNs::new()?;
    let dir = SocketDir::new();
    let socket = dir.socket();
    let socket = socket.to_str().context("path")?;
    let agent = Agent::start_daemon(&ns, dir.socket().as_path(), &[])?;
    let ss = ["ss", "-N", ns.name(), "--agent", socket];
    let top = ["top", "-N", ns.name(), "--agent", socket];
    let served = socktrace_within(&ss, TIMEOUT)?;
    ensure!(served.status.success(), "{served:?}");
    {
        let _stopped = Stopped::new(agent.pid())?;
        for args in [&ss[..], &top[..]] {
            let began = Instant::now();
            let output = socktrace_within(args, TIMEOUT)?;
            let took = began.elapsed();
            let said = one_error_line(&output)?;
            ensure!(
                said.contains("did not answer within 5s") && said.contains("--no-agent"),
                "{said}"
            );
            ensure!(took < Duration::from_secs(8), "gave up after {took:?}");
        }
    }
    agent.stop()
}
