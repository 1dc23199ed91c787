//! A reader that stops reading (a pager left open, a stuck pipe) neither
//! blinds nor hangs the tracer: the records wait in the ring and what does
//! not fit is counted as lost, SIGTERM still ends it within seconds with
//! status 0, and it says what it could not write.
use std::time::{Duration, Instant};

use socktrace_integration_tests::{Agent, NetNs, churn::Churn};

/// Connections to make while nobody reads: about ten JSON lines of 350
/// bytes each, far more than the pipe and the agent's output queue hold.
const CONNECTIONS: u64 = 20_000;

/// SIGTERM to exit and its last stderr lines read: the agent gives its
/// writer a second.
const EXIT_TIMEOUT: Duration = Duration::from_secs(5);

#[test]
fn sigterm_ends_a_trace_whose_stdout_is_never_read() {
    let ns = NetNs::new().unwrap();
    // Held open and never read.
    let (mut agent, _stdout) = Agent::start_unread(&ns, &["--ring-buffer-kib", "256"]).unwrap();

    let churn = Churn::start(&ns, 4, 100_000).unwrap();
    churn
        .wait_for(CONNECTIONS, Duration::from_secs(120))
        .unwrap();
    drop(churn);
    agent
        .wait_for_stderr(
            "the loss report of a ring nobody drains",
            |line| line.contains("events lost (kernel ring buffer full"),
            Duration::from_secs(15),
        )
        .unwrap();

    let asked = Instant::now();
    let stderr = agent.stop_with_stderr(libc::SIGTERM).unwrap();
    let took = asked.elapsed();
    assert!(took < EXIT_TIMEOUT, "SIGTERM to exit took {took:?}");
    assert!(
        stderr
            .iter()
            .any(|l| l.contains("of output not written at exit: stdout is not read")),
        "no word of the output left unwritten: {stderr:#?}"
    );
    eprintln!("SIGTERM to exit with stdout stalled: {took:?}");
}
