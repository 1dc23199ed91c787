//! The product as a host without a toolchain gets it: `cargo xtask dist`'s
//! .deb installed into a Debian 12 root with no Rust, LLVM or compiler, its
//! systemd unit verified there, and the installed binary tracing a real
//! connection; the static binary in a container image built by podman.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, ensure};
use socktrace_integration_tests::{
    Agent, Family, NetNs, TIMEOUT, record, require_root, run_checked as run, tcp,
};

/// A copy of the cached Debian root, removed on drop. Nothing is mounted in
/// it outside the private mount namespace of the process that uses it.
struct DebianRoot(PathBuf);

impl DebianRoot {
    fn copy() -> Result<Self> {
        let cached = artefact("SOCKTRACE_DEBIAN_ROOT")?;
        let parent = Path::new("/var/tmp");
        let dir = parent.join(format!("socktrace-install-{}", std::process::id()));
        let root = DebianRoot(dir);
        run(Command::new("cp").arg("-a").arg(&cached).arg(&root.0))?;
        Ok(root)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("the root's path is UTF-8")
    }

    fn chroot(&self, args: &[&str]) -> Result<String> {
        run(Command::new("chroot").arg(&self.0).args(args))
    }
}

impl Drop for DebianRoot {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.0) {
            eprintln!("removing {}: {error}", self.0.display());
        }
    }
}

fn artefact(variable: &str) -> Result<PathBuf> {
    let path = std::env::var_os(variable).with_context(|| {
        format!("{variable} is not set: run these tests through `cargo xtask test`")
    })?;
    Ok(PathBuf::from(path))
}

#[test]
fn the_deb_installs_and_traces_on_a_host_with_no_toolchain() -> Result<()> {
    require_root();
    let root = DebianRoot::copy()?;
    for tool in [
        "cargo",
        "rustc",
        "rustup",
        "clang",
        "llc",
        "gcc",
        "cc",
        "bpf-linker",
    ] {
        let found = root.chroot(&["sh", "-c", &format!("command -v {tool} || true")])?;
        ensure!(found.trim().is_empty(), "the root has {tool}: {found}");
    }
    ensure!(
        !root.0.join("usr/lib/llvm-22").exists(),
        "the root has LLVM"
    );

    let deb = artefact("SOCKTRACE_DEB")?;
    std::fs::copy(&deb, root.0.join("tmp/socktrace.deb")).context("copying the .deb")?;
    root.chroot(&["dpkg", "--install", "/tmp/socktrace.deb"])?;
    let unit = root.0.join("usr/lib/systemd/system/socktrace.service");
    ensure!(unit.is_file(), "the .deb installed no {}", unit.display());
    run(Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.path()))
        .arg("socktrace.service"))?;

    let installed = root.chroot(&["/usr/bin/socktrace", "--version"])?;
    let built = run(Command::new(artefact("SOCKTRACE_DIST_BIN")?).arg("--version"))?;
    ensure!(installed == built, "installed: {installed}\nbuilt: {built}");
    ensure!(installed.contains("BPF object sha256: "), "{installed}");

    // The installed binary, chrooted in a private mount namespace that has
    // the kernel's file systems the tracer reads, traces the test's own
    // namespace, where a loopback connection is made.
    let ns = NetNs::new()?;
    let mounts = "set -e; r=$1; shift; \
                  mount -t proc proc \"$r/proc\"; mount --rbind /sys \"$r/sys\"; \
                  mkdir -p \"$r/run/netns\"; mount --rbind /run/netns \"$r/run/netns\"; \
                  exec chroot \"$r\" \"$@\"";
    let agent = Agent::start_program(
        &ns,
        &[
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            mounts,
            "sh",
            root.path(),
            "/usr/bin/socktrace",
        ],
        "trace",
        &["-N", ns.name()],
    )?;
    sees_a_connection(&ns, agent, Family::V4, "the installed socktrace")
}

#[test]
fn the_static_binary_runs_in_an_empty_container_image() -> Result<()> {
    require_root();
    let binary = artefact("SOCKTRACE_DIST_BIN")?;
    let context = binary.parent().context("the binary has no folder")?;
    let containerfile =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../socktrace/deploy/Containerfile");
    let image = format!("localhost/socktrace-test:{}", std::process::id());
    run(Command::new("podman")
        .args(["build", "--quiet", "--file"])
        .arg(&containerfile)
        .args(["--tag", &image])
        .arg(context))?;
    struct Image(String);
    impl Drop for Image {
        fn drop(&mut self) {
            let _ = Command::new("podman")
                .args(["rmi", "--force", &self.0])
                .output();
        }
    }
    let image = Image(image);
    // podman's defaults ask for more open files and processes than this
    // sandbox's hard limits, which crun cannot then set; runc can.
    let podman_run = [
        "podman",
        "run",
        "--rm",
        "--runtime=runc",
        "--ulimit=nofile=1024:1024",
        "--ulimit=nproc=1024:1024",
    ];
    let mut version = Command::new(podman_run[0]);
    version
        .args(&podman_run[1..])
        .args(["--network=none", &image.0, "--version"]);
    let in_container = run(&mut version)?;
    let built = run(Command::new(&binary).arg("--version"))?;
    ensure!(
        in_container == built,
        "in the container: {in_container}\nbuilt: {built}"
    );

    // As the Containerfile says to run it: the host's PID namespace, tracefs,
    // the named network namespaces, and three capabilities.
    let ns = NetNs::new()?;
    let mut program = podman_run.to_vec();
    program.extend([
        "--pid=host",
        "--network=host",
        "--cap-drop=ALL",
        "--cap-add=SYS_ADMIN,SYS_PTRACE,DAC_READ_SEARCH",
        "--volume=/sys/kernel/tracing:/sys/kernel/tracing",
        "--volume=/run/netns:/run/netns",
        &image.0,
    ]);
    let agent = Agent::start_program(&ns, &program, "trace", &["-N", ns.name()])?;
    sees_a_connection(&ns, agent, Family::V6, "the container")
}

/// Makes a loopback connection of `family` in `ns` and waits for `agent`
/// (`who`, in the failure) to trace its SYN_SENT -> ESTABLISHED.
fn sees_a_connection(ns: &NetNs, mut agent: Agent, family: Family, who: &str) -> Result<()> {
    let (listener, client, _server) = ns.run(|| -> Result<_> {
        let listener = tcp::listen(family)?;
        let (client, server) = tcp::connect_pair(&listener)?;
        Ok((listener, client, server))
    })?;
    let lport = tcp::local_port(&listener)?;
    let cport = client.local_addr()?.port();
    agent.wait_for(
        &format!("{who}'s SYN_SENT -> ESTABLISHED of :{cport} -> :{lport}"),
        |value| record::is_transition(value, "SYN_SENT", "ESTABLISHED", cport, lport),
        TIMEOUT,
    )?;
    agent.stop()
}
