//! `socktrace timewait` against real connections closed in a fresh
//! namespace: TIME-WAIT entries with their owners, the count `ss` sees,
//! natural expiry, reuse, and CLOSE-WAIT sockets the application never
//! closed.
use std::collections::HashSet;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;
use socktrace_integration_tests::{
    Agent, CloseWait, Family, NetNs, TIMEOUT, TimeWait, record, replay::Recorded, tcp, wait,
};

/// The kernel's TIME-WAIT length (`TCP_TIMEWAIT_LEN`), in ms.
const TIME_WAIT_LEN_MS: f64 = 60_000.0;

/// Longer than a timewait socket lives, with the timer wheel's slack and
/// a listing interval on top.
const EXPIRY_TIMEOUT: Duration = Duration::from_secs(90);

#[test]
fn ipv4_two_thousand_client_closes_enter_time_wait_like_the_kernel_counts() -> Result<()> {
    client_closes(Family::V4, 2000)
}

#[test]
fn ipv6_client_closes_enter_time_wait_like_the_kernel_counts() -> Result<()> {
    client_closes(Family::V6, 300)
}

/// `count` connections closed by the client: every client socket enters
/// TIME-WAIT with this process as its owner, and the summary's count
/// reaches what `ss -tan state time-wait` lists.
fn client_closes(family: Family, count: usize) -> Result<()> {
    let me = std::process::id();
    let ns = NetNs::new()?;
    let mut agent = Agent::start_command(&ns, "timewait", &["--entries", "--summary-every", "1"])?;
    let listener = ns.run(|| tcp::listen(family))?;
    let port = tcp::local_port(&listener)?;
    let clients = ns.run(|| close_connections(&listener, count, Closer::Client))?;

    let kernel = ns.time_wait_count()?;
    ensure!(
        kernel == count,
        "ss lists {kernel} TIME-WAIT sockets after {count} client closes"
    );
    agent.wait_for(
        &format!("a summary counting {kernel} TIME-WAIT sockets"),
        |r| {
            record::is_type(r, "time_wait_summary")
                && r.get("time_wait").and_then(Value::as_u64) == Some(kernel as u64)
        },
        TIMEOUT,
    )?;

    let entries = agent.collect_until(
        &format!("{count} TIME-WAIT entries towards port {port}"),
        |r| {
            record::is_type(r, "time_wait_entered") && record::port(r, "dport") == Some(port.into())
        },
        |kept| kept.len() >= count,
        TIMEOUT,
    )?;
    let mut seen = HashSet::new();
    for entry in &entries {
        let sport = record::port(entry, "sport").context("sport")? as u16;
        ensure!(clients.contains(&sport), "not one of ours: {entry}");
        ensure!(seen.insert(sport), "entered twice: {entry}");
        ensure!(record::has_family(entry, family), "{entry}");
        ensure!(
            entry.get("pid").and_then(Value::as_u64) == Some(me.into()),
            "the closing process should own it: {entry}"
        );
        ensure!(
            entry.get("from").and_then(Value::as_str) == Some("FIN_WAIT2"),
            "{entry}"
        );
    }
    agent.stop()
}

#[test]
fn a_server_closing_first_holds_time_wait_on_its_listening_port() -> Result<()> {
    let me = std::process::id();
    let count = 50;
    let ns = NetNs::new()?;
    let mut agent = Agent::start_command(&ns, "timewait", &["--entries", "--summary-every", "1"])?;
    let listener = ns.run(|| tcp::listen(Family::V6))?;
    let port = tcp::local_port(&listener)?;
    ns.run(|| close_connections(&listener, count, Closer::Server))?;

    let entries = agent.collect_until(
        "the server's TIME-WAIT entries",
        |r| {
            record::is_type(r, "time_wait_entered") && record::port(r, "sport") == Some(port.into())
        },
        |kept| kept.len() >= count,
        TIMEOUT,
    )?;
    for entry in &entries {
        ensure!(
            entry.get("pid").and_then(Value::as_u64) == Some(me.into()),
            "{entry}"
        );
    }
    let summary = agent.wait_for(
        "a summary naming the listening port as top producer",
        |r| {
            record::is_type(r, "time_wait_summary")
                && r.get("time_wait").and_then(Value::as_u64) == Some(count as u64)
        },
        TIMEOUT,
    )?;
    let top = &summary["top_local_ports"][0];
    ensure!(
        top["port"].as_u64() == Some(port.into()) && top["count"].as_u64() == Some(count as u64),
        "{summary}"
    );
    ensure!(
        summary["port_pressure"]
            .as_array()
            .is_some_and(|rows| rows.is_empty()),
        "a server's TIME-WAIT holds no ephemeral port: {summary}"
    );
    agent.stop()
}

