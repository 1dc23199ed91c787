//! `socktrace top` in an 80x24 tmux pane, fed by the agent and by its own
//! in-process tracer: the per-state counts of a namespace holding known
//! sockets show on screen, and `q` quits.
use std::net::TcpStream;
use std::process::Command;

use anyhow::{Context, Result, ensure};
use socktrace_integration_tests::{
    Agent, Family, NetNs, SocketDir, TIMEOUT, agent_binary, tcp,
    wait::{self, Poll},
};

/// A detached tmux session, killed on drop.
struct Tmux(String);

impl Tmux {
    fn start(name: String, command: &str) -> Result<Self> {
        let status = Command::new("tmux")
            .args(["new-session", "-d", "-s", &name, "-x", "80", "-y", "24"])
            .arg(command)
            .status()
            .context("running tmux")?;
        ensure!(status.success(), "tmux new-session failed: {status}");
        Ok(Tmux(name))
    }

    fn screen(&self) -> Result<String> {
        let output = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.0])
            .output()
            .context("tmux capture-pane")?;
        ensure!(output.status.success(), "the tmux session is gone");
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    fn keys(&self, keys: &str) -> Result<()> {
        let status = Command::new("tmux")
            .args(["send-keys", "-t", &self.0, keys])
            .status()?;
        ensure!(status.success(), "tmux send-keys failed");
        Ok(())
    }

    fn alive(&self) -> bool {
        Command::new("tmux")
            .args(["has-session", "-t", &self.0])
            .output()
            .is_ok_and(|o| o.status.success())
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .output();
    }
}

/// The count printed after `state` at the start of a screen line.
fn count_on_screen(screen: &str, state: &str) -> Option<u64> {
    screen.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next() == Some(state)).then(|| words.next()?.parse().ok())?
    })
}

/// Runs top with `args` in tmux and waits for ESTAB, LISTEN and TIME-WAIT
/// to show the scene's counts, then quits it with `q`.
fn shows_the_counts(ns: &NetNs, args: &str, session: String) -> Result<()> {
    let command = format!("{} top -N {} {args}", agent_binary().display(), ns.name());
    let tmux = Tmux::start(session, &command)?;
    let expected = [("ESTAB", 6), ("LISTEN", 1), ("TIME-WAIT", 2)];
    wait::until(
        &format!("`{command}` to show {expected:?}"),
        TIMEOUT,
        || {
            let screen = tmux.screen()?;
            let all_there = expected
                .iter()
                .all(|&(state, count)| count_on_screen(&screen, state) == Some(count));
            Ok(if all_there {
                Poll::Ready(())
            } else {
                Poll::Pending(screen)
            })
        },
    )?;
    let screen = tmux.screen()?;
    ensure!(screen.contains("127.0.0.1"), "no remote table:\n{screen}");
    tmux.keys("q")?;
    wait::until("top to quit on q", TIMEOUT, || {
        Ok(if tmux.alive() {
            Poll::Pending("still running".into())
        } else {
            Poll::Ready(())
        })
    })
}

#[test]
fn top_shows_the_namespace_counts_in_80x24_and_quits_on_q() -> Result<()> {
    let ns = NetNs::new()?;
    let dir = SocketDir::new();
    let agent = Agent::start_daemon(&ns, &dir.socket(), &[])?;
    let listener = ns.run(|| tcp::listen(Family::V4))?;
    let mut held: Vec<TcpStream> = Vec::new();
    for _ in 0..3 {
        let (client, server) = ns.run(|| tcp::connect_pair(&listener))?;
        held.extend([client, server]);
    }
    for _ in 0..2 {
        let (client, mut server) = ns.run(|| tcp::connect_pair(&listener))?;
        drop(client);
        tcp::read_to_eof(&mut server, TIMEOUT)?;
    }
    let socket = dir.socket();
    let socket = socket.to_str().context("path")?;
    let pid = std::process::id();
    shows_the_counts(
        &ns,
        &format!("--agent {socket}"),
        format!("st-top-agent-{pid}"),
    )?;
    shows_the_counts(&ns, "--no-agent", format!("st-top-inproc-{pid}"))?;
    agent.stop()
}
