//! Checks the running kernel's record layout of every tracepoint the BPF
//! program reads (`socktrace_ebpf::tracepoints::LAYOUTS`) against the
//! offsets it was built with, so a kernel that moved a field fails loudly at
//! start-up instead of producing garbage.
use std::{
    io::ErrorKind,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use socktrace_ebpf::tracepoints::{LAYOUTS, Layout};

/// Where tracefs may be mounted, in the order the kernel documents them.
const TRACEFS_ROOTS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// What is wrong with a tracepoint.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error(
        "tracefs is not mounted (looked in {}); mount it with `mount -t tracefs nodev /sys/kernel/tracing`",
        TRACEFS_ROOTS.join(", ")
    )]
    NoTracefs,
    /// tracefs is there but closed to this user: its root is mode 0700 and
    /// its files 0440, root's, on most hosts.
    #[error(
        "{path} is not readable by this user (uid {uid}; it is mode {mode:04o}, owner uid {owner}): \
         run socktrace as root, or grant it CAP_DAC_READ_SEARCH besides CAP_BPF and CAP_PERFMON"
    )]
    NotReadable {
        path: PathBuf,
        uid: u32,
        mode: u32,
        owner: u32,
    },
    #[error("cannot read {path} (does this kernel have the {tracepoint} tracepoint?)")]
    Unreadable {
        tracepoint: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{tracepoint} field `{field}` is at offset {found_offset} size {found_size} on this kernel, socktrace reads offset {offset} size {size}"
    )]
    Moved {
        tracepoint: String,
        field: &'static str,
        offset: usize,
        size: usize,
        found_offset: usize,
        found_size: usize,
    },
    #[error("{tracepoint} has no field `{field}` on this kernel")]
    Missing {
        tracepoint: String,
        field: &'static str,
    },
}

/// The optional fields (see `Layout::optional`) this kernel has.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OptionalFields(Vec<(&'static str, &'static str)>);

impl OptionalFields {
    /// Whether `layout`'s tracepoint has `field` where socktrace reads it.
    pub fn has(&self, layout: &Layout, field: &str) -> bool {
        self.0.iter().any(|(n, f)| *n == layout.name && *f == field)
    }
}

/// Reads every attached tracepoint's format file from the mounted tracefs
/// and checks it; says which optional fields it has.
pub fn check_all() -> Result<OptionalFields, FormatError> {
    let root = tracefs_root()?;
    let mut present = OptionalFields::default();
    for layout in LAYOUTS {
        let path = root
            .join("events")
            .join(layout.category)
            .join(layout.name)
            .join("format");
        let text = std::fs::read_to_string(&path).map_err(|source| {
            if source.kind() == ErrorKind::PermissionDenied {
                return not_readable(&path);
            }
            FormatError::Unreadable {
                tracepoint: display_name(layout),
                path: path.clone(),
                source,
            }
        })?;
        for field in check_layout(layout, &text)? {
            present.0.push((layout.name, field));
        }
    }
    Ok(present)
}

/// The first of [`TRACEFS_ROOTS`] with tracefs' `events`; an error that
/// tells a tracefs this user may not read from one that is not mounted.
fn tracefs_root() -> Result<&'static Path, FormatError> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mounted = tracefs_mounts(&mountinfo);
    let mut closed = None;
    for root in TRACEFS_ROOTS.map(Path::new) {
        let events = root.join("events");
        match std::fs::metadata(&events) {
            Ok(metadata) if metadata.is_dir() => return Ok(root),
            Err(error)
                if error.kind() == ErrorKind::PermissionDenied
                    && mounted.iter().any(|&mount| Path::new(mount) == root) =>
            {
                closed.get_or_insert_with(|| not_readable(&events));
            }
            _ => {}
        }
    }
    Err(closed.unwrap_or(FormatError::NoTracefs))
}

/// The mount points of tracefs in a `/proc/PID/mountinfo` text, as it
/// writes them (a space, tab or backslash escaped in octal: none of
/// [`TRACEFS_ROOTS`] has one).
fn tracefs_mounts(mountinfo: &str) -> Vec<&str> {
    mountinfo
        .lines()
        .filter_map(|line| {
            // ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [TAGS...] - TYPE SOURCE ...
            let (mount, filesystem) = line.split_once(" - ")?;
            let mount_point = mount.split(' ').nth(4)?;
            (filesystem.split(' ').next()? == "tracefs").then_some(mount_point)
        })
        .collect()
}

