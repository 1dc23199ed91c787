//! The file: a 16-byte header (the magic `socktrc\0`, then the format
//! version and the kernel record size as little-endian `u32`), then frames,
//! each a kind byte, three zero bytes, its payload's length (little-endian
//! `u32`) and the payload. A kernel record is kind 1, exactly as the ring
//! handed it over; every other frame ([`HostFrame`]) is kind 2, in JSON.
//!
//! A file cut short (the recorder killed, the disk full) reads up to its
//! last whole frame and says how many bytes it skipped; any other damage is
//! an error naming where.
use std::io::{self, Write};

use bytes::{Buf as _, BufMut as _, BytesMut};
use socktrace_ebpf::RECORD_SIZE;

use super::frame::HostFrame;

/// The first eight bytes of a recording.
pub const MAGIC: [u8; 8] = *b"socktrc\0";
/// The version of this format.
pub const VERSION: u32 = 2;
/// Bytes before the first frame.
pub const HEADER_LEN: usize = 16;
/// Bytes before a frame's payload.
pub const FRAME_HEADER_LEN: usize = 8;
/// The largest payload read: a listing of about a million sockets.
pub const MAX_PAYLOAD: usize = 256 << 20;

const KIND_RECORD: u8 = 1;
const KIND_HOST: u8 = 2;

/// Why a file is not a recording this build can read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordingError {
    #[error("not a socktrace recording (it does not start with the socktrace magic)")]
    NotARecording,
    #[error(
        "recording format version {0}, made by {which} socktrace; this one reads version {VERSION}",
        which = if *.0 < VERSION { "an older" } else { "a newer" }
    )]
    Version(u32),
    #[error(
        "records of {0} bytes (this socktrace's records are {RECORD_SIZE} bytes): recorded by another version"
    )]
    RecordSize(u32),
    #[error("damaged at byte {offset}: {what}")]
    Damaged { offset: usize, what: String },
}

/// One frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A kernel record, [`RECORD_SIZE`] bytes; whether it decodes is for
    /// [`crate::kernel::event`] to say.
    Record(&'a [u8]),
    Host(HostFrame),
}

/// The frames of a recording, in order. After the last whole frame,
/// [`Frames::cut_short`] tells how many bytes were left over.
#[derive(Debug)]
pub struct Frames<'a> {
    rest: &'a [u8],
    offset: usize,
    cut_short: Option<usize>,
}

/// Checks the header; the frames follow.
pub fn frames(bytes: &[u8]) -> Result<Frames<'_>, RecordingError> {
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
    Ok(Frames {
        rest: body,
        offset: HEADER_LEN,
        cut_short: None,
    })
}

/// The kernel records of a recording, every other frame checked and
/// skipped (the ingest benchmark, the golden test of the pipeline).
pub fn records(bytes: &[u8]) -> Result<Vec<&[u8]>, RecordingError> {
    let mut records = Vec::new();
    for frame in frames(bytes)? {
        if let Frame::Record(record) = frame? {
            records.push(record);
        }
    }
    Ok(records)
}

impl Frames<'_> {
    /// Bytes after the last whole frame, when the file was cut short.
    pub fn cut_short(&self) -> Option<usize> {
        self.cut_short
    }
}

impl<'a> Iterator for Frames<'a> {
    type Item = Result<Frame<'a>, RecordingError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let damaged = |what: String| {
            Some(Err(RecordingError::Damaged {
                offset: self.offset,
                what,
            }))
        };
        let Some((mut header, body)) = self.rest.split_at_checked(FRAME_HEADER_LEN) else {
            return self.stop_cut_short();
        };
        let kind = header.get_u8();
        let padding = [header.get_u8(), header.get_u8(), header.get_u8()];
        let len = header.get_u32_le() as usize;
        if padding != [0; 3] || len > MAX_PAYLOAD {
            return damaged(format!("not a frame header (kind {kind}, length {len})"));
        }
        let Some((payload, rest)) = body.split_at_checked(len) else {
            return self.stop_cut_short();
        };
        let frame = match kind {
            KIND_RECORD if len == RECORD_SIZE => Frame::Record(payload),
            KIND_RECORD => return damaged(format!("a kernel record of {len} bytes")),
            KIND_HOST => match serde_json::from_slice(payload) {
                Ok(frame) => Frame::Host(frame),
                Err(error) => return damaged(format!("a frame that does not parse: {error}")),
            },
            _ => return damaged(format!("a frame of unknown kind {kind}")),
        };
        self.rest = rest;
        self.offset += FRAME_HEADER_LEN + len;
        Some(Ok(frame))
    }
}

impl Frames<'_> {
    fn stop_cut_short<T>(&mut self) -> Option<T> {
        self.cut_short = Some(self.rest.len());
        self.rest = &[];
        None
    }
}

