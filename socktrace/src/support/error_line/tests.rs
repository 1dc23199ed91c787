use std::{io, path::PathBuf};

use super::ErrorLine;
use crate::{
    agent::client::ClientError,
    agent::protocol::ProtocolError,
    agent::server::ServerError,
    host::namespaces::{DumpError, NamespacesError},
    host::netns::NetnsError,
    host::proc_owners::OwnersError,
    host::sock_diag::SockDiagError,
    kernel::kernel_btf::BtfError,
    kernel::loader::LoadError,
    kernel::tracepoint_format::FormatError,
    seed::SeedError,
};

fn os_error(errno: i32) -> io::Error {
    io::Error::from_raw_os_error(errno)
}

const EPERM: &str = "Operation not permitted (os error 1)";
const ENOENT: &str = "No such file or directory (os error 2)";
const EACCES: &str = "Permission denied (os error 13)";

/// Errors whose line (anyhow's chain, as `{:#}` writes it) does not say
/// each of its causes exactly once.
#[derive(Default)]
struct Lines {
    wrong: Vec<String>,
}

impl Lines {
    fn say_each_once(&mut self, error: impl Into<anyhow::Error>, causes: &[&str]) {
        let line = format!("{:#}", error.into());
        for cause in causes {
            let times = line.matches(cause).count();
            if times != 1 {
                self.wrong
                    .push(format!("`{cause}` {times} times in: {line}"));
            }
        }
    }
}

fn enter_error() -> NetnsError {
    NetnsError::Enter {
        inode: 4026532281,
        source: os_error(libc::EPERM),
    }
}

fn sock_diag_error() -> SockDiagError {
    SockDiagError::Dump {
        family: "AF_INET",
        errno: os_error(libc::EACCES),
    }
}

#[test]
fn every_error_type_says_each_cause_once() {
    let mut lines = Lines::default();
    lines.say_each_once(
        LoadError::Cpus {
            path: "/sys/devices/system/cpu/possible",
            source: os_error(libc::EACCES),
        },
        &[EACCES],
    );
    let btf = || BtfError::Unreadable {
        path: "/sys/kernel/btf/vmlinux".into(),
        source: os_error(libc::ENOENT),
    };
    lines.say_each_once(btf(), &[ENOENT]);
    lines.say_each_once(
        LoadError::Offsets(btf()),
        &[ENOENT, "CONFIG_DEBUG_INFO_BTF"],
    );
    lines.say_each_once(
        FormatError::Unreadable {
            tracepoint: "tcp/tcp_retransmit_skb".into(),
            path: "/sys/kernel/tracing/events/tcp/tcp_retransmit_skb/format".into(),
            source: os_error(libc::ENOENT),
        },
        &[ENOENT],
    );
    lines.say_each_once(enter_error(), &[EPERM, "CAP_SYS_ADMIN"]);
    lines.say_each_once(
        NetnsError::Open {
            path: "/run/netns/blue".into(),
            source: os_error(libc::ENOENT),
        },
        &[ENOENT],
    );
    lines.say_each_once(
        NetnsError::List {
            path: "/run/netns".into(),
            source: os_error(libc::EACCES),
        },
        &[EACCES],
    );
    lines.say_each_once(
        NetnsError::Thread {
            inode: 4026532281,
            source: os_error(libc::EAGAIN),
        },
        &["Resource temporarily unavailable"],
    );
    lines.say_each_once(
        SockDiagError::Socket(os_error(libc::EMFILE)),
        &["(os error 24)"],
    );
    lines.say_each_once(sock_diag_error(), &[EACCES]);
    let dump = || DumpError::Dump {
        netns: 4026532281,
        source: sock_diag_error(),
    };
    lines.say_each_once(dump(), &[EACCES, "AF_INET"]);
    let enter = || DumpError::Enter(enter_error());
    lines.say_each_once(enter(), &[EPERM, "CAP_SYS_ADMIN"]);
    lines.say_each_once(NamespacesError::Dump(enter()), &[EPERM, "CAP_SYS_ADMIN"]);
    lines.say_each_once(NamespacesError::Own(os_error(libc::EACCES)), &[EACCES]);
    lines.say_each_once(SeedError::Dump(enter()), &[EPERM, "CAP_SYS_ADMIN"]);
    lines.say_each_once(SeedError::Dump(dump()), &[EACCES, "AF_INET"]);
    let owners = || OwnersError::List {
        path: "/proc/4242/fd".into(),
        source: os_error(libc::EMFILE),
    };
    lines.say_each_once(owners(), &["(os error 24)", "/proc/4242/fd"]);
    lines.say_each_once(
        SeedError::Owners(owners()),
        &["(os error 24)", "/proc/4242/fd"],
    );
    lines.say_each_once(
        anyhow::Error::from(SeedError::Dump(enter())).context("listing existing sockets"),
        &[EPERM, "CAP_SYS_ADMIN", "listing existing sockets"],
    );
    lines.say_each_once(ProtocolError::Io(os_error(libc::EPIPE)), &["Broken pipe"]);
    lines.say_each_once(
        ClientError::Protocol(ProtocolError::Io(os_error(libc::EPIPE))),
        &["Broken pipe", "--no-agent"],
    );
    lines.say_each_once(
        ClientError::Connect {
            path: PathBuf::from("/run/socktrace/agent.sock"),
            error: os_error(libc::ECONNRESET),
        },
        &["Connection reset by peer", "--no-agent"],
    );
    lines.say_each_once(
        ServerError::Setup {
            what: "binding",
            path: PathBuf::from("/run/socktrace/agent.sock"),
            source: os_error(libc::EADDRINUSE),
        },
        &["Address already in use", "agent.sock"],
    );
    assert!(lines.wrong.is_empty(), "{:#?}", lines.wrong);
}

#[test]
fn a_line_holds_the_message_then_each_cause() {
    let error = anyhow::Error::from(SeedError::Dump(DumpError::Enter(enter_error())))
        .context("listing existing sockets");
    assert_eq!(
        ErrorLine(error.as_ref()).to_string(),
        "listing existing sockets: cannot enter network namespace 4026532281 \
         (setns needs CAP_SYS_ADMIN): Operation not permitted (os error 1)"
    );
}

/// aya 0.14's errors write their cause into their message and give it as
/// their source too: the line says it once.
#[test]
fn a_cause_a_foreign_error_already_wrote_is_not_written_again() {
    let aya = aya::EbpfError::BtfError(aya::BtfError::InvalidHeader);
    let cause = aya::BtfError::InvalidHeader.to_string();
    assert_eq!(
        format!("{:#}", anyhow::Error::from(LoadError::Object(aya)))
            .matches(&cause)
            .count(),
        2,
        "aya repeats it"
    );
    let aya = aya::EbpfError::BtfError(aya::BtfError::InvalidHeader);
    let line = ErrorLine(&LoadError::Object(aya)).to_string();
    assert_eq!(line, format!("loading the BPF object: BTF error: {cause}"));
}
