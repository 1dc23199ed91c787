//! `socktrace handshakes` against real handshakes that do not complete,
//! reproduced with iptables inside a fresh namespace (the field recipes in
//! PLATFORM.md), checked against the kernel's own counters.
//!
//! Every namespace shortens its SYN retries (`tcp_syn_retries=1`: the
//! kernel gives up after about 3 s) so that timeouts are quick; the
//! assertions take the retransmit count from the kernel, not from a
//! constant.
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;
use socktrace_integration_tests::{
    Agent, Family, Handshake, NetNs, TIMEOUT, record, replay::Recorded, tcp,
};

/// Longer than the slowest handshake these tests provoke (about 3 s of
/// SYN retries, then up to a second for the next request socket snapshot).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

#[test]
fn syn_dropped_ipv4_times_out_after_the_kernels_retransmits() -> Result<()> {
    syn_dropped_times_out(Family::V4)
}

#[test]
fn syn_dropped_ipv6_times_out_after_the_kernels_retransmits() -> Result<()> {
    syn_dropped_times_out(Family::V6)
}

fn syn_dropped_times_out(family: Family) -> Result<()> {
    let ns = quick_namespace()?;
    let port = tcp::unused_port(&ns, family)?;
    ns.firewall(
        family,
        "-A",
        &format!("INPUT -p tcp --dport {port} -j DROP"),
    )?;
    let mut agent = Recorded::start(&ns, "handshakes", &["--port", &port.to_string()])?;
    let retrans_before = ns.tcp_ext("TCPSynRetrans")?;

    let error = connect_error(&ns, SocketAddr::new(family.loopback(), port))?;
    ensure!(
        error == libc::ETIMEDOUT,
        "connect failed with errno {error}"
    );

    let handshake = wait_handshake(&mut agent, "client", "timeout", port)?;
    let kernel_retransmits = ns.tcp_ext("TCPSynRetrans")? - retrans_before;
    ensure!(kernel_retransmits > 0, "the kernel retransmitted no SYN");
    ensure!(
        u64::from(handshake.retransmits) == kernel_retransmits,
        "socktrace counted {} SYN retransmits, the kernel {kernel_retransmits}: {}",
        handshake.retransmits,
        handshake.raw
    );
    ensure!(
        handshake.error.as_deref() == Some("ETIMEDOUT"),
        "{}",
        handshake.raw
    );
    ensure!(handshake.family == family && handshake.daddr == family.loopback());
    ensure!(
        handshake.pid == Some(std::process::id()),
        "{}",
        handshake.raw
    );
    let times = handshake
        .retransmit_times_ms
        .clone()
        .context("no retransmit times")?;
    ensure!(
        times.len() as u32 == handshake.retransmits,
        "{}",
        handshake.raw
    );
    expect_retransmit_schedule(&times, &handshake)?;
    let duration = handshake.duration_ms.context("no duration")?;
    ensure!(
        duration >= *times.last().unwrap_or(&0.0),
        "timed out before its last retransmit: {}",
        handshake.raw
    );
    // Each retransmit was also reported while the attempt was in progress.
    let live = agent
        .records()
        .iter()
        .filter(|r| is_retransmit_of(r, "client", handshake.sport, port))
        .count();
    ensure!(
        live as u32 == handshake.retransmits,
        "{live} live retransmit records"
    );
    agent.stop_and_replay()
}

#[test]
fn synack_dropped_ipv4_server_expires_and_client_times_out() -> Result<()> {
    synack_dropped(Family::V4)
}

#[test]
fn synack_dropped_ipv6_server_expires_and_client_times_out() -> Result<()> {
    synack_dropped(Family::V6)
}

