//! `socktrace replay` on recordings that did not end well: the tracer
//! killed and the file cut mid-frame, another format version, damage. The
//! replays of whole runs are checked by the view tests themselves (see
//! `replay::Recorded`).
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use socktrace_integration_tests::{
    Agent, Family, NetNs, SocketDir, TIMEOUT, agent_binary, tcp, wait,
};

/// `socktrace replay FILE trace --json`: exit status, stdout records, stderr.
fn replay(file: &std::path::Path) -> Result<(i32, Vec<Value>, String)> {
    let output = Command::new(agent_binary())
        .arg("replay")
        .arg(file)
        .args(["trace", "--json"])
        .output()
        .context("running socktrace replay")?;
    let records = String::from_utf8(output.stdout)?
        .lines()
        .map(|line| serde_json::from_str(line).with_context(|| format!("not JSON: {line}")))
        .collect::<Result<_>>()?;
    Ok((
        output.status.code().context("killed by a signal")?,
        records,
        String::from_utf8(output.stderr)?,
    ))
}

fn states(records: &[Value]) -> Vec<&Value> {
    records.iter().filter(|r| r["type"] == "state").collect()
}

#[test]
fn a_recording_cut_short_by_sigkill_replays_to_its_last_whole_frame() -> Result<()> {
    let ns = NetNs::new()?;
    let dir = SocketDir::new();
    std::fs::create_dir_all(dir.path())?;
    let file = dir.path().join("killed.rec");
    let record = file.to_str().context("path")?;
    let mut agent = Agent::start_command(&ns, "trace", &["--record", record])?;
    let started = std::fs::metadata(&file)?.len();
    let listener = ns.run(|| tcp::listen(Family::V4))?;
    let port = tcp::local_port(&listener)?;
    let (client, server) = ns.run(|| tcp::connect_pair(&listener))?;
    drop((client, server));
    agent.wait_for(
        "the connection's transitions",
        |r| r["type"] == "state" && r["dport"] == port && r["new_state"] == "FIN_WAIT1",
        TIMEOUT,
    )?;
    // The recording is flushed after each drain of the ring.
    wait::until("the records in the file", TIMEOUT, || {
        let len = std::fs::metadata(&file)?.len();
        Ok(if len > started + 4 * 104 {
            wait::Poll::Ready(())
        } else {
            wait::Poll::Pending(format!("{len} bytes"))
        })
    })?;
    let live = agent.kill()?;
    // The disk filled up mid-frame.
    let len = std::fs::metadata(&file)?.len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)?
        .set_len(len - 7)?;

    let (status, replayed, stderr) = replay(&file)?;
    ensure!(status == 0, "exit {status}: {stderr}");
    ensure!(
        stderr.contains("replayed up to its last whole frame: it was cut short, ")
            && stderr.contains(" bytes after its last whole frame skipped"),
        "{stderr}"
    );
    let (replayed, live) = (states(&replayed), states(&live));
    ensure!(!replayed.is_empty(), "nothing replayed: {stderr}");
    ensure!(
        replayed.len() <= live.len() && replayed[..] == live[..replayed.len()],
        "the replay is not the start of what was printed live:\n{replayed:#?}\n{live:#?}"
    );
    Ok(())
}

#[test]
fn other_versions_and_damaged_recordings_are_one_line_errors() -> Result<()> {
    let dir = SocketDir::new();
    std::fs::create_dir_all(dir.path())?;
    let file = dir.path().join("bad.rec");
    let frame = |kind: u8, payload: &[u8]| {
        let mut bytes = vec![kind, 0, 0, 0];
        bytes.extend((payload.len() as u32).to_le_bytes());
        bytes.extend(payload);
        bytes
    };
    let header = |version: u32| {
        let mut bytes = b"socktrc\0".to_vec();
        bytes.extend(version.to_le_bytes());
        bytes.extend(96u32.to_le_bytes());
        bytes
    };
    let start = br#"{"start":{"started_ns":1,"wall_clock_offset_ns":0,"selection":null,"several_namespaces":false,"existing":[]}}"#;
    let mut damaged = header(2);
    damaged.extend(frame(2, start));
    damaged.extend(frame(9, b"what"));
    let mut not_json = header(2);
    not_json.extend(frame(2, start));
    not_json.extend(frame(2, b"{not json"));
    for (bytes, says) in [
        (
            header(1),
            "recording format version 1, made by an older socktrace; this one reads version 2",
        ),
        (header(3), "made by a newer socktrace"),
        (
            b"GIF89a, not a recording".to_vec(),
            "not a socktrace recording",
        ),
        (header(2), "the recording is empty"),
        (damaged, "damaged at byte "),
        (not_json, "a frame that does not parse"),
    ] {
        std::fs::write(&file, &bytes)?;
        let (status, _, stderr) = replay(&file)?;
        ensure!(status == 1, "exit {status} for {says}: {stderr}");
        ensure!(
            stderr.lines().count() == 1
                && stderr.contains(says)
                && stderr.starts_with("socktrace: error: "),
            "{stderr}"
        );
    }
    Ok(())
}

