//! Builds the BPF program (`socktrace-ebpf`, binary `socktrace`) for the BPF
//! target with nightly and bpf-linker, into `OUT_DIR`, where `src/loader.rs`
//! embeds it. `AYA_BUILD_SKIP=1` skips it (clippy, docs).
use std::path::Path;

fn main() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(|workspace| workspace.join("socktrace-ebpf").to_str().map(str::to_owned))
        .ok_or_else(|| anyhow::anyhow!("cannot locate socktrace-ebpf beside {}", env!("CARGO_MANIFEST_DIR")))?;
    let package = aya_build::Package {
        name: "socktrace-ebpf",
        root_dir: &root,
        ..Default::default()
    };
    aya_build::build_ebpf([package], aya_build::Toolchain::default())
}
