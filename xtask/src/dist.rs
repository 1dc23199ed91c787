//! `cargo xtask dist`: the static x86_64 musl binary with the BPF object
//! embedded, and a Debian package of it with the agent's systemd unit, in
//! `target/dist/`.
use std::{fs, path::PathBuf, process::Command};

use anyhow::{Context, Result, bail};

use crate::{
    cmd::{cargo_program, run, workspace_root},
    setup,
};

const TARGET: &str = "x86_64-unknown-linux-musl";
/// The profile in the workspace's Cargo.toml: release, stripped.
const PROFILE: &str = "dist";

/// What `cargo xtask dist` made.
pub struct Artefacts {
    pub binary: PathBuf,
    pub deb: PathBuf,
}

pub fn build() -> Result<Artefacts> {
    setup::musl_target()?;
    setup::cargo_deb()?;
    let root = workspace_root();
    run(Command::new(cargo_program())
        .current_dir(&root)
        // cc looks for `x86_64-linux-musl-gcc`, which Debian does not ship.
        .env("CC_x86_64_unknown_linux_musl", setup::MUSL_CC)
        .args([
            "build",
            "--package",
            "socktrace",
            "--bin",
            "socktrace",
            "--profile",
            PROFILE,
            "--target",
            TARGET,
        ]))?;
    let dist = root.join("target/dist");
    fs::create_dir_all(&dist).with_context(|| format!("creating {}", dist.display()))?;
    let built = root
        .join("target")
        .join(TARGET)
        .join(PROFILE)
        .join("socktrace");
    let binary = dist.join("socktrace");
    fs::copy(&built, &binary)
        .with_context(|| format!("copying {} to {}", built.display(), binary.display()))?;
    let deb = dist.join("socktrace_amd64.deb");
    run(Command::new(cargo_program())
        .current_dir(&root)
        .args([
            "deb",
            "--package",
            "socktrace",
            "--target",
            TARGET,
            "--profile",
            PROFILE,
            "--no-build",
            "--no-strip",
            "--output",
        ])
        .arg(&deb))?;
    for artefact in [&binary, &deb] {
        let size = fs::metadata(artefact)
            .with_context(|| format!("{} was not made", artefact.display()))?
            .len();
        if size == 0 {
            bail!("{} is empty", artefact.display());
        }
        eprintln!("xtask: dist: {} ({size} bytes)", artefact.display());
    }
    Ok(Artefacts { binary, deb })
}