/// `path` could not be read for want of permission: names the nearest of
/// it and its parents this user can see, with its mode and owner (the
/// tracefs root when that is closed, else the file).
fn not_readable(path: &Path) -> FormatError {
    let (path, metadata) = path
        .ancestors()
        .find_map(|at| Some((at, std::fs::metadata(at).ok()?)))
        .map_or((path, None), |(at, metadata)| (at, Some(metadata)));
    FormatError::NotReadable {
        path: path.to_owned(),
        // SAFETY: geteuid has no preconditions.
        uid: unsafe { libc::geteuid() },
        mode: metadata.as_ref().map_or(0, |m| m.mode() & 0o7777),
        owner: metadata.as_ref().map_or(0, MetadataExt::uid),
    }
}

/// `category:name`, as perf and bpftrace spell a tracepoint.
fn display_name(layout: &Layout) -> String {
    format!("{}:{}", layout.category, layout.name)
}

/// Checks a format file's text against `layout`; returns the optional
/// fields it has (each where socktrace reads it).
pub fn check_layout(layout: &Layout, format: &str) -> Result<Vec<&'static str>, FormatError> {
    let moved = |field, offset, size, (found_offset, found_size)| FormatError::Moved {
        tracepoint: display_name(layout),
        field,
        offset,
        size,
        found_offset,
        found_size,
    };
    for &(field, offset, size) in layout.fields {
        let found = find_field(format, field).ok_or_else(|| FormatError::Missing {
            tracepoint: display_name(layout),
            field,
        })?;
        if found != (offset, size) {
            return Err(moved(field, offset, size, found));
        }
    }
    let mut present = Vec::new();
    for &(field, offset, size) in layout.optional {
        match find_field(format, field) {
            Some(found) if found == (offset, size) => present.push(field),
            Some(found) => return Err(moved(field, offset, size, found)),
            None => {}
        }
    }
    Ok(present)
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
    use socktrace_ebpf::tracepoints::{RECEIVE_RESET, RETRANSMIT_SKB, RETRANSMIT_SYNACK};

    const RETRANSMIT_SKB_6_18: &str = "\tfield:const void * skbaddr;\toffset:8;\tsize:8;\tsigned:0;
\tfield:const void * skaddr;\toffset:16;\tsize:8;\tsigned:0;
\tfield:int state;\toffset:24;\tsize:4;\tsigned:1;
\tfield:__u16 sport;\toffset:28;\tsize:2;\tsigned:0;
\tfield:__u16 dport;\toffset:30;\tsize:2;\tsigned:0;
\tfield:__u16 family;\toffset:32;\tsize:2;\tsigned:0;
\tfield:__u8 saddr[4];\toffset:34;\tsize:4;\tsigned:0;
\tfield:__u8 daddr[4];\toffset:38;\tsize:4;\tsigned:0;
\tfield:__u8 saddr_v6[16];\toffset:42;\tsize:16;\tsigned:0;
\tfield:__u8 daddr_v6[16];\toffset:58;\tsize:16;\tsigned:0;
\tfield:int err;\toffset:76;\tsize:4;\tsigned:1;
";

    const RETRANSMIT_SYNACK_6_18: &str =
        "\tfield:const void * skaddr;\toffset:8;\tsize:8;\tsigned:0;
\tfield:const void * req;\toffset:16;\tsize:8;\tsigned:0;
\tfield:__u16 sport;\toffset:24;\tsize:2;\tsigned:0;
\tfield:__u16 dport;\toffset:26;\tsize:2;\tsigned:0;
\tfield:__u16 family;\toffset:28;\tsize:2;\tsigned:0;
\tfield:__u8 saddr[4];\toffset:30;\tsize:4;\tsigned:0;
\tfield:__u8 daddr[4];\toffset:34;\tsize:4;\tsigned:0;
\tfield:__u8 saddr_v6[16];\toffset:38;\tsize:16;\tsigned:0;
\tfield:__u8 daddr_v6[16];\toffset:54;\tsize:16;\tsigned:0;
";

    const RECEIVE_RESET_6_18: &str = "\tfield:const void * skaddr;\toffset:8;\tsize:8;\tsigned:0;
