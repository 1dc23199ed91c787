//! Helpers for socktrace's privileged integration tests.
//!
//! These tests drive real TCP inside per-test network namespaces and check
//! what the real agent (with its real eBPF program) reports. They need root
//! and a built agent, whose path `cargo xtask test` passes in
//! `SOCKTRACE_BIN`.
//!
//! - [`NetNs`]: a throw-away network namespace; run code or commands in it.
//! - [`Agent`]: the agent running inside a namespace, its JSON records and
//!   waits on them with deadlines.
//! - [`record`]: strict parsing of the agent's `state`, `socket`,
//!   `handshake`, `time_wait` and `close_wait` records.
//! - [`tcp`]: small blocking-TCP helpers (listen, connect, accept, read to EOF).
//! - [`wait`]: polling with a deadline.
//! - [`KillOnDrop`]: a helper process that does not outlive its test.
//! - [`SocketDir`]: where a test's agent puts its Unix socket.
//! - [`cgroup::FakeContainer`]: a cgroup named like a container's.
//! - [`churn::Churn`]: connection churn in a namespace.
//! - [`agent_socket`]: raw requests to the agent, clients that never read.
//! - [`process_usage`]: a process's CPU time and resident memory.
//! - [`replay::Recorded`]: a view run live with `--record`, whose replay
//!   must print the same records.
//! - [`run_checked`]: a command run to completion, its stderr in the error.

pub mod agent;
pub mod agent_socket;
pub mod cgroup;
pub mod child;
pub mod churn;
pub mod http;
pub mod netns;
pub mod process_usage;
pub mod record;
pub mod replay;
pub mod socket_dir;
pub mod tcp;
pub mod wait;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

pub use agent::Agent;
pub use child::KillOnDrop;
pub use netns::NetNs;
pub use record::{CloseWait, Handshake, SocketRecord, TaskContext, TimeWait, Transition};
pub use socket_dir::SocketDir;
pub use tcp::Family;

/// How long to wait for something that should happen promptly (a record, a
/// socket state) before failing the test.
pub const TIMEOUT: Duration = Duration::from_secs(15);

/// Panics unless the tests run as root: they create network namespaces and
/// load eBPF programs. Never pass silently without the privileges.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert!(
        euid == 0,
        "socktrace's integration tests must run as root (euid is {euid}): they create \
         network namespaces and load eBPF programs; run these tests through `cargo xtask test`"
    );
}

/// The agent binary named by `SOCKTRACE_BIN`; panics when it is unset or is
/// not a file.
pub fn agent_binary() -> PathBuf {
    let Some(path) = std::env::var_os("SOCKTRACE_BIN") else {
        panic!(
            "SOCKTRACE_BIN is not set: run these tests through `cargo xtask test` \
             (it builds the agent and passes its path)"
        );
    };
    let path = PathBuf::from(path);
    assert!(
        path.is_file(),
        "SOCKTRACE_BIN={} is not a file: run these tests through `cargo xtask test`",
        path.display()
    );
    path
}

/// Runs `command` to completion; its stdout, or an error with its stderr.
pub fn run_checked(command: &mut Command) -> Result<String> {
    let shown = format!("{command:?}");
    let output = command
        .output()
        .with_context(|| format!("cannot run {shown}"))?;
    if !output.status.success() {
        bail!(
            "{shown} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    String::from_utf8(output.stdout).with_context(|| format!("{shown} printed non-UTF-8"))
}
