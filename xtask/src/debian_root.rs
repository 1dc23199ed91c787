//! A Debian 12 root with systemd but no Rust, LLVM or compiler, made once
//! with debootstrap and kept between runs: the install test puts the .deb in
//! a copy of it.
use std::{path::PathBuf, process::Command};

use anyhow::{Context, Result};

use crate::cmd::run;

const CACHE: &str = "/var/cache/socktrace-tests/bookworm-systemd";
const MIRROR: &str = "http://deb.debian.org/debian";

/// The root, made first if missing (about a minute).
pub fn ensure() -> Result<PathBuf> {
    let root = PathBuf::from(CACHE);
    if root.join("etc/debian_version").is_file() {
        return Ok(root);
    }
    let partial = PathBuf::from(format!("{CACHE}.partial"));
    if partial.exists() {
        std::fs::remove_dir_all(&partial)
            .with_context(|| format!("removing {}", partial.display()))?;
    }
    eprintln!("xtask: making a Debian 12 root in {CACHE} with debootstrap (about a minute)");
    run(Command::new("debootstrap")
        .args(["--variant=minbase", "--include=systemd", "bookworm"])
        .arg(&partial)
        .arg(MIRROR))?;
    std::fs::rename(&partial, &root)
        .with_context(|| format!("renaming {} to {}", partial.display(), root.display()))?;
    Ok(root)
}
