//! Bad input on the command line gets a one-line error and a non-zero exit
//! before anything is attached: numbers that would wrap around when
//! converted, filters nested deep enough to overflow a recursive parser.
use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use socktrace_integration_tests::{KillOnDrop, agent_binary, require_root};

/// How long a refused command line may take to exit (the old builds did
/// not exit at all: they started tracing).
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// How socktrace exited and what it printed.
struct Exit {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs the agent binary with `args`, as root, and waits for it to exit.
fn run(args: &[&str]) -> Result<Exit> {
    require_root();
    let child = Command::new(agent_binary())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting socktrace")?;
    let mut child = KillOnDrop::new(child);
    let status = child
        .wait_exit(EXIT_TIMEOUT)
        .with_context(|| format!("socktrace {} should exit at once", args.join(" ")))?;
    Ok(Exit {
        status,
        stdout: read_all(child.stdout.take())?,
        stderr: read_all(child.stderr.take())?,
    })
}

/// What is left in a pipe of a process that exited.
fn read_all(pipe: Option<impl Read>) -> Result<String> {
    let mut text = String::new();
    if let Some(mut pipe) = pipe {
        pipe.read_to_string(&mut text)
            .context("reading socktrace's output")?;
    }
    Ok(text)
}

/// 18446744074 s is 2^64 ns plus 290 ms: as nanoseconds in a `u64` it
/// wrapped around to 290 ms, and a CLOSE-WAIT socket was reported stuck
/// after 293 ms, summaries came every 290 ms.
#[test]
fn seconds_that_overflow_nanoseconds_are_refused() -> Result<()> {
    for (command, option) in [
        ("timewait", "--close-wait-after"),
        ("timewait", "--summary-every"),
        ("handshakes", "--summary-every"),
    ] {
        let output = run(&[command, "--json", option, "18446744074"])?;
        let stderr = &output.stderr;
        assert_eq!(
            output.status.code(),
            Some(2),
            "{command} {option}: {stderr}"
        );
        assert!(output.stdout.is_empty(), "nothing on stdout");
        let first = stderr.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("error: invalid value '18446744074'") && first.contains(option),
            "{stderr}"
        );
        assert!(first.contains("at most a year"), "{stderr}");
    }
    Ok(())
}

/// `socktrace ss` with a filter nested 10,000 deep aborted on a stack
/// overflow (SIGABRT); now it points at the `(` beyond the limit.
#[test]
fn a_filter_nested_ten_thousand_deep_is_an_error_not_a_crash() -> Result<()> {
    let filter = format!("{}dport = :1{}", "( ".repeat(10_000), " )".repeat(10_000));
    let output = run(&["ss", "--no-agent", &filter])?;
    let stderr = &output.stderr;
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(output.stdout.is_empty(), "nothing on stdout");
    let first = stderr.lines().next().unwrap_or_default();
    assert_eq!(
        first, "socktrace: error: the filter nests `(` and `not` more than 100 deep",
        "{stderr}"
    );
    Ok(())
}
