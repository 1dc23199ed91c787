//! `socktrace ss` against `ss` itself: a namespace holding listeners,
//! established connections (IPv4, IPv6, IPv4-mapped), TIME-WAIT sockets,
//! a connect held in SYN-SENT and a half-open connection held in SYN-RECV
//! by iptables; the same options and filters given to both list the same
//! sockets, through the agent and in-process. The agent's socket refuses
//! clients that are neither root nor in its group.
use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;
use socktrace_integration_tests::{
    Agent, Family, NetNs, SocketDir, TIMEOUT, agent_binary, tcp,
    wait::{self, Poll},
};

/// One listed socket: state (when the output has the column), local and
/// peer endpoint, exactly as printed.
type Row = (Option<String>, String, String);

/// The sockets a scene holds open.
struct Scene {
    ports: ScenePorts,
    _listeners: Vec<TcpListener>,
    _streams: Vec<TcpStream>,
    fds: Vec<libc::c_int>,
}

struct ScenePorts {
    v4: u16,
    v6: u16,
    syn_sent: u16,
    syn_recv: u16,
}

impl Drop for Scene {
    fn drop(&mut self) {
        for &fd in &self.fds {
            // SAFETY: descriptors this scene opened and nothing else closes.
            unsafe { libc::close(fd) };
        }
    }
}

/// Builds the scene in `ns`; returns once every socket is in its state.
fn scene(ns: &NetNs) -> Result<Scene> {
    let v4 = ns.run(|| tcp::listen(Family::V4))?;
    let v6 = ns.run(|| TcpListener::bind("[::]:0"))?; // dual-stack
    let syn_sent = ns.run(|| tcp::listen(Family::V4))?;
    let syn_recv = ns.run(|| tcp::listen(Family::V6))?;
    let ports = ScenePorts {
        v4: tcp::local_port(&v4)?,
        v6: tcp::local_port(&v6)?,
        syn_sent: tcp::local_port(&syn_sent)?,
        syn_recv: tcp::local_port(&syn_recv)?,
    };
    let mut streams = Vec::new();
    for _ in 0..2 {
        let (client, server) = ns.run(|| tcp::connect_pair(&v4))?;
        streams.extend([client, server]);
    }
    for peer in ["[::1]", "127.0.0.1"] {
        let addr: SocketAddr = format!("{peer}:{}", ports.v6).parse()?;
        let client = ns.run(|| TcpStream::connect(addr))?;
        streams.extend([client, tcp::accept(&v6, TIMEOUT)?]);
    }
    // TIME-WAIT on the client side, IPv4 and IPv6: the client closes first.
    for listener in [&v4, &syn_recv] {
        let (client, mut server) = ns.run(|| tcp::connect_pair(listener))?;
        drop(client);
        tcp::read_to_eof(&mut server, TIMEOUT)?;
    }
    ns.firewall(
        Family::V4,
        "-A",
        &format!("INPUT -p tcp --dport {} --syn -j DROP", ports.syn_sent),
    )?;
    ns.firewall(
        Family::V6,
        "-A",
        &format!(
            "INPUT -p tcp --sport {} --tcp-flags SYN,ACK SYN,ACK -j DROP",
            ports.syn_recv
        ),
    )?;
    let fds = vec![
        ns.run(|| tcp::nonblocking_connect(format!("127.0.0.1:{}", ports.syn_sent).parse()?))?,
        ns.run(|| tcp::nonblocking_connect(format!("[::1]:{}", ports.syn_recv).parse()?))?,
    ];
    let scene = Scene {
        ports,
        _listeners: vec![v4, v6, syn_sent, syn_recv],
        _streams: streams,
        fds,
    };
    wait::until("the scene's sockets", TIMEOUT, || {
        let rows = rows(&ns.exec(&["ss", "-tan", "state", "bucket"])?)?;
        Ok(match rows.len() {
            // Two TIME-WAIT and the half-open connection.
            3 => Poll::Ready(()),
            _ => Poll::Pending(format!("{rows:?}")),
        })
    })?;
    Ok(scene)
}

/// The rows of an ss-style listing (header first).
fn rows(text: &str) -> Result<BTreeSet<Row>> {
    let mut lines = text.lines();
    let header = lines.next().context("no header line")?;
    let has_state = header.starts_with("State");
    let mut rows = BTreeSet::new();
    for line in lines {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let at = usize::from(has_state);
        ensure!(fields.len() >= at + 4, "short line {line:?}");
        rows.insert((
            has_state.then(|| fields[0].to_owned()),
            fields[at + 2].to_owned(),
            fields[at + 3].to_owned(),
        ));
    }
    Ok(rows)
}

