//! `--list-existing`: sockets that exist before the agent starts are listed
//! from sock_diag with their owners, and those owners stay with the sockets
//! for their later transitions.
use std::net::SocketAddr;
use std::process::Stdio;

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use socktrace_integration_tests::{
    Agent, Family, KillOnDrop, NetNs, SocketRecord, TIMEOUT, TaskContext, Transition, record, tcp,
    wait,
};

#[test]
fn ipv4_existing_sockets_are_listed_with_owners() -> Result<()> {
    existing_sockets(Family::V4)
}

#[test]
fn ipv6_existing_sockets_are_listed_with_owners() -> Result<()> {
    existing_sockets(Family::V6)
}

fn existing_sockets(family: Family) -> Result<()> {
    let me = std::process::id();
    let ns = NetNs::new()?;

    // Before the agent starts:
    // - a listener, and an established pair of this process;
    // - a connection whose client closed first, so that its client side sits
    //   in TIME-WAIT;
    // - a connection from a bash process, which closes its side when its
    //   stdin closes.
    let (listener, client, server, (closed_client, closed_server)) = ns.run(|| -> Result<_> {
        let listener = tcp::listen(family)?;
        let (client, server) = tcp::connect_pair(&listener)?;
        let closing = tcp::connect_pair(&listener)?;
        Ok((listener, client, server, closing))
    })?;
    let laddr = listener.local_addr()?;
    let caddr = client.local_addr()?;
    let twaddr = closed_client.local_addr()?;
    drop(closed_client);
    let mut closed_server = closed_server;
    tcp::read_to_eof(&mut closed_server, TIMEOUT)?;
    drop(closed_server);
    wait_for_time_wait(&ns, twaddr, laddr)?;

    let script = format!(
        "exec 3<>/dev/tcp/{}/{} || exit 2; read -r _; exec 3<&-",
        laddr.ip(),
        laddr.port()
    );
    let mut bash = KillOnDrop::new(
        ns.command("bash")?
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .spawn()
            .context("starting bash")?,
    );
    let bash_pid = bash.id();
    let bash_server = tcp::accept(&listener, TIMEOUT)?;
    let bash_addr = bash_server.peer_addr()?;

    let mut agent = Agent::start(&ns, &["--list-existing"])?;

    let listening = expect_socket(&mut agent, "LISTEN", family, laddr, None)?;
    let seeded_client = expect_socket(&mut agent, "ESTABLISHED", family, caddr, Some(laddr))?;
    let seeded_server = expect_socket(&mut agent, "ESTABLISHED", family, laddr, Some(caddr))?;
    let time_wait = expect_socket(&mut agent, "TIME_WAIT", family, twaddr, Some(laddr))?;
    let seeded_bash = expect_socket(&mut agent, "ESTABLISHED", family, bash_addr, Some(laddr))?;
    let seeded_bash_server =
        expect_socket(&mut agent, "ESTABLISHED", family, laddr, Some(bash_addr))?;
    for (name, socket, pid) in [
        ("listener", &listening, me),
        ("established client", &seeded_client, me),
        ("established server", &seeded_server, me),
        ("server of bash's connection", &seeded_bash_server, me),
        ("bash's client", &seeded_bash, bash_pid),
    ] {
        ensure!(
            socket.pid == Some(pid),
            "{name} should be owned by pid {pid}: {}",
            socket.raw
        );
        ensure!(
            socket.comm.is_some(),
            "{name} has an owner but no comm: {}",
            socket.raw
        );
    }
    ensure!(
        seeded_bash.comm.as_deref() == Some("bash"),
        "bash's client should have comm \"bash\": {}",
        seeded_bash.raw
    );
    // A timewait socket has no owner: its pid may be null. Each socket has
    // its own id.
    let mut ids = [
        listening.id,
        seeded_client.id,
        seeded_server.id,
        time_wait.id,
        seeded_bash.id,
        seeded_bash_server.id,
    ];
    ids.sort_unstable();
    ensure!(
        ids.windows(2).all(|pair| pair[0] != pair[1]),
        "seeded sockets share ids:\n{}\n{}\n{}\n{}\n{}\n{}",
        listening.raw,
        seeded_client.raw,
        seeded_server.raw,
        time_wait.raw,
        seeded_bash.raw,
        seeded_bash_server.raw
    );

    // This process closes its seeded client: the client's next transition,
    // from the close syscall, carries this process.
    drop(client);
    Expected {
        name: "seeded client",
        local: caddr,
        remote: laddr,
        old: "ESTABLISHED",
        new: "FIN_WAIT1",
        pid: me,
        context: Some(TaskContext::Process),
        seeded: &seeded_client,
    }
    .check(&mut agent, family)?;
    // The FIN reaches the seeded server in softirq: the agent must name the
    // owner it learnt from seeding, not the interrupted task.
    Expected {
        name: "seeded server",
        local: laddr,
        remote: caddr,
        old: "ESTABLISHED",
        new: "CLOSE_WAIT",
        pid: me,
        context: Some(TaskContext::Softirq),
        seeded: &seeded_server,
    }
    .check(&mut agent, family)?;

    // bash closes its side. Its FIN reaches this process's seeded server in
    // softirq while bash is the current task: only the seeded owner can say
    // this process.
    drop(bash.stdin.take());
    Expected {
        name: "bash's client",
        local: bash_addr,
        remote: laddr,
        old: "ESTABLISHED",
        new: "FIN_WAIT1",
        pid: bash_pid,
        context: Some(TaskContext::Process),
        seeded: &seeded_bash,
    }
    .check(&mut agent, family)?;
    Expected {
        name: "server of bash's connection",
        local: laddr,
        remote: bash_addr,
        old: "ESTABLISHED",
        new: "CLOSE_WAIT",
        pid: me,
        context: Some(TaskContext::Softirq),
        seeded: &seeded_bash_server,
    }
    .check(&mut agent, family)?;
    let status = bash.wait_exit(TIMEOUT)?;
    ensure!(status.success(), "bash failed: {status}");

    drop((server, bash_server, listener));
    agent.stop()
}

