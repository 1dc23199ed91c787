//! Sockets in network namespaces other than the agent's: each record names
//! its namespace, identical 4-tuples in two namespaces are two sockets, and
//! what sock_diag decides (seeding, half-open expiry, TIME-WAIT ends) is
//! listed inside the socket's own namespace. A namespace deleted under the
//! agent ends what it held by teardown.
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use socktrace_integration_tests::{
    Agent, Family, Handshake, NetNs, SocketRecord, TIMEOUT, TimeWait, Transition, record, tcp,
    wait::{self, Poll},
};

/// Long enough for a connect with one SYN retry to time out and its
/// half-open server side to expire, with a snapshot on top.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// A namespace deleted is noticed within two scans, five seconds apart at
/// most, after the next listing.
const TEARDOWN_TIMEOUT: Duration = Duration::from_secs(30);

fn netns_of(record: &Value) -> Option<u64> {
    record.get("netns").and_then(Value::as_u64)
}

#[test]
fn the_same_four_tuple_in_two_namespaces_is_two_sockets() -> Result<()> {
    let (here, there) = (NetNs::new()?, NetNs::new()?);
    let listener_here = here.run(|| tcp::listen(Family::V4))?;
    let port = tcp::local_port(&listener_here)?;
    let listener_there =
        there.run(|| std::net::TcpListener::bind(SocketAddr::new(Family::V4.loopback(), port)))?;
    let inodes = [here.inode()?, there.inode()?];
    ensure!(inodes[0] != inodes[1], "two namespaces, one inode");
    let mut agent = Agent::start_following_all(
        &here,
        "trace",
        &[
            "--list-existing",
            "--netns",
            &inodes[0].to_string(),
            "--netns",
            &inodes[1].to_string(),
        ],
    )?;

    // Seeded: both listeners, each listed inside its own namespace.
    for inode in inodes {
        let seeded = agent.wait_for(
            &format!("the listener on port {port} in namespace {inode}"),
            |r| {
                record::is_type(r, "socket")
                    && record::port(r, "sport") == Some(port.into())
                    && netns_of(r) == Some(inode.into())
            },
            TIMEOUT,
        )?;
        let seeded = SocketRecord::from_value(&seeded)?;
        ensure!(seeded.state == "LISTEN", "{}", seeded.raw);
    }

    // The same client port towards the same server in both.
    let server = SocketAddr::new(Family::V4.loopback(), port);
    let first =
        here.run(|| tcp::connect_from(SocketAddr::new(Family::V4.loopback(), 0), server))?;
    let client = first.local_addr()?;
    let second = there.run(|| tcp::connect_from(client, server))?;
    ensure!(second.local_addr()? == client, "same 4-tuple");
    let _accepted = [
        tcp::accept(&listener_here, TIMEOUT)?,
        tcp::accept(&listener_there, TIMEOUT)?,
    ];
    let mut ids = Vec::new();
    for inode in inodes {
        let established = agent.wait_for(
            &format!("{client} established in namespace {inode}"),
            |r| {
                record::is_transition(r, "SYN_SENT", "ESTABLISHED", client.port(), port)
                    && netns_of(r) == Some(inode.into())
            },
            TIMEOUT,
        )?;
        let established = Transition::from_value(&established)?;
        ensure!(
            established.pid == Some(std::process::id()),
            "{}",
            established.raw
        );
        ids.push(established.id);
    }
    ensure!(ids[0] != ids[1], "one socket for two namespaces: {ids:?}");
    agent.stop()
}

#[test]
fn a_half_open_connection_in_another_namespace_expires_there() -> Result<()> {
    let home = NetNs::new()?;
    let away = NetNs::new()?;
    away.sysctl("net.ipv4.tcp_syn_retries", "1")?;
    away.sysctl("net.ipv4.tcp_synack_retries", "1")?;
    let listener = away.run(|| tcp::listen(Family::V4))?;
    let port = tcp::local_port(&listener)?;
    away.exec(&[
        "iptables",
        "-A",
        "INPUT",
        "-p",
        "tcp",
        "--sport",
        &port.to_string(),
        "--tcp-flags",
        "SYN,ACK",
        "SYN,ACK",
        "-j",
        "DROP",
    ])?;
    let inode = away.inode()?;
    let mut agent = Agent::start_following_all(
        &home,
        "handshakes",
        &["-N", away.name(), "--port", &port.to_string()],
    )?;

    let server = SocketAddr::new(Family::V4.loopback(), port);
    let error = away
        .run(|| std::net::TcpStream::connect(server))
        .err()
        .and_then(|e| e.raw_os_error());
    ensure!(
        error == Some(libc::ETIMEDOUT),
        "connect ended with {error:?}"
    );

    for (side, outcome) in [("client", "timeout"), ("server", "expired")] {
        let key = if side == "client" { "dport" } else { "sport" };
        let found = agent.wait_for(
            &format!("the {side} side ending {outcome} in namespace {inode}"),
            |r| {
                record::is_type(r, "handshake")
                    && r.get("side").and_then(Value::as_str) == Some(side)
                    && record::port(r, key) == Some(port.into())
            },
            HANDSHAKE_TIMEOUT,
        )?;
        let handshake = Handshake::from_value(&found)?;
        ensure!(handshake.outcome == outcome, "{}", handshake.raw);
        ensure!(handshake.netns == inode, "{}", handshake.raw);
        ensure!(handshake.retransmits > 0, "{}", handshake.raw);
    }
    agent.stop()
}