fn synack_dropped(family: Family) -> Result<()> {
    let ns = quick_namespace()?;
    ns.sysctl("net.ipv4.tcp_synack_retries", "1")?;
    let listener = ns.run(|| tcp::listen(family))?;
    let port = tcp::local_port(&listener)?;
    ns.firewall(
        family,
        "-A",
        &format!("INPUT -p tcp --sport {port} --tcp-flags SYN,ACK SYN,ACK -j DROP"),
    )?;
    let mut agent = Recorded::start(&ns, "handshakes", &["--port", &port.to_string()])?;

    let error = connect_error(&ns, SocketAddr::new(family.loopback(), port))?;
    ensure!(
        error == libc::ETIMEDOUT,
        "connect failed with errno {error}"
    );

    let client = wait_handshake(&mut agent, "client", "timeout", port)?;
    ensure!(client.retransmits > 0, "{}", client.raw);
    let server = agent.wait_for(
        "the server's half-open connection to expire",
        |r| {
            record::is_type(r, "handshake")
                && str_of(r, "side") == Some("server")
                && record::port(r, "sport") == Some(u64::from(port))
                && record::port(r, "dport") == Some(u64::from(client.sport))
        },
        HANDSHAKE_TIMEOUT,
    )?;
    let server = Handshake::from_value(&server)?;
    ensure!(server.outcome == "expired", "{}", server.raw);
    ensure!(
        server.retransmits > 0,
        "no SYN-ACK retransmit: {}",
        server.raw
    );
    ensure!(
        server.pid == Some(std::process::id()),
        "listener's owner: {}",
        server.raw
    );
    // The first SYN-ACK answered the client's first SYN: the server's
    // first retransmit comes about a second after it, like the client's.
    let times = server
        .retransmit_times_ms
        .clone()
        .context("the first SYN-ACK's time is unknown")?;
    ensure!(
        (800.0..2000.0).contains(&times[0]),
        "first SYN-ACK retransmit at {} ms: {}",
        times[0],
        server.raw
    );
    ensure!(times.windows(2).all(|w| w[0] <= w[1]), "{}", server.raw);
    let live = agent
        .records()
        .iter()
        .filter(|r| is_retransmit_of(r, "server", port, client.sport))
        .count();
    ensure!(
        live >= times.len(),
        "{live} live SYN-ACK retransmit records"
    );
    drop(listener);
    agent.stop_and_replay()
}

#[test]
fn closed_port_ipv4_is_refused_without_retransmits() -> Result<()> {
    closed_port_refused(Family::V4)
}

#[test]
fn closed_port_ipv6_is_refused_without_retransmits() -> Result<()> {
    closed_port_refused(Family::V6)
}

fn closed_port_refused(family: Family) -> Result<()> {
    let ns = quick_namespace()?;
    let port = tcp::unused_port(&ns, family)?;
    let mut agent = Recorded::start(&ns, "handshakes", &["--port", &port.to_string()])?;
    let error = connect_error(&ns, SocketAddr::new(family.loopback(), port))?;
    ensure!(
        error == libc::ECONNREFUSED,
        "connect failed with errno {error}"
    );
    let handshake = wait_handshake(&mut agent, "client", "refused", port)?;
    ensure!(handshake.retransmits == 0, "{}", handshake.raw);
    ensure!(
        handshake.retransmit_times_ms == Some(Vec::new()),
        "{}",
        handshake.raw
    );
    ensure!(
        handshake.error.as_deref() == Some("ECONNREFUSED"),
        "{}",
        handshake.raw
    );
    ensure!(
        handshake.duration_ms.is_some_and(|d| d < 1000.0),
        "{}",
        handshake.raw
    );
    agent.stop_and_replay()
}

