//! The one set-up path: checks every prerequisite and installs only what is
//! missing, saying what it does. Run by `setup`, `run`, `test`, `lint`,
//! `bench`, `soak` and `fuzz` (which also installs cargo-fuzz).
use std::{path::Path, process::Command};

use anyhow::{Context, Result, bail};

use crate::{
    cmd::{is_root, run},
    toolchain,
};

/// The LLVM major version bpf-linker is built against (Debian's LLVM
/// packages) and that the BPF nightly's rustc must use too: a mismatch fails
/// the link with `ERROR llvm: Invalid record`.
const LLVM_MAJOR: u32 = 22;
/// Debian packages: LLVM for bpf-linker, the network tools the integration
/// tests drive (ip, ss, iptables), tmux for `socktrace top` in a terminal and
/// util-linux's setpriv for a non-root client, debootstrap and podman (with
/// runc) for the install tests, systemd for `systemd-analyze verify`,
/// prometheus (and its promtool) for the metrics test, openssl for the
/// probe's TLS test (its certificates and `s_server`).
const APT_PACKAGES: [&str; 10] = [
    "iproute2",
    "iptables",
    "tmux",
    "util-linux",
    "debootstrap",
    "podman",
    "runc",
    "systemd",
    "prometheus",
    "openssl",
];
const BPF_LINKER_VERSION: &str = "0.13.0";
/// For `cargo xtask fuzz`; builds with the host's stable rustc.
const CARGO_FUZZ_VERSION: &str = "0.13.1";
/// For `cargo xtask dist`'s Debian package.
const CARGO_DEB_VERSION: &str = "3.8.0";
/// `cargo xtask dist`'s static binary; rust-toolchain.toml names it too.
const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";
const TRACEFS: &str = "/sys/kernel/tracing";

pub fn ensure() -> Result<()> {
    apt_packages()?;
    let nightly = toolchain::bpf_nightly()?;
    nightly_rust_src(&nightly)?;
    let rustc_llvm = toolchain::rustc_llvm_major(&nightly)?;
    toolchain::check_llvm(&nightly, rustc_llvm, "Debian's LLVM packages", LLVM_MAJOR)?;
    bpf_linker()?;
    let linker_llvm = toolchain::bpf_linker_llvm_major()?;
    toolchain::check_llvm(
        &nightly,
        rustc_llvm,
        &format!("bpf-linker {BPF_LINKER_VERSION}"),
        linker_llvm,
    )?;
    tracefs()
}

fn apt_packages() -> Result<()> {
    let llvm = [
        format!("llvm-{LLVM_MAJOR}-dev"),
        format!("libpolly-{LLVM_MAJOR}-dev"),
    ];
    let packages: Vec<&str> = llvm
        .iter()
        .map(String::as_str)
        .chain(APT_PACKAGES)
        .collect();
    apt_install(&packages)
}

/// Installs the Debian packages among `packages` that are missing.
pub fn apt_install(packages: &[&str]) -> Result<()> {
    let missing: Vec<_> = packages
        .iter()
        .copied()
        .filter(|p| !dpkg_installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!(
        "xtask: setup: installing Debian packages {}",
        missing.join(" ")
    );
    run(privileged("apt-get").arg("update"))?;
    run(privileged("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "--no-install-recommends"])
        .args(&missing))
    .context("installing Debian packages (needs root or sudo, and Debian's package mirror)")
}

fn dpkg_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|o| {
            o.status.success()
                && String::from_utf8_lossy(&o.stdout).contains("install ok installed")
        })
}

/// The BPF nightly with rust-src: aya-build compiles the BPF crate with
/// `-Z build-std=core`. Exactly the toolchain file's nightly, never "latest".
fn nightly_rust_src(nightly: &str) -> Result<()> {
    let installed = Command::new("rustup")
        .args(["component", "list", "--toolchain", nightly, "--installed"])
        .output()
        .context("rustup is required (https://rustup.rs)")?;
    let listed = String::from_utf8_lossy(&installed.stdout);
    if installed.status.success() && listed.lines().any(|l| l.starts_with("rust-src")) {
        return Ok(());
    }
    eprintln!("xtask: setup: installing {nightly} with rust-src (the BPF build's toolchain)");
    run(Command::new("rustup").args([
        "toolchain",
        "install",
        nightly,
        "--profile",
        "minimal",
        "--component",
        "rust-src",
    ]))
}

