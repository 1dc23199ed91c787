//! A helper process (such as a bash TCP client) that is killed if the test
//! ends before it does.
use std::ops::{Deref, DerefMut};
use std::process::{Child, ExitStatus};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::wait;

/// Owns a [`Child`]; on drop, kills and reaps it unless it was reaped.
pub struct KillOnDrop(Child);

impl KillOnDrop {
    pub fn new(child: Child) -> Self {
        KillOnDrop(child)
    }

    /// Waits up to `timeout` for the process to exit; its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let pid = self.0.id();
        wait::until(&format!("process {pid} to exit"), timeout, || {
            Ok(match self.0.try_wait().context("waiting for a child")? {
                Some(status) => wait::Poll::Ready(status),
                None => wait::Poll::Pending("still running".to_owned()),
            })
        })
    }
}

impl Deref for KillOnDrop {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
