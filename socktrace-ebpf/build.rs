//! Rebuild the BPF object when the `bpf-linker` binary changes: building
//! this crate for the BPF target depends on it, and cargo cannot express that.
fn main() {
    if let Ok(linker) = which::which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", linker.display());
    }
}
