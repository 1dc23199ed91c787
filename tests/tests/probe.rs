//! `socktrace probe` against real ports in a fresh namespace: open,
//! closed, behind an iptables DROP or REJECT, listening on loopback only,
//! a name with two addresses, and TLS with certificates openssl made.
//! Every verdict is checked with its exit status, and retransmits against
//! the kernel's own counter.
use std::io::Read as _;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use socktrace_integration_tests::{
    Family, KillOnDrop, NetNs, SocketDir, TIMEOUT, agent_binary, run_checked, tcp, wait,
};

/// What one run of `socktrace probe --json` printed, and its exit status.
struct Probed {
    status: i32,
    records: Vec<Value>,
    stdout: String,
    stderr: String,
}

impl Probed {
    fn of_type(&self, kind: &str) -> Vec<&Value> {
        self.records.iter().filter(|r| r["type"] == kind).collect()
    }

    /// The one `probe_result`, or the last of several.
    fn result(&self) -> Result<&Value> {
        self.of_type("probe_result")
            .last()
            .copied()
            .with_context(|| format!("no probe_result in:\n{}{}", self.stdout, self.stderr))
    }

    /// Fails unless the probe exited with `status`, showing what it printed.
    fn exits_with(&self, status: i32) -> Result<()> {
        ensure!(
            self.status == status,
            "exit {}, expected {status}: {}{}",
            self.status,
            self.stdout,
            self.stderr
        );
        Ok(())
    }

    fn steps(&self, step: &str) -> Vec<&Value> {
        self.records
            .iter()
            .filter(|r| r["type"] == "probe_step" && r["step"] == step)
            .collect()
    }
}

/// Runs `socktrace probe ARGS` in `ns` (through `wrapper` first, when
/// given), with a deadline.
fn probe_with(ns: &NetNs, wrapper: &[&str], args: &[&str]) -> Result<Probed> {
    let binary = agent_binary();
    let mut command = match wrapper.split_first() {
        Some((program, rest)) => {
            let mut command = ns.command(program)?;
            command.args(rest).arg(&binary);
            command
        }
        None => ns.command(&binary)?,
    };
    command
        .arg("probe")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = KillOnDrop::new(command.spawn().context("starting socktrace probe")?);
    let status = child.wait_exit(TIMEOUT)?;
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .context("stdout")?
        .read_to_string(&mut stdout)?;
    child
        .stderr
        .take()
        .context("stderr")?
        .read_to_string(&mut stderr)?;
    let records = if args.contains(&"--json") {
        stdout
            .lines()
            .map(|line| serde_json::from_str(line).with_context(|| format!("not JSON: {line}")))
            .collect::<Result<_>>()?
    } else {
        Vec::new()
    };
    Ok(Probed {
        status: status.code().context("killed by a signal")?,
        records,
        stdout,
        stderr,
    })
}

fn probe(ns: &NetNs, args: &[&str]) -> Result<Probed> {
    probe_with(ns, &[], args)
}

fn target(ip: IpAddr, port: u16) -> String {
    SocketAddr::new(ip, port).to_string()
}

fn listener(ns: &NetNs, ip: IpAddr) -> Result<(TcpListener, u16)> {
    let listener = ns.run(|| TcpListener::bind(SocketAddr::new(ip, 0)))?;
    let port = tcp::local_port(&listener)?;
    Ok((listener, port))
}

#[test]
fn an_open_port_ipv4_is_reachable_with_its_handshake_time() -> Result<()> {
    open_port_reachable(Family::V4)
}

#[test]
fn an_open_port_ipv6_is_reachable_with_its_handshake_time() -> Result<()> {
    open_port_reachable(Family::V6)
}

