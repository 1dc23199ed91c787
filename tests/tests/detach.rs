//! SIGINT and SIGTERM stop the agent cleanly: exit 0, and none of its BPF
//! programs stays loaded in the kernel afterwards.
use std::time::Duration;

use socktrace_integration_tests::{
    Agent, NetNs,
    wait::{self, Poll},
};

/// The agent's programs, as the kernel names them (cut to 15 bytes:
/// `tcp_state_nested` becomes `tcp_state_neste`, and both
/// `tcp_retransmit_skb` and `tcp_retransmit_synack` become
/// `tcp_retransmit_`).
const PROGRAMS: [&str; 5] = [
    "tcp_state",
    "tcp_state_neste",
    "tcp_receive_res",
    "tcp_retransmit_",
    "tcp_retransmit_",
];

fn socktrace_programs() -> Vec<(u32, String)> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter_map(|info| {
            let name = info.name_as_str()?.to_owned();
            PROGRAMS.contains(&name.as_str()).then(|| (info.id(), name))
        })
        .collect()
}

fn stops_and_detaches(signal: libc::c_int) {
    // Compare by id: a program of an agent from an earlier test may still be
    // unloading (RCU) while this one starts.
    let before: Vec<u32> = socktrace_programs().iter().map(|(id, _)| *id).collect();
    let ns = NetNs::new().unwrap();
    let agent = Agent::start(&ns, &[]).unwrap();
    let ours: Vec<(u32, String)> = socktrace_programs()
        .into_iter()
        .filter(|(id, _)| !before.contains(id))
        .collect();
    let mut names: Vec<&str> = ours.iter().map(|(_, name)| name.as_str()).collect();
    names.sort_unstable();
    let mut expected = PROGRAMS.to_vec();
    expected.sort_unstable();
    assert_eq!(names, expected, "programs the agent loaded: {ours:?}");
    agent.stop_with(signal).unwrap();
    // Program release is asynchronous in the kernel (RCU): wait for it.
    wait::until(
        "the agent's programs to unload",
        Duration::from_secs(10),
        || {
            let left: Vec<(u32, String)> = socktrace_programs()
                .into_iter()
                .filter(|(id, _)| ours.iter().any(|(mine, _)| mine == id))
                .collect();
            Ok(if left.is_empty() {
                Poll::Ready(())
            } else {
                Poll::Pending(format!("{left:?}"))
            })
        },
    )
    .unwrap();
}

#[test]
fn sigint_detaches_everything() {
    stops_and_detaches(libc::SIGINT);
}

#[test]
fn sigterm_detaches_everything() {
    stops_and_detaches(libc::SIGTERM);
}