#[test]
fn a_replay_never_waits_on_the_clock() -> Result<()> {
    // A recording of a long idle run replays at once: its times are the
    // recorded ones.
    let ns = NetNs::new()?;
    let dir = SocketDir::new();
    std::fs::create_dir_all(dir.path())?;
    let file = dir.path().join("idle.rec");
    let record = file.to_str().context("path")?;
    let agent = Agent::start_command(
        &ns,
        "timewait",
        &["--summary-every", "1", "--record", record],
    )?;
    wait::until("three listings", Duration::from_secs(20), || {
        let text = String::from_utf8_lossy(&std::fs::read(&file)?)
            .matches("\"listing\"")
            .count();
        Ok(if text >= 3 {
            wait::Poll::Ready(())
        } else {
            wait::Poll::Pending(format!("{text}"))
        })
    })?;
    let live = agent.stop_with_records()?;
    let started = std::time::Instant::now();
    let output = Command::new(agent_binary())
        .arg("replay")
        .arg(&file)
        .args([
            "timewait",
            "--json",
            "--summary-every",
            "1",
            "--netns",
            &ns.inode()?.to_string(),
        ])
        .output()?;
    ensure!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    ensure!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    let summaries = |records: &[Value]| {
        records
            .iter()
            .filter(|r| r["type"] == "time_wait_summary")
            .count()
    };
    let replayed: Vec<Value> = String::from_utf8(output.stdout)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    ensure!(
        summaries(&replayed) == summaries(&live) && summaries(&live) >= 3,
        "{replayed:?}"
    );
    Ok(())
}

/// (state, local, peer) of each line of `ss -tan -H`-like output.
fn ss_rows(text: &str) -> Vec<(String, String, String)> {
    let mut rows: Vec<_> = text
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .filter(|fields| fields.len() >= 5)
        .map(|fields| {
            (
                fields[0].to_owned(),
                fields[3].to_owned(),
                fields[4].to_owned(),
            )
        })
        .collect();
    rows.sort();
    rows
}

#[test]
fn replay_ss_lists_at_the_end_what_ss_listed_and_at_the_start_what_existed() -> Result<()> {
    let ns = NetNs::new()?;
    let dir = SocketDir::new();
    std::fs::create_dir_all(dir.path())?;
    let file = dir.path().join("ss.rec");
    let record = file.to_str().context("path")?;
    // Existing before the recording: a listener.
    let listener = ns.run(|| tcp::listen(Family::V4))?;
    let port = tcp::local_port(&listener)?;
    let agent = Agent::start_command(&ns, "trace", &["--record", record])?;
    // During it: a connection left open, and one closed into TIME-WAIT.
    let (_client, _server) = ns.run(|| tcp::connect_pair(&listener))?;
    let (closed, peer) = ns.run(|| tcp::connect_pair(&listener))?;
    let closed_port = closed.local_addr()?.port();
    drop(closed);
    drop(peer);
    let real = wait::until("the closed connection in TIME-WAIT", TIMEOUT, || {
        let text = ns.exec(&["ss", "-tan", "-H"])?;
        Ok(
            if text.contains(&format!(":{closed_port} ")) && text.contains("TIME-WAIT") {
                wait::Poll::Ready(text)
            } else {
                wait::Poll::Pending(text)
            },
        )
    })?;
    agent.stop()?;

    let replayed = |extra: &[&str]| -> Result<String> {
        let output = Command::new(agent_binary())
            .arg("replay")
            .arg(&file)
            .args(["ss", "-tan", "-H"])
            .args(extra)
            .output()?;
        ensure!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(String::from_utf8(output.stdout)?)
    };
    let at_end = replayed(&[])?;
    ensure!(
        ss_rows(&at_end) == ss_rows(&real),
        "replayed at the end:\n{at_end}\nss said:\n{real}"
    );
    let at_start = replayed(&["--at", "+0"])?;
    let rows = ss_rows(&at_start);
    ensure!(
        rows.len() == 1 && rows[0].0 == "LISTEN" && rows[0].1 == format!("127.0.0.1:{port}"),
        "at the start:\n{at_start}"
    );
    Ok(())
}