/// The ICMP answering the first SYN arrives while connect(2) still holds
/// the socket (loopback delivers it at once) and is kept as a soft error;
/// the one answering the retransmit closes the attempt with it.
#[test]
fn icmp_host_unreachable_is_unreachable() -> Result<()> {
    let family = Family::V4;
    let ns = quick_namespace()?;
    let port = tcp::unused_port(&ns, family)?;
    ns.firewall(
        family,
        "-A",
        &format!("INPUT -p tcp --dport {port} -j REJECT --reject-with icmp-host-unreachable"),
    )?;
    let mut agent = Agent::start_command(&ns, "handshakes", &["--port", &port.to_string()])?;
    let error = connect_error(&ns, SocketAddr::new(family.loopback(), port))?;
    ensure!(
        error == libc::EHOSTUNREACH,
        "connect failed with errno {error}"
    );
    let handshake = wait_handshake(&mut agent, "client", "unreachable", port)?;
    ensure!(
        handshake.error.as_deref() == Some("EHOSTUNREACH"),
        "{}",
        handshake.raw
    );
    agent.stop()
}

#[test]
fn first_syn_lost_is_established_after_one_retransmit() -> Result<()> {
    let family = Family::V4;
    let ns = NetNs::new()?;
    let listener = ns.run(|| tcp::listen(family))?;
    let port = tcp::local_port(&listener)?;
    let rule = format!("INPUT -p tcp --dport {port} -j DROP");
    ns.firewall(family, "-A", &rule)?;
    let mut agent = Agent::start_command(&ns, "handshakes", &["--port", &port.to_string()])?;
    let addr = SocketAddr::new(family.loopback(), port);

    std::thread::scope(|scope| -> Result<()> {
        let client = scope.spawn(|| ns.run(|| TcpStream::connect_timeout(&addr, TIMEOUT)));
        // Let a later retransmit through by removing the rule once the
        // agent reports the attempt retrying.
        agent.wait_for(
            "the first SYN retransmit",
            |r| is_type_on(r, "handshake_retransmit", "client", port),
            TIMEOUT,
        )?;
        ns.firewall(family, "-D", &rule)?;
        match client.join() {
            Ok(Ok(_stream)) => Ok(()),
            Ok(Err(error)) => Err(error).context("connecting after the rule was removed"),
            Err(_) => bail!("the connecting thread panicked"),
        }
    })?;

    let handshake = wait_handshake(&mut agent, "client", "established", port)?;
    ensure!(handshake.error.is_none(), "{}", handshake.raw);
    let duration = handshake.duration_ms.context("no duration")?;
    let times = handshake.retransmit_times_ms.clone().context("no times")?;
    // The rule went away after the first retransmit was reported; the
    // next retransmit gets through.
    ensure!(
        (1..=2).contains(&handshake.retransmits) && times.len() as u32 == handshake.retransmits,
        "{}",
        handshake.raw
    );
    ensure!(
        (800.0..1500.0).contains(&times[0]),
        "first retransmit at {} ms",
        times[0]
    );
    let last = *times.last().unwrap_or(&0.0);
    ensure!(
        duration >= last && duration < last + 500.0,
        "established {duration} ms after the first SYN, last retransmit at {last} ms"
    );
    // The server saw one SYN, answered at once: completed, nothing retried.
    let server = agent.wait_for(
        "the server's side of the handshake",
        |r| {
            is_type_on(r, "handshake", "server", port)
                && record::port(r, "dport") == Some(u64::from(handshake.sport))
        },
        TIMEOUT,
    )?;
    let server = Handshake::from_value(&server)?;
    ensure!(server.outcome == "completed", "{}", server.raw);
    ensure!(server.retransmits == 0, "{}", server.raw);
    ensure!(
        server.pid == Some(std::process::id()),
        "listener's owner: {}",
        server.raw
    );
    drop(listener);
    agent.stop()
}

