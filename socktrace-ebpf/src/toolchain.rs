//! The BPF build's toolchain, as `rust-toolchain.toml` beside this crate names
//! it: read by socktrace's build script and by `cargo xtask setup`, so both
//! use the one nightly the file names.

/// The text of `socktrace-ebpf/rust-toolchain.toml`.
pub const FILE: &str = include_str!("../rust-toolchain.toml");

/// The `channel` the toolchain file names, e.g. `nightly-2026-05-20`.
pub fn channel() -> Option<&'static str> {
    channel_of(FILE)
}

/// The `channel = "..."` of a rust-toolchain.toml text.
pub fn channel_of(toml: &str) -> Option<&str> {
    toml.lines().find_map(|line| {
        let value = line.trim().strip_prefix("channel")?.trim_start();
        let value = value.strip_prefix('=')?.trim();
        value.strip_prefix('"')?.split('"').next()
    })
}

/// Whether `channel` is a dated nightly (`nightly-YYYY-MM-DD`), the only kind
/// that stays the same from one machine and one day to the next.
pub fn is_dated_nightly(channel: &str) -> bool {
    let Some(date) = channel.strip_prefix("nightly-") else {
        return false;
    };
    let bytes = date.as_bytes();
    bytes.len() == 10
        && bytes.iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            _ => b.is_ascii_digit(),
        })
}