fn open_port_reachable(family: Family) -> Result<()> {
    let ns = NetNs::new()?;
    let (_listener, port) = listener(&ns, family.loopback())?;
    let to = target(family.loopback(), port);
    let probed = probe(&ns, &[&to, "--json", "--count", "3", "--interval", "0"])?;
    probed.exits_with(0)?;
    let results = probed.of_type("probe_result");
    ensure!(results.len() == 3, "{}", probed.stdout);
    for result in &results {
        ensure!(result["verdict"] == "reachable", "{result}");
        ensure!(
            result["handshake_ms"].as_f64().is_some_and(|ms| ms > 0.0),
            "{result}"
        );
        ensure!(result["syn_retransmits"] == 0, "{result}");
    }
    let sent = probed.steps("syn_sent");
    ensure!(sent.len() == 3, "{}", probed.stdout);
    let local = sent[0]["local"]
        .as_str()
        .context("the SYN's local address")?;
    let local: SocketAddr = local.parse()?;
    ensure!(
        local.ip() == family.loopback() && local.port() != 0,
        "{local}"
    );
    ensure!(
        probed.steps("syn_ack_received").len() == 3 && probed.steps("closed").len() == 3,
        "{}",
        probed.stdout
    );
    let summary = probed.of_type("probe_summary");
    ensure!(
        summary.len() == 1 && summary[0]["verdicts"]["reachable"] == 3,
        "{}",
        probed.stdout
    );
    // The text: each step with its time, then the verdict.
    let text = probe(&ns, &[&to])?;
    text.exits_with(0)?;
    ensure!(
        text.stdout.contains(" ms  SYN sent from ")
            && text.stdout.contains(" ms  SYN-ACK received: connected")
            && text.stdout.contains(&format!(
                "{} reachable: handshake ",
                SocketAddr::new(family.loopback(), port)
            )),
        "{}",
        text.stdout
    );
    Ok(())
}

#[test]
fn a_closed_port_ipv4_is_refused_by_a_rst() -> Result<()> {
    closed_port_refused(Family::V4)
}

#[test]
fn a_closed_port_ipv6_is_refused_by_a_rst() -> Result<()> {
    closed_port_refused(Family::V6)
}

fn closed_port_refused(family: Family) -> Result<()> {
    let ns = NetNs::new()?;
    let port = tcp::unused_port(&ns, family)?;
    let probed = probe(&ns, &[&target(family.loopback(), port), "--json"])?;
    probed.exits_with(3)?;
    let result = probed.result()?;
    ensure!(
        result["verdict"] == "refused" && result["errno"] == "ECONNREFUSED",
        "{result}"
    );
    ensure!(probed.steps("rst_received").len() == 1, "{}", probed.stdout);
    ensure!(
        result["hint"] == format!("nothing listens on port {port} in this network namespace"),
        "{result}"
    );
    Ok(())
}

#[test]
fn a_dropped_syn_ipv4_times_out_after_the_kernels_retransmits() -> Result<()> {
    dropped_syn_times_out(Family::V4)
}

#[test]
fn a_dropped_syn_ipv6_times_out_after_the_kernels_retransmits() -> Result<()> {
    dropped_syn_times_out(Family::V6)
}

fn dropped_syn_times_out(family: Family) -> Result<()> {
    let ns = NetNs::new()?;
    let port = tcp::unused_port(&ns, family)?;
    ns.firewall(
        family,
        "-A",
        &format!("INPUT -p tcp --dport {port} -j DROP"),
    )?;
    let before = ns.tcp_ext("TCPSynRetrans")?;
    let probed = probe(
        &ns,
        &[&target(family.loopback(), port), "--json", "--timeout", "4"],
    )?;
    let kernel = ns.tcp_ext("TCPSynRetrans")? - before;
    probed.exits_with(4)?;
    ensure!(kernel > 0, "the kernel retransmitted no SYN in 4 s");
    let retransmits = probed.steps("syn_retransmit");
    ensure!(
        retransmits.len() as u64 == kernel,
        "{} SYN retransmits told, the kernel counted {kernel}: {}",
        retransmits.len(),
        probed.stdout
    );
    let result = probed.result()?;
    ensure!(
        result["verdict"] == "timeout" && result["syn_retransmits"] == kernel,
        "{result}"
    );
    let gave_up = probed.steps("gave_up");
    ensure!(
        gave_up.len() == 1
            && gave_up[0]["at_ms"]
                .as_f64()
                .is_some_and(|ms| (3_900.0..6_000.0).contains(&ms)),
        "{}",
        probed.stdout
    );
    Ok(())
}