#[test]
fn closing_a_connecting_socket_is_aborted() -> Result<()> {
    let family = Family::V4;
    let ns = quick_namespace()?;
    let port = tcp::unused_port(&ns, family)?;
    ns.firewall(
        family,
        "-A",
        &format!("INPUT -p tcp --dport {port} -j DROP"),
    )?;
    let mut agent = Agent::start_command(&ns, "handshakes", &["--port", &port.to_string()])?;
    // A non-blocking connect, abandoned once the kernel retransmitted.
    let addr = SocketAddr::new(family.loopback(), port);
    let socket = ns.run(|| tcp::nonblocking_connect(addr))?;
    agent.wait_for(
        "the SYN retransmit",
        |r| is_type_on(r, "handshake_retransmit", "client", port),
        TIMEOUT,
    )?;
    // SAFETY: our own socket, closed once.
    unsafe { libc::close(socket) };
    let handshake = wait_handshake(&mut agent, "client", "aborted", port)?;
    ensure!(handshake.error.is_none(), "{}", handshake.raw);
    ensure!(handshake.retransmits >= 1, "{}", handshake.raw);
    agent.stop()
}

#[test]
fn a_full_accept_queue_shows_in_the_listener_summary() -> Result<()> {
    let family = Family::V4;
    let ns = NetNs::new()?;
    let listener = ns.run(|| tcp::listen(family))?;
    let port = tcp::local_port(&listener)?;
    // Backlog 0: one connection fills the accept queue; nobody accepts.
    // SAFETY: listen(2) again on our listening socket only sets its backlog.
    let rc = unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&listener), 0) };
    ensure!(rc == 0, "listen: {}", std::io::Error::last_os_error());
    let mut agent = Agent::start_command(
        &ns,
        "handshakes",
        &["--port", &port.to_string(), "--summary-every", "1"],
    )?;
    let addr = SocketAddr::new(family.loopback(), port);
    let clients = ns.run(|| {
        (0..4)
            .map(|_| tcp::nonblocking_connect(addr))
            .collect::<Result<Vec<_>>>()
    })?;
    let summary = agent.wait_for(
        "a summary with the listener's drops",
        |r| {
            record::is_type(r, "handshake_summary")
                && r["listen_overflows"].as_u64().is_some_and(|n| n > 0)
                && r["listeners"].as_array().is_some_and(|listeners| {
                    listeners.iter().any(|l| {
                        l["port"].as_u64() == Some(u64::from(port))
                            && l["drops"].as_u64().is_some_and(|d| d > 0)
                            && l["accept_queue_peak"].as_u64() == Some(1)
                            && l["backlog"].as_u64() == Some(0)
                    })
                })
        },
        TIMEOUT,
    )?;
    ensure!(summary["type"] == "handshake_summary");
    for fd in clients {
        // SAFETY: our own sockets, closed once.
        unsafe { libc::close(fd) };
    }
    drop(listener);
    agent.stop()
}

/// Every list of the summary is cut to `--top` rows (10 by default) with a
/// count of the rest: with every peer listed, a summary line reached 7.6 MB.
#[test]
fn the_summary_lists_the_top_peers_and_counts_the_rest() -> Result<()> {
    let ns = NetNs::new()?;
    let listener = ns.run(|| tcp::listen(Family::V4))?;
    let server = SocketAddr::new(Family::V4.loopback(), tcp::local_port(&listener)?);
    let port = server.port().to_string();
    let mut agent = Agent::start_command(
        &ns,
        "handshakes",
        &["--port", &port, "--summary-every", "1"],
    )?;
    // 300 clients from distinct loopback addresses, 25 in each of 12 /24
    // subnets.
    let sources: Vec<SocketAddr> = (0..300u16)
        .map(|i| SocketAddr::from(([127, 0, 10 + (i / 25) as u8, 1 + (i % 25) as u8], 0)))
        .collect();
    for &source in &sources {
        let client = ns.run(|| tcp::connect_from(source, server))?;
        drop((client, tcp::accept(&listener, TIMEOUT)?));
    }
    let summary = agent.wait_for(
        "a summary with every server attempt",
        |r| {
            record::is_type(r, "handshake_summary")
                && r["listeners"][0]["attempts"].as_u64() == Some(sources.len() as u64)
        },
        TIMEOUT,
    )?;
    let keys = |list: &str, side: &str| -> Vec<String> {
        let rows = summary[list].as_array().cloned().unwrap_or_default();
        rows.iter()
            .filter(|row| row["side"] == side)
            .filter_map(|row| row["key"].as_str().map(str::to_owned))
            .collect()
    };
    // The clients' one peer (the listener's address) and subnet; the
    // servers' ten busiest of 300 peers and of 12 subnets, ties by address.
    ensure!(keys("peers", "client") == ["127.0.0.1"], "{summary}");
    ensure!(keys("peers", "server").len() == 10, "{summary}");
    ensure!(summary["peers_omitted"] == 290, "{summary}");
    let subnets: Vec<String> = (10..20).map(|c| format!("127.0.{c}.0/24")).collect();
    ensure!(keys("subnets", "server") == subnets, "{summary}");
    ensure!(summary["subnets_omitted"] == 2, "{summary}");
    ensure!(summary["listeners_omitted"] == 0, "{summary}");
    drop(listener);
    agent.stop()
}

