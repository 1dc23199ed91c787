//! Real TCP lifecycles on the loopback of a fresh namespace, checked
//! transition by transition against what the agent reports.
//!
//! Sockets are closed with a plain close(2) (drop), not shutdown+close:
//! after shutdown the close itself runs tcp_set_state(FIN_WAIT1) again, and
//! the kernel reports that as a FIN_WAIT1->FIN_WAIT1 "transition" which is
//! not part of the lifecycle checked here.
use std::collections::BTreeMap;
use std::process::Stdio;

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;
use socktrace_integration_tests::{
    Agent, Family, KillOnDrop, NetNs, TIMEOUT, TaskContext, Transition, record, replay::Recorded,
    tcp,
};

#[test]
fn ipv4_lifecycle_client_closes_first() -> Result<()> {
    lifecycle(Family::V4)
}

#[test]
fn ipv6_lifecycle_client_closes_first() -> Result<()> {
    lifecycle(Family::V6)
}

fn lifecycle(family: Family) -> Result<()> {
    let me = std::process::id();
    let ns = NetNs::new()?;
    let mut agent = Recorded::start(&ns, "trace", &["--list-existing"])?;

    let (listener, client, mut server) = ns.run(|| -> Result<_> {
        let listener = tcp::listen(family)?;
        let (client, server) = tcp::connect_pair(&listener)?;
        Ok((listener, client, server))
    })?;
    let lport = tcp::local_port(&listener)?;
    let cport = client.local_addr()?.port();

    // The client closes first; the server sees EOF and closes; then the
    // listener goes.
    drop(client);
    tcp::read_to_eof(&mut server, TIMEOUT)?;
    drop(server);
    drop(listener);

    let kept = agent.collect_until(
        &format!("the close of client :{cport}, server :{lport} and listener :{lport}"),
        |value| record::is_state_on_port(value, family, lport),
        |kept| {
            let seen = |old, new, sport, dport| {
                kept.iter()
                    .any(|value| record::is_transition(value, old, new, sport, dport))
            };
            seen("FIN_WAIT2", "CLOSE", cport, lport)
                && seen("LAST_ACK", "CLOSE", lport, cport)
                && seen("LISTEN", "CLOSE", lport, 0)
        },
        TIMEOUT,
    )?;
    let kept = parse_all(&kept)?;

    let client_id = id_of(&kept, "client", |t| t.sport == cport && t.dport == lport)?;
    let server_id = id_of(&kept, "server", |t| t.sport == lport && t.dport == cport)?;
    let listener_id = id_of(&kept, "listener", |t| {
        t.is("CLOSE", "LISTEN") && t.sport == lport
    })?;
    let groups = by_id(&kept);
    let show = || dump(&groups);
    ensure!(
        client_id != server_id && server_id != listener_id && client_id != listener_id,
        "client, server and listener share an id:\n{}",
        show()
    );
    let client_events = &groups[&client_id];
    let server_events = &groups[&server_id];
    let listener_events = &groups[&listener_id];

    expect_sequence(
        "client",
        client_events,
        &[
            ("CLOSE", "SYN_SENT"),
            ("SYN_SENT", "ESTABLISHED"),
            ("ESTABLISHED", "FIN_WAIT1"),
            ("FIN_WAIT1", "FIN_WAIT2"),
            ("FIN_WAIT2", "CLOSE"),
        ],
        &show,
    )?;
    expect_sequence(
        "server (accepted)",
        server_events,
        &[
            ("LISTEN", "SYN_RECV"),
            ("SYN_RECV", "ESTABLISHED"),
            ("ESTABLISHED", "CLOSE_WAIT"),
            ("CLOSE_WAIT", "LAST_ACK"),
            ("LAST_ACK", "CLOSE"),
        ],
        &show,
    )?;
    expect_sequence(
        "listener",
        listener_events,
        &[("CLOSE", "LISTEN"), ("LISTEN", "CLOSE")],
        &show,
    )?;

    let lo = family.loopback();
    // Client: the first record is from connect(), before the local port is
    // bound; all later ones carry the real tuple.
    for (i, t) in client_events.iter().enumerate() {
        ensure!(
            t.dport == lport,
            "client record {i} has dport {} not {lport}: {}",
            t.dport,
            t.raw
        );
        ensure!(
            t.daddr == lo && t.saddr == lo,
            "client record {i} addresses: {}",
            t.raw
        );
        if i > 0 {
            ensure!(
                t.sport == cport,
                "client record {i} has sport {} not {cport}: {}",
                t.sport,
                t.raw
            );
        }
    }
    for t in server_events {
        ensure!(
            t.sport == lport && t.dport == cport,
            "server record tuple: {}",
            t.raw
        );
        ensure!(
            t.saddr == lo && t.daddr == lo,
            "server record addresses: {}",
            t.raw
        );
    }
    for t in listener_events {
        ensure!(
            t.sport == lport && t.dport == 0,
            "listener record ports: {}",
            t.raw
        );
        ensure!(
            t.saddr == lo && t.daddr == family.unspecified(),
            "listener record addresses: {}",
            t.raw
        );
    }

    for (name, events) in [
        ("client", client_events),
        ("server", server_events),
        ("listener", listener_events),
    ] {
        for (i, t) in events.iter().enumerate() {
            ensure!(
                t.family == family,
                "{name} record has the wrong family: {}",
                t.raw
            );
            // Owner: this process, also for transitions run in softirq.
            ensure!(
                t.pid == Some(me),
                "{name} {} has pid {:?}, expected {me}: {}",
                t.arrow(),
                t.pid,
                t.raw
            );
            ensure!(
                t.comm.as_deref().is_some_and(|comm| !comm.is_empty()),
                "{name} {} has no comm: {}",
                t.arrow(),
                t.raw
            );
            if i > 0 {
                ensure!(
                    t.old_state_ms.is_some_and(|ms| ms >= 0.0),
                    "{name} {} lacks a non-negative old_state_ms: {}",
                    t.arrow(),
                    t.raw
                );
            }
        }
        ensure!(
            events.windows(2).all(|pair| pair[0].ts_ns <= pair[1].ts_ns),
            "{name}'s timestamps go backwards:\n{}",
            show()
        );
    }

    // Contexts that cannot vary: syscalls run in process context; a SYN's
    // ACK reaching a listener is handled in softirq.
    for (name, events, old, new, context) in [
        (
            "client",
            client_events,
            "CLOSE",
            "SYN_SENT",
            TaskContext::Process,
        ),
        (
            "client",
            client_events,
            "ESTABLISHED",
            "FIN_WAIT1",
            TaskContext::Process,
        ),
        (
            "server",
            server_events,
            "LISTEN",
            "SYN_RECV",
            TaskContext::Softirq,
        ),
        (
            "server",
            server_events,
            "CLOSE_WAIT",
            "LAST_ACK",
            TaskContext::Process,
        ),
        (
            "listener",
            listener_events,
            "CLOSE",
            "LISTEN",
            TaskContext::Process,
        ),
        (
            "listener",
            listener_events,
            "LISTEN",
            "CLOSE",
            TaskContext::Process,
        ),
    ] {
        let t = events
            .iter()
            .find(|t| t.is(old, new))
            .expect("sequence checked above");
        ensure!(
            t.context == context,
            "{name} {old}->{new} should be {context:?}: {}",
            t.raw
        );
    }

    agent.stop_and_replay()
}