#[test]
fn an_icmp_rejected_port_ipv4_is_unreachable_with_its_kind() -> Result<()> {
    icmp_rejected(
        Family::V4,
        "icmp-port-unreachable",
        "ECONNREFUSED",
        "ICMP port unreachable",
    )?;
    icmp_rejected(
        Family::V4,
        "icmp-host-prohibited",
        "EHOSTUNREACH",
        "ICMP host unreachable or administratively prohibited",
    )
}

#[test]
fn an_icmp_rejected_port_ipv6_is_unreachable_with_its_kind() -> Result<()> {
    icmp_rejected(
        Family::V6,
        "icmp6-adm-prohibited",
        "EACCES",
        "administratively prohibited",
    )
}

fn icmp_rejected(family: Family, reject_with: &str, errno: &str, kind: &str) -> Result<()> {
    let ns = NetNs::new()?;
    let port = tcp::unused_port(&ns, family)?;
    ns.firewall(
        family,
        "-A",
        &format!("INPUT -p tcp --dport {port} -j REJECT --reject-with {reject_with}"),
    )?;
    let probed = probe(&ns, &[&target(family.loopback(), port), "--json"])?;
    probed.exits_with(5)?;
    let result = probed.result()?;
    ensure!(
        result["verdict"] == "unreachable" && result["errno"] == errno,
        "{result}"
    );
    ensure!(
        probed.steps("rst_received").is_empty(),
        "no RST came: {}",
        probed.stdout
    );
    let failed = probed.steps("failed");
    ensure!(
        failed.len() == 1 && failed[0]["text"] == format!("{kind} ({errno})"),
        "{}",
        probed.stdout
    );
    Ok(())
}

#[test]
fn a_loopback_only_listener_probed_by_another_address_ipv4_says_where_it_listens() -> Result<()> {
    loopback_only(Family::V4, "10.203.0.1/24", "10.203.0.1")
}

#[test]
fn a_loopback_only_listener_probed_by_another_address_ipv6_says_where_it_listens() -> Result<()> {
    loopback_only(Family::V6, "fd00:203::1/64", "fd00:203::1")
}

fn loopback_only(family: Family, cidr: &str, other: &str) -> Result<()> {
    let ns = NetNs::new()?;
    ns.exec(&["ip", "addr", "add", cidr, "dev", "lo"])?;
    let (_listener, port) = listener(&ns, family.loopback())?;
    let other: IpAddr = other.parse()?;
    let probed = probe(&ns, &[&target(other, port), "--json"])?;
    probed.exits_with(3)?;
    let shown = match family.loopback() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    };
    let result = probed.result()?;
    ensure!(
        result["hint"] == format!("port {port} listens on {shown} only, not on {other}"),
        "{result}"
    );
    // Probed by its own address, it answers.
    let reached = probe(&ns, &[&target(family.loopback(), port), "--json"])?;
    reached.exits_with(0)?;
    Ok(())
}

/// A hosts file that names `probe.test`, bind-mounted over /etc/hosts for
/// one process only (a mount namespace of its own).
struct HostsFile {
    dir: SocketDir,
}

impl HostsFile {
    fn new(lines: &str) -> Result<Self> {
        let dir = SocketDir::new();
        std::fs::create_dir_all(dir.path())?;
        std::fs::write(dir.path().join("hosts"), lines)?;
        Ok(HostsFile { dir })
    }

    fn wrapper(&self) -> Vec<String> {
        let hosts = self.dir.path().join("hosts");
        [
            "unshare",
            "--mount",
            "sh",
            "-c",
            "mount --bind \"$0\" /etc/hosts && exec \"$@\"",
            &hosts.to_string_lossy(),
        ]
        .map(str::to_owned)
        .to_vec()
    }
}

