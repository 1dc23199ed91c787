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
            name: "socktrace agent".into(),
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
            }),
            (None, _) => unavailable.push((name.into(), format!("{program} is not installed"))),
            (_, Some(script)) => unavailable.push((name.into(), format!("{script} is missing"))),
        }
    }
    Ok((specs, unavailable))
}