/// Writes a recording: the header at once, then each frame handed over.
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

    /// Appends one kernel record as the ring buffer handed it over.
    pub fn record(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.frame(KIND_RECORD, bytes)
    }

    pub fn host(&mut self, frame: &HostFrame) -> io::Result<()> {
        let payload = serde_json::to_vec(frame).map_err(io::Error::other)?;
        self.frame(KIND_HOST, &payload)
    }

    fn frame(&mut self, kind: u8, payload: &[u8]) -> io::Result<()> {
        let mut header = [0u8; FRAME_HEADER_LEN];
        let mut slot = &mut header[..];
        slot.put_u8(kind);
        slot.put_slice(&[0; 3]);
        slot.put_u32_le(payload.len() as u32);
        self.out.write_all(&header)?;
        self.out.write_all(payload)
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// The writer, flushed (tests).
    pub fn into_inner(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::frame::End;

    fn recording(frames: &[Frame<'_>]) -> Vec<u8> {
        let mut recorder = Recorder::new(Vec::new()).unwrap();
        for frame in frames {
            match frame {
                Frame::Record(bytes) => recorder.record(bytes).unwrap(),
                Frame::Host(frame) => recorder.host(frame).unwrap(),
            }
        }
        recorder.into_inner().unwrap()
    }

    fn read(bytes: &[u8]) -> (Vec<Frame<'_>>, Option<usize>) {
        let mut frames = frames(bytes).unwrap();
        let read = frames.by_ref().collect::<Result<_, _>>().unwrap();
        (read, frames.cut_short())
    }

    /// Recordings made before the end frame said which kind of skipped
    /// run was lost still read, the kind unknown.
    #[test]
    fn an_end_frame_without_the_kind_of_skipped_runs_reads_as_unknown() {
        let older: HostFrame = serde_json::from_str(
            r#"{"end":{"now_ns":9,"lost_ring_full":1,"lost_skipped":2,"output_dropped":0}}"#,
        )
        .unwrap();
        let HostFrame::End(end) = older else {
            panic!("{older:?}")
        };
        assert_eq!((end.lost_skipped, end.lost_skipped_signals), (2, None));
        let now = HostFrame::End(End {
            lost_skipped_signals: Some(1),
            ..end
        });
        let bytes = recording(&[Frame::Host(now.clone())]);
        assert_eq!(read(&bytes).0, [Frame::Host(now)]);
    }

    #[test]
    fn frames_come_back_in_order() {
        let (one, two) = ([1; RECORD_SIZE], [2; RECORD_SIZE]);
        let settle = HostFrame::Settle { now_ns: 42 };
        let bytes = recording(&[
            Frame::Record(&one),
            Frame::Host(settle.clone()),
            Frame::Record(&two),
        ]);
        let (back, cut) = read(&bytes);
        assert_eq!(
            back,
            [
                Frame::Record(&one),
                Frame::Host(settle),
                Frame::Record(&two)
            ]
        );
        assert_eq!(cut, None);
        assert_eq!(records(&bytes).unwrap(), [&one[..], &two[..]]);
        assert_eq!(read(&recording(&[])).0, []);
    }

    #[test]
    fn a_file_cut_anywhere_reads_to_its_last_whole_frame() {
        let record = [7; RECORD_SIZE];
        let bytes = recording(&[
            Frame::Record(&record),
            Frame::Host(HostFrame::Settle { now_ns: 1 }),
        ]);
        let first_end = HEADER_LEN + FRAME_HEADER_LEN + RECORD_SIZE;
        for cut in first_end + 1..bytes.len() {
            let (back, skipped) = read(&bytes[..cut]);
            assert_eq!(back, [Frame::Record(&record)], "cut at {cut}");
            assert_eq!(skipped, Some(cut - first_end), "cut at {cut}");
        }
        for cut in HEADER_LEN + 1..first_end {
            assert_eq!(read(&bytes[..cut]), (vec![], Some(cut - HEADER_LEN)));
        }
    }

    #[test]
    fn foreign_other_versions_and_damaged_files_are_refused() {
        assert_eq!(
            frames(b"not a recording at all").unwrap_err(),
            RecordingError::NotARecording
        );
        assert_eq!(frames(b"").unwrap_err(), RecordingError::NotARecording);
        let mut bytes = recording(&[]);
        bytes[8] = 1;
        let older = frames(&bytes).unwrap_err();
        assert_eq!(older, RecordingError::Version(1));
        assert_eq!(
            older.to_string(),
            "recording format version 1, made by an older socktrace; this one reads version 2"
        );
        bytes[8] = 3;
        assert!(
            frames(&bytes)
                .unwrap_err()
                .to_string()
                .contains("a newer socktrace")
        );
        let mut bytes = recording(&[]);
        bytes[12] = 88;
        assert_eq!(frames(&bytes).unwrap_err(), RecordingError::RecordSize(88));

        let damaged = |bytes: &[u8]| frames(bytes).unwrap().find_map(Result::err).unwrap();
        let mut bytes = recording(&[Frame::Record(&[1; RECORD_SIZE])]);
        bytes[HEADER_LEN] = 9;
        assert_eq!(
            damaged(&bytes).to_string(),
            "damaged at byte 16: a frame of unknown kind 9"
        );
        let mut bytes = recording(&[Frame::Host(HostFrame::Settle { now_ns: 1 })]);
        bytes[HEADER_LEN + FRAME_HEADER_LEN] = b'[';
        assert!(
            damaged(&bytes)
                .to_string()
                .starts_with("damaged at byte 16: a frame that does not parse")
        );
        let mut bytes = recording(&[Frame::Record(&[1; RECORD_SIZE])]);
        bytes[HEADER_LEN + 1] = 1;
        assert!(damaged(&bytes).to_string().contains("not a frame header"));
    }
}