#[test]
fn a_name_with_two_addresses_is_tried_address_by_address() -> Result<()> {
    let ns = NetNs::new()?;
    // Listening on IPv4 only: the IPv6 address refuses.
    let (_listener, port) = listener(&ns, Family::V4.loopback())?;
    let hosts = HostsFile::new("::1 probe.test\n127.0.0.1 probe.test\n")?;
    let wrapper = hosts.wrapper();
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let to = format!("probe.test:{port}");
    let probed = probe_with(&ns, &wrapper, &[&to, "--json"])?;
    probed.exits_with(0)?;
    let named = probed.of_type("probe_target");
    ensure!(
        named.len() == 1
            && named[0]["addresses"]
                .as_array()
                .is_some_and(|a| a.len() == 2),
        "{}",
        probed.stdout
    );
    for result in probed.of_type("probe_result") {
        let expected = if result["address"] == format!("[::1]:{port}") {
            "refused"
        } else {
            "reachable"
        };
        ensure!(result["verdict"] == expected, "{result}");
    }
    ensure!(
        probed.result()?["address"] == format!("127.0.0.1:{port}"),
        "{}",
        probed.stdout
    );
    let only_v6 = probe_with(&ns, &wrapper, &[&to, "--json", "-6"])?;
    only_v6.exits_with(3)?;
    Ok(())
}

/// A CA and a server certificate it signed for `probe.test` and 127.0.0.1,
/// made by openssl.
struct Certificates {
    dir: SocketDir,
}

impl Certificates {
    fn new() -> Result<Self> {
        let dir = SocketDir::new();
        std::fs::create_dir_all(dir.path())?;
        let at = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
        let openssl = |args: &[&str]| run_checked(Command::new("openssl").args(args));
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &at("ca.key"),
            "-out",
            &at("ca.pem"),
            "-days",
            "30",
            "-subj",
            "/CN=socktrace test CA",
        ])?;
        openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &at("server.key"),
            "-out",
            &at("server.csr"),
            "-subj",
            "/CN=probe.test",
        ])?;
        std::fs::write(
            at("server.ext"),
            "subjectAltName=DNS:probe.test,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
        )?;
        openssl(&[
            "x509",
            "-req",
            "-in",
            &at("server.csr"),
            "-CA",
            &at("ca.pem"),
            "-CAkey",
            &at("ca.key"),
            "-CAcreateserial",
            "-out",
            &at("server.pem"),
            "-days",
            "20",
            "-extfile",
            &at("server.ext"),
        ])?;
        Ok(Certificates { dir })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// `openssl s_server` on 127.0.0.1:`port` in `ns`, once it accepts.
