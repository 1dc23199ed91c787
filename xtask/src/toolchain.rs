//! The BPF build's nightly (named once, in `socktrace-ebpf/rust-toolchain.toml`)
//! and the check that its LLVM is the one bpf-linker links.
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The dated nightly `socktrace-ebpf/rust-toolchain.toml` names: the one
/// socktrace's build script builds the BPF object with.
pub fn bpf_nightly() -> Result<String> {
    let file = "socktrace-ebpf/rust-toolchain.toml";
    let Some(channel) = socktrace_ebpf::toolchain::channel() else {
        bail!("{file} names no channel");
    };
    if !socktrace_ebpf::toolchain::is_dated_nightly(channel) {
        bail!(
            "{file} names {channel:?}: name a dated nightly (nightly-YYYY-MM-DD), \
             whose LLVM stays the one bpf-linker links"
        );
    }
    Ok(channel.to_owned())
}

/// The LLVM major version `toolchain`'s rustc was built with.
pub fn rustc_llvm_major(toolchain: &str) -> Result<u32> {
    let output = Command::new("rustc")
        .arg(format!("+{toolchain}"))
        .arg("-vV")
        .output()
        .with_context(|| format!("running rustc +{toolchain} -vV"))?;
    if !output.status.success() {
        bail!(
            "rustc +{toolchain} -vV failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    llvm_major_of_rustc(&String::from_utf8_lossy(&output.stdout))
        .with_context(|| format!("rustc +{toolchain} -vV names no LLVM version"))
}

/// The LLVM major version of the libLLVM the installed bpf-linker links
/// (bpf-linker 0.13 does not print it; its dynamic libraries do).
pub fn bpf_linker_llvm_major() -> Result<u32> {
    let linker = Command::new("sh")
        .args(["-c", "command -v bpf-linker"])
        .output()
        .context("looking for bpf-linker")?;
    let linker = String::from_utf8_lossy(&linker.stdout).trim().to_owned();
    if linker.is_empty() {
        bail!("bpf-linker is not on PATH");
    }
    let output = Command::new("ldd")
        .arg(&linker)
        .output()
        .with_context(|| format!("running ldd {linker}"))?;
    llvm_major_of_ldd(&String::from_utf8_lossy(&output.stdout))
        .with_context(|| format!("{linker} links no libLLVM (ldd)"))
}

/// Fails, in one line naming both versions and what to change, when the BPF
/// nightly's LLVM is not `other`'s.
pub fn check_llvm(nightly: &str, rustc_llvm: u32, other: &str, other_llvm: u32) -> Result<()> {
    if rustc_llvm == other_llvm {
        return Ok(());
    }
    bail!(
        "{nightly} uses LLVM {rustc_llvm} but {other} is LLVM {other_llvm}: pin a nightly whose \
         `rustc -vV` says LLVM {other_llvm} in socktrace-ebpf/rust-toolchain.toml, or move \
         LLVM_MAJOR in xtask/src/setup.rs to {rustc_llvm} (Debian's llvm-{rustc_llvm}-dev, \
         bpf-linker's llvm-{rustc_llvm} feature)"
    )
}

/// `LLVM version: 22.1.4` in `rustc -vV`'s output → 22.
fn llvm_major_of_rustc(text: &str) -> Option<u32> {
    text.lines()
        .find_map(|line| line.strip_prefix("LLVM version:"))
        .and_then(|version| version.trim().split('.').next()?.parse().ok())
}

/// `libLLVM.so.22.1 => ...` (or `libLLVM-22.so`) in `ldd`'s output → 22.
fn llvm_major_of_ldd(text: &str) -> Option<u32> {
    text.lines().find_map(|line| {
        let name = line.split_whitespace().next()?;
        let version = name
            .strip_prefix("libLLVM.so.")
            .or_else(|| name.strip_prefix("libLLVM-")?.strip_suffix(".so"))?;
        version.split('.').next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::workspace_root;

    #[test]
    fn the_build_script_and_the_set_up_name_the_same_dated_nightly() {
        let path = workspace_root().join("socktrace-ebpf/rust-toolchain.toml");
        let on_disk = std::fs::read_to_string(path).unwrap();
        let set_up = bpf_nightly().unwrap();
        assert_eq!(
            socktrace_ebpf::toolchain::channel_of(&on_disk),
            Some(set_up.as_str())
        );
        let build_script =
            std::fs::read_to_string(workspace_root().join("socktrace/build.rs")).unwrap();
        assert!(
            build_script.contains("Toolchain::Custom(toolchain)")
                && build_script.contains("socktrace_ebpf::toolchain::channel()"),
            "socktrace/build.rs must build with the toolchain file's nightly"
        );
        let fuzz = std::fs::read_to_string(workspace_root().join("xtask/src/fuzz.rs")).unwrap();
        assert!(fuzz.contains("toolchain::bpf_nightly()"));
    }

    #[test]
    fn only_dated_nightlies_are_pins() {
        use socktrace_ebpf::toolchain::is_dated_nightly;
        assert!(is_dated_nightly("nightly-2026-05-20"));
        for moving in [
            "nightly",
            "stable",
            "1.95.0",
            "nightly-2026-5-20",
            "nightly-20260520",
        ] {
            assert!(!is_dated_nightly(moving), "{moving}");
        }
    }

    #[test]
    fn llvm_versions_are_read_from_rustc_and_ldd() {
        let rustc = "rustc 1.97.0-nightly (abc 2026-05-19)\nbinary: rustc\n\
                     host: x86_64-unknown-linux-gnu\nrelease: 1.97.0-nightly\nLLVM version: 22.1.4\n";
        assert_eq!(llvm_major_of_rustc(rustc), Some(22));
        assert_eq!(llvm_major_of_rustc("rustc 1.0\n"), None);
        let ldd = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                   \tlibLLVM.so.22.1 => /usr/lib/llvm-22/lib/libLLVM.so.22.1 (0x00007f93)\n\
                   \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f92)\n";
        assert_eq!(llvm_major_of_ldd(ldd), Some(22));
        assert_eq!(
            llvm_major_of_ldd("\tlibLLVM-18.so => /usr/lib/x (0x1)\n"),
            Some(18)
        );
        assert_eq!(llvm_major_of_ldd("\tlibc.so.6 => /lib/libc.so.6\n"), None);
    }

    #[test]
    fn a_mismatch_is_one_line_naming_both_versions() {
        assert!(check_llvm("nightly-2026-05-20", 22, "bpf-linker 0.13.0", 22).is_ok());
        let error = check_llvm("nightly-2026-11-30", 23, "bpf-linker 0.13.0", 22)
            .unwrap_err()
            .to_string();
        assert!(!error.contains('\n'));
        for named in [
            "nightly-2026-11-30",
            "LLVM 23",
            "bpf-linker 0.13.0 is LLVM 22",
        ] {
            assert!(error.contains(named), "{error}");
        }
    }
}
