//! `socktrace agent --metrics`: a real Prometheus scrapes the agent every
//! second while a namespace plays the field cases (a refused port, a SYN
//! dropped by iptables, TIME-WAIT churn, a CLOSE-WAIT left open). What
//! Prometheus then holds must match what the scenario did, what the kernel
//! counted (`TcpExtTCPSynRetrans`) and what `ss` lists. The agent and
//! Prometheus run in a namespace of their own, so that the scrapes are no
//! part of the traced traffic. The shipped alerting rules and dashboard run
//! on that Prometheus: every rule evaluates and every query returns a
//! series.
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;
use socktrace_integration_tests::{
    Agent, Family, KillOnDrop, NetNs, SocketDir, TIMEOUT,
    http::{self, percent_encoded},
    tcp,
    wait::{self, Poll},
};

/// How long Prometheus may take to show a value: a few scrapes, a listing.
const SCRAPED: Duration = Duration::from_secs(30);

#[test]
fn a_real_prometheus_sees_what_the_scenario_did() -> Result<()> {
    let traced = NetNs::new()?;
    traced.sysctl("net.ipv4.tcp_syn_retries", "1")?;
    traced.sysctl("net.ipv4.tcp_max_tw_buckets", "1000")?;
    let monitor = NetNs::new()?;
    let listener = traced.run(|| tcp::listen(Family::V4))?;
    let listener_port = tcp::local_port(&listener)?.to_string();
    let dir = SocketDir::new();
    let mut agent = Agent::start_daemon(
        &monitor,
        &dir.socket(),
        &[
            "-N",
            traced.name(),
            "--metrics",
            "127.0.0.1:0",
            "--metrics-peer",
            "127.0.0.0/8",
            "--metrics-peer",
            "192.0.2.0/24",
            "--metrics-port",
            &listener_port,
            "--metrics-namespaces",
        ],
    )?;
    let metrics = metrics_address(agent.stderr_now())?;
    let prometheus = Prometheus::start(&monitor, metrics)?;
    let retransmits_before = traced.tcp_ext("TCPSynRetrans")?;
    let overflows_before = traced.tcp_ext("ListenOverflows")?;

    // A refused port, three times.
    let closed = tcp::unused_port(&traced, Family::V4)?;
    for _ in 0..3 {
        expect_connect_error(&traced, closed, libc::ECONNREFUSED)?;
    }
    // A SYN dropped: the connect times out after the kernel's retransmits.
    let dropped = tcp::unused_port(&traced, Family::V4)?;
    let rule = format!("INPUT -p tcp --dport {dropped} -j DROP");
    traced.firewall(Family::V4, "-A", &rule)?;
    expect_connect_error(&traced, dropped, libc::ETIMEDOUT)?;
    // TIME-WAIT churn: the client closes first, 20 times.
    for _ in 0..20 {
        let (client, mut server) = traced.run(|| tcp::connect_pair(&listener))?;
        drop(client);
        tcp::read_to_eof(&mut server, TIMEOUT)?;
    }
    // A CLOSE-WAIT left open: the client closed, the server does not.
    let (client, mut stuck) = traced.run(|| tcp::connect_pair(&listener))?;
    drop(client);
    tcp::read_to_eof(&mut stuck, TIMEOUT)?;
    // A connection the server never accepts: it waits in the accept queue.
    let waiting = traced.run(|| tcp::connect(&listener))?;

    let retransmits = traced.tcp_ext("TCPSynRetrans")? - retransmits_before;
    ensure!(retransmits > 0, "the kernel retransmitted no SYN");
    let time_wait_in_ss = traced
        .exec(&["ss", "-tanH", "state", "time-wait"])?
        .lines()
        .count();
    ensure!(
        time_wait_in_ss == 20,
        "ss lists {time_wait_in_ss} TIME-WAIT sockets"
    );

    for (query, expected) in [
        (
            r#"socktrace_handshakes_total{side="client",outcome="refused"}"#,
            3.0,
        ),
        (
            r#"socktrace_handshakes_total{side="client",outcome="timeout"}"#,
            1.0,
        ),
        (
            r#"socktrace_peer_handshakes_total{peer="127.0.0.0/8",side="client",outcome="timeout"}"#,
            1.0,
        ),
        (
            r#"sum(socktrace_peer_handshakes_total{peer="127.0.0.0/8",side="client"})"#,
            26.0,
        ),
        (
            r#"sum(socktrace_peer_handshakes_total{peer="192.0.2.0/24"})"#,
            0.0,
        ),
        (
            r#"socktrace_handshakes_total{side="client",outcome="established"}"#,
            22.0,
        ),
        (
            r#"socktrace_handshakes_total{side="server",outcome="completed"}"#,
            22.0,
        ),
        (
            "socktrace_syn_retransmits_total + socktrace_synack_retransmits_total",
            retransmits as f64,
        ),
        (
            r#"sum(socktrace_peer_retransmits_total{peer="127.0.0.0/8"})"#,
            retransmits as f64,
        ),
        (
            r#"socktrace_sockets{state="TIME_WAIT"}"#,
            time_wait_in_ss as f64,
        ),
        // The 20, and the CLOSE-WAIT's client: closed, it waits in an
        // orphan FIN-WAIT-2 timewait socket.
        ("socktrace_time_wait_entries_total", 21.0),
        (r#"socktrace_sockets{state="FIN_WAIT2"}"#, 1.0),
        (r#"socktrace_sockets{state="CLOSE_WAIT"}"#, 1.0),
        (
            r#"socktrace_transitions_total{from="SYN_SENT",to="CLOSE"}"#,
            4.0,
        ),
        ("sum(socktrace_lost_events_total)", 0.0),
    ] {
        prometheus.wait_for(query, expected)?;
    }
    // The 20 and the orphan hold 21 of the namespace's 1000 timewait
    // buckets, and 21 of its ephemeral ports towards the listener.
    let range = traced.run(|| std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range"))?;
    let (low, high) = range
        .split_once(char::is_whitespace)
        .context("ip_local_port_range")?;
    let ports = high.trim().parse::<f64>()? - low.trim().parse::<f64>()? + 1.0;
    let listener_port = tcp::local_port(&listener)?;
    let backlog_in_ss: f64 = traced
        .exec(&["ss", "-ltnH", "sport", "=", &format!(":{listener_port}")])?
        .split_whitespace()
        .nth(2)
        .context("no listener in ss")?
        .parse()?;
    for (query, expected) in [
        (
            format!(r#"socktrace_listen_queue{{port="{listener_port}"}}"#),
            1.0,
        ),
        (
            format!(r#"socktrace_listen_backlog{{port="{listener_port}"}}"#),
            backlog_in_ss,
        ),
        (
            "socktrace_time_wait_buckets_used_ratio".to_owned(),
            21.0 / 1000.0,
        ),
        (
            format!(
                r#"socktrace_ephemeral_ports_used_ratio{{source="127.0.0.1",destination="127.0.0.1:{listener_port}"}}"#
            ),
            21.0 / ports,
        ),
        (
            "socktrace_listen_overflows_total".to_owned(),
            (traced.tcp_ext("ListenOverflows")? - overflows_before) as f64,
        ),
    ] {
        prometheus.wait_for(&query, expected)?;
    }
    // Counted apart for the traced namespace, named as /run/netns names it.
    for (query, expected) in [
        (
            format!(
                r#"socktrace_namespace_handshakes_total{{namespace="{}",side="client",outcome="refused"}}"#,
                traced.name()
            ),
            3.0,
        ),
        (
            format!(
                r#"socktrace_namespace_sockets{{namespace="{}",state="TIME_WAIT"}}"#,
                traced.name()
            ),
            time_wait_in_ss as f64,
        ),
    ] {
        prometheus.wait_for(&query, expected)?;
    }
    let oldest = prometheus.value("socktrace_close_wait_oldest_seconds")?;
    ensure!(
        oldest.is_some_and(|age| age > 0.0),
        "CLOSE-WAIT's oldest age: {oldest:?}"
    );
    drop((stuck, waiting));

    // What Prometheus scraped passes its own linter, and OpenMetrics is
    // there for who asks.
    let scrape = http::get(&monitor, metrics, "/metrics", &[])?;
    ensure!(scrape.status == 200, "status {}", scrape.status);
    promtool_check_metrics(&scrape.body)?;
    let open = http::get(
        &monitor,
        metrics,
        "/metrics",
        &["Accept: application/openmetrics-text; version=1.0.0"],
    )?;
    ensure!(
        open.header("content-type")
            .is_some_and(|t| t.starts_with("application/openmetrics-text"))
            && open.body.ends_with("# EOF\n"),
        "not OpenMetrics: {:?}",
        open.header("content-type")
    );
    let missing = http::get(&monitor, metrics, "/other", &[])?;
    ensure!(missing.status == 404, "status {}", missing.status);

    // The shipped scrape config and rules pass promtool; the rules ran on
    // this Prometheus without error, each recorded series exists, and each
    // dashboard query returns a series.
    promtool(
        &["check", "config"],
        &deploy().join("prometheus/prometheus.yml"),
    )?;
    let recorded = prometheus.wait_rules_evaluated()?;
    ensure!(!recorded.is_empty(), "no recording rules");
    for query in recorded.iter().chain(&dashboard_queries()?) {
        prometheus.wait_for_series(query)?;
    }

    traced.firewall(Family::V4, "-D", &rule)?;
    agent.stop()
}

#[test]
fn scrapers_that_send_nothing_give_their_slots_back() -> Result<()> {
    let traced = NetNs::new()?;
    let monitor = NetNs::new()?;
    let dir = SocketDir::new();
    let mut agent = Agent::start_daemon(
        &monitor,
        &dir.socket(),
        &["-N", traced.name(), "--metrics", "127.0.0.1:0"],
    )?;
    let metrics = metrics_address(agent.stderr_now())?;
    // Every slot taken by a connection that never sends a request.
    let silent: Vec<TcpStream> = (0..8)
        .map(|_| monitor.run(|| TcpStream::connect(metrics)))
        .collect::<std::io::Result<_>>()?;
    let scrape = http::get(&monitor, metrics, "/metrics", &[])?;
    ensure!(scrape.status == 200, "status {}", scrape.status);
    ensure!(
        scrape.body.contains("socktrace_sockets{"),
        "{}",
        scrape.body
    );
    drop(silent);
    let said = agent.stop_with_stderr(libc::SIGTERM)?;
    ensure!(
        said.iter()
            .any(|line| line.contains("all 8 scraper slots taken")),
        "the full slots were not logged: {said:?}"
    );
    Ok(())
}

/// `http://ADDR/metrics` from the agent's ready line.
fn metrics_address(stderr: &[String]) -> Result<SocketAddr> {
    stderr
        .iter()
        .find_map(|line| line.split("metrics on http://").nth(1))
        .and_then(|rest| rest.split('/').next())
        .context("no metrics address on the ready line")?
        .parse()
        .context("the metrics address")
}

fn expect_connect_error(ns: &NetNs, port: u16, errno: i32) -> Result<()> {
    let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
    match ns.run(|| TcpStream::connect(addr)) {
        Ok(_) => bail!("connecting to {addr} succeeded"),
        Err(error) if error.raw_os_error() == Some(errno) => Ok(()),
        Err(error) => bail!("connecting to {addr}: {error}, expected errno {errno}"),
    }
}

/// socktrace's deploy folder: the Prometheus files and the dashboard.
fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../socktrace/deploy")
}

/// Every query of every panel of the shipped Grafana dashboard.
fn dashboard_queries() -> Result<Vec<String>> {
    let path = deploy().join("grafana/socktrace-dashboard.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)
        .with_context(|| format!("{}", path.display()))?;
    let queries: Vec<String> = dashboard["panels"]
        .as_array()
        .context("no panels")?
        .iter()
        .flat_map(|panel| panel["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|target| target["expr"].as_str().map(str::to_owned))
        .collect();
    ensure!(!queries.is_empty(), "no queries in {}", path.display());
    Ok(queries)
}

/// `promtool ARGS FILE`, which must succeed.
fn promtool(args: &[&str], file: &Path) -> Result<()> {
    let output = Command::new("promtool")
        .args(args)
        .arg(file)
        .output()
        .context("running promtool (Debian's prometheus package)")?;
    ensure!(
        output.status.success(),
        "promtool {} {}: {}{}",
        args.join(" "),
        file.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

fn promtool_check_metrics(body: &str) -> Result<()> {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running promtool (Debian's prometheus package)")?;
    child
        .stdin
        .take()
        .context("promtool's stdin")?
        .write_all(body.as_bytes())?;
    let output = child.wait_with_output()?;
    ensure!(
        output.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// A Prometheus server scraping one target every second, in a namespace.
struct Prometheus<'ns> {
    ns: &'ns NetNs,
    address: SocketAddr,
    _server: KillOnDrop,
    _storage: Storage,
}

/// Prometheus's configuration and data, removed when dropped.
struct Storage(PathBuf);

impl Drop for Storage {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl<'ns> Prometheus<'ns> {
    fn start(ns: &'ns NetNs, target: SocketAddr) -> Result<Self> {
        let storage = Storage(SocketDir::new().path().with_extension("prometheus"));
        std::fs::create_dir_all(&storage.0)?;
        let config = storage.0.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {rules}\n\
                 scrape_configs:\n  - job_name: socktrace\n    static_configs:\n      \
                 - targets: ['{target}']\n",
                rules = deploy().join("prometheus/socktrace-rules.yml").display()
            ),
        )?;
        let address = SocketAddr::new(
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            tcp::unused_port(ns, Family::V4)?,
        );
        let server = ns
            .command("prometheus")?
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                storage.0.join("data").display()
            ))
            .arg(format!("--web.listen-address={address}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting prometheus (Debian's prometheus package)")?;
        let prometheus = Prometheus {
            ns,
            address,
            _server: KillOnDrop::new(server),
            _storage: storage,
        };
        wait::until("Prometheus to be ready", TIMEOUT, || {
            Ok(match http::get(ns, address, "/-/ready", &[]) {
                Ok(reply) if reply.status == 200 => Poll::Ready(()),
                Ok(reply) => Poll::Pending(format!("status {}", reply.status)),
                Err(error) => Poll::Pending(error.to_string()),
            })
        })?;
        Ok(prometheus)
    }

    /// `data` of an API answer, which must be a success.
    fn api(&self, path: &str) -> Result<Value> {
        let reply = http::get(self.ns, self.address, path, &[])?;
        let answer: Value = serde_json::from_str(&reply.body)
            .with_context(|| format!("Prometheus answered {}: {}", reply.status, reply.body))?;
        ensure!(answer["status"] == "success", "{path}: {}", reply.body);
        Ok(answer["data"].clone())
    }

    /// The series an instant query returns.
    fn series(&self, query: &str) -> Result<Vec<Value>> {
        let data = self.api(&format!("/api/v1/query?query={}", percent_encoded(query)))?;
        data["result"]
            .as_array()
            .cloned()
            .with_context(|| format!("{query}: no result vector in {data}"))
    }

    /// The value of an instant query that returns one series, `None` when
    /// it returns none.
    fn value(&self, query: &str) -> Result<Option<f64>> {
        let result = self.series(query)?;
        match result.as_slice() {
            [] => Ok(None),
            [one] => one["value"][1]
                .as_str()
                .and_then(|value| value.parse().ok())
                .map(Some)
                .with_context(|| format!("no value in {one}")),
            several => bail!("{query} returned {} series", several.len()),
        }
    }

    /// Waits until `query` returns at least one series.
    fn wait_for_series(&self, query: &str) -> Result<()> {
        wait::until(&format!("a series from {query}"), SCRAPED, || {
            Ok(match self.series(query)?.len() {
                0 => Poll::Pending("none".into()),
                _ => Poll::Ready(()),
            })
        })
    }

    /// Waits until every rule loaded was evaluated without error, and
    /// returns the names the recording rules record.
    fn wait_rules_evaluated(&self) -> Result<Vec<String>> {
        wait::until("every rule evaluated", SCRAPED, || {
            let data = self.api("/api/v1/rules")?;
            let rules: Vec<Value> = data["groups"]
                .as_array()
                .context("no rule groups")?
                .iter()
                .flat_map(|group| group["rules"].as_array().cloned().unwrap_or_default())
                .collect();
            if let Some(failed) = rules.iter().find(|rule| rule["health"] == "err") {
                bail!("a rule failed: {failed}");
            }
            Ok(
                if !rules.is_empty() && rules.iter().all(|rule| rule["health"] == "ok") {
                    Poll::Ready(
                        rules
                            .iter()
                            .filter(|rule| rule["type"] == "recording")
                            .filter_map(|rule| rule["name"].as_str().map(str::to_owned))
                            .collect(),
                    )
                } else {
                    Poll::Pending(format!("{} rules, not all evaluated", rules.len()))
                },
            )
        })
    }

    /// Waits until `query` returns `expected`.
    fn wait_for(&self, query: &str, expected: f64) -> Result<()> {
        wait::until(
            &format!("{query} == {expected} in Prometheus"),
            SCRAPED,
            || {
                Ok(match self.value(query)? {
                    Some(value) if value == expected => Poll::Ready(()),
                    seen => Poll::Pending(format!("{seen:?}")),
                })
            },
        )
    }
}
