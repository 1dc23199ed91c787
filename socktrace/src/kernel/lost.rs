//! The kernel's counts of records that never reached the agent: those the
//! programs found no room for in the ring, and program runs the kernel
//! skipped.
use std::{
    cell::Cell,
    fmt,
    fs::File,
    io::{self, Read, Seek, SeekFrom},
    os::fd::AsRawFd,
};

use aya::maps::{MapData, PerCpuArray};

/// Where the counts come from, open for the agent's life.
pub struct LostCounter {
    /// Per CPU and program group, counted by the programs (`MAP_LOST`).
    ring_full: PerCpuArray<MapData, u64>,
    /// The state program: its skipped runs are lost records but for
    /// those the nested state program took ...
    state_program: SkippedRuns,
    /// ... which it counts per CPU (`MAP_NESTED_TAKEN`).
    nested_taken: PerCpuArray<MapData, u64>,
    /// The classic tracepoint programs: their skipped runs are lost
    /// records. (The nested state program's are not: a transition nested
    /// in it is the state program's.)
    classic_programs: Vec<SkippedRuns>,
    /// Transitions the nested state program took twice, as far as said.
    taken_twice_said: Cell<u64>,
}

/// Records that never reached the agent, by why.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lost {
    /// The ring buffer was full when the program tried to reserve a record.
    pub ring_full: u64,
    /// The kernel skipped the program (`recursion_misses`) and nothing
    /// took the record instead: for the classic tracepoints, one fired
    /// while a kprobe or tracepoint program of any tool ran on that CPU,
    /// or a map was read from user space (`bpf_disable_instrumentation`).
    /// (A state transition the kernel skipped the state program for is
    /// taken by the nested state program, but for these.)
    pub skipped: u64,
    /// Of [`Lost::skipped`], the classic tracepoints' records (SYN and
    /// SYN-ACK retransmits, resets received); the rest are state
    /// transitions. `None` when unknown: a recording made before it was
    /// kept.
    pub skipped_signals: Option<u64>,
}

/// Why the counts of lost records could not be read: never taken for none.
#[derive(Debug, thiserror::Error)]
pub enum LostReadError {
    #[error("reading a lost-record counter: {0}")]
    Map(#[from] aya::maps::MapError),
    #[error("reading a program's skipped runs from {path}: {source}")]
    Fdinfo { path: String, source: io::Error },
}

/// A program's `/proc/self/fdinfo` entry, kept open: read again at every
/// count, even on a host out of file descriptors.
pub struct SkippedRuns {
    path: String,
    file: File,
}

impl SkippedRuns {
    /// Opens the entry of this process's program descriptor `program`.
    pub fn open(program: &impl AsRawFd) -> Result<Self, LostReadError> {
        let path = format!("/proc/self/fdinfo/{}", program.as_raw_fd());
        match File::open(&path) {
            Ok(file) => Ok(Self { path, file }),
            Err(source) => Err(LostReadError::Fdinfo { path, source }),
        }
    }

    /// Its `recursion_misses` now, read again from the start.
    fn read(&self) -> Result<u64, LostReadError> {
        let mut file = &self.file;
        let mut fdinfo = String::new();
        match file
            .seek(SeekFrom::Start(0))
            .and_then(|_| file.read_to_string(&mut fdinfo))
        {
            Ok(_) => Ok(recursion_misses(&fdinfo)),
            Err(source) => Err(LostReadError::Fdinfo {
                path: self.path.clone(),
                source,
            }),
        }
    }
}

impl LostCounter {
    pub fn new(
        ring_full: PerCpuArray<MapData, u64>,
        state_program: SkippedRuns,
        nested_taken: PerCpuArray<MapData, u64>,
        classic_programs: Vec<SkippedRuns>,
    ) -> Self {
        Self {
            ring_full,
            state_program,
            nested_taken,
            classic_programs,
            taken_twice_said: Cell::new(0),
        }
    }

    /// Records lost so far, all CPUs and programs.
    pub fn read(&self) -> Result<Lost, LostReadError> {
        // Skips first: a skip is counted before the nested program takes
        // its transition, so reading in this order never reports as lost a
        // transition that was taken.
        let state_skips = self.state_program.read()?;
        let nested_taken = sum_per_cpu(&self.nested_taken)?;
        // Again: every take counted above follows a skip counted by now.
        self.say_taken_twice(nested_taken.saturating_sub(self.state_program.read()?));
        let mut classic_skips = 0;
        for program in &self.classic_programs {
            classic_skips += program.read()?;
        }
        Ok(Lost {
            ring_full: sum_per_cpu(&self.ring_full)?,
            skipped: state_skips.saturating_sub(nested_taken) + classic_skips,
            skipped_signals: Some(classic_skips),
        })
    }