// Helpers.

/// A namespace whose connects give up after about 3 s.
fn quick_namespace() -> Result<NetNs> {
    let ns = NetNs::new()?;
    ns.sysctl("net.ipv4.tcp_syn_retries", "1")?;
    Ok(ns)
}

/// Connects from inside `ns` with a blocking connect(2) (bounded by the
/// namespace's SYN retries) and returns the errno it failed with.
fn connect_error(ns: &NetNs, addr: SocketAddr) -> Result<i32> {
    match ns.run(|| TcpStream::connect(addr)) {
        Ok(_) => bail!("connecting to {addr} succeeded"),
        Err(error) => error
            .raw_os_error()
            .with_context(|| format!("connect to {addr} failed without errno: {error}")),
    }
}

fn str_of<'a>(record: &'a Value, key: &str) -> Option<&'a str> {
    record.get(key)?.as_str()
}

/// A record of `kind` on `side` with `port` as its remote (client) or
/// local (server) port.
fn is_type_on(record: &Value, kind: &str, side: &str, port: u16) -> bool {
    let key = if side == "client" { "dport" } else { "sport" };
    record::is_type(record, kind)
        && str_of(record, "side") == Some(side)
        && record::port(record, key) == Some(u64::from(port))
}

fn is_retransmit_of(record: &Value, side: &str, sport: u16, dport: u16) -> bool {
    record::is_type(record, "handshake_retransmit")
        && str_of(record, "side") == Some(side)
        && record::port(record, "sport") == Some(u64::from(sport))
        && record::port(record, "dport") == Some(u64::from(dport))
}

/// Waits for the `side` attempt on `port` and checks its outcome.
fn wait_handshake(agent: &mut Agent, side: &str, outcome: &str, port: u16) -> Result<Handshake> {
    let started = Instant::now();
    let record = agent.wait_for(
        &format!("a {side} handshake on port {port}"),
        |r| is_type_on(r, "handshake", side, port),
        HANDSHAKE_TIMEOUT,
    )?;
    let handshake = Handshake::from_value(&record)?;
    ensure!(
        handshake.outcome == outcome,
        "expected {outcome} after {:?}, got {}",
        started.elapsed(),
        handshake.raw
    );
    Ok(handshake)
}

/// SYN retransmits as this kernel schedules them: the first about a second
/// after the SYN, then no closer than the one before.
fn expect_retransmit_schedule(times: &[f64], handshake: &Handshake) -> Result<()> {
    ensure!(
        times.first().is_some_and(|t| (800.0..1500.0).contains(t)),
        "first retransmit not about 1 s after the SYN: {}",
        handshake.raw
    );
    for pair in times.windows(2) {
        let gap = pair[1] - pair[0];
        ensure!(
            gap >= 800.0,
            "retransmits {gap} ms apart: {}",
            handshake.raw
        );
    }
    Ok(())
}
