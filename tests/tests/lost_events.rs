//! Nothing is lost silently: when the kernel's ring buffer is full, the
//! kernel counts what it drops and the agent says so while it runs.
//!
//! The agent gets the smallest ring (4 KiB, about forty records) and is
//! stopped (SIGSTOP) while connections churn, so the ring must overflow; the
//! stop is the scenario, not a wait.
use std::time::Duration;

use socktrace_integration_tests::{Agent, Family, NetNs, TIMEOUT, tcp};

const CONNECTIONS: usize = 100;

fn signal(pid: u32, signal: libc::c_int) {
    // SAFETY: plain kill(2) on our own child.
    let rc = unsafe { libc::kill(pid as libc::pid_t, signal) };
    assert_eq!(
        rc,
        0,
        "kill({pid}, {signal}): {}",
        std::io::Error::last_os_error()
    );
}

#[test]
fn a_full_ring_buffer_is_counted_and_reported() {
    let ns = NetNs::new().unwrap();
    let mut agent = Agent::start(&ns, &["--ring-buffer-kib", "4"]).unwrap();

    signal(agent.pid(), libc::SIGSTOP);
    let churned = ns.run(|| -> anyhow::Result<u16> {
        let listener = tcp::listen(Family::V4)?;
        for _ in 0..CONNECTIONS {
            let (client, server) = tcp::connect_pair(&listener)?;
            drop(client);
            drop(server);
        }
        tcp::local_port(&listener)
    });
    signal(agent.pid(), libc::SIGCONT);
    let port = churned.unwrap();

    let line = agent
        .wait_for_stderr(
            "a lost-events warning",
            |line| line.contains("events lost"),
            TIMEOUT,
        )
        .unwrap();
    let lost: u64 = line
        .split_whitespace()
        .find_map(|word| word.parse().ok())
        .unwrap_or_else(|| panic!("no count in {line:?}"));
    // ~12 transitions per connection, ~40 fit: most of them were dropped.
    assert!(lost >= (CONNECTIONS * 5) as u64, "only {lost} lost: {line}");

    // The agent keeps working after the overflow.
    let listener = ns.run(|| tcp::listen(Family::V4)).unwrap();
    let fresh = tcp::local_port(&listener).unwrap();
    assert_ne!(fresh, port);
    let pair = ns.run(|| tcp::connect_pair(&listener)).unwrap();
    agent
        .wait_for(
            "SYN_SENT -> ESTABLISHED after the overflow",
            |r| r["new_state"] == "ESTABLISHED" && r["dport"] == fresh,
            TIMEOUT,
        )
        .unwrap();
    drop(pair);
    agent.stop().unwrap();
}

#[test]
fn the_loss_total_is_repeated_at_exit() {
    let ns = NetNs::new().unwrap();
    let mut agent = Agent::start(&ns, &["--ring-buffer-kib", "4"]).unwrap();
    signal(agent.pid(), libc::SIGSTOP);
    ns.run(|| -> anyhow::Result<()> {
        let listener = tcp::listen(Family::V6)?;
        for _ in 0..CONNECTIONS {
            drop(tcp::connect_pair(&listener)?);
        }
        Ok(())
    })
    .unwrap();
    signal(agent.pid(), libc::SIGCONT);
    agent
        .wait_for_stderr(
            "a lost-events warning",
            |l| l.contains("events lost"),
            TIMEOUT,
        )
        .unwrap();
    // SIGTERM: the final summary repeats the total.
    signal(agent.pid(), libc::SIGTERM);
    let summary = agent
        .wait_for_stderr(
            "the exit summary",
            |l| l.contains("events lost (kernel ring buffer full: "),
            Duration::from_secs(10),
        )
        .unwrap();
    assert!(summary.contains("--ring-buffer-kib"), "{summary}");
}
