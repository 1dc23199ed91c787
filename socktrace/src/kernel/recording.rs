//! Recorded kernel records: the raw bytes the ring buffer handed over,
//! written to a file by `socktrace trace --record FILE`, so that a real
//! event stream can be fed back through decoding and the engine (golden
//! tests, the ingest benchmark) without the kernel.
//!
//! Format: a 16-byte header (the magic `socktrc\0`, then the format version
//! and the record size as little-endian `u32`), then the records back to
//! back, each exactly as the kernel wrote it.
use std::io::{self, Write};

use bytes::{Buf as _, BufMut as _, BytesMut};

use socktrace_ebpf::RECORD_SIZE;

/// The first eight bytes of a recording.
pub const MAGIC: [u8; 8] = *b"socktrc\0";
/// The version of this format.
pub const VERSION: u32 = 1;
/// Bytes before the first record.
pub const HEADER_LEN: usize = 16;

/// Why a file is not a recording this build can read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordingError {
    #[error("not a socktrace recording (it does not start with the socktrace magic)")]
    NotARecording,
    #[error("recording format version {0} (this socktrace reads version {VERSION})")]
    Version(u32),
    #[error(
        "records of {0} bytes (this socktrace's records are {RECORD_SIZE} bytes): recorded by another version"
    )]
    RecordSize(u32),
    #[error("the recording ends {0} bytes into a record: truncated")]
    Truncated(usize),
}

/// The records of a recording, in order. Every record has
/// [`RECORD_SIZE`] bytes; whether it decodes is for [`crate::kernel::event`] to say.
pub fn records(bytes: &[u8]) -> Result<std::slice::ChunksExact<'_, u8>, RecordingError> {
    let (mut header, body) = bytes
        .split_at_checked(HEADER_LEN)
        .ok_or(RecordingError::NotARecording)?;
    if header.copy_to_bytes(MAGIC.len()) != MAGIC[..] {
        return Err(RecordingError::NotARecording);
    }
    let version = header.get_u32_le();
    if version != VERSION {
        return Err(RecordingError::Version(version));
    }
    let record_size = header.get_u32_le();
    if record_size as usize != RECORD_SIZE {
        return Err(RecordingError::RecordSize(record_size));
    }
    let partial = body.len() % RECORD_SIZE;
    if partial != 0 {
        return Err(RecordingError::Truncated(partial));
    }
    Ok(body.chunks_exact(RECORD_SIZE))
}

/// Writes a recording: the header at once, then each record handed over.
pub struct Recorder<W: Write> {
    out: W,
}

impl<W: Write> Recorder<W> {
    pub fn new(mut out: W) -> io::Result<Self> {
        let mut header = BytesMut::with_capacity(HEADER_LEN);
        header.put_slice(&MAGIC);
        header.put_u32_le(VERSION);
        header.put_u32_le(RECORD_SIZE as u32);
        out.write_all(&header)?;
        Ok(Recorder { out })
    }

    /// Appends one record as the ring buffer handed it over.
    pub fn record(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recording(records: &[[u8; RECORD_SIZE]]) -> Vec<u8> {
        let mut recorder = Recorder::new(Vec::new()).unwrap();
        for record in records {
            recorder.record(record).unwrap();
        }
        recorder.out
    }

    #[test]
    fn records_come_back_in_order() {
        let bytes = recording(&[[1; RECORD_SIZE], [2; RECORD_SIZE]]);
        assert_eq!(bytes.len(), HEADER_LEN + 2 * RECORD_SIZE);
        let back: Vec<u8> = records(&bytes).unwrap().map(|r| r[0]).collect();
        assert_eq!(back, [1, 2]);
        assert_eq!(records(&recording(&[])).unwrap().count(), 0);
    }

    #[test]
    fn foreign_old_and_cut_files_are_refused() {
        assert_eq!(
            records(b"not a recording at all").unwrap_err(),
            RecordingError::NotARecording
        );
        assert_eq!(records(b"").unwrap_err(), RecordingError::NotARecording);
        let mut bytes = recording(&[[1; RECORD_SIZE]]);
        bytes[8] = 9;
        assert_eq!(records(&bytes).unwrap_err(), RecordingError::Version(9));
        let mut bytes = recording(&[[1; RECORD_SIZE]]);
        bytes[12] = 88;
        assert_eq!(records(&bytes).unwrap_err(), RecordingError::RecordSize(88));
        let bytes = recording(&[[1; RECORD_SIZE]]);
        assert_eq!(
            records(&bytes[..bytes.len() - 10]).unwrap_err(),
            RecordingError::Truncated(RECORD_SIZE - 10)
        );
    }
}