#[test]
fn port_pressure_counts_against_the_namespaces_own_port_range() -> Result<()> {
    let home = NetNs::new()?;
    let away = NetNs::new()?;
    // A container narrowing its ephemeral range: the tracer, followed from
    // another namespace, must count against this one.
    away.sysctl("net.ipv4.ip_local_port_range", "40000 40099")?;
    let mut agent = Agent::start_following_all(&home, "timewait", &["--summary-every", "1"])?;
    let listener = away.run(|| tcp::listen(Family::V6))?;
    let port = tcp::local_port(&listener)?;
    let count = 20;
    away.run(|| close_connections(&listener, count, Closer::Client))?;
    let inode = u64::from(away.inode()?);
    let ours = |row: &Value| {
        row["netns"].as_u64() == Some(inode) && row["dport"].as_u64() == Some(port.into())
    };
    let summary = agent.wait_for(
        "a summary with the pressure towards our listener",
        |r| {
            record::is_type(r, "time_wait_summary")
                && r["port_pressure"].as_array().is_some_and(|rows| {
                    rows.iter()
                        .any(|row| ours(row) && row["time_wait"] == count)
                })
        },
        TIMEOUT,
    )?;
    let rows = summary["port_pressure"].as_array().context("rows")?;
    let row = rows.iter().find(|row| ours(row)).context("our row")?;
    ensure!(row["ephemeral_ports"] == 100, "{row}");
    ensure!(row["ratio"].as_f64() == Some(0.2), "{row}");
    agent.stop()
}

#[test]
fn timewait_sockets_another_namespace_refused_are_counted() -> Result<()> {
    let home = NetNs::new()?;
    let away = NetNs::new()?;
    away.sysctl("net.ipv4.tcp_max_tw_buckets", "5")?;
    let mut agent = Agent::start_following_all(&home, "timewait", &["--summary-every", "1"])?;
    // A summary comes after a listing, which read every namespace's
    // counter: the refusals below come after that first reading.
    agent.wait_for(
        "a first summary",
        |r| record::is_type(r, "time_wait_summary"),
        TIMEOUT,
    )?;
    let listener = away.run(|| tcp::listen(Family::V4))?;
    away.run(|| close_connections(&listener, 20, Closer::Client))?;
    let refused = away.tcp_ext("TCPTimeWaitOverflow")?;
    ensure!(refused >= 10, "the kernel refused only {refused}");
    agent.wait_for(
        &format!("a summary counting the {refused} refused in the other namespace"),
        |r| {
            record::is_type(r, "time_wait_summary")
                && r["overflows"].as_u64().is_some_and(|n| n >= refused)
        },
        TIMEOUT,
    )?;
    agent.stop()
}

#[test]
fn time_wait_expires_after_the_kernels_time_wait_length() -> Result<()> {
    let ns = NetNs::new()?;
    let mut agent = Recorded::start(&ns, "timewait", &["--summary-every", "0"])?;
    let mut ours = Vec::new();
    for family in [Family::V4, Family::V6] {
        let listener = ns.run(|| tcp::listen(family))?;
        let client = ns.run(|| close_connections(&listener, 1, Closer::Client))?;
        ours.push((family, client[0], tcp::local_port(&listener)?));
    }
    for (family, sport, dport) in ours {
        let found = agent.wait_for(
            &format!("the {family:?} TIME-WAIT socket's end"),
            |r| record::is_type(r, "time_wait") && record::port(r, "sport") == Some(sport.into()),
            EXPIRY_TIMEOUT,
        )?;
        let ended = TimeWait::from_value(&found)?;
        ensure!(ended.end == "expired", "{}", ended.raw);
        ensure!(
            ended.family == family && ended.dport == dport,
            "{}",
            ended.raw
        );
        let lifetime = ended.lifetime_ms.context("entry was traced")?;
        let error = ended.lifetime_error_ms;
        // The timer is armed for TCP_TIMEWAIT_LEN and fires late, never
        // early; the listing interval bounds the uncertainty.
        ensure!(
            lifetime + error >= TIME_WAIT_LEN_MS,
            "ended before its timer: {}",
            ended.raw
        );
        ensure!(
            lifetime - error <= TIME_WAIT_LEN_MS + 8_000.0,
            "outlived its timer by more than the timer wheel's slack: {}",
            ended.raw
        );
        ensure!(
            error <= 1_500.0,
            "more than a listing interval: {}",
            ended.raw
        );
        ensure!(ended.pid == Some(std::process::id()), "{}", ended.raw);
    }
    agent.stop_and_replay()
}

