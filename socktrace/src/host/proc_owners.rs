//! Which process owns a socket inode, found the way `ss -p` finds it: by
//! reading the `socket:[INODE]` links in every `/proc/PID/fd/`.
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::host::container;
use crate::kernel::privileges;
use crate::model::owner::{Comm, Owner};

/// Why the owners could not be read.
#[derive(Debug, thiserror::Error)]
pub enum OwnersError {
    #[error("cannot list {}", .path.display())]
    List {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read {}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Maps every socket inode open in a process under `proc_root` (normally
/// `/proc`) to that process. When several processes hold the same socket,
/// the lowest pid wins. Processes that exit during the scan are skipped;
/// those whose descriptors this user may not read are skipped and counted
/// in a warning that says what it takes. Any other failure (`proc_root`
/// cannot be listed, a process's descriptors cannot be read for want of
/// file descriptors or memory) fails the reading: owners missing for that
/// would look like sockets nobody holds.
pub fn socket_owners(proc_root: &Path) -> Result<HashMap<u32, Owner>, OwnersError> {
    let mut owners = HashMap::new();
    let listing = |source| OwnersError::List {
        path: proc_root.to_owned(),
        source,
    };
    let mut denied = 0;
    for entry in fs::read_dir(proc_root).map_err(listing)? {
        let entry = entry.map_err(listing)?;
        if let Some(pid) = parse_pid(&entry.file_name()) {
            match add_process(&entry.path(), pid, &mut owners)? {
                Access::Read => {}
                Access::Denied => denied += 1,
            }
        }
    }
    if denied > 0 {
        report_denied(denied);
    }
    Ok(owners)
}

/// Whether this user could read a process's descriptors.
enum Access {
    Read,
    Denied,
}

/// Says why the owners of `denied` processes' sockets are unknown: a
/// warning naming the capabilities this process lacks, if it lacks any;
/// otherwise (a security module, or a process that holds capabilities
/// this one does not) only with -v.
fn report_denied(denied: u32) {
    match privileges::missing_for_other_users_files() {
        Some(missing) => log::warn!(
            "the owners of the sockets of {denied} processes are unknown: reading another \
             user's /proc/PID/fd needs CAP_DAC_READ_SEARCH and CAP_SYS_PTRACE (or root; \
             missing: {missing})"
        ),
        None => log::info!(
            "the owners of the sockets of {denied} processes are unknown: their /proc/PID/fd \
             is closed to this process"
        ),
    }
}

/// Records the sockets of the process whose `/proc` directory is `dir`.
fn add_process(
    dir: &Path,
    pid: u32,
    owners: &mut HashMap<u32, Owner>,
) -> Result<Access, OwnersError> {
    let inodes = match socket_inodes(&dir.join("fd"))? {
        Some(inodes) => inodes,
        None => return Ok(Access::Denied),
    };
    if inodes.is_empty() {
        return Ok(Access::Read);
    }
    let comm_path = dir.join("comm");
    let comm = match fs::read_to_string(&comm_path) {
        Ok(comm) => comm,
        Err(error) if went_away(&error) => return Ok(Access::Read),
        Err(source) => {
            return Err(OwnersError::Read {
                path: comm_path,
                source,
            });
        }
    };
    let owner = Owner {
        pid,
        comm: Comm::from_text(&comm),
        container: container::label_of_process(dir),
    };
    for inode in inodes {
        keep_lowest_pid(owners, inode, owner.clone());
    }
    Ok(Access::Read)
}

/// The socket inodes among the descriptors in `fd_dir`; empty if the
/// process is gone, `None` if this user may not read them. Listing another
/// user's descriptors takes CAP_DAC_READ_SEARCH, reading where they point
/// CAP_SYS_PTRACE.
fn socket_inodes(fd_dir: &Path) -> Result<Option<Vec<u32>>, OwnersError> {
    let denied = |error: &io::Error| error.kind() == io::ErrorKind::PermissionDenied;
    let entries = match fs::read_dir(fd_dir) {
        Ok(entries) => entries,
        Err(error) if denied(&error) => return Ok(None),
        Err(error) if went_away(&error) => return Ok(Some(Vec::new())),
        Err(source) => {
            return Err(OwnersError::List {
                path: fd_dir.to_owned(),
                source,
            });
        }
    };
    let mut inodes = Vec::new();
    for entry in entries.flatten() {
        match fs::read_link(entry.path()) {
            Ok(target) => inodes.extend(parse_socket_inode(target.as_os_str())),
            Err(error) if denied(&error) => return Ok(None),
            Err(_) => {}
        }
    }
    Ok(Some(inodes))
}

/// Whether reading a process's files failed because it exited (or is not a
/// process directory): a process to skip.
fn went_away(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    ) || error.raw_os_error() == Some(libc::ESRCH)
}

/// Inserts `owner` for `inode` unless a process with a lower pid holds it.
fn keep_lowest_pid(owners: &mut HashMap<u32, Owner>, inode: u32, owner: Owner) {
    match owners.entry(inode) {
        Entry::Vacant(slot) => {
            slot.insert(owner);
        }
        Entry::Occupied(mut slot) => {
            if owner.pid < slot.get().pid {
                slot.insert(owner);
            }
        }
    }
}

/// A pid from a `/proc` entry name: decimal digits only.
fn parse_pid(name: &OsStr) -> Option<u32> {
    let name = name.to_str()?;
    if name.is_empty() || !name.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    name.parse().ok()
}

/// The inode in a descriptor link target of the form `socket:[INODE]`.
fn parse_socket_inode(target: &OsStr) -> Option<u32> {
    target
        .to_str()?
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::symlink;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A fake `/proc` in the temp dir, removed on drop.
    struct FakeProc(PathBuf);

    impl FakeProc {
        fn new() -> Self {
            static COUNTER: AtomicU32 = AtomicU32::new(0);
            let name = format!(
                "socktrace-proc-owners-{}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            );
            let root = std::env::temp_dir().join(name);
            fs::create_dir_all(&root).expect("create fake proc");
            FakeProc(root)
        }

        /// Adds process `pid` named `comm` with descriptors `fd -> target`.
        fn process(&self, pid: &str, comm: &str, fds: &[(u32, &str)]) {
            let dir = self.0.join(pid);
            fs::create_dir_all(dir.join("fd")).expect("create fd dir");
            fs::write(dir.join("comm"), format!("{comm}\n")).expect("write comm");
            for (fd, target) in fds {
                symlink(target, dir.join("fd").join(fd.to_string())).expect("symlink");
            }
        }
    }

    impl Drop for FakeProc {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn owner(pid: u32, comm: &str) -> Owner {
        Owner {
            pid,
            comm: Comm::from_text(comm),
            container: None,
        }
    }

    #[test]
    fn sockets_are_mapped_to_their_process_and_other_fds_ignored() {
        let proc = FakeProc::new();
        proc.process(
            "100",
            "nginx",
            &[(3, "socket:[1234]"), (4, "/dev/null"), (5, "pipe:[99]")],
        );
        let owners = socket_owners(&proc.0).expect("owners");
        assert_eq!(owners, HashMap::from([(1234, owner(100, "nginx"))]));
    }

    #[test]
    fn the_lowest_pid_wins_a_shared_socket() {
        let proc = FakeProc::new();
        proc.process("300", "worker", &[(3, "socket:[77]"), (4, "socket:[78]")]);
        proc.process("20", "master", &[(5, "socket:[77]")]);
        proc.process("4000", "child", &[(3, "socket:[77]")]);
        let owners = socket_owners(&proc.0).expect("owners");
        assert_eq!(owners[&77], owner(20, "master"));
        assert_eq!(owners[&78], owner(300, "worker"));
    }

    #[test]
    fn non_numeric_dirs_and_missing_parts_are_ignored() {
        let proc = FakeProc::new();
        proc.process("self", "imposter", &[(3, "socket:[1]")]);
        proc.process("+12", "imposter", &[(3, "socket:[2]")]);
        proc.process("12", "ok", &[(3, "socket:[3]"), (4, "socket:[junk]")]);
        fs::create_dir_all(proc.0.join("13")).expect("process without fd dir");
        proc.process("14", "gone", &[(3, "socket:[5]")]);
        fs::remove_file(proc.0.join("14").join("comm")).expect("remove comm");
        fs::write(proc.0.join("15"), "not a directory").expect("write file");
        let owners = socket_owners(&proc.0).expect("owners");
        assert_eq!(owners, HashMap::from([(3, owner(12, "ok"))]));
    }

    #[test]
    fn a_proc_root_that_cannot_be_listed_is_an_error_not_no_owners() {
        let proc = FakeProc::new();
        let error = socket_owners(&proc.0.join("absent")).expect_err("no /proc");
        assert!(error.to_string().contains("absent"), "{error}");
    }

    #[test]
    fn a_listener_of_this_process_is_found_in_real_proc() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let link = format!("/proc/self/fd/{}", listener.as_raw_fd());
        let target = fs::read_link(link).expect("read fd link");
        let inode = parse_socket_inode(target.as_os_str()).expect("socket link");
        let owners = socket_owners(Path::new("/proc")).expect("owners");
        let found = owners.get(&inode).expect("listener inode in owners");
        assert_eq!(found.pid, std::process::id());
        let comm = fs::read_to_string("/proc/self/comm").expect("read comm");
        assert_eq!(found.comm, Comm::from_text(&comm));
    }
}