#[test]
fn time_wait_in_another_namespace_ends_reused_with_its_lifetime() -> Result<()> {
    let home = NetNs::new()?;
    let away = NetNs::new()?;
    let inode = away.inode()?;
    let mut agent = Agent::start_following_all(
        &home,
        "timewait",
        &["--entries", "--netns", &inode.to_string()],
    )?;
    let listener = away.run(|| tcp::listen(Family::V6))?;
    let server = listener.local_addr()?;
    let client =
        away.run(|| tcp::connect_from(SocketAddr::new(Family::V6.loopback(), 0), server))?;
    let pinned = client.local_addr()?;
    let mut accepted = tcp::accept(&listener, TIMEOUT)?;
    drop(client);
    tcp::read_to_eof(&mut accepted, TIMEOUT)?;
    drop(accepted);
    let entered = agent.wait_for(
        "the TIME-WAIT entry, confirmed by a listing inside the other namespace",
        |r| {
            record::is_type(r, "time_wait_entered")
                && record::port(r, "sport") == Some(pinned.port().into())
        },
        TIMEOUT,
    )?;
    ensure!(netns_of(&entered) == Some(inode.into()), "{entered}");

    // A bound port takes over a timewait socket that saw timestamps.
    let _again = wait::until("a reconnect from the pinned port", TIMEOUT, || {
        match away.run(|| tcp::connect_from(pinned, server)) {
            Ok(stream) => Ok(Poll::Ready(stream)),
            Err(error) => Ok(Poll::Pending(format!("{error}"))),
        }
    })?;
    let found = agent.wait_for(
        "the reused TIME-WAIT socket's end",
        |r| {
            record::is_type(r, "time_wait")
                && record::port(r, "sport") == Some(pinned.port().into())
        },
        TIMEOUT,
    )?;
    let ended = TimeWait::from_value(&found)?;
    ensure!(ended.end == "reused", "{}", ended.raw);
    ensure!(ended.netns == inode, "{}", ended.raw);
    let lifetime = ended.lifetime_ms.context("the entry was traced")?;
    ensure!(lifetime > 0.0 && lifetime < 15_000.0, "{}", ended.raw);
    agent.stop()
}

#[test]
fn a_namespace_deleted_ends_its_time_wait_sockets_by_teardown() -> Result<()> {
    let home = NetNs::new()?;
    let doomed = NetNs::new()?;
    let inode = doomed.inode()?;
    let mut agent = Agent::start_following_all(
        &home,
        "timewait",
        &[
            "--entries",
            "--summary-every",
            "1",
            "--netns",
            &home.inode()?.to_string(),
            "--netns",
            &inode.to_string(),
        ],
    )?;
    let listener = doomed.run(|| tcp::listen(Family::V4))?;
    let port = tcp::local_port(&listener)?;
    let (client, mut accepted) = doomed.run(|| tcp::connect_pair(&listener))?;
    let client_port = client.local_addr()?.port();
    drop(client);
    tcp::read_to_eof(&mut accepted, TIMEOUT)?;
    drop(accepted);
    drop(listener);
    agent.wait_for(
        "the TIME-WAIT entry in the namespace about to go",
        |r| {
            record::is_type(r, "time_wait_entered")
                && record::port(r, "sport") == Some(client_port.into())
                && netns_of(r) == Some(inode.into())
        },
        TIMEOUT,
    )?;

    // Nothing holds the namespace now but its name: deleting it destroys
    // it, and the kernel purges its timewait socket without an event.
    drop(doomed);
    let found = agent.wait_for(
        "the TIME-WAIT socket ended by its namespace's teardown",
        |r| record::is_type(r, "time_wait") && record::port(r, "dport") == Some(port.into()),
        TEARDOWN_TIMEOUT,
    )?;
    let ended = TimeWait::from_value(&found)?;
    ensure!(ended.end == "teardown", "{}", ended.raw);
    ensure!(ended.netns == inode, "{}", ended.raw);
    ensure!(
        ended.lifetime_ms.is_some_and(|ms| ms < 60_000.0),
        "{}",
        ended.raw
    );
    agent.wait_for(
        "a summary with nothing left of the namespace",
        |r| {
            record::is_type(r, "time_wait_summary")
                && r.get("time_wait").and_then(Value::as_u64) == Some(0)
                && r.pointer("/ends/teardown").and_then(Value::as_u64) == Some(1)
        },
        TIMEOUT,
    )?;
    agent.stop()
}