#[test]
fn ipv4_tw_reuse_ends_time_wait_early_as_reused() -> Result<()> {
    reuse(Family::V4)
}

#[test]
fn ipv6_tw_reuse_ends_time_wait_early_as_reused() -> Result<()> {
    reuse(Family::V6)
}

/// With `tcp_tw_reuse` (the recipe users follow), a client that reconnects
/// from its pinned port to the same server takes its old TIME-WAIT socket
/// over. (A bound port may take over a timewait socket that saw
/// timestamps whatever the sysctl says: `tcp_twsk_unique` without `twp`.)
fn reuse(family: Family) -> Result<()> {
    let ns = NetNs::new()?;
    ns.sysctl("net.ipv4.tcp_tw_reuse", "1")?;
    let mut agent = Recorded::start(&ns, "timewait", &["--entries"])?;
    let listener = ns.run(|| tcp::listen(family))?;
    let server = listener.local_addr()?;
    let local = SocketAddr::new(family.loopback(), 0);
    let client = ns.run(|| tcp::connect_from(local, server))?;
    let pinned = client.local_addr()?;
    let mut accepted = tcp::accept(&listener, TIMEOUT)?;
    let closing = Instant::now();
    drop(client);
    tcp::read_to_eof(&mut accepted, TIMEOUT)?;
    drop(accepted);
    let closed = Instant::now();
    let entered = agent.wait_for(
        "the first connection's TIME-WAIT entry",
        |r| {
            record::is_type(r, "time_wait_entered")
                && record::port(r, "sport") == Some(pinned.port().into())
        },
        TIMEOUT,
    )?;
    let confirmed = Instant::now();

    // Kernels that want the timewait socket to age first answer
    // EADDRNOTAVAIL until then.
    let _again = wait::until("a reconnect from the pinned port", TIMEOUT, || {
        match ns.run(|| tcp::connect_from(pinned, server)) {
            Ok(stream) => Ok(wait::Poll::Ready(stream)),
            Err(error) if error.raw_os_error() == Some(libc::EADDRNOTAVAIL) => {
                Ok(wait::Poll::Pending(format!("{error}")))
            }
            Err(error) => bail!("reconnecting from {pinned}: {error}"),
        }
    })?;
    let reconnected = Instant::now();
    let _accepted_again = tcp::accept(&listener, TIMEOUT)?;

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
    ensure!(
        ended.lifetime_error_ms == 0.0,
        "seen in the stream: {}",
        ended.raw
    );
    let lifetime = ended.lifetime_ms.context("entry was traced")?;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    // It entered while the connection closed and ended with the reconnect.
    let (shortest, longest) = (ms(confirmed - closed), ms(reconnected - closing) + 1.0);
    ensure!(
        (shortest..=longest).contains(&lifetime),
        "lifetime {lifetime} ms, expected between {shortest} and {longest} ms: {}",
        ended.raw
    );
    ensure!(
        ended.entered_ts_ns == entered.get("ts_ns").and_then(Value::as_u64),
        "{}",
        ended.raw
    );
    agent.stop_and_replay()
}

