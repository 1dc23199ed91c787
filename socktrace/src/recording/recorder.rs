//! Writing a recording while tracing (`--record FILE`): the loop hands over
//! every record and frame; the first write that fails is kept, ends the
//! recording, and is reported by [`RunRecorder::check`].
use std::{
    collections::HashMap,
    fs::File,
    io::{self, BufWriter},
    path::Path,
};

use anyhow::Context as _;

use super::{format::Recorder, frame::HostFrame};
use crate::model::owner::ContainerLabel;

/// Processes whose label was last written; past this the map starts over
/// (labels are written again, never missed).
const LABELS_KEPT: usize = 65_536;

pub struct RunRecorder {
    recorder: Option<Recorder<BufWriter<File>>>,
    /// The label last written for each process.
    labels: HashMap<u32, Option<ContainerLabel>>,
    /// The first write that failed.
    error: Option<io::Error>,
}

impl RunRecorder {
    pub fn create(path: &Path) -> anyhow::Result<Self> {
        let recorder = File::create(path)
            .and_then(|file| Recorder::new(BufWriter::new(file)))
            .with_context(|| format!("creating the recording {}", path.display()))?;
        Ok(RunRecorder {
            recorder: Some(recorder),
            labels: HashMap::new(),
            error: None,
        })
    }

    /// A kernel record as the ring handed it over.
    pub fn record(&mut self, bytes: &[u8]) {
        self.write(|recorder| recorder.record(bytes));
    }

    pub fn host(&mut self, frame: &HostFrame) {
        self.write(|recorder| recorder.host(frame));
    }

    /// The label a record of `pid` got, written when it is news: before
    /// the record, so that a replay labels it the same.
    pub fn label(&mut self, pid: u32, label: &Option<ContainerLabel>) {
        if self.labels.get(&pid) == Some(label) {
            return;
        }
        if self.labels.len() >= LABELS_KEPT {
            self.labels.clear();
        }
        self.labels.insert(pid, label.clone());
        self.host(&HostFrame::Label {
            pid,
            label: label.as_ref().map(|label| label.as_str().to_owned()),
        });
    }

    /// Fails if a write failed; flushes otherwise.
    pub fn check(&mut self) -> anyhow::Result<()> {
        if let Some(error) = self.error.take() {
            return Err(error).context("writing the recording");
        }
        if let Some(recorder) = &mut self.recorder {
            recorder.flush().context("writing the recording")?;
        }
        Ok(())
    }

    fn write(&mut self, write: impl FnOnce(&mut Recorder<BufWriter<File>>) -> io::Result<()>) {
        if let Some(recorder) = &mut self.recorder
            && let Err(error) = write(recorder)
        {
            self.error.get_or_insert(error);
            self.recorder = None;
        }
    }
}
