//! Without the privileges to load BPF the agent says exactly what is
//! missing in one line and exits non-zero: no backtrace, no partial start.
//! With what the README lists it runs as another user, and says what it
//! cannot see for want of more.
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output, Stdio};

use anyhow::{Context, Result, ensure};
use socktrace_integration_tests::{
    Agent, Family, KillOnDrop, NetNs, TIMEOUT, agent_binary, record, require_root, tcp,
};

/// Where `cargo xtask setup` mounts tracefs.
const TRACEFS: &str = "/sys/kernel/tracing";

/// Runs the agent as nobody with these capabilities (`+bpf,+perfmon`).
fn setpriv_args(capabilities: &str) -> Vec<String> {
    vec![
        "--reuid=65534".to_owned(),
        "--regid=65534".to_owned(),
        "--clear-groups".to_owned(),
        format!("--inh-caps={capabilities}"),
        format!("--ambient-caps={capabilities}"),
    ]
}

/// tracefs's root in the mode it has on a fresh mount (0700, root's) while
/// it lives, then back in the mode it had.
struct TracefsMode(u32);

impl TracefsMode {
    fn closed() -> Result<Self> {
        let mode = std::fs::metadata(TRACEFS)
            .with_context(|| format!("{TRACEFS}: is tracefs mounted (cargo xtask setup)?"))?
            .permissions()
            .mode()
            & 0o7777;
        std::fs::set_permissions(TRACEFS, std::fs::Permissions::from_mode(0o700))?;
        Ok(TracefsMode(mode))
    }
}

impl Drop for TracefsMode {
    fn drop(&mut self) {
        if let Err(error) =
            std::fs::set_permissions(TRACEFS, std::fs::Permissions::from_mode(self.0))
        {
            eprintln!(
                "warning: could not give {TRACEFS} back its mode {:o}: {error}",
                self.0
            );
        }
    }
}

#[test]
fn an_unprivileged_user_gets_one_clear_line_and_exit_1() {
    require_root();
    let output = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(agent_binary())
        .args(["trace", "--json"])
        .output()
        .expect("setpriv (util-linux) runs the agent as nobody");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(output.stdout.is_empty(), "nothing on stdout");
    let lines: Vec<_> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(lines[0].contains("needs root"), "{stderr}");
    assert!(
        lines[0].contains("CAP_BPF") && lines[0].contains("CAP_PERFMON"),
        "{stderr}"
    );
}

/// A user with CAP_BPF and CAP_PERFMON, the README's minimum before, was
/// told "tracefs is not mounted" when it is mounted but mode 0700 (as it is
/// on most hosts): the error names the path, its mode and what to do.
#[test]
fn a_closed_tracefs_is_named_not_called_unmounted() -> Result<()> {
    require_root();
    let _mode = TracefsMode::closed()?;
    let output: Output = Command::new("setpriv")
        .args(setpriv_args("+bpf,+perfmon"))
        .arg(agent_binary())
        .args(["trace", "--json"])
        .output()
        .context("setpriv (util-linux) runs the agent as nobody")?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        output.status.code() == Some(1),
        "{}: {stderr}",
        output.status
    );
    ensure!(output.stdout.is_empty(), "nothing on stdout");
    let lines: Vec<_> = stderr.lines().collect();
    ensure!(lines.len() == 1, "one line: {stderr}");
    ensure!(
        lines[0].starts_with(&format!(
            "socktrace: error: {TRACEFS} is not readable by this user (uid 65534; it is mode 0700, owner uid 0)"
        )),
        "{stderr}"
    );
    ensure!(lines[0].contains("CAP_DAC_READ_SEARCH"), "{stderr}");
    ensure!(!lines[0].contains("not mounted"), "{stderr}");
    Ok(())
}

/// With CAP_BPF, CAP_PERFMON and CAP_DAC_READ_SEARCH (what the README
/// lists) a user traces; the owners of root's sockets it cannot read are
/// not silently missing: a warning names CAP_SYS_PTRACE.
#[test]
fn a_user_with_the_listed_capabilities_traces_and_is_told_what_it_cannot_see() -> Result<()> {
    require_root();
    let _mode = TracefsMode::closed()?;
    let ns = NetNs::new()?;
    let listener = ns.run(|| tcp::listen(Family::V4))?;
    let port = tcp::local_port(&listener)?;
    let wrapper = ["setpriv".to_owned()]
        .into_iter()
        .chain(setpriv_args("+bpf,+perfmon,+dac_read_search"))
        .collect::<Vec<_>>();
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let inode = ns.inode()?.to_string();
    let mut agent = Agent::start_wrapped(
        &ns,
        &wrapper,
        "trace",
        &["--list-existing", "--netns", &inode],
    )?;
    let listed = agent.wait_for(
        "our listener among the existing sockets",
        |r| record::is_type(r, "socket") && r["sport"].as_u64() == Some(u64::from(port)),
        TIMEOUT,
    )?;
    ensure!(
        listed["pid"].is_null(),
        "root's process, unreadable: {listed}"
    );
    agent.wait_for_stderr(
        "a warning naming what owners take",
        |line| line.contains("/proc/PID/fd needs CAP_DAC_READ_SEARCH and CAP_SYS_PTRACE"),
        TIMEOUT,
    )?;
    let (client, _server) = ns.run(|| tcp::connect_pair(&listener))?;
    let local = client.local_addr()?.port();
    agent.wait_for(
        "our connect, traced",
        |r| {
            record::is_type(r, "state")
                && r["sport"].as_u64() == Some(u64::from(local))
                && r["new_state"] == "ESTABLISHED"
        },
        TIMEOUT,
    )?;
    agent.stop()
}

/// A user without CAP_SYS_ADMIN following a namespace it cannot enter was
/// told why three times in one line ("... Operation not permitted (os
/// error 1) (setns needs CAP_SYS_ADMIN): cannot enter ...: Operation not
/// permitted (os error 1)"): each cause is said once, in the warning and in
/// the error.
#[test]
fn a_namespace_it_cannot_enter_is_explained_once() -> Result<()> {
    require_root();
    let ns = NetNs::new()?;
    let inode = ns.inode()?.to_string();
    let child = Command::new("setpriv")
        .args(setpriv_args("+bpf,+perfmon,+dac_read_search"))
        .arg(agent_binary())
        .args(["trace", "--json", "--netns", &inode])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("setpriv (util-linux) runs the agent as nobody")?;
    let mut agent = KillOnDrop::new(child);
    let status = agent.wait_exit(TIMEOUT)?;
    let mut stdout = String::new();
    let mut stderr = String::new();
    agent
        .stdout
        .take()
        .context("stdout")?
        .read_to_string(&mut stdout)?;
    agent
        .stderr
        .take()
        .context("stderr")?
        .read_to_string(&mut stderr)?;
    ensure!(status.code() == Some(1), "{status}: {stderr}");
    ensure!(stdout.is_empty(), "nothing on stdout: {stdout}");
    let error = stderr
        .lines()
        .find(|line| line.starts_with("socktrace: error: "))
        .with_context(|| format!("no error line: {stderr}"))?;
    let warning = stderr
        .lines()
        .find(|line| line.contains("WARN"))
        .with_context(|| format!("no warning: {stderr}"))?;
    for line in [error, warning] {
        for cause in [
            "Operation not permitted",
            "setns needs CAP_SYS_ADMIN",
            &inode,
        ] {
            ensure!(
                line.matches(cause).count() == 1,
                "`{cause}` once in: {line}"
            );
        }
    }
    Ok(())
}