#[test]
fn tw_reuse_of_the_only_ephemeral_port_is_reused_not_killed() -> Result<()> {
    // One ephemeral port: an unbound connect must take the timewait socket
    // over, and its port shows in the events only at SYN_SENT ->
    // ESTABLISHED, possibly after a listing already missed the socket.
    let ns = NetNs::new()?;
    let listener = ns.run(|| tcp::listen(Family::V4))?;
    let server = listener.local_addr()?;
    let only = if server.port() < 65535 {
        server.port() + 1
    } else {
        server.port() - 1
    };
    ns.sysctl("net.ipv4.ip_local_port_range", &format!("{only} {only}"))?;
    ns.sysctl("net.ipv4.tcp_tw_reuse", "1")?;
    let mut agent = Agent::start_command(&ns, "timewait", &["--entries"])?;
    let client = ns.run(|| TcpStream::connect(server))?;
    ensure!(client.local_addr()?.port() == only, "not the only port");
    let mut accepted = tcp::accept(&listener, TIMEOUT)?;
    let closing = Instant::now();
    drop(client);
    tcp::read_to_eof(&mut accepted, TIMEOUT)?;
    drop(accepted);
    agent.wait_for(
        "the first connection's TIME-WAIT entry",
        |r| {
            record::is_type(r, "time_wait_entered") && record::port(r, "sport") == Some(only.into())
        },
        TIMEOUT,
    )?;
    // tcp_tw_reuse_delay (1 s) first: EADDRNOTAVAIL until then.
    let _again = wait::until("a reconnect through the only port", TIMEOUT, || {
        match ns.run(|| TcpStream::connect(server)) {
            Ok(stream) => Ok(wait::Poll::Ready(stream)),
            Err(error) if error.raw_os_error() == Some(libc::EADDRNOTAVAIL) => {
                Ok(wait::Poll::Pending(format!("{error}")))
            }
            Err(error) => bail!("reconnecting to {server}: {error}"),
        }
    })?;
    let reconnected = closing.elapsed().as_secs_f64() * 1000.0;
    let _accepted_again = tcp::accept(&listener, TIMEOUT)?;
    let found = agent.wait_for(
        "the reused TIME-WAIT socket's end",
        |r| record::is_type(r, "time_wait") && record::port(r, "sport") == Some(only.into()),
        TIMEOUT,
    )?;
    let ended = TimeWait::from_value(&found)?;
    ensure!(ended.end == "reused", "{}", ended.raw);
    let lifetime = ended.lifetime_ms.context("entry was traced")?;
    ensure!(
        lifetime - ended.lifetime_error_ms <= reconnected,
        "ended after the reconnect ({reconnected} ms after the close): {}",
        ended.raw
    );
    agent.stop()
}

#[test]
fn ipv4_close_wait_left_open_by_the_server_is_reported_with_its_age() -> Result<()> {
    close_wait(Family::V4)
}

#[test]
fn ipv6_close_wait_left_open_by_the_server_is_reported_with_its_age() -> Result<()> {
    close_wait(Family::V6)
}

fn close_wait(family: Family) -> Result<()> {
    let ns = NetNs::new()?;
    let mut agent = Recorded::start(&ns, "timewait", &["--close-wait-after", "1"])?;
    let listener = ns.run(|| tcp::listen(family))?;
    let port = tcp::local_port(&listener)?;
    let (client, server) = ns.run(|| tcp::connect_pair(&listener))?;
    let client_port = client.local_addr()?.port();
    let closed_at = Instant::now();
    drop(client);

    let is_ours = |r: &Value| {
        record::is_type(r, "close_wait")
            && record::port(r, "sport") == Some(port.into())
            && record::port(r, "dport") == Some(client_port.into())
    };
    let found = agent.wait_for("the server's CLOSE-WAIT report", is_ours, TIMEOUT)?;
    let stuck = CloseWait::from_value(&found)?;
    ensure!(stuck.status == "stuck", "{}", stuck.raw);
    ensure!(stuck.family == family, "{}", stuck.raw);
    ensure!(
        stuck.age_ms >= 1_000.0 && stuck.age_ms <= closed_at.elapsed().as_secs_f64() * 1000.0,
        "age not between the threshold and the time since the peer closed: {}",
        stuck.raw
    );
    ensure!(!stuck.age_is_lower_bound, "{}", stuck.raw);
    ensure!(
        stuck.pid == Some(std::process::id()),
        "the server process owns it: {}",
        stuck.raw
    );

    drop(server);
    let found = agent.wait_for(
        "the report that it left CLOSE-WAIT",
        |r| is_ours(r) && r.get("status").and_then(Value::as_str) == Some("closed"),
        TIMEOUT,
    )?;
    let closed = CloseWait::from_value(&found)?;
    ensure!(closed.age_ms >= stuck.age_ms, "{}", closed.raw);
    agent.stop_and_replay()
}

// Helpers.

/// Which end closes first.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Closer {
    Client,
    Server,
}

/// Opens and closes `count` connections to `listener`, `closer` first, each
/// waiting for the other end's FIN: the first closer's socket is left in
/// TIME-WAIT. Returns the clients' ports. Runs inside the namespace.
fn close_connections(listener: &TcpListener, count: usize, closer: Closer) -> Result<Vec<u16>> {
    let mut ports = Vec::with_capacity(count);
    for _ in 0..count {
        let (client, server) = tcp::connect_pair(listener)?;
        ports.push(client.local_addr()?.port());
        let (first, mut second) = match closer {
            Closer::Client => (client, server),
            Closer::Server => (server, client),
        };
        drop(first);
        tcp::read_to_eof(&mut second, TIMEOUT)?;
    }
    Ok(ports)
}
