//! A view run live with `--record`, then replayed from its recording as an
//! unprivileged user: the replay must print what the live run printed,
//! record for record.
use std::io::Read as _;
use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, ensure};
use serde_json::Value;

use crate::{Agent, KillOnDrop, NetNs, SocketDir, TIMEOUT};

/// The user the replay runs as: it needs no privilege.
const NOBODY: &str = "65534";

/// Where the recording of a test that failed before its replay passed is
/// kept, under the temporary directory, to be replayed by hand.
const FAILED_RECORDINGS: &str = "socktrace-failed-recordings";

/// The live view, recording (it derefs to its [`Agent`]).
pub struct Recorded<'ns> {
    // Dropped in this order: the agent stops (its recording complete), the
    // recording is kept if the test failed, and the directory goes.
    agent: Agent<'ns>,
    recording: Recording,
    /// Holds the recording; removed with it.
    _dir: SocketDir,
}

/// A live view's recording and what replays it.
struct Recording {
    file: PathBuf,
    view: String,
    view_args: Vec<String>,
    netns: u32,
    /// The replay printed what the live view did: nothing to keep.
    replayed: bool,
}

impl<'ns> Recorded<'ns> {
    /// `$SOCKTRACE_BIN VIEW --json -N NS VIEW_ARGS... --record FILE` in `ns`.
    pub fn start(ns: &'ns NetNs, view: &str, view_args: &[&str]) -> Result<Self> {
        let dir = SocketDir::new();
        std::fs::create_dir_all(dir.path())?;
        let file = dir.path().join("run.rec");
        let record = file.to_str().context("the recording's path is not UTF-8")?;
        let mut args = view_args.to_vec();
        args.extend(["--record", record]);
        let agent = Agent::start_command(ns, view, &args)?;
        Ok(Recorded {
            agent,
            recording: Recording {
                file,
                view: view.to_owned(),
                view_args: view_args.iter().map(|&arg| arg.to_owned()).collect(),
                netns: ns.inode()?,
                replayed: false,
            },
            _dir: dir,
        })
    }

    /// Stops the live view, replays the recording as nobody with the same
    /// view arguments, and requires the same records.
    pub fn stop_and_replay(self) -> Result<()> {
        let Recorded {
            agent,
            mut recording,
            _dir,
        } = self;
        let live = agent.stop_with_records()?;
        // Readable by the unprivileged replay.
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(_dir.path(), std::fs::Permissions::from_mode(0o755))?;
        std::fs::set_permissions(&recording.file, std::fs::Permissions::from_mode(0o644))?;
        let replayed = replay(&recording)?;
        for (n, (got, want)) in replayed.iter().zip(&live).enumerate() {
            ensure!(
                got == want,
                "record {} of {} differs:\nreplayed: {got}\nlive:     {want}",
                n + 1,
                live.len()
            );
        }
        ensure!(
            replayed.len() == live.len(),
            "the replay printed {} records, the live view {}",
            replayed.len(),
            live.len()
        );
        recording.replayed = true;
        Ok(())
    }
}

impl Recording {
    /// `VIEW --json --netns INODE VIEW_ARGS...`: what follows `replay FILE`.
    fn replay_args(&self) -> Vec<String> {
        let mut args = vec![self.view.clone(), "--json".into(), "--netns".into()];
        args.push(self.netns.to_string());
        args.extend(self.view_args.iter().cloned());
        args
    }
}

impl Drop for Recording {
    /// Copies the recording of a failed test out of its directory, named
    /// after the test, and says how to replay it.
    fn drop(&mut self) {
        if self.replayed {
            return;
        }
        let dir = std::env::temp_dir().join(FAILED_RECORDINGS);
        let test = std::thread::current()
            .name()
            .unwrap_or("test")
            .replace("::", "-");
        let kept = dir.join(format!("{test}-{}.rec", std::process::id()));
        match std::fs::create_dir_all(&dir).and_then(|()| std::fs::copy(&self.file, &kept)) {
            Ok(_) => eprintln!(
                "kept the failed test's recording; replay it with: socktrace replay {} {}",
                kept.display(),
                self.replay_args().join(" ")
            ),
            Err(error) => eprintln!(
                "could not keep the failed test's recording {} as {}: {error}",
                self.file.display(),
                kept.display()
            ),
        }
    }
}

/// `setpriv --reuid nobody $SOCKTRACE_BIN replay FILE VIEW --json --netns
/// INODE VIEW_ARGS...`: its records, with a deadline.
fn replay(recording: &Recording) -> Result<Vec<Value>> {
    let mut command = Command::new("setpriv");
    command
        .args(["--reuid", NOBODY, "--regid", NOBODY, "--clear-groups"])
        .arg(crate::agent_binary())
        .arg("replay")
        .arg(&recording.file)
        .args(recording.replay_args())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let shown = format!("{command:?}");
    let mut child = KillOnDrop::new(
        command
            .spawn()
            .with_context(|| format!("starting {shown}"))?,
    );
    // Read stdout before waiting: a long replay fills the pipe.
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .context("stdout")?
        .read_to_string(&mut stdout)?;
    let status = child.wait_exit(TIMEOUT)?;
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .context("stderr")?
        .read_to_string(&mut stderr)?;
    ensure!(status.success(), "{shown} failed ({status}): {stderr}");
    stdout
        .lines()
        .map(|line| serde_json::from_str(line).with_context(|| format!("not JSON: {line}")))
        .collect()
}

impl<'ns> Deref for Recorded<'ns> {
    type Target = Agent<'ns>;
    fn deref(&self) -> &Agent<'ns> {
        &self.agent
    }
}

impl<'ns> DerefMut for Recorded<'ns> {
    fn deref_mut(&mut self) -> &mut Agent<'ns> {
        &mut self.agent
    }
}
