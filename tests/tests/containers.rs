//! Container labels: a client run in a cgroup named as Docker's systemd
//! driver names a container's is shown as `docker:<short id>` beside its
//! pid in the transition stream, in `ss -p` through the agent and in
//! `ss -p` in-process; the test's own process (the server side) is not
//! labelled as that container. IPv4 and IPv6.
use std::net::TcpListener;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use socktrace_integration_tests::{
    Agent, Family, KillOnDrop, NetNs, SocketDir, TIMEOUT, agent_binary,
    cgroup::FakeContainer,
    record::is_state_on_port,
    tcp,
    wait::{self, Poll},
};

/// A container id as Docker makes them (64 hex digits) and the label
/// socktrace gives it (the 12 digits `docker ps` shows).
const ID: &str = "5e1f0c2d9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d";
const LABEL: &str = "docker:5e1f0c2d9a8b";

/// Bash in `ns` that moves itself into `container`, then connects to
/// `listener` and waits for the server to close.
fn client_in_container(
    ns: &NetNs,
    container: &FakeContainer,
    family: Family,
    listener: &TcpListener,
) -> Result<KillOnDrop> {
    let script = format!(
        "echo $$ > {} || exit 3; exec 3<>/dev/tcp/{}/{} || exit 2; read -r -t 60 _ <&3; exec 3<&-",
        container.procs().display(),
        family.loopback(),
        tcp::local_port(listener)?
    );
    let child = ns
        .command("bash")?
        .args(["-c", &script])
        .stdin(Stdio::null())
        .spawn()
        .context("starting the bash client")?;
    Ok(KillOnDrop::new(child))
}

/// `socktrace ss -tnp --json -N NS [VIA] sport|dport = :PORT`, parsed.
fn ss_json(ns: &NetNs, via: &[&str], port_filter: &str, port: u16) -> Result<Vec<Value>> {
    let port = format!(":{port}");
    let output = Command::new(agent_binary())
        .args(["ss", "-tnp", "--json", "-N", ns.name()])
        .args(via)
        .args([port_filter, "=", &port])
        .output()
        .context("running socktrace ss")?;
    ensure!(
        output.status.success(),
        "socktrace ss failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)?
        .lines()
        .map(|line| serde_json::from_str(line).context("JSON line"))
        .collect()
}

/// The one socket `ss` lists for the filter, once it is ESTABLISHED with
/// an owner.
fn established(ns: &NetNs, via: &[&str], port_filter: &str, port: u16) -> Result<Value> {
    wait::until(
        &format!("ss {via:?} {port_filter} :{port} to list one owned ESTABLISHED socket"),
        TIMEOUT,
        || {
            let listed = ss_json(ns, via, port_filter, port)?;
            Ok(match listed.as_slice() {
                [one] if one["state"] == "ESTABLISHED" && one["pid"].is_u64() => {
                    Poll::Ready(one.clone())
                }
                other => Poll::Pending(format!("{other:?}")),
            })
        },
    )
}

fn labels_the_client(family: Family) -> Result<()> {
    let ns = NetNs::new()?;
    let dir = SocketDir::new();
    let daemon = Agent::start_daemon(&ns, &dir.socket(), &[])?;
    let mut trace = Agent::start(&ns, &[])?;
    let container = FakeContainer::new(&format!("docker-{ID}.scope"))?;
    let listener = ns.run(|| tcp::listen(family))?;
    let port = tcp::local_port(&listener)?;
    let mut client = client_in_container(&ns, &container, family, &listener)?;
    let server_side = tcp::accept(&listener, TIMEOUT)?;
    let client_pid = u64::from(client.id());

    let connect = trace.wait_for(
        "the client's CLOSE -> SYN_SENT",
        |record| {
            record["new_state"] == "SYN_SENT"
                && record["dport"].as_u64() == Some(u64::from(port))
                && record["family"] == family.json_name()
        },
        TIMEOUT,
    )?;
    ensure!(connect["pid"].as_u64() == Some(client_pid), "{connect}");
    ensure!(connect["container"] == LABEL, "{connect}");
    // The server side belongs to the test process (its listener's owner),
    // in whatever cgroup the test runs: never the client's container.
    let accepted = trace.wait_for(
        "the server side's SYN_RECV -> ESTABLISHED",
        |record| {
            is_state_on_port(record, family, port)
                && record["old_state"] == "SYN_RECV"
                && record["sport"].as_u64() == Some(u64::from(port))
        },
        TIMEOUT,
    )?;
    ensure!(
        accepted["pid"].as_u64() == Some(u64::from(std::process::id()))
            && accepted["container"] != LABEL,
        "{accepted}"
    );

    let agent_socket = dir.socket();
    let agent_socket = agent_socket.to_str().context("socket path")?;
    for via in [vec!["--agent", agent_socket], vec!["--no-agent"]] {
        let client_socket = established(&ns, &via, "dport", port)?;
        ensure!(
            client_socket["pid"].as_u64() == Some(client_pid)
                && client_socket["comm"] == "bash"
                && client_socket["container"] == LABEL,
            "{via:?}: {client_socket}"
        );
        let server_socket = established(&ns, &via, "sport", port)?;
        ensure!(
            server_socket["pid"].as_u64() == Some(u64::from(std::process::id()))
                && server_socket["container"] != LABEL,
            "{via:?}: {server_socket}"
        );
    }
    let human = Command::new(agent_binary())
        .args(["ss", "-tnp", "-N", ns.name(), "--agent", agent_socket])
        .args(["dport", "=", &format!(":{port}")])
        .output()
        .context("running socktrace ss")?;
    let human = String::from_utf8(human.stdout)?;
    ensure!(
        human.contains(&format!(
            "users:((\"bash\",pid={client_pid})) container:{LABEL}"
        )),
        "{human}"
    );

    drop(server_side);
    ensure!(client.wait_exit(TIMEOUT)?.success(), "the client failed");
    trace.stop()?;
    daemon.stop()
}

#[test]
fn a_client_in_a_container_is_labelled_ipv4() -> Result<()> {
    labels_the_client(Family::V4)
}

#[test]
fn a_client_in_a_container_is_labelled_ipv6() -> Result<()> {
    labels_the_client(Family::V6)
}
