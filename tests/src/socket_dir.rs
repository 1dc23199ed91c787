//! A fresh directory for an agent's Unix socket, removed with what the
//! agent left in it when dropped.
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

pub struct SocketDir(PathBuf);

impl SocketDir {
    /// A name under the temporary directory; the agent creates it.
    pub fn new() -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        SocketDir(std::env::temp_dir().join(format!(
            "socktrace-test-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        )))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Where the agent's socket goes.
    pub fn socket(&self) -> PathBuf {
        self.0.join("agent.sock")
    }
}

impl Default for SocketDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for SocketDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
