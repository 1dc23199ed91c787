//! A throw-away cgroup named the way a container runtime names its
//! containers, so that processes moved into it look like they run in one.
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result, bail};

/// A cgroup `socktrace-test-PID-N/LEAF` in a writable hierarchy, removed on
/// drop with every process in it moved back to the hierarchy's root.
pub struct FakeContainer {
    hierarchy: PathBuf,
    parent: PathBuf,
    leaf: PathBuf,
}

impl FakeContainer {
    /// A cgroup whose last component is `leaf` (such as
    /// `docker-<64 hex digits>.scope`). On a cgroup v2 host it is made in
    /// `/sys/fs/cgroup`; on a hybrid or v1 host in the `name=systemd`
    /// hierarchy, else in `unified`: the ones a process's label is read
    /// from first.
    pub fn new(leaf: &str) -> Result<Self> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let hierarchy = writable_hierarchy()?;
        let parent = hierarchy.join(format!(
            "socktrace-test-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let leaf = parent.join(leaf);
        fs::create_dir_all(&leaf).with_context(|| format!("creating {}", leaf.display()))?;
        Ok(FakeContainer {
            hierarchy,
            parent,
            leaf,
        })
    }

    /// The path to write a pid into to move that process here (the
    /// process's own `echo $$ > PATH` before it execs its workload).
    pub fn procs(&self) -> PathBuf {
        self.leaf.join("cgroup.procs")
    }
}

/// The hierarchy to make test cgroups in.
fn writable_hierarchy() -> Result<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    for candidate in [root.to_owned(), root.join("systemd"), root.join("unified")] {
        if candidate.join("cgroup.procs").is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "no cgroup hierarchy found under /sys/fs/cgroup (neither cgroup v2 nor name=systemd \
         nor unified is mounted): the container label tests need one"
    )
}

impl Drop for FakeContainer {
    fn drop(&mut self) {
        // A cgroup with processes cannot be removed: move them out first.
        if let Ok(pids) = fs::read_to_string(self.procs()) {
            for pid in pids.lines() {
                let _ = fs::write(self.hierarchy.join("cgroup.procs"), pid);
            }
        }
        let _ = fs::remove_dir(&self.leaf);
        let _ = fs::remove_dir(&self.parent);
    }
}
