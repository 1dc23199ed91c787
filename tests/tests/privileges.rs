//! Without the privileges to load BPF the agent says exactly what is
//! missing in one line and exits non-zero: no backtrace, no partial start.
use std::process::Command;

use socktrace_integration_tests::{agent_binary, require_root};

#[test]
fn an_unprivileged_user_gets_one_clear_line_and_exit_1() {
    require_root();
    let output = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(agent_binary())
        .args(["trace", "--json"])
        .output()
        .expect("setpriv (util-linux) runs the agent as nobody");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(output.stdout.is_empty(), "nothing on stdout");
    let lines: Vec<_> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(lines[0].contains("needs root"), "{stderr}");
    assert!(
        lines[0].contains("CAP_BPF") && lines[0].contains("CAP_PERFMON"),
        "{stderr}"
    );
}
