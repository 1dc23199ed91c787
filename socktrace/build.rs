//! Builds the BPF program (`socktrace-ebpf`, binary `socktrace`) for the BPF
//! target with nightly and bpf-linker, into `OUT_DIR`, where `src/loader.rs`
//! embeds it. With `AYA_BUILD_SKIP=1` (clippy, docs) aya-build skips that,
//! and an empty placeholder is embedded instead: such a binary refuses to
//! load, saying why.
use std::{env, fs, path::PathBuf};

use anyhow::{Context as _, anyhow};

fn main() -> anyhow::Result<()> {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let ebpf_dir = manifest_dir
        .parent()
        .map(|workspace| workspace.join("socktrace-ebpf"))
        .ok_or_else(|| anyhow!("no workspace above {}", manifest_dir.display()))?;
    let ebpf_dir = ebpf_dir
        .to_str()
        .ok_or_else(|| anyhow!("non UTF-8 path {}", ebpf_dir.display()))?;
    let package = aya_build::Package {
        name: "socktrace-ebpf",
        root_dir: ebpf_dir,
        ..Default::default()
    };
    aya_build::build_ebpf([package], aya_build::Toolchain::default())?;

    let object = PathBuf::from(env::var("OUT_DIR")?).join("socktrace");
    if !object.exists() {
        fs::write(&object, []).with_context(|| format!("writing {}", object.display()))?;
    }
    Ok(())
}
