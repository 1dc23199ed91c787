use super::*;
use std::os::unix::fs::symlink;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

const HOST: NetnsInode = 4_026_531_840;

/// A directory in the temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "socktrace-netns-{what}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir().join(name);
        fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    /// Adds `NAME/ns/net -> target` the way /proc shows a process.
    fn process(&self, name: &str, target: &str) {
        let ns = self.0.join(name).join("ns");
        fs::create_dir_all(&ns).expect("create ns dir");
        symlink(target, ns.join("net")).expect("symlink");
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn parse_link_reads_net_links() {
    assert_eq!(parse_link(OsStr::new("net:[4026531840]")), Some(HOST));
    assert_eq!(parse_link(OsStr::new("net:[7]")), Some(7));
    assert_eq!(parse_link(OsStr::new("net:[4294967295]")), Some(u32::MAX));
}

#[test]
fn parse_link_rejects_anything_else() {
    for bad in [
        "",
        "net:[]",
        "net:[+7]",
        "net:[-7]",
        "net:[7 ]",
        "net:[12a]",
        "net:[4294967296]",
        "net:4026531840",
        "net:[4026531840",
        "mnt:[4026531840]",
        "socket:[4026531840]",
        " net:[4026531840]",
    ] {
        assert_eq!(parse_link(OsStr::new(bad)), None, "{bad:?}");
    }
    assert_eq!(parse_link(OsStr::from_bytes(b"net:[\xff]")), None);
}

#[test]
fn scan_reads_process_links_and_keeps_the_lowest_pid() {
    let proc_root = TempDir::new("proc");
    proc_root.process("1", "net:[4026531840]");
    proc_root.process("42", "net:[4026532000]");
    proc_root.process("7", "net:[4026532000]");
    proc_root.process("300", "net:[4026532000]");
    // Not processes, or no readable namespace link: skipped.
    proc_root.process("self", "net:[4026532999]");
    proc_root.process("12x", "net:[4026532998]");
    proc_root.process("8", "mnt:[4026532997]");
    fs::create_dir_all(proc_root.0.join("9")).expect("create 9");
    fs::write(proc_root.0.join("10"), "").expect("write 10");

    let run_netns = TempDir::new("run");
    // What a failed `ip netns add` leaves behind: an empty tmpfs file.
    fs::write(run_netns.0.join("broken"), "").expect("write broken");

    let found = scan(&proc_root.0, &run_netns.0).expect("scan");
    let expected = NamespaceScan {
        namespaces: BTreeMap::from([
            (
                HOST,
                NetNamespace {
                    inode: HOST,
                    names: Vec::new(),
                    entry: proc_root.0.join("1/ns/net"),
                },
            ),
            (
                4_026_532_000,
                NetNamespace {
                    inode: 4_026_532_000,
                    names: Vec::new(),
                    entry: proc_root.0.join("7/ns/net"),
                },
            ),
        ]),
    };
    assert_eq!(found, expected);
}

#[test]
fn a_missing_run_netns_means_no_names_but_an_unreadable_proc_fails_the_scan() {
    let proc_root = TempDir::new("proc-only");
    proc_root.process("1", "net:[4026531840]");
    let dir = TempDir::new("missing");
    let found = scan(&proc_root.0, &dir.0.join("netns")).expect("scan without /run/netns");
    assert_eq!(found.namespaces.keys().collect::<Vec<_>>(), [&HOST]);
    // Not an empty scan: that would take every namespace for gone.
    let failed = scan(&dir.0.join("proc"), &dir.0.join("netns"));
    assert!(
        matches!(&failed, Err(NetnsError::List { path, .. }) if path == &dir.0.join("proc")),
        "{failed:?}"
    );
    fs::write(dir.0.join("file"), "").expect("write file");
    let not_a_directory = scan(&proc_root.0, &dir.0.join("file"));
    assert!(
        matches!(not_a_directory, Err(NetnsError::List { .. })),
        "{not_a_directory:?}"
    );
}

#[test]
fn scan_of_the_real_proc_finds_our_namespace() {
    let own = own().expect("own namespace");
    let found = scan(Path::new("/proc"), Path::new("/run/netns")).expect("scan");
    assert!(found.namespaces.contains_key(&own), "{found:?}");
}

#[test]
fn own_is_the_link_of_this_thread() {
    let link = fs::read_link("/proc/thread-self/ns/net").expect("readlink");
    assert_eq!(Some(own().expect("own")), parse_link(link.as_os_str()));
}

#[test]
fn inode_of_name_rejects_what_is_not_one_component() {
    let run_netns = TempDir::new("names");
    for bad in ["", ".", "..", "a/b", "../etc", "/x", "a\0b"] {
        let result = inode_of_name(&run_netns.0, bad);
        assert!(
            matches!(result, Err(NetnsError::BadName(_))),
            "{bad:?}: {result:?}"
        );
    }
}

#[test]
fn inode_of_name_explains_missing_and_broken_names() {
    let run_netns = TempDir::new("names");
    fs::write(run_netns.0.join("broken"), "").expect("write broken");

    let missing = inode_of_name(&run_netns.0, "nope").expect_err("missing name");
    assert!(
        matches!(&missing, NetnsError::NotFound { name, available, .. }
            if name == "nope" && available.is_empty()),
        "{missing:?}"
    );
    assert!(missing.to_string().contains("none exist"), "{missing}");

    let broken = inode_of_name(&run_netns.0, "broken").expect_err("not a namespace");
    assert!(
        matches!(&broken, NetnsError::NotNamespace { path } if *path == run_netns.0.join("broken")),
        "{broken:?}"
    );
}

#[test]
fn run_in_our_own_namespace_stays_on_this_thread() {
    let own = own().expect("own");
    let here = std::thread::current().id();
    let namespace = NetNamespace {
        inode: own,
        names: Vec::new(),
        entry: PathBuf::from("/nonexistent"),
    };
    let there = run_in(&namespace, own, || std::thread::current().id()).expect("run_in");
    assert_eq!(here, there);
}

#[test]
fn run_in_refuses_a_path_that_leads_elsewhere() {
    let own = own().expect("own");
    let namespace = NetNamespace {
        inode: own.wrapping_add(1),
        names: Vec::new(),
        entry: PathBuf::from("/proc/thread-self/ns/net"),
    };
    let result = run_in(&namespace, own, || panic!("must not run"));
    assert!(
        matches!(result, Err(NetnsError::Replaced { expected, found, .. })
            if expected == own.wrapping_add(1) && found == u64::from(own)),
        "{result:?}"
    );
}

#[test]
fn run_in_reports_a_vanished_entry() {
    let dir = TempDir::new("vanished");
    let namespace = NetNamespace {
        inode: 4_026_532_000,
        names: Vec::new(),
        entry: dir.0.join("gone"),
    };
    let result = run_in(&namespace, HOST, || panic!("must not run"));
    assert!(matches!(result, Err(NetnsError::Open { .. })), "{result:?}");
}

/// A namespace named `name` under /run/netns, deleted on drop.
struct TestNamespace {
    name: String,
    deleted: bool,
}

impl TestNamespace {
    fn add(name: &str) -> Self {
        run_ip(&["netns", "add", name]);
        TestNamespace {
            name: name.to_string(),
            deleted: false,
        }
    }

    fn delete(&mut self) {
        self.deleted = true;
        run_ip(&["netns", "del", &self.name]);
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if !self.deleted {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.name])
                .status();
        }
    }
}

