//! Builds the BPF program (`socktrace-ebpf`, binary `socktrace`) for the BPF
//! target with the nightly `socktrace-ebpf/rust-toolchain.toml` names and
//! bpf-linker, into `OUT_DIR`, where `src/loader.rs` embeds it; and gives
//! `--version` the git commit, the object's SHA-256 and that toolchain. With
//! `AYA_BUILD_SKIP=1` (clippy, docs) aya-build skips the BPF build, and an
//! empty placeholder is embedded instead: such a binary refuses to load,
//! saying why.
use std::{env, fs, path::PathBuf, process::Command};

use anyhow::{Context as _, anyhow};
use sha2::{Digest as _, Sha256};

fn main() -> anyhow::Result<()> {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let ebpf_dir = manifest_dir
        .parent()
        .map(|workspace| workspace.join("socktrace-ebpf"))
        .ok_or_else(|| anyhow!("no workspace above {}", manifest_dir.display()))?;
    let ebpf_dir = ebpf_dir
        .to_str()
        .ok_or_else(|| anyhow!("non UTF-8 path {}", ebpf_dir.display()))?;
    let toolchain = socktrace_ebpf::toolchain::channel()
        .ok_or_else(|| anyhow!("{ebpf_dir}/rust-toolchain.toml names no channel"))?;
    println!("cargo:rerun-if-changed={ebpf_dir}/rust-toolchain.toml");
    let package = aya_build::Package {
        name: "socktrace-ebpf",
        root_dir: ebpf_dir,
        ..Default::default()
    };
    aya_build::build_ebpf([package], aya_build::Toolchain::Custom(toolchain))?;

    let object = PathBuf::from(env::var("OUT_DIR")?).join("socktrace");
    if !object.exists() {
        fs::write(&object, []).with_context(|| format!("writing {}", object.display()))?;
    }
    let bytes = fs::read(&object).with_context(|| format!("reading {}", object.display()))?;
    let digest: String = Sha256::digest(&bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    println!("cargo:rustc-env=SOCKTRACE_BPF_SHA256={digest}");
    println!("cargo:rustc-env=SOCKTRACE_BPF_TOOLCHAIN={toolchain}");
    println!("cargo:rustc-env=SOCKTRACE_COMMIT={}", commit(&manifest_dir));
    Ok(())
}

/// The checkout's commit, `-dirty` when files differ from it, `unknown`
/// outside git (a source tarball). Rebuilt when HEAD or the index changes.
fn commit(dir: &std::path::Path) -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .current_dir(dir)
            .args(args)
            .output()
            .ok()
            .filter(|output| output.status.success())
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    };
    let Some(hash) = git(&["rev-parse", "--short=12", "HEAD"]) else {
        return "unknown".into();
    };
    for file in ["HEAD", "index"] {
        if let Some(path) = git(&["rev-parse", "--git-path", file]) {
            println!("cargo:rerun-if-changed={}", dir.join(path).display());
        }
    }
    match git(&["status", "--porcelain", "--untracked-files=no"]) {
        Some(changes) if changes.is_empty() => hash,
        _ => format!("{hash}-dirty"),
    }
}
