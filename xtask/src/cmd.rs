//! Running cargo and the agent.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

/// Runs a command, echoing it, and fails with its exit status.
pub fn run(command: &mut Command) -> Result<()> {
    eprintln!("xtask: running {command:?}");
    let status = command
        .status()
        .with_context(|| format!("starting {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed with {status}");
    }
    Ok(())
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `program args...`, through `sudo -E` unless already root.
pub fn as_root(program: &Path, args: &[String]) -> Command {
    if is_root() {
        let mut command = Command::new(program);
        command.args(args);
        command
    } else {
        let mut command = Command::new("sudo");
        command.arg("-E").arg(program).args(args);
        command
    }
}

/// The cargo that runs xtask.
pub fn cargo_program() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn cargo() -> Command {
    Command::new(cargo_program())
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Builds the agent (and with it the BPF object) and returns its path.
pub fn build_agent() -> Result<PathBuf> {
    run(cargo().current_dir(workspace_root()).args([
        "build",
        "--package",
        "socktrace",
        "--bin",
        "socktrace",
    ]))?;
    let agent = workspace_root().join("target/debug/socktrace");
    if !agent.is_file() {
        bail!("cargo built socktrace but {} is missing", agent.display());
    }
    Ok(agent)
}

/// Builds the agent with optimisations (what users run) and returns its
/// path.
pub fn build_release_agent() -> Result<PathBuf> {
    run(cargo().current_dir(workspace_root()).args([
        "build",
        "--release",
        "--package",
        "socktrace",
        "--bin",
        "socktrace",
    ]))?;
    let agent = workspace_root().join("target/release/socktrace");
    if !agent.is_file() {
        bail!("cargo built socktrace but {} is missing", agent.display());
    }
    Ok(agent)
}

pub fn run_as_root(program: &Path, args: &[String], env: &[(&str, &Path)]) -> Result<()> {
    let mut command = as_root(program, args);
    for (key, value) in env {
        command.env(key, value);
    }
    run(&mut command)
}

/// Unit tests of every default crate: no root needed.
pub fn unit_tests(filter: Option<&str>) -> Result<()> {
    let mut command = cargo();
    command.current_dir(workspace_root()).arg("test");
    if let Some(filter) = filter {
        command.arg(filter);
    }
    run(&mut command)
}

/// Builds the integration test binaries as the caller, runs them as root
/// with `env` (the agent's path, the dist artefacts...).
pub fn integration_tests(filter: Option<&str>, env: &[(&str, &Path)]) -> Result<()> {
    let package = "socktrace-integration-tests";
    let output = cargo()
        .current_dir(workspace_root())
        .args([
            "test",
            "--package",
            package,
            "--no-run",
            "--message-format=json",
        ])
        .output()
        .context("building the integration tests")?;
    if !output.status.success() {
        // Rerun for readable diagnostics.
        run(cargo().current_dir(workspace_root()).args([
            "test",
            "--package",
            package,
            "--no-run",
        ]))?;
        bail!("building the integration tests failed");
    }
    let binaries = test_executables(&String::from_utf8_lossy(&output.stdout));
    if binaries.is_empty() {
        bail!("no integration test binaries were built");
    }
    let mut args = vec!["--test-threads=1".to_owned()];
    args.extend(filter.map(str::to_owned));
    for binary in binaries {
        run_as_root(&binary, &args, env)?;
    }
    Ok(())
}

/// The `"executable"` paths of cargo's JSON messages for test targets.
fn test_executables(messages: &str) -> Vec<PathBuf> {
    messages
        .lines()
        .filter(|line| {
            line.contains("\"reason\":\"compiler-artifact\"") && line.contains("\"test\":true")
        })
        .filter_map(|line| {
            let start = line.find("\"executable\":\"")? + "\"executable\":\"".len();
            let end = start + line[start..].find('"')?;
            Some(PathBuf::from(&line[start..end]))
        })
        .collect()
}

pub fn lint() -> Result<()> {
    run(cargo()
        .current_dir(workspace_root())
        .args(["fmt", "--all", "--", "--check"]))?;
    // The fuzz crate is a workspace of its own; cargo xtask fuzz builds it.
    run(cargo().current_dir(workspace_root()).args([
        "fmt",
        "--manifest-path",
        "socktrace/fuzz/Cargo.toml",
        "--",
        "--check",
    ]))?;
    run(cargo()
        .current_dir(workspace_root())
        .env("AYA_BUILD_SKIP", "1")
        .args([
            "clippy",
            "--workspace",
            "--exclude",
            "socktrace-ebpf",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))?;
    // The BPF crate is checked for the BPF target by the build itself; its
    // library (the shared ABI) is linted here for the host.
    run(cargo().current_dir(workspace_root()).args([
        "clippy",
        "--package",
        "socktrace-ebpf",
        "--lib",
        "--",
        "-D",
        "warnings",
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_executables_are_read_from_cargo_messages() {
        let messages = concat!(
            r#"{"reason":"compiler-artifact","profile":{"test":true},"executable":"/t/deps/transitions-abc"}"#,
            "\n",
            r#"{"reason":"compiler-artifact","profile":{"test":false},"executable":null}"#,
            "\n",
            r#"{"reason":"build-finished","success":true}"#,
        );
        assert_eq!(
            test_executables(messages),
            vec![PathBuf::from("/t/deps/transitions-abc")]
        );
    }
}