/// A connection made by another process (bash): the connecting side's
/// transitions belong to bash, the accepted side's to this process (the
/// listener's owner), although the accepted socket's first transitions run
/// in softirq while bash is the current task, and the connecting socket's
/// CLOSE_WAIT runs in softirq while this process is.
#[test]
fn owners_across_processes() -> Result<()> {
    let me = std::process::id();
    let ns = NetNs::new()?;
    let mut agent = Agent::start(&ns, &[])?;
    let listener = ns.run(|| tcp::listen(Family::V4))?;
    let lport = tcp::local_port(&listener)?;

    // bash connects, waits for the server's FIN (EOF), then closes.
    let script =
        format!("exec 3<>/dev/tcp/127.0.0.1/{lport} || exit 2; cat <&3 >/dev/null; exec 3<&-");
    let mut bash = KillOnDrop::new(
        ns.command("bash")?
            .args(["-c", &script])
            .stdin(Stdio::null())
            .spawn()
            .context("starting bash")?,
    );
    let bash_pid = bash.id();
    let server = tcp::accept(&listener, TIMEOUT)?;
    let cport = server.peer_addr()?.port();
    drop(server); // the server closes first
    let status = bash.wait_exit(TIMEOUT)?;
    ensure!(status.success(), "bash failed: {status}");

    let kept = agent.collect_until(
        &format!("the close of server :{lport} and bash's client :{cport}"),
        |value| record::is_state_on_port(value, Family::V4, lport),
        |kept| {
            kept.iter()
                .any(|v| record::is_transition(v, "FIN_WAIT2", "CLOSE", lport, cport))
                && kept
                    .iter()
                    .any(|v| record::is_transition(v, "LAST_ACK", "CLOSE", cport, lport))
        },
        TIMEOUT,
    )?;
    drop(listener);
    let kept = parse_all(&kept)?;
    let client_id = id_of(&kept, "bash's client", |t| {
        t.sport == cport && t.dport == lport
    })?;
    let server_id = id_of(&kept, "server", |t| t.sport == lport && t.dport == cport)?;
    let groups = by_id(&kept);
    let show = || dump(&groups);
    ensure!(
        client_id != server_id,
        "client and server share an id:\n{}",
        show()
    );

    let client_events = &groups[&client_id];
    let server_events = &groups[&server_id];
    expect_sequence(
        "bash's client",
        client_events,
        &[
            ("CLOSE", "SYN_SENT"),
            ("SYN_SENT", "ESTABLISHED"),
            ("ESTABLISHED", "CLOSE_WAIT"),
            ("CLOSE_WAIT", "LAST_ACK"),
            ("LAST_ACK", "CLOSE"),
        ],
        &show,
    )?;
    expect_sequence(
        "server (accepted)",
        server_events,
        &[
            ("LISTEN", "SYN_RECV"),
            ("SYN_RECV", "ESTABLISHED"),
            ("ESTABLISHED", "FIN_WAIT1"),
            ("FIN_WAIT1", "FIN_WAIT2"),
            ("FIN_WAIT2", "CLOSE"),
        ],
        &show,
    )?;
    for t in client_events {
        ensure!(
            t.pid == Some(bash_pid) && t.comm.as_deref() == Some("bash"),
            "bash's socket: {} should be owned by bash (pid {bash_pid}): {}",
            t.arrow(),
            t.raw
        );
    }
    for t in server_events {
        ensure!(
            t.pid == Some(me) && t.comm.is_some(),
            "accepted socket: {} should be owned by the listener's owner (pid {me}): {}",
            t.arrow(),
            t.raw
        );
    }
    let syn_recv = &server_events[0];
    ensure!(
        syn_recv.context == TaskContext::Softirq,
        "the accepted socket's LISTEN->SYN_RECV should run in softirq: {}",
        syn_recv.raw
    );
    agent.stop()
}

