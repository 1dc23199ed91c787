//! What a recording holds besides the kernel's records, one frame each, in
//! the order the event loop met them.
use serde::{Deserialize, Serialize};

use crate::{host::listing::HostListing, model::tuple::NetnsInode, state::table::SeedSocket};

/// A frame that is not a kernel record (JSON in the file).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostFrame {
    /// The first frame.
    Start(Start),
    /// A listing the loop took, for every view (the union of what views
    /// list).
    Listing(HostListing),
    /// The container label of a process, when the loop first labelled one
    /// of its records, or when it changed.
    Label { pid: u32, label: Option<String> },
    /// The loop let the view settle at `now_ns`, after a drain.
    Settle { now_ns: u64 },
    /// A namespace was found gone at `now_ns`.
    NamespaceGone { netns: NetnsInode, now_ns: u64 },
    /// The last frame of a run that ended cleanly.
    End(End),
}

/// How the run began.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Start {
    /// CLOCK_MONOTONIC when tracing began.
    pub started_ns: u64,
    /// CLOCK_REALTIME minus CLOCK_MONOTONIC then: the wall-clock times the
    /// views print.
    pub wall_clock_offset_ns: i64,
    /// The namespaces followed (`None`: every one), and whether more than
    /// one could show up.
    pub selection: Option<Vec<NetnsInode>>,
    pub several_namespaces: bool,
    /// Every socket that existed (`ss -tan`, TIME-WAIT included), with
    /// owners.
    pub existing: Vec<SeedSocket>,
}

/// What the run lost, as the kernel and the output counted it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct End {
    pub now_ns: u64,
    pub lost_ring_full: u64,
    pub lost_skipped: u64,
    /// Of `lost_skipped`, the retransmits and resets (absent from older
    /// recordings).
    #[serde(default)]
    pub lost_skipped_signals: Option<u64>,
    pub output_dropped: u64,
}
