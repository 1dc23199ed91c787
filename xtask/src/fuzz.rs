//! `cargo xtask fuzz`: every libFuzzer target of `socktrace/fuzz` (kernel
//! records, recordings, ss filters, agent protocol lines) for a bounded
//! time, with cargo-fuzz and the project's nightly, starting from the seed
//! corpus kept in the repository. What the fuzzer adds to the corpus and
//! the inputs that crash go under `target/fuzz/`; a crash fails the task.
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::{
    cmd::{run, workspace_root},
    toolchain,
};

/// The fuzz crate (a workspace of its own), relative to the workspace root.
const FUZZ_DIR: &str = "socktrace/fuzz";

#[derive(Args)]
pub struct FuzzArgs {
    /// Seconds to run each target for.
    #[arg(long, default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=24 * 3600))]
    pub seconds: u64,
}

pub fn run_all(args: &FuzzArgs) -> Result<()> {
    let root = workspace_root();
    let nightly = toolchain::bpf_nightly()?;
    let target_dir = root.join("target/fuzz");
    let cargo_fuzz = |subcommand: &str| {
        let mut command = Command::new("cargo");
        command
            .current_dir(&root)
            .arg(format!("+{nightly}"))
            .args(["fuzz", subcommand, "--fuzz-dir", FUZZ_DIR])
            // The fuzz targets need socktrace's code, not its BPF object.
            .env("AYA_BUILD_SKIP", "1");
        command
    };
    let listed = cargo_fuzz("list")
        .output()
        .context("running cargo fuzz list")?;
    if !listed.status.success() {
        bail!(
            "cargo fuzz list failed: {}",
            String::from_utf8_lossy(&listed.stderr)
        );
    }
    let targets: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    if targets.is_empty() {
        bail!("{FUZZ_DIR} has no fuzz targets");
    }
    run(cargo_fuzz("build").arg("--target-dir").arg(&target_dir))?;
    let mut crashed = Vec::new();
    for target in &targets {
        let corpus = target_dir.join("corpus").join(target);
        let artifacts = target_dir.join("artifacts").join(target);
        for dir in [&corpus, &artifacts] {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let seeds = root.join(FUZZ_DIR).join("seeds").join(target);
        let status = run(cargo_fuzz("run")
            .arg("--target-dir")
            .arg(&target_dir)
            .arg(target)
            .arg(&corpus)
            .arg(&seeds)
            .arg("--")
            .arg(format!("-max_total_time={}", args.seconds))
            .arg(format!("-artifact_prefix={}/", artifacts.display()))
            // An input that takes this long is a hang, reported as one.
            .arg("-timeout=10")
            .arg("-print_final_stats=1"));
        if let Err(error) = status {
            eprintln!("xtask: fuzz: {target} failed: {error:#}");
            crashed.push((target, artifacts));
        }
    }
    if !crashed.is_empty() {
        let found: Vec<String> = crashed
            .iter()
            .map(|(target, artifacts)| format!("{target} (inputs in {})", artifacts.display()))
            .collect();
        bail!(
            "fuzzing found crashes: {}; replay one with `AYA_BUILD_SKIP=1 cargo +{nightly} fuzz run \
             --fuzz-dir {FUZZ_DIR} TARGET INPUT` and keep it as a regression test",
            found.join(", ")
        );
    }
    Ok(())
}
