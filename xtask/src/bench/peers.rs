//! The configurations compared, and installing the peers (Debian's
//! `libbpf-tools` for tcpstates and tcplife, `bpftrace` for tcplife.bt).
use std::path::Path;

use anyhow::Result;

use socktrace_ebpf::{PROGRAM_STATE, PROGRAM_STATE_NESTED};

use super::tracer::{LostReport, Ready, TracerSpec, find};
use crate::setup;

/// Debian packages holding the peers.
const PEER_PACKAGES: [&str; 2] = ["libbpf-tools", "bpftrace"];

/// The reference configuration: a bpftrace program that only counts the
/// tracepoint's events, the least any tracer of every transition costs.
/// Not a peer: the targets compare socktrace with it separately.
pub const FLOOR: &str = "floor: bpftrace count() only";

/// socktrace's agent, as users run it.
pub const AGENT: &str = "socktrace agent";

/// socktrace's programs attached and writing their records, the agent
/// stopped meanwhile: the kernel side's share of the agent's cost.
pub const KERNEL_SIDE_ONLY: &str = "socktrace kernel side only (agent stopped)";

/// Ring buffer for [`KERNEL_SIDE_ONLY`], in KiB: 512 MiB holds the records
/// of both windows (104 bytes each with the ring's header; 300,000 a second
/// for 7 s is 220 MB) with room for a faster machine.
const PAUSED_RING_KIB: u32 = 512 * 1024;

/// A configuration left out, and why.
pub type NotRun = (String, String);

/// The socktrace configurations and every peer that is installed (after
/// trying to install the missing ones), and the peers left out with why.
pub fn specs(agent: &Path) -> Result<(Vec<TracerSpec>, Vec<NotRun>)> {
    if let Err(error) = setup::apt_install(&PEER_PACKAGES) {
        eprintln!("xtask: bench: could not install the peers: {error:#}");
    }
    let socket = std::env::temp_dir().join(format!("socktrace-bench-{}.sock", std::process::id()));
    let mut specs = vec![
        TracerSpec {
            name: AGENT.into(),
            program: agent.to_owned(),
            args: vec![
                "agent".into(),
                "--socket".into(),
                socket.display().to_string(),
            ],
            ready: Ready::StderrPrefix("socktrace: ready:"),
            lost: LostReport::Cumulative,
            state_programs: &[PROGRAM_STATE, PROGRAM_STATE_NESTED],
            // The agent counts the skips that lose events (those of the
            // state program the nested one did not make up for).
            reports_skipped_runs: true,
            paused: false,
        },
        TracerSpec {
            name: "socktrace trace --json".into(),
            program: agent.to_owned(),
            args: vec!["trace".into(), "--json".into()],
            ready: Ready::StderrPrefix("socktrace: ready:"),
            lost: LostReport::Cumulative,
            state_programs: &[PROGRAM_STATE, PROGRAM_STATE_NESTED],
            // The agent counts the skips that lose events (those of the
            // state program the nested one did not make up for).
            reports_skipped_runs: true,
            paused: false,
        },
        TracerSpec {
            name: KERNEL_SIDE_ONLY.into(),
            program: agent.to_owned(),
            args: vec![
                "agent".into(),
                "--socket".into(),
                socket.display().to_string(),
                "--ring-buffer-kib".into(),
                PAUSED_RING_KIB.to_string(),
            ],
            ready: Ready::StderrPrefix("socktrace: ready:"),
            lost: LostReport::Cumulative,
            state_programs: &[PROGRAM_STATE, PROGRAM_STATE_NESTED],
            reports_skipped_runs: true,
            paused: true,
        },
    ];
    let mut unavailable = Vec::new();
    let peers = [
        (
            "tcpstates",
            "tcpstates",
            vec![],
            "SKADDR",
            &["handle_set_state"],
        ),
        (
            "tcplife",
            "tcplife",
            vec![],
            "PID",
            &["inet_sock_set_state"],
        ),
        (
            "bpftrace tcplife.bt",
            "bpftrace",
            vec!["/usr/sbin/tcplife.bt".to_owned()],
            "PID",
            &["tcp_set_state"],
        ),
        (
            FLOOR,
            "bpftrace",
            vec![
                "-e".to_owned(),
                "tracepoint:sock:inet_sock_set_state { @n = count(); }".to_owned(),
            ],
            "Attaching",
            &["inet_sock_set_state"],
        ),
    ];
    for (name, program, args, header, state_programs) in peers {
        let missing_script = args
            .iter()
            .find(|arg| arg.ends_with(".bt") && !Path::new(arg).is_file());
        match (find(program), missing_script) {
            (Some(program), None) => specs.push(TracerSpec {
                name: name.into(),
                program,
                args,
                ready: Ready::StdoutContains(header),
                lost: LostReport::PerLine,
                state_programs,
                reports_skipped_runs: false,
                paused: false,
            }),
            (None, _) => unavailable.push((name.into(), format!("{program} is not installed"))),
            (_, Some(script)) => unavailable.push((name.into(), format!("{script} is missing"))),
        }
    }
    Ok((specs, unavailable))
}