fn run_ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("run ip");
    assert!(status.success(), "ip {args:?}: {status}");
}

#[test]
fn run_in_enters_a_real_namespace() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipping run_in_enters_a_real_namespace: needs root for `ip netns add`");
        return;
    }
    let run_netns = Path::new("/run/netns");
    let name = format!("socktrace-unit-{}", std::process::id());
    let mut test_namespace = TestNamespace::add(&name);
    let host = own().expect("own");

    let inode = inode_of_name(run_netns, &name).expect("inode_of_name");
    assert_ne!(inode, host);
    let missing = inode_of_name(run_netns, "socktrace-unit-no-such-name").expect_err("missing");
    assert!(
        matches!(&missing, NetnsError::NotFound { available, .. } if available.contains(&name)),
        "{missing:?}"
    );

    let found = scan(Path::new("/proc"), run_netns).expect("scan");
    let namespace = found.namespaces.get(&inode).expect("scan finds it").clone();
    assert_eq!(namespace.names, vec![name.clone()]);
    assert_eq!(namespace.entry, run_netns.join(&name));
    assert!(found.namespaces.contains_key(&host));

    let inside = run_in(&namespace, host, own)
        .expect("run_in")
        .expect("own inside");
    assert_eq!(inside, inode);
    // A fresh namespace has only `lo`; /proc/self/net (and so /proc/net)
    // still shows the main thread's namespace to a job.
    let (thread_view, process_view) = run_in(&namespace, host, || {
        (
            interfaces("/proc/thread-self/net/dev"),
            interfaces("/proc/self/net/dev"),
        )
    })
    .expect("run_in");
    assert_eq!(thread_view, vec!["lo"]);
    assert_eq!(process_view, interfaces("/proc/thread-self/net/dev"));
    assert_eq!(own().expect("own after"), host, "the caller stays home");

    test_namespace.delete();
    let stale = run_in(&namespace, host, || panic!("must not run"));
    assert!(matches!(stale, Err(NetnsError::Open { .. })), "{stale:?}");
    assert!(
        !scan(Path::new("/proc"), run_netns)
            .expect("scan")
            .namespaces
            .contains_key(&inode)
    );
}

