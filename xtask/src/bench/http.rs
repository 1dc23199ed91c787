//! The second load: a real HTTP server (Debian's nginx) answering short
//! requests from a real load generator (wrk), both in the bench's
//! namespace, throughout the bench as the churn runs. Every request has a
//! connection of its own, which the server closes (`keepalive_timeout 0`,
//! and wrk asks `Connection: close`). A window counts the connections
//! nginx accepted (its `stub_status` counters).
use std::{
    fs::{self, File},
    io::{Read, Write},
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
/// How long nginx may take to listen.
const START_DEADLINE: Duration = Duration::from_secs(10);
/// Where nginx answers with its counters.
const STATUS_PATH: &str = "/socktrace-bench-status";

/// The load as the report names it.
pub fn description() -> String {
    format!(
        "nginx in a namespace answering wrk ({WRK_THREADS} threads, {WRK_CONNECTIONS} \
         connections), a connection per request"
    )
}

/// nginx serving in the namespace and wrk loading it, until dropped.
pub struct HttpLoad {
    nginx: Child,
    /// Started once nginx answers.
    wrk: Option<Child>,
    directory: PathBuf,
    namespace: File,
    address: SocketAddr,
}

impl HttpLoad {
    /// Starts nginx (one worker per CPU) on an ephemeral port of 127.0.0.1
    /// in `netns`, waits until it answers, then starts wrk.
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
        let mut load = HttpLoad {
            nginx,
            wrk: None,
            directory,
            namespace,
            address: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        };
        load.wait_listening()?;
        load.wrk = Some(
            Command::new("nsenter")
                .arg(format!("--net={netns_path}"))
                .args(["wrk", "-H", "Connection: close"])
                .arg(format!("--threads={WRK_THREADS}"))
                .arg(format!("--connections={WRK_CONNECTIONS}"))
                // Longer than any bench; stopped on drop.
                .arg("--duration=100h")
                .arg(format!("http://{}/", load.address))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting wrk")?,
        );
        Ok(load)
    }

    fn wait_listening(&self) -> Result<()> {
        let deadline = Instant::now() + START_DEADLINE;
        while self.status().is_err() {
            if Instant::now() > deadline {
                let log = fs::read_to_string(self.directory.join("error.log")).unwrap_or_default();
                bail!(
                    "nginx did not answer on {} within {START_DEADLINE:?}: {}",
                    self.address,
                    log.trim()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// nginx's counters, asked over HTTP from a thread in the namespace.
    fn status(&self) -> Result<Status> {
        let response = thread::scope(|scope| {
            scope
                .spawn(|| -> Result<String> {
                    enter(&self.namespace)?;
                    let mut stream = TcpStream::connect(self.address)?;
                    stream.set_read_timeout(Some(START_DEADLINE))?;
                    write!(stream, "GET {STATUS_PATH} HTTP/1.0\r\n\r\n")?;
                    let mut response = String::new();
                    stream.read_to_string(&mut response)?;
                    Ok(response)
                })
                .join()
                .expect("nginx status thread")
        })?;
        parse_status(&response)
    }
}

impl Load for HttpLoad {
    /// The connections nginx accepted over `length`; those it could not
    /// handle are failures.
    fn window(&mut self, length: Duration) -> Result<Window> {
        let before = self.status()?;
        let began = Instant::now();
        thread::sleep(length);
        let after = self.status()?;
        let seconds = began.elapsed().as_secs_f64();
        if let Some(wrk) = &mut self.wrk
            && let Some(status) = wrk.try_wait()?
        {
            bail!("wrk exited ({status})");
        }
        let accepted = after.accepts - before.accepts;
        let handled = after.handled - before.handled;
        Ok(Window {
            connections: handled,
            failures: accepted - handled.min(accepted),
            seconds,
        })
    }
}

impl Drop for HttpLoad {
    fn drop(&mut self) {
        if let Some(mut wrk) = self.wrk.take() {
            let _ = wrk.kill();
            let _ = wrk.wait();
        }
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
         \x20   location = {STATUS_PATH} {{ stub_status; }}\n\
         \x20 }}\n\
         }}\n"
    )
}

/// nginx's `stub_status` counters since it started.
#[derive(Debug, PartialEq, Eq)]
struct Status {
    accepts: u64,
    handled: u64,
}

/// The answer to [`STATUS_PATH`]: headers, then `Active connections: N`,
/// `server accepts handled requests`, and the three counters.
fn parse_status(response: &str) -> Result<Status> {
    let mut lines = response
        .lines()
        .skip_while(|line| !line.starts_with("server accepts"));
    let counters = lines
        .nth(1)
        .with_context(|| format!("no counters in nginx's status: {response}"))?;
    let numbers: Vec<u64> = counters
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .with_context(|| format!("nginx's counters `{counters}`"))?;
    match numbers[..] {
        [accepts, handled, _requests] => Ok(Status { accepts, handled }),
        _ => bail!("nginx's counters `{counters}`: not three numbers"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nContent-Type: text/plain\r\n\r\n\
Active connections: 65 \nserver accepts handled requests\n 43788 43786 43790 \nReading: 0 Writing: 1 Waiting: 0 \n";

    #[test]
    fn reads_accepted_and_handled_connections() {
        assert_eq!(
            parse_status(STATUS).unwrap(),
            Status {
                accepts: 43788,
                handled: 43786
            }
        );
    }

    #[test]
    fn an_answer_without_counters_is_an_error() {
        assert!(parse_status("HTTP/1.1 404 Not Found\r\n\r\n").is_err());
        assert!(parse_status("server accepts handled requests\n 1 2\n").is_err());
    }
}