fn socktrace(args: &[&str]) -> Result<Output> {
    Command::new(agent_binary())
        .args(args)
        .output()
        .context("running socktrace")
}

fn stdout_of(output: Output) -> Result<String> {
    ensure!(
        output.status.success(),
        "socktrace failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8(output.stdout)?)
}

/// How `socktrace ss` gets its sockets.
#[derive(Clone, Copy, Debug)]
enum Via<'a> {
    Agent(&'a Path),
    InProcess,
}

fn socktrace_ss(ns: &NetNs, via: Via<'_>, args: &[&str]) -> Result<String> {
    let mut full = vec!["ss", "-N", ns.name()];
    match via {
        Via::Agent(socket) => full.extend(["--agent", socket.to_str().context("path")?]),
        Via::InProcess => full.push("--no-agent"),
    }
    full.extend_from_slice(args);
    stdout_of(socktrace(&full)?)
}

/// `ss ARGS` and `socktrace ss ARGS` list the same sockets (retried while
/// a handshake's retransmit changes what is listed at that instant).
fn same_as_ss(ns: &NetNs, via: Via<'_>, args: &[&str]) -> Result<BTreeSet<Row>> {
    let mut ss_args = vec!["ss"];
    ss_args.extend_from_slice(args);
    wait::until(
        &format!("`ss {}` via {via:?}", args.join(" ")),
        TIMEOUT,
        || {
            let expected = rows(&ns.exec(&ss_args)?)?;
            let listed = rows(&socktrace_ss(ns, via, args)?)?;
            Ok(if listed == expected {
                Poll::Ready(listed)
            } else {
                Poll::Pending(format!("ss: {expected:?}\nsocktrace: {listed:?}"))
            })
        },
    )
}

#[test]
fn lists_what_ss_lists_with_the_same_options_and_filters() -> Result<()> {
    let ns = NetNs::new()?;
    let scene = scene(&ns)?;
    let dir = SocketDir::new();
    let agent = Agent::start_daemon(&ns, &dir.socket(), &[])?;
    let ScenePorts {
        v4,
        v6,
        syn_sent,
        syn_recv,
    } = scene.ports;
    let (v4, v6, syn_sent, syn_recv) = (
        format!(":{v4}"),
        format!(":{v6}"),
        format!(":{syn_sent}"),
        format!(":{syn_recv}"),
    );
    let filters: Vec<Vec<&str>> = vec![
        vec!["-tan"],
        vec!["-tn"],
        vec!["-tln"],
        vec!["-4", "-tan"],
        vec!["-6", "-tan"],
        vec!["-tan", "state", "time-wait"],
        vec!["-tan", "state", "syn-sent"],
        vec!["-tan", "state", "syn-recv"],
        vec!["-tan", "state", "connected"],
        vec!["-tan", "state", "synchronized"],
        vec!["-tan", "state", "bucket"],
        vec!["-tan", "state", "big"],
        vec!["-tan", "state", "established", "state", "listening"],
        vec!["-tan", "exclude", "established"],
        vec!["-tan", "dport", "=", &v4],
        vec!["-tan", "sport", "=", &v6],
        vec!["-tan", "(", "sport", "=", &v4, "or", "dport", "=", &v4, ")"],
        vec!["-tan", "dport", "!=", &v4, "and", "not", "sport", "=", &v4],
        vec!["-tan", "dst", "127.0.0.1"],
        vec!["-tan", "src", "[::1]"],
        vec!["-tan", "not", "dst", "127.0.0.0/8"],
        vec!["-tan", "state", "syn-sent", "dport", "=", &syn_sent],
        vec!["-tan", "state", "syn-recv", "sport", "=", &syn_recv],
        vec!["-tn", "dport", ">", ":1024"],
    ];
    for filter in &filters {
        let via_agent = same_as_ss(&ns, Via::Agent(&dir.socket()), filter)?;
        let in_process = same_as_ss(&ns, Via::InProcess, filter)?;
        ensure!(
            via_agent == in_process,
            "agent and in-process differ for {filter:?}"
        );
    }
    // The scene is all there: the lists above are not trivially empty.
    let all = same_as_ss(&ns, Via::InProcess, &["-tan"])?;
    let states: BTreeSet<&str> = all.iter().filter_map(|r| r.0.as_deref()).collect();
    let expected: BTreeSet<&str> = ["ESTAB", "LISTEN", "SYN-RECV", "SYN-SENT", "TIME-WAIT"].into();
    ensure!(states == expected, "states listed: {states:?}");
    ensure!(all.len() == 17, "{} sockets: {all:?}", all.len());
    drop(scene);
    agent.stop()
}

/// What `ss -s` says of TCP in one namespace that socktrace can count: its
/// `estab` and `timewait`, and its TCP row (sockets in the hash tables) by
/// family; with how many sockets `ss -tan state all` lists.
#[derive(Debug, PartialEq, Eq)]
struct TcpSummary {
    listed: u64,
    estab: u64,
    timewait: u64,
    hashed: [u64; 2],
}

/// `ss -s`'s figures, and the count of `ss -tan state all`'s rows.
fn ss_summary(ns: &NetNs) -> Result<TcpSummary> {
    let text = ns.exec(&["ss", "-s"])?;
    let figure = |line: &str, name: &str| -> Result<u64> {
        let at = line.find(&format!("{name} ")).context(name.to_owned())? + name.len() + 1;
        let digits: String = line[at..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        Ok(digits.parse()?)
    };
    let headline = text
        .lines()
        .find(|l| l.starts_with("TCP:"))
        .context("no `TCP:` line in ss -s")?;
    let row: Vec<u64> = text
        .lines()
        .find(|l| l.starts_with("TCP\t"))
        .context("no TCP row in ss -s")?
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    ensure!(row.len() == 3, "TCP row {row:?}");
    Ok(TcpSummary {
        listed: rows(&ns.exec(&["ss", "-tan", "state", "all"])?)?.len() as u64,
        estab: figure(headline, "estab")?,
        timewait: figure(headline, "timewait")?,
        hashed: [row[1], row[2]],
    })
}

/// `socktrace ss -s --json`'s figures.
fn socktrace_summary(ns: &NetNs, via: Via<'_>) -> Result<TcpSummary> {
    let summary: Value = serde_json::from_str(&socktrace_ss(ns, via, &["-s", "--json"])?)?;
    let number = |value: &Value| value.as_u64().with_context(|| format!("{summary}"));
    Ok(TcpSummary {
        listed: number(&summary["total"])?,
        estab: number(&summary["estab"])?,
        timewait: number(&summary["timewait"])?,
        hashed: [
            number(&summary["tcp"]["ipv4"])?,
            number(&summary["tcp"]["ipv6"])?,
        ],
    })
}

/// `ss -s` counts every socket whatever -a says, and so does `socktrace ss
/// -s` (without -a it counted only the connected sockets: "Total 0" with
/// listeners and TIME-WAIT alone).
#[test]
fn the_summary_counts_what_ss_dash_s_counts() -> Result<()> {
    let ns = NetNs::new()?;
    let scene = scene(&ns)?;
    // A connection the client closed and the server never did: CLOSE-WAIT
    // on one end (ss's estab), an orphaned FIN-WAIT-2 (a timewait socket)
    // on the other.
    let listener = ns.run(|| tcp::listen(Family::V6))?;
    let (client, mut server) = ns.run(|| tcp::connect_pair(&listener))?;
    drop(client);
    tcp::read_to_eof(&mut server, TIMEOUT)?;
    let dir = SocketDir::new();
    let agent = Agent::start_daemon(&ns, &dir.socket(), &[])?;
    for via in [Via::Agent(&dir.socket()), Via::InProcess] {
        let counted = wait::until(&format!("ss -s's figures via {via:?}"), TIMEOUT, || {
            let expected = ss_summary(&ns)?;
            let counted = socktrace_summary(&ns, via)?;
            Ok(if counted == expected {
                Poll::Ready(counted)
            } else {
                Poll::Pending(format!("ss: {expected:?}\nsocktrace: {counted:?}"))
            })
        })?;
        // The scene's 17 sockets, the CLOSE-WAIT, the FIN-WAIT-2 and their
        // listener; 8 ESTAB and the CLOSE-WAIT; 2 TIME-WAIT and the orphan;
        // hashed: IPv4 2 listeners, 5 ESTAB (one a client of the dual-stack
        // listener) and a SYN-SENT, IPv6 3 listeners, 3 ESTAB, a SYN-SENT
        // and the CLOSE-WAIT.
        ensure!(
            counted
                == TcpSummary {
                    listed: 20,
                    estab: 9,
                    timewait: 3,
                    hashed: [8, 8],
                },
            "{counted:?}"
        );
    }
    drop((scene, server, listener));
    agent.stop()
}

#[test]
fn the_agent_knows_time_in_state_retries_and_owners() -> Result<()> {
    let ns = NetNs::new()?;
    let dir = SocketDir::new();
    let agent = Agent::start_daemon(&ns, &dir.socket(), &[])?;
    let listener = ns.run(|| tcp::listen(Family::V6))?;
    let port = tcp::local_port(&listener)?;
    ns.firewall(
        Family::V6,
        "-A",
        &format!("INPUT -p tcp --dport {port} --syn -j DROP"),
    )?;
    let fd = ns.run(|| tcp::nonblocking_connect(format!("[::1]:{port}").parse()?))?;
    let ask = || -> Result<Vec<Value>> {
        let text = socktrace_ss(
            &ns,
            Via::Agent(&dir.socket()),
            &[
                "--json",
                "state",
                "syn-sent",
                "dport",
                "=",
                &format!(":{port}"),
            ],
        )?;
        text.lines()
            .map(|l| serde_json::from_str(l).context("JSON line"))
            .collect()
    };
    // Before its first retransmit (about a second after the connect) the
    // kernel has said nothing of the connect's port: the agent knows it by
    // its addresses.
    let first = wait::until("the connect listed by the agent", TIMEOUT, || {
        let listed = ask()?;
        Ok(match listed.as_slice() {
            [one] => Poll::Ready(one.clone()),
            other => Poll::Pending(format!("{other:?}")),
        })
    })?;
    if first["retries"].as_u64() == Some(0) {
        ensure!(
            first["in_state_ms"].as_u64().is_some_and(|ms| ms < 1_000)
                && first["pid"].as_u64() == Some(u64::from(std::process::id())),
            "before the first retransmit: {first}"
        );
    }
    let stuck = wait::until("a SYN retransmit seen by the agent", TIMEOUT, || {
        let listed = ask()?;
        Ok(match listed.as_slice() {
            [one] if one["retries"].as_u64() >= Some(1) => Poll::Ready(one.clone()),
            other => Poll::Pending(format!("{other:?}")),
        })
    })?;
    // SAFETY: the descriptor nonblocking_connect returned.
    unsafe { libc::close(fd) };
    let in_state = stuck["in_state_ms"].as_u64().context("in_state_ms")?;
    ensure!(
        (900..60_000).contains(&in_state),
        "SYN-SENT for {in_state} ms: {stuck}"
    );
    ensure!(
        stuck["pid"].as_u64() == Some(u64::from(std::process::id())),
        "owner {stuck}"
    );
    ensure!(stuck["timer"]["kind"] == "on", "timer {stuck}");
    ensure!(stuck["netns"].as_u64() == Some(u64::from(ns.inode()?)));
    agent.stop()
}

#[test]
fn the_agent_refuses_clients_that_are_neither_root_nor_in_its_group() -> Result<()> {
    let ns = NetNs::new()?;
    let dir = SocketDir::new();
    let group = "4242";
    let agent = Agent::start_daemon(&ns, &dir.socket(), &["--group", group])?;
    let socket = dir.socket();
    let socket = socket.to_str().context("path")?;
    let as_user = |groups: &str| -> Result<Output> {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534"])
            .arg(groups)
            .arg(agent_binary())
            .args(["ss", "-N", ns.name(), "--agent", socket])
            .output()
            .context("running setpriv")
    };
    let stranger = as_user("--clear-groups")?;
    ensure!(!stranger.status.success(), "a stranger was served");
    let said = String::from_utf8_lossy(&stranger.stderr);
    ensure!(said.contains("permission denied"), "stranger got: {said}");

    // Opened up on disk, the socket still checks who connects.
    use std::os::unix::fs::PermissionsExt;
    for (path, mode) in [(dir.path(), 0o777), (Path::new(socket), 0o777)] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    let stranger = as_user("--clear-groups")?;
    ensure!(!stranger.status.success(), "a stranger was served");
    let said = String::from_utf8_lossy(&stranger.stderr);
    ensure!(
        said.contains("the agent refused: permission denied"),
        "stranger got: {said}"
    );

    let member = as_user(&format!("--groups={group}"))?;
    let listed = stdout_of(member)?;
    if !listed.starts_with("State") {
        bail!("a group member got: {listed}");
    }
    agent.stop()
}

#[test]
fn bad_filters_point_at_the_bad_token_and_fail() -> Result<()> {
    let output = socktrace(&[
        "ss",
        "--no-agent",
        "state",
        "time-wait",
        "dport",
        "=",
        ":99999",
    ])?;
    ensure!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = said.lines().collect();
    ensure!(lines.len() >= 3, "{said}");
    ensure!(lines[1] == "state time-wait dport = :99999", "{said}");
    let caret = lines[2].find('^').context("a caret")?;
    ensure!(
        lines[1][caret..].starts_with("99999") || lines[1][caret..].starts_with(":99999"),
        "the caret points at {:?}",
        &lines[1][caret..]
    );
    let output = socktrace(&["ss", "--no-agent", "state", "waiting"])?;
    ensure!(!output.status.success());
    ensure!(String::from_utf8_lossy(&output.stderr).contains("`waiting`"));
    Ok(())
}