fn parse_all(values: &[Value]) -> Result<Vec<Transition>> {
    values.iter().map(Transition::from_value).collect()
}

/// The id of the records matching `pred`, which must all share it.
fn id_of(records: &[Transition], name: &str, pred: impl Fn(&Transition) -> bool) -> Result<u64> {
    let mut ids: Vec<u64> = records.iter().filter(|t| pred(t)).map(|t| t.id).collect();
    ids.sort_unstable();
    ids.dedup();
    match ids.as_slice() {
        [id] => Ok(*id),
        [] => bail!(
            "no record of the {name} socket among:\n{}",
            dump(&by_id(records))
        ),
        _ => bail!(
            "the {name} socket's records carry several ids {ids:?} (an id must be stable):\n{}",
            dump(&by_id(records))
        ),
    }
}

/// Records grouped by id, each group in arrival order.
fn by_id(records: &[Transition]) -> BTreeMap<u64, Vec<Transition>> {
    let mut groups: BTreeMap<u64, Vec<Transition>> = BTreeMap::new();
    for t in records {
        groups.entry(t.id).or_default().push(t.clone());
    }
    groups
}

fn dump(groups: &BTreeMap<u64, Vec<Transition>>) -> String {
    let mut text = String::new();
    for (id, events) in groups {
        text.push_str(&format!("id {id}:\n"));
        for t in events {
            text.push_str(&format!("  {}\n", t.raw));
        }
    }
    text
}

fn expect_sequence(
    name: &str,
    events: &[Transition],
    expected: &[(&str, &str)],
    show: &dyn Fn() -> String,
) -> Result<()> {
    let got: Vec<String> = events.iter().map(Transition::arrow).collect();
    let want: Vec<String> = expected
        .iter()
        .map(|(old, new)| format!("{old}->{new}"))
        .collect();
    ensure!(
        got == want,
        "{name} transitions:\n  got      {got:?}\n  expected {want:?}\nall records by id:\n{}",
        show()
    );
    Ok(())
}