/// Polls `ss` in the namespace until `local`->`peer` is in TIME-WAIT.
fn wait_for_time_wait(ns: &NetNs, local: SocketAddr, peer: SocketAddr) -> Result<()> {
    let (local, peer) = (local.to_string(), peer.to_string());
    wait::until(
        &format!("{local} -> {peer} in TIME-WAIT (ss)"),
        TIMEOUT,
        || {
            let output = ns.exec(&["ss", "-tan", "state", "time-wait"])?;
            let found = output.lines().any(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                fields.contains(&local.as_str()) && fields.contains(&peer.as_str())
            });
            Ok(if found {
                wait::Poll::Ready(())
            } else {
                wait::Poll::Pending(output)
            })
        },
    )
}

/// Waits for the `socket` record in `state` with this local address and
/// this peer (`None`: unconnected, the unspecified address and port 0).
fn expect_socket(
    agent: &mut Agent<'_>,
    state: &str,
    family: Family,
    local: SocketAddr,
    peer: Option<SocketAddr>,
) -> Result<SocketRecord> {
    let peer = peer.unwrap_or(SocketAddr::new(family.unspecified(), 0));
    let what = format!("a {state} socket record {local} -> {peer}");
    let found = agent.wait_for(
        &what,
        |value| {
            record::is_type(value, "socket")
                && value.get("state").and_then(Value::as_str) == Some(state)
                && record::port(value, "sport") == Some(u64::from(local.port()))
                && record::port(value, "dport") == Some(u64::from(peer.port()))
        },
        TIMEOUT,
    )?;
    let socket = SocketRecord::from_value(&found)?;
    ensure!(
        socket.family == family,
        "{what}: wrong family: {}",
        socket.raw
    );
    ensure!(
        socket.saddr == local.ip() && socket.daddr == peer.ip(),
        "{what}: wrong addresses: {}",
        socket.raw
    );
    Ok(socket)
}

/// The first transition a seeded socket should report after start-up.
struct Expected<'a> {
    name: &'a str,
    local: SocketAddr,
    remote: SocketAddr,
    old: &'a str,
    new: &'a str,
    pid: u32,
    context: Option<TaskContext>,
    seeded: &'a SocketRecord,
}

impl Expected<'_> {
    /// Waits for the socket's first transition record and checks it.
    fn check(&self, agent: &mut Agent<'_>, family: Family) -> Result<Transition> {
        let (sport, dport) = (self.local.port(), self.remote.port());
        let found = agent.wait_for(
            &format!("the {} socket's first transition", self.name),
            |value| {
                record::is_type(value, "state")
                    && record::has_family(value, family)
                    && record::port(value, "sport") == Some(u64::from(sport))
                    && record::port(value, "dport") == Some(u64::from(dport))
            },
            TIMEOUT,
        )?;
        let t = Transition::from_value(&found)?;
        let name = self.name;
        ensure!(
            t.is(self.old, self.new),
            "the {name} socket's next transition should be {}->{}: {}",
            self.old,
            self.new,
            t.raw
        );
        ensure!(
            t.saddr == self.local.ip() && t.daddr == self.remote.ip(),
            "the {name} socket's {}: wrong addresses: {}",
            t.arrow(),
            t.raw
        );
        if let Some(context) = self.context {
            ensure!(
                t.context == context,
                "the {name} socket's {} should run in {context:?}: {}",
                t.arrow(),
                t.raw
            );
        }
        ensure!(
            t.pid == Some(self.pid) && t.comm.is_some(),
            "the {name} socket's {} should carry its seeded owner, pid {}: {}",
            t.arrow(),
            self.pid,
            t.raw
        );
        ensure!(
            t.id == self.seeded.id,
            "the {name} socket's id changed from {} (seeded) to {}: {}",
            self.seeded.id,
            t.id,
            t.raw
        );
        Ok(t)
    }
}
