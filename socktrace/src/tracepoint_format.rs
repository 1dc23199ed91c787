//! Checks the running kernel's `sock:inet_sock_set_state` record layout
//! against the one the BPF program reads (`SET_STATE_LAYOUT`), so a kernel
//! that moved a field fails loudly at start-up instead of producing garbage.
use std::path::{Path, PathBuf};

use socktrace_ebpf::SET_STATE_LAYOUT;

/// Where tracefs may be mounted, in the order the kernel documents them.
const TRACEFS_ROOTS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// What is wrong with the tracepoint.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error(
        "tracefs is not mounted (looked in {}); mount it with `mount -t tracefs nodev /sys/kernel/tracing`",
        TRACEFS_ROOTS.join(", ")
    )]
    NoTracefs,
    #[error(
        "cannot read {path}: {source} (does this kernel have the sock:inet_sock_set_state tracepoint?)"
    )]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "sock:inet_sock_set_state field `{field}` is at offset {found_offset} size {found_size} on this kernel, socktrace reads offset {offset} size {size}"
    )]
    Moved {
        field: &'static str,
        offset: usize,
        size: usize,
        found_offset: usize,
        found_size: usize,
    },
    #[error("sock:inet_sock_set_state has no field `{0}` on this kernel")]
    Missing(&'static str),
}

/// Reads the tracepoint's format file from the mounted tracefs and checks it.
pub fn check_inet_sock_set_state() -> Result<(), FormatError> {
    let root = TRACEFS_ROOTS
        .iter()
        .map(Path::new)
        .find(|root| root.join("events").is_dir())
        .ok_or(FormatError::NoTracefs)?;
    let path = root.join("events/sock/inet_sock_set_state/format");
    let text = std::fs::read_to_string(&path).map_err(|source| FormatError::Unreadable {
        path: path.clone(),
        source,
    })?;
    check_layout(&text)
}

/// Checks a format file's text against [`SET_STATE_LAYOUT`].
pub fn check_layout(format: &str) -> Result<(), FormatError> {
    for (field, offset, size) in SET_STATE_LAYOUT {
        let (found_offset, found_size) =
            find_field(format, field).ok_or(FormatError::Missing(field))?;
        if (found_offset, found_size) != (offset, size) {
            return Err(FormatError::Moved {
                field,
                offset,
                size,
                found_offset,
                found_size,
            });
        }
    }
    Ok(())
}

/// `(offset, size)` of a field line such as
/// `field:__u16 sport; offset:24; size:2; signed:0;` (tab separated).
fn find_field(format: &str, name: &str) -> Option<(usize, usize)> {
    format.lines().find_map(|line| {
        let mut parts = line.trim().split(';').map(str::trim);
        let declaration = parts.next()?.strip_prefix("field:")?;
        let declared = declaration.rsplit(' ').next()?;
        let declared = declared.split('[').next()?;
        if declared != name {
            return None;
        }
        let number = |key: &str, part: Option<&str>| part?.strip_prefix(key)?.parse().ok();
        Some((
            number("offset:", parts.next())?,
            number("size:", parts.next())?,
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The format file of Linux 6.18, as read on this project's machines.
    const LINUX_6_18: &str = "name: inet_sock_set_state
ID: 2287
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:const void * skaddr;\toffset:8;\tsize:8;\tsigned:0;
\tfield:int oldstate;\toffset:16;\tsize:4;\tsigned:1;
\tfield:int newstate;\toffset:20;\tsize:4;\tsigned:1;
\tfield:__u16 sport;\toffset:24;\tsize:2;\tsigned:0;
\tfield:__u16 dport;\toffset:26;\tsize:2;\tsigned:0;
\tfield:__u16 family;\toffset:28;\tsize:2;\tsigned:0;
\tfield:__u16 protocol;\toffset:30;\tsize:2;\tsigned:0;
\tfield:__u8 saddr[4];\toffset:32;\tsize:4;\tsigned:0;
\tfield:__u8 daddr[4];\toffset:36;\tsize:4;\tsigned:0;
\tfield:__u8 saddr_v6[16];\toffset:40;\tsize:16;\tsigned:0;
\tfield:__u8 daddr_v6[16];\toffset:56;\tsize:16;\tsigned:0;
";

    #[test]
    fn the_known_layout_passes() {
        check_layout(LINUX_6_18).unwrap();
    }

    #[test]
    fn a_moved_field_is_named() {
        let moved = LINUX_6_18.replace("sport;\toffset:24", "sport;\toffset:26");
        let error = check_layout(&moved).unwrap_err();
        assert!(
            matches!(
                error,
                FormatError::Moved {
                    field: "sport",
                    found_offset: 26,
                    ..
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn a_missing_field_is_named() {
        let missing = LINUX_6_18.replace("daddr_v6[16]", "dst6[16]");
        assert!(matches!(
            check_layout(&missing),
            Err(FormatError::Missing("daddr_v6"))
        ));
    }
}