\tfield:__u16 sport;\toffset:16;\tsize:2;\tsigned:0;
\tfield:__u16 dport;\toffset:18;\tsize:2;\tsigned:0;
\tfield:__u16 family;\toffset:20;\tsize:2;\tsigned:0;
\tfield:__u8 saddr[4];\toffset:22;\tsize:4;\tsigned:0;
\tfield:__u8 daddr[4];\toffset:26;\tsize:4;\tsigned:0;
\tfield:__u8 saddr_v6[16];\toffset:30;\tsize:16;\tsigned:0;
\tfield:__u8 daddr_v6[16];\toffset:46;\tsize:16;\tsigned:0;
\tfield:__u64 sock_cookie;\toffset:64;\tsize:8;\tsigned:0;
";

    #[test]
    fn tracefs_mounts_are_read_from_mountinfo() {
        let mountinfo = "\
22 28 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
45 23 0:13 / /sys/kernel/tracing rw,relatime shared:20 - tracefs nodev rw
46 23 0:7 / /sys/kernel/debug rw,nosuid,nodev,noexec,relatime shared:21 - debugfs debugfs rw
47 46 0:13 / /sys/kernel/debug/tracing rw,relatime - tracefs tracefs rw
48 28 0:40 / /mnt/my\\040trace rw - tmpfs tracefs rw
";
        assert_eq!(
            tracefs_mounts(mountinfo),
            ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
        );
        assert!(tracefs_mounts("").is_empty());
    }

    #[test]
    fn a_closed_path_is_named_with_its_mode_and_what_to_do() {
        let error = FormatError::NotReadable {
            path: "/sys/kernel/tracing".into(),
            uid: 65534,
            mode: 0o700,
            owner: 0,
        };
        assert_eq!(
            error.to_string(),
            "/sys/kernel/tracing is not readable by this user (uid 65534; it is mode 0700, \
             owner uid 0): run socktrace as root, or grant it CAP_DAC_READ_SEARCH besides \
             CAP_BPF and CAP_PERFMON"
        );
    }

    #[test]
    fn the_known_layout_passes() {
        check_layout(&RECEIVE_RESET, RECEIVE_RESET_6_18).unwrap();
    }

    #[test]
    fn a_moved_field_is_named() {
        let moved = RECEIVE_RESET_6_18.replace("sport;\toffset:16", "sport;\toffset:18");
        let error = check_layout(&RECEIVE_RESET, &moved).unwrap_err();
        assert!(
            matches!(
                error,
                FormatError::Moved {
                    field: "sport",
                    found_offset: 18,
                    ..
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn a_missing_field_is_named() {
        let missing = RECEIVE_RESET_6_18.replace("daddr_v6[16]", "dst6[16]");
        assert!(matches!(
            check_layout(&RECEIVE_RESET, &missing),
            Err(FormatError::Missing {
                field: "daddr_v6",
                ..
            })
        ));
    }

    #[test]
    fn the_tcp_layouts_match_linux_6_18() {
        assert_eq!(
            check_layout(&RETRANSMIT_SKB, RETRANSMIT_SKB_6_18).unwrap(),
            ["err"]
        );
        check_layout(&RETRANSMIT_SYNACK, RETRANSMIT_SYNACK_6_18).unwrap();
        check_layout(&RECEIVE_RESET, RECEIVE_RESET_6_18).unwrap();
    }

    #[test]
    fn an_optional_field_may_be_missing_but_not_moved() {
        let before_6_17: String = RETRANSMIT_SKB_6_18
            .lines()
            .filter(|line| !line.contains(" err;"))
            .map(|line| format!("{line}\n"))
            .collect();
        assert!(
            check_layout(&RETRANSMIT_SKB, &before_6_17)
                .unwrap()
                .is_empty()
        );
        let moved = RETRANSMIT_SKB_6_18.replace("err;\toffset:76", "err;\toffset:80");
        assert!(matches!(
            check_layout(&RETRANSMIT_SKB, &moved),
            Err(FormatError::Moved { field: "err", .. })
        ));
    }

    #[test]
    fn a_moved_endpoint_block_is_named_with_its_tracepoint() {
        let moved = RETRANSMIT_SYNACK_6_18.replace("family;\toffset:28", "family;\toffset:30");
        let error = check_layout(&RETRANSMIT_SYNACK, &moved).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("tcp:tcp_retransmit_synack field `family` is at offset 30"),
            "{error}"
        );
    }
}
