//! The second load: a real HTTP server (Debian's nginx) answering short
//! requests from a real load generator (wrk), both in the bench's
//! namespace. Every request has a connection of its own, which the server
//! closes (`keepalive_timeout 0`, and wrk asks `Connection: close`).
use std::{
    fs::{self, File},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use super::{
    Load,
    churn::{Window, enter, listen_in},
};
use crate::netns::Netns;

/// Debian packages: the server and the load generator.
pub const PACKAGES: [&str; 2] = ["nginx-light", "wrk"];
/// wrk's threads and open connections: two threads keep a 2-core machine's
/// server busy, and 64 connections keep every worker's accept queue full.
const WRK_THREADS: usize = 2;
const WRK_CONNECTIONS: usize = 64;

/// The load as the report names it.
pub fn description() -> String {
    format!(
        "nginx in a namespace answering wrk ({WRK_THREADS} threads, {WRK_CONNECTIONS} \
         connections), a connection per request"
    )
}
/// How long nginx may take to listen.
const START_DEADLINE: Duration = Duration::from_secs(10);

/// nginx serving in the namespace until dropped.
pub struct HttpLoad {
    nginx: Child,
    directory: PathBuf,
    netns_path: String,
    url: String,
}

impl HttpLoad {
    /// Starts nginx (one worker per CPU) on an ephemeral port of 127.0.0.1
    /// in `netns`, and waits until it answers.
    pub fn start(netns: &Netns) -> Result<Self> {
        let netns_path = netns.path();
        let namespace = File::open(&netns_path).with_context(|| format!("opening {netns_path}"))?;
        let port = listen_in(&namespace, Ipv4Addr::LOCALHOST.into())?
            .local_addr()?
            .port();
        let directory =
            std::env::temp_dir().join(format!("socktrace-bench-nginx-{}", std::process::id()));
        fs::create_dir_all(&directory)?;
        let config = directory.join("nginx.conf");
        fs::write(&config, nginx_config(&directory, port))?;
        let nginx = Command::new("nsenter")
            .arg(format!("--net={netns_path}"))
            .arg("nginx")
            .arg("-c")
            .arg(&config)
            .arg("-p")
            .arg(&directory)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(directory.join("error.log"))?)
            .spawn()
            .context("starting nginx (Debian's nginx-light)")?;
        let load = HttpLoad {
            nginx,
            directory,
            netns_path,
            url: format!("http://127.0.0.1:{port}/"),
        };
        load.wait_listening(&namespace, SocketAddr::from((Ipv4Addr::LOCALHOST, port)))?;
        Ok(load)
    }

    fn wait_listening(&self, namespace: &File, address: SocketAddr) -> Result<()> {
        let deadline = Instant::now() + START_DEADLINE;
        thread::scope(|scope| {
            scope
                .spawn(|| -> Result<()> {
                    enter(namespace)?;
                    while TcpStream::connect(address).is_err() {
                        if Instant::now() > deadline {
                            let log = fs::read_to_string(self.directory.join("error.log"))
                                .unwrap_or_default();
                            bail!(
                                "nginx did not listen on {address} within {START_DEADLINE:?}: {}",
                                log.trim()
                            );
                        }
                        thread::sleep(Duration::from_millis(20));
                    }
                    Ok(())
                })
                .join()
                .expect("nginx probe thread")
        })
    }
}