/// The interface names a `/proc/.../net/dev` file lists.
fn interfaces(path: &str) -> Vec<String> {
    let dev = fs::read_to_string(path).expect("read net/dev");
    dev.lines()
        .skip(2)
        .filter_map(|line| Some(line.split_once(':')?.0.trim().to_string()))
        .collect()
}

fn namespace(inode: NetnsInode, names: &[&str]) -> NetNamespace {
    NetNamespace {
        inode,
        names: names.iter().map(|name| name.to_string()).collect(),
        entry: PathBuf::from(format!("/proc/{inode}/ns/net")),
    }
}

fn scan_of(namespaces: &[NetNamespace]) -> NamespaceScan {
    NamespaceScan {
        namespaces: namespaces
            .iter()
            .map(|namespace| (namespace.inode, namespace.clone()))
            .collect(),
    }
}

fn enterable(registry: &NamespaceRegistry) -> Vec<NetnsInode> {
    registry
        .namespaces()
        .map(|namespace| namespace.inode)
        .collect()
}

#[test]
fn registry_learns_scanned_namespaces() {
    let mut registry = NamespaceRegistry::new();
    assert!(registry.is_empty());
    let gone = registry.update(scan_of(&[namespace(2, &[]), namespace(1, &["a"])]));
    assert!(gone.is_empty());
    assert_eq!(registry.len(), 2);
    assert_eq!(enterable(&registry), vec![1, 2]);
    assert_eq!(registry.get(1), Some(&namespace(1, &["a"])));
    assert_eq!(registry.get(3), None);
}

#[test]
fn registry_refreshes_names_and_entries() {
    let mut registry = NamespaceRegistry::new();
    registry.update(scan_of(&[namespace(1, &["a"])]));
    let renamed = NetNamespace {
        entry: PathBuf::from("/run/netns/b"),
        ..namespace(1, &["b", "c"])
    };
    registry.update(scan_of(std::slice::from_ref(&renamed)));
    assert_eq!(registry.get(1), Some(&renamed));
    assert_eq!(registry.label(1), "b,c");
}

#[test]
fn registry_forgets_after_two_misses_in_a_row() {
    let mut registry = NamespaceRegistry::new();
    registry.update(scan_of(&[
        namespace(1, &[]),
        namespace(2, &["b"]),
        namespace(3, &[]),
    ]));

    // One miss: still known, its name still labels it, but not enterable.
    assert!(registry.update(scan_of(&[namespace(1, &[])])).is_empty());
    assert_eq!(registry.len(), 3);
    assert_eq!(enterable(&registry), vec![1]);
    assert_eq!(registry.label(2), "b");

    // 3 comes back, which resets its count; 2 misses again and is gone.
    let gone = registry.update(scan_of(&[namespace(1, &[]), namespace(3, &[])]));
    assert_eq!(gone, vec![2]);
    assert_eq!(registry.get(2), None);
    assert_eq!(registry.label(2), "2");

    assert!(registry.update(NamespaceScan::default()).is_empty());
    assert_eq!(registry.update(NamespaceScan::default()), vec![1, 3]);
    assert!(registry.is_empty());
}

#[test]
fn registry_reports_noted_namespaces_gone_after_two_scans() {
    let mut registry = NamespaceRegistry::new();
    registry.note(9);
    assert_eq!(registry.len(), 1);
    assert_eq!(registry.get(9), None);
    assert!(enterable(&registry).is_empty());
    assert_eq!(registry.label(9), "9");

    assert!(registry.update(NamespaceScan::default()).is_empty());
    assert_eq!(registry.update(NamespaceScan::default()), vec![9]);
    assert!(registry.is_empty());
}

#[test]
fn registry_learns_a_noted_namespace_a_scan_finds() {
    let mut registry = NamespaceRegistry::new();
    registry.note(9);
    assert!(registry.update(NamespaceScan::default()).is_empty());
    assert!(registry.update(scan_of(&[namespace(9, &["x"])])).is_empty());
    assert_eq!(registry.get(9), Some(&namespace(9, &["x"])));
    assert_eq!(enterable(&registry), vec![9]);
    assert!(registry.update(NamespaceScan::default()).is_empty());
    assert_eq!(registry.update(NamespaceScan::default()), vec![9]);
}

#[test]
fn noting_a_known_namespace_changes_nothing() {
    let mut registry = NamespaceRegistry::new();
    registry.update(scan_of(&[namespace(1, &["a"])]));
    assert!(registry.update(NamespaceScan::default()).is_empty());
    registry.note(1);
    assert_eq!(registry.get(1), Some(&namespace(1, &["a"])));
    assert_eq!(registry.update(NamespaceScan::default()), vec![1]);
}

#[test]
fn labels_join_names_or_show_the_inode() {
    let mut registry = NamespaceRegistry::new();
    registry.update(scan_of(&[
        namespace(1, &["blue", "green"]),
        namespace(2, &[]),
    ]));
    assert_eq!(registry.label(1), "blue,green");
    assert_eq!(registry.label(2), "2");
    assert_eq!(registry.label(3), "3");
}
