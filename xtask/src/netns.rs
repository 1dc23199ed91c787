//! A network namespace of xtask's own (`socktrace-PURPOSE-PID` under
//! /run/netns) for the bench's and the soak's load, deleted on drop with
//! everything in it (its iptables rules and sysctls included).
use std::{path::Path, process::Command};

use anyhow::Result;

use crate::cmd;

/// The namespace, deleted on drop.
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `socktrace-PURPOSE-PID` with its loopback up.
    pub fn create(purpose: &str) -> Result<Self> {
        let name = format!("socktrace-{purpose}-{}", std::process::id());
        cmd::run(Command::new("ip").args(["netns", "add", &name]))?;
        let netns = Netns { name };
        cmd::run(Command::new("ip").args(["-n", &netns.name, "link", "set", "lo", "up"]))?;
        Ok(netns)
    }

    /// Its name, as `ip netns` and `-N` take it.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> String {
        Path::new("/run/netns")
            .join(&self.name)
            .to_string_lossy()
            .into_owned()
    }

    /// Runs `program args...` inside it (`ip netns exec`), failing with its
    /// exit status.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<()> {
        cmd::run(
            Command::new("ip")
                .args(["netns", "exec", &self.name, program])
                .args(args),
        )
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}