fn tls_server(ns: &NetNs, certificates: &Certificates, port: u16) -> Result<KillOnDrop> {
    let path = |name: &str| certificates.path(name);
    let server = ns
        .command("openssl")?
        .args(["s_server", "-quiet", "-accept"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-cert")
        .arg(path("server.pem"))
        .arg("-key")
        .arg(path("server.key"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting openssl s_server")?;
    let server = KillOnDrop::new(server);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait::until("openssl s_server to listen", TIMEOUT, || {
        Ok(match ns.run(|| std::net::TcpStream::connect(addr)) {
            Ok(_) => wait::Poll::Ready(()),
            Err(error) => wait::Poll::Pending(error.to_string()),
        })
    })?;
    Ok(server)
}

fn ca_arg(certificates: &Certificates) -> String {
    certificates.path("ca.pem").to_string_lossy().into_owned()
}

#[test]
fn tls_reports_the_handshake_and_trusts_the_certificate_only_with_its_ca() -> Result<()> {
    let ns = NetNs::new()?;
    let certificates = Certificates::new()?;
    let port = tcp::unused_port(&ns, Family::V4)?;
    let _server = tls_server(&ns, &certificates, port)?;
    let hosts = HostsFile::new("127.0.0.1 probe.test\n")?;
    let wrapper = hosts.wrapper();
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let to = format!("probe.test:{port}");

    let untrusted = probe_with(&ns, &wrapper, &[&to, "--tls", "--json"])?;
    untrusted.exits_with(8)?;
    let tls = &untrusted.result()?["tls"];
    ensure!(tls["trusted"] == false, "{tls}");
    ensure!(
        tls["untrusted_because"]
            .as_str()
            .is_some_and(|why| why.contains("UnknownIssuer")),
        "{tls}"
    );
    ensure!(
        tls["subject"] == "CN=probe.test" && tls["issuer"] == "CN=socktrace test CA",
        "{tls}"
    );
    ensure!(tls["protocol"] == "TLSv1.3", "{tls}");
    ensure!(
        tls["cipher"]
            .as_str()
            .is_some_and(|c| c.starts_with("TLS13_")),
        "{tls}"
    );
    ensure!(
        tls["days_left"]
            .as_i64()
            .is_some_and(|d| (18..=20).contains(&d)),
        "{tls}"
    );

    let ca = ca_arg(&certificates);
    let trusted = probe_with(&ns, &wrapper, &[&to, "--tls", "--ca", &ca, "--json"])?;
    trusted.exits_with(0)?;
    ensure!(
        trusted.result()?["tls"]["trusted"] == true,
        "{}",
        trusted.stdout
    );

    // The name is part of trust: by address, the certificate names the IP
    // too; a name it does not hold is refused.
    let by_ip = probe(&ns, &[&format!("127.0.0.1:{port}"), "--tls", "--ca", &ca])?;
    by_ip.exits_with(0)?;
    ensure!(
        by_ip.stdout.contains("trust: trusted for this name"),
        "{}",
        by_ip.stdout
    );
    let hosts = HostsFile::new("127.0.0.1 other.test\n")?;
    let wrapper = hosts.wrapper();
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let other = probe_with(
        &ns,
        &wrapper,
        &[&format!("other.test:{port}"), "--tls", "--ca", &ca],
    )?;
    other.exits_with(8)?;
    Ok(())
}

#[test]
fn tls_with_a_server_that_never_answers_fails_with_its_own_status() -> Result<()> {
    let ns = NetNs::new()?;
    // Listening, never accepting: the kernel completes the TCP handshake and
    // nobody answers the ClientHello.
    let (_listener, port) = listener(&ns, Family::V4.loopback())?;
    let probed = probe(
        &ns,
        &[
            &format!("127.0.0.1:{port}"),
            "--tls",
            "--timeout",
            "2",
            "--json",
        ],
    )?;
    probed.exits_with(7)?;
    let result = probed.result()?;
    ensure!(result["verdict"] == "reachable", "{result}");
    ensure!(
        result["tls"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("no TLS handshake within")),
        "{result}"
    );
    Ok(())
}

#[test]
fn bad_targets_are_one_line_errors() -> Result<()> {
    let ns = NetNs::new()?;
    for (args, says) in [
        (&["example.com"][..], "is not HOST:PORT"),
        (&["2001:db8::1:80"][..], "is not HOST:PORT"),
        (&["127.0.0.1:0"][..], "is not a port"),
        (
            &["no-such-host.invalid:80"][..],
            "resolving no-such-host.invalid",
        ),
        (&["127.0.0.1:80", "-6"][..], "has no IPv6 address"),
    ] {
        let probed = probe(&ns, args)?;
        ensure!(
            probed.status == 1 || probed.status == 2,
            "{args:?}: exit {}",
            probed.status
        );
        ensure!(probed.stderr.contains(says), "{args:?}: {}", probed.stderr);
        ensure!(!probed.stderr.contains("panicked"), "{}", probed.stderr);
    }
    Ok(())
}

#[test]
fn no_ephemeral_port_left_for_the_destination_is_its_own_verdict() -> Result<()> {
    let ns = NetNs::new()?;
    let (listener, port) = listener(&ns, Family::V4.loopback())?;
    // One ephemeral port, taken by a connection to the same destination.
    ns.sysctl("net.ipv4.ip_local_port_range", "40000 40000")?;
    let _taken = ns.run(|| tcp::connect(&listener))?;
    let probed = probe(&ns, &[&format!("127.0.0.1:{port}"), "--json"])?;
    probed.exits_with(6)?;
    let result = probed.result()?;
    ensure!(
        result["verdict"] == "no_local_port" && result["errno"] == "EADDRNOTAVAIL",
        "{result}"
    );
    Ok(())
}