    /// The nested state program takes only what the kernel skipped the
    /// state program for; more means its check of the interrupt level
    /// does not hold on this kernel, and those transitions were printed
    /// twice. Said once per new count.
    fn say_taken_twice(&self, taken_twice: u64) {
        if taken_twice > self.taken_twice_said.get() {
            self.taken_twice_said.set(taken_twice);
            log::warn!(
                "{taken_twice} transitions were taken twice: the kernel skipped the state \
                 program fewer times than the nested one took a transition (README, \"What it \
                 runs in the kernel\")"
            );
        }
    }
}

/// Every slot of every CPU of a counter array.
fn sum_per_cpu(counters: &PerCpuArray<MapData, u64>) -> Result<u64, aya::maps::MapError> {
    let mut total = 0u64;
    for per_cpu in counters.iter() {
        total += per_cpu?.iter().sum::<u64>();
    }
    Ok(total)
}

/// `recursion_misses` from a BPF program's fdinfo (Linux 5.12+; 0 before).
fn recursion_misses(fdinfo: &str) -> u64 {
    fdinfo
        .lines()
        .find_map(|line| line.strip_prefix("recursion_misses:"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0)
}

impl Lost {
    pub fn total(&self) -> u64 {
        self.ring_full + self.skipped
    }
}

/// `N events lost (why)`, with what to do about a full ring.
impl fmt::Display for Lost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} events lost (", self.total())?;
        if self.ring_full > 0 {
            write!(
                f,
                "kernel ring buffer full: {}, try a larger --ring-buffer-kib",
                self.ring_full
            )?;
        }
        if self.skipped > 0 {
            if self.ring_full > 0 {
                f.write_str("; ")?;
            }
            write!(
                f,
                "skipped by the kernel, nested in a BPF program running on the CPU: {}",
                self.skipped
            )?;
            if let Some(signals) = self.skipped_signals {
                write!(
                    f,
                    " (state transitions {}, retransmits and resets {signals})",
                    self.skipped.saturating_sub(signals)
                )?;
            }
        }
        f.write_str(")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recursion_misses_come_from_fdinfo_and_default_to_zero() {
        let fdinfo = "pos:\t0\nflags:\t02000002\nprog_type:\t5\nrun_time_ns:\t0\n\
                      run_cnt:\t0\nrecursion_misses:\t17\nverified_insns:\t300\n";
        assert_eq!(recursion_misses(fdinfo), 17);
        assert_eq!(recursion_misses("pos:\t0\nprog_type:\t5\n"), 0);
    }

    /// The entry is read again at each count, from its start.
    #[test]
    fn an_open_entry_is_read_again_whole() {
        let program = File::open("/dev/null").unwrap();
        let entry = SkippedRuns::open(&program).unwrap();
        assert_eq!(entry.read().unwrap(), 0);
        assert_eq!(entry.read().unwrap(), 0);
        let text = std::fs::read_to_string(&entry.path).unwrap();
        assert!(text.starts_with("pos:"), "{text}");
    }

    #[test]
    fn a_descriptor_whose_entry_cannot_be_opened_is_an_error() {
        let error = SkippedRuns::open(&-1).err().unwrap();
        assert!(
            error.to_string().contains("/proc/self/fdinfo/-1"),
            "{error}"
        );
    }

    #[test]
    fn lost_events_say_why() {
        let full = Lost {
            ring_full: 3,
            skipped: 0,
            skipped_signals: Some(0),
        };
        assert_eq!(
            full.to_string(),
            "3 events lost (kernel ring buffer full: 3, try a larger --ring-buffer-kib)"
        );
        let both = Lost {
            ring_full: 3,
            skipped: 3,
            skipped_signals: Some(1),
        };
        assert_eq!(
            both.to_string(),
            "6 events lost (kernel ring buffer full: 3, try a larger --ring-buffer-kib; \
             skipped by the kernel, nested in a BPF program running on the CPU: 3 \
             (state transitions 2, retransmits and resets 1))"
        );
        // From a recording that did not keep which kind.
        let unknown = Lost {
            ring_full: 0,
            skipped: 2,
            skipped_signals: None,
        };
        assert_eq!(
            unknown.to_string(),
            "2 events lost (skipped by the kernel, nested in a BPF program running on the CPU: 2)"
        );
    }
}
