//! A throw-away network namespace per test.
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;

use anyhow::{Context, Result, bail};

use crate::run_checked;

/// Distinguishes the namespaces of one test process.
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// `ip netns add` sets up `/run/netns` on first use; parallel tests of one
/// process must not race on it.
static CREATE_LOCK: Mutex<()> = Mutex::new(());

/// A network namespace named `st-<pid>-<counter>`, with `lo` up, deleted on
/// drop (also when the test panics).
///
/// Sockets made by [`NetNs::run`] live in the namespace but belong to the
/// test process (same pid/tgid): socktrace must report this process as
/// their owner.
#[derive(Debug)]
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Creates the namespace and brings its loopback up. Panics when not
    /// root.
    pub fn new() -> Result<Self> {
        crate::require_root();
        let name = format!(
            "st-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        {
            let _guard = CREATE_LOCK
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            run_checked(Command::new("ip").args(["netns", "add", &name]))?;
        }
        // From here on, drop deletes it.
        let ns = NetNs { name };
        ns.exec(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name, as `ip netns` knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace's bind mount, `/run/netns/NAME`.
    pub fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    /// The namespace's inode, as socktrace's `netns` field and
    /// `ls -l /proc/PID/ns/net` name it.
    pub fn inode(&self) -> Result<u32> {
        let path = self.path();
        let inode = std::fs::metadata(&path)
            .with_context(|| format!("stat {}", path.display()))?
            .ino();
        u32::try_from(inode).context("namespace inode wider than 32 bits")
    }

    fn open(&self) -> Result<File> {
        let path = self.path();
        File::open(&path).with_context(|| format!("opening {}", path.display()))
    }

    /// Runs `f` on a fresh thread that has entered the namespace, and returns
    /// its result (a panic in `f` is re-raised here). Sockets `f` creates
    /// live in the namespace; they can be used and closed from any thread
    /// afterwards.
    pub fn run<T, F>(&self, f: F) -> T
    where
        T: Send,
        F: FnOnce() -> T + Send,
    {
        let file = self
            .open()
            .unwrap_or_else(|err| panic!("cannot enter network namespace {}: {err:#}", self.name));
        thread::scope(|scope| {
            let handle = scope.spawn(move || {
                enter(file, &self.name);
                f()
            });
            match handle.join() {
                Ok(value) => value,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// Runs `f` on a new thread that has entered the namespace, in the
    /// background: the caller joins the handle before the namespace goes.
    pub fn spawn<T, F>(&self, f: F) -> Result<thread::JoinHandle<T>>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let file = self.open()?;
        let name = self.name.clone();
        thread::Builder::new()
            .name(format!("in-{name}"))
            .spawn(move || {
                enter(file, &name);
                f()
            })
            .context("spawning a thread")
    }

    /// TIME-WAIT sockets in the namespace, as `ss -tan state time-wait`
    /// lists them.
    pub fn time_wait_count(&self) -> Result<usize> {
        let listed = self.exec(&["ss", "-Htan", "state", "time-wait"])?;
        Ok(listed.lines().filter(|l| !l.trim().is_empty()).count())
    }

    /// Sets a per-namespace sysctl (`net.ipv4.tcp_syn_retries`) from
    /// inside: /proc/sys/net belongs to the opener's namespace.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        self.run(|| std::fs::write(&path, value))
            .with_context(|| format!("setting {key}={value}"))
    }

    /// A counter of `nstat`'s `TcpExt` group here (read through
    /// /proc/thread-self: /proc/net is the main thread's namespace).
    pub fn tcp_ext(&self, name: &str) -> Result<u64> {
        let netstat = self
            .run(|| std::fs::read_to_string("/proc/thread-self/net/netstat"))
            .context("reading the namespace's netstat")?;
        let mut lines = netstat.lines().filter(|l| l.starts_with("TcpExt:"));
        let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
            bail!("no TcpExt in /proc/net/netstat");
        };
        names
            .split_whitespace()
            .zip(values.split_whitespace())
            .find(|(n, _)| *n == name)
            .with_context(|| format!("no TcpExt counter {name}"))?
            .1
            .parse()
            .context("counter value")
    }

    /// Adds (`-A`) or deletes (`-D`) a rule with iptables or ip6tables.
    pub fn firewall(&self, family: crate::Family, action: &str, rule: &str) -> Result<()> {
        let tool = match family {
            crate::Family::V4 => "iptables",
            crate::Family::V6 => "ip6tables",
        };
        let mut args = vec![tool, action];
        args.extend(rule.split_whitespace());
        self.exec(&args)?;
        Ok(())
    }

    /// Runs a command inside the namespace through `ip netns exec` and
    /// returns its stdout; fails with its stderr when it fails.
    pub fn exec(&self, args: &[&str]) -> Result<String> {
        run_checked(
            Command::new("ip")
                .args(["netns", "exec", &self.name])
                .args(args),
        )
    }

    /// A [`Command`] for `program` whose process enters this namespace just
    /// before exec (setns in the forked child), keeping the host's mounts.
    ///
    /// Why not `ip netns exec`: it remounts `/sys`, and the fresh sysfs has
    /// no tracefs under `/sys/kernel/tracing`, which a classic tracepoint
    /// needs to attach. The child also gets SIGTERM if the spawning thread
    /// dies (PR_SET_PDEATHSIG), so an aborted test run leaves no agent
    /// attached: spawn from the test's own thread.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Result<Command> {
        let file = self.open()?;
        let mut command = Command::new(program);
        // SAFETY: the closure runs between fork and exec and only makes
        // async-signal-safe syscalls (prctl, setns).
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Ok(command)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if let Err(err) = run_checked(Command::new("ip").args(["netns", "del", &self.name])) {
            eprintln!(
                "warning: could not delete network namespace {}: {err:#}",
                self.name
            );
        }
    }
}

/// Moves the calling thread into the namespace `file` opens (named `name`);
/// panics if it cannot.
fn enter(file: File, name: &str) {
    // SAFETY: a valid namespace fd; setns only affects this thread.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert!(
        rc == 0,
        "setns into network namespace {name} failed: {}",
        std::io::Error::last_os_error()
    );
}