impl Load for HttpLoad {
    /// Runs wrk for `length` (whole seconds) and counts its requests:
    /// one connection each.
    fn window(&self, length: Duration) -> Result<Window> {
        let output = Command::new("nsenter")
            .arg(format!("--net={}", self.netns_path))
            .args(["wrk", "-H", "Connection: close"])
            .arg(format!("--threads={WRK_THREADS}"))
            .arg(format!("--connections={WRK_CONNECTIONS}"))
            .arg(format!("--duration={}s", length.as_secs().max(1)))
            .arg(&self.url)
            .output()
            .context("running wrk")?;
        let text = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            bail!(
                "wrk failed ({}): {}{}",
                output.status,
                text.trim(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        parse_wrk(&text)
    }
}

impl Drop for HttpLoad {
    fn drop(&mut self) {
        // SIGTERM lets the master stop its workers; SIGKILL would orphan them.
        // SAFETY: kill(2) on our own child (nsenter execs nginx), not yet reaped.
        unsafe { libc::kill(self.nginx.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.nginx.wait();
        let _ = fs::remove_dir_all(&self.directory);
    }
}

/// nginx in the foreground, everything it writes under `directory`, no
/// access log (a log line per request would be the server's main work),
/// one short answer to every request, and no keep-alive: the server closes
/// each connection first, as a busy short-request server does.
fn nginx_config(directory: &std::path::Path, port: u16) -> String {
    let dir = directory.display();
    format!(
        "daemon off;\n\
         worker_processes auto;\n\
         user nobody nogroup;\n\
         pid {dir}/nginx.pid;\n\
         error_log stderr warn;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n\
         \x20 access_log off;\n\
         \x20 keepalive_timeout 0;\n\
         \x20 client_body_temp_path {dir}/body;\n\
         \x20 proxy_temp_path {dir}/proxy;\n\
         \x20 fastcgi_temp_path {dir}/fastcgi;\n\
         \x20 uwsgi_temp_path {dir}/uwsgi;\n\
         \x20 scgi_temp_path {dir}/scgi;\n\
         \x20 server {{\n\
         \x20   listen 127.0.0.1:{port} backlog=4096;\n\
         \x20   location / {{ return 200 \"ok\\n\"; }}\n\
         \x20 }}\n\
         }}\n"
    )
}

/// wrk's summary: `N requests in S.SSs` and the errors it counted
/// (`Socket errors: connect A, read B, write C, timeout D` and
/// `Non-2xx or 3xx responses: E`).
fn parse_wrk(text: &str) -> Result<Window> {
    let summary = text
        .lines()
        .find_map(|line| {
            let (requests, rest) = line.trim().split_once(" requests in ")?;
            let seconds = rest.split_once("s,")?.0;
            Some((requests.parse::<u64>().ok()?, parse_seconds(seconds)?))
        })
        .with_context(|| format!("no `N requests in S` line in wrk's output: {text}"))?;
    let mut failures = 0;
    for line in text.lines().map(str::trim) {
        if let Some(errors) = line.strip_prefix("Socket errors:") {
            failures += errors
                .split(',')
                .filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok())
                .sum::<u64>();
        } else if let Some(count) = line.strip_prefix("Non-2xx or 3xx responses:") {
            failures += count.trim().parse::<u64>().unwrap_or(0);
        }
    }
    Ok(Window {
        connections: summary.0,
        failures,
        seconds: summary.1,
    })
}

/// wrk's duration: `5.00s`'s number, or `1.00m` in minutes.
fn parse_seconds(text: &str) -> Option<f64> {
    match text.strip_suffix('m') {
        Some(minutes) => Some(minutes.parse::<f64>().ok()? * 60.0),
        None => text.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRK: &str = "Running 3s test @ http://127.0.0.1:18080/
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.05ms    1.48ms  12.55ms   86.40%
    Req/Sec     7.28k     0.99k   10.09k    71.67%
  43788 requests in 3.03s, 6.06MB read
  Socket errors: connect 0, read 3, write 0, timeout 2
  Non-2xx or 3xx responses: 1
Requests/sec:  14441.66
Transfer/sec:      2.00MB
";

    #[test]
    fn reads_requests_seconds_and_errors() {
        let window = parse_wrk(WRK).unwrap();
        assert_eq!(window.connections, 43788);
        assert_eq!(window.failures, 6);
        assert!((window.seconds - 3.03).abs() < 1e-9);
    }

    #[test]
    fn output_without_a_summary_is_an_error() {
        assert!(parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n").is_err());
    }
}
