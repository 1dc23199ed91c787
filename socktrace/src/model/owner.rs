//! Who owns a socket: the process that acted on it in process context, and
//! the container or service it runs in.
use std::fmt;
use std::sync::Arc;

/// A task's `comm`: up to 15 bytes, NUL padded, as the kernel keeps it.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, serde::Serialize, serde::Deserialize,
)]
pub struct Comm([u8; 16]);

impl Comm {
    /// From the kernel's NUL-padded bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Comm(bytes)
    }

    /// From text (such as `/proc/PID/comm`), cut to 15 bytes like the kernel.
    pub fn from_text(text: &str) -> Self {
        let mut bytes = [0u8; 16];
        let text = text.trim_end_matches('\n').as_bytes();
        let len = text.len().min(15);
        bytes[..len].copy_from_slice(&text[..len]);
        Comm(bytes)
    }

    /// The name up to its first NUL, lossily decoded.
    pub fn to_text(&self) -> String {
        let end = self.0.iter().position(|&b| b == 0).unwrap_or(self.0.len());
        String::from_utf8_lossy(&self.0[..end]).into_owned()
    }
}

impl fmt::Display for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl fmt::Debug for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.to_text())
    }
}

/// The container or service a process runs in, as shown beside its owner
/// and used as a metric label: `docker:3f2a9c1b7d4e`,
/// `systemd:nginx.service` (see [`crate::host::container`]). Shared, because
/// every socket of a workload carries the same one.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct ContainerLabel(Arc<str>);

impl ContainerLabel {
    pub fn new(text: &str) -> Self {
        ContainerLabel(Arc::from(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ContainerLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A process that owns a socket.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct Owner {
    /// Process id (the kernel's tgid).
    pub pid: u32,
    pub comm: Comm,
    /// The container or service the process ran in when it was seen;
    /// `None` outside any (a login session, the host's init) or unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerLabel>,
}

impl Owner {
    /// A process seen by pid and name only; its container is filled in
    /// later by whoever can read `/proc`.
    pub fn new(pid: u32, comm: Comm) -> Self {
        Owner {
            pid,
            comm,
            container: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comm_stops_at_nul_and_cuts_like_the_kernel() {
        let mut raw = [0u8; 16];
        raw[..4].copy_from_slice(b"curl");
        assert_eq!(Comm::from_bytes(raw).to_text(), "curl");
        assert_eq!(
            Comm::from_text("a-very-long-process-name\n").to_text(),
            "a-very-long-pro"
        );
        assert_eq!(Comm::from_text("nginx\n"), Comm::from_text("nginx"));
    }
}