fn bpf_linker() -> Result<()> {
    let version = Command::new("bpf-linker").arg("--version").output();
    if version.is_ok_and(|o| {
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains(BPF_LINKER_VERSION)
    }) {
        return Ok(());
    }
    eprintln!(
        "xtask: setup: building bpf-linker {BPF_LINKER_VERSION} against Debian's LLVM {LLVM_MAJOR} (about two minutes)"
    );
    let path = format!(
        "/usr/lib/llvm-{LLVM_MAJOR}/bin:{}",
        std::env::var("PATH").unwrap_or_default()
    );
    run(Command::new("cargo").env("PATH", path).args([
        "install",
        "bpf-linker",
        "--version",
        BPF_LINKER_VERSION,
        "--locked",
        "--no-default-features",
        "--features",
        &format!("llvm-{LLVM_MAJOR}"),
        "--force",
    ]))
}

/// cargo-fuzz, for `cargo xtask fuzz` only.
pub fn cargo_fuzz() -> Result<()> {
    cargo_install(
        "cargo-fuzz",
        &["fuzz"],
        CARGO_FUZZ_VERSION,
        "about two minutes",
    )
}

/// cargo-deb, for `cargo xtask dist` only.
pub fn cargo_deb() -> Result<()> {
    cargo_install("cargo-deb", &["deb"], CARGO_DEB_VERSION, "about a minute")
}

/// `cargo install --locked` of `krate` at `version`, unless `cargo ARGS
/// --version` already says it is.
fn cargo_install(krate: &str, args: &[&str], version: &str, takes: &str) -> Result<()> {
    let installed = Command::new("cargo").args(args).arg("--version").output();
    if installed
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains(version))
    {
        return Ok(());
    }
    eprintln!("xtask: setup: building {krate} {version} ({takes})");
    run(Command::new("cargo").args([
        "install",
        krate,
        "--version",
        version,
        "--locked",
        "--force",
    ]))
}

/// Debian's musl C compiler wrapper: ring (rustls' cryptography, for
/// `probe --tls`) compiles C and assembly for the musl target with it.
pub const MUSL_CC: &str = "musl-gcc";

/// The musl target of the host toolchain, and Debian's musl C toolchain
/// (`musl-tools`), for `cargo xtask dist`.
pub fn musl_target() -> Result<()> {
    apt_install(&["musl-tools"])?;
    let listed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .current_dir(crate::cmd::workspace_root())
        .output()
        .context("rustup is required (https://rustup.rs)")?;
    if String::from_utf8_lossy(&listed.stdout)
        .lines()
        .any(|line| line.trim() == MUSL_TARGET)
    {
        return Ok(());
    }
    eprintln!("xtask: setup: adding the {MUSL_TARGET} target");
    run(Command::new("rustup")
        .current_dir(crate::cmd::workspace_root())
        .args(["target", "add", MUSL_TARGET]))
}

/// aya attaches classic tracepoints through tracefs.
fn tracefs() -> Result<()> {
    if Path::new(TRACEFS).join("events").is_dir() {
        return Ok(());
    }
    eprintln!("xtask: setup: mounting tracefs on {TRACEFS}");
    run(privileged("mount").args(["-t", "tracefs", "nodev", TRACEFS]))?;
    if !Path::new(TRACEFS).join("events").is_dir() {
        bail!("tracefs is mounted on {TRACEFS} but has no events/: is CONFIG_FTRACE off?");
    }
    Ok(())
}

/// `program`, through sudo unless already root.
fn privileged(program: &str) -> Command {
    if is_root() {
        Command::new(program)
    } else {
        let mut command = Command::new("sudo");
        command.arg(program);
        command
    }
}
