//! What one scrape reports: the live state summed over the namespaces
//! traced, the tracer's losses, and the agent's own costs.
use std::collections::BTreeMap;

use crate::{
    host::self_usage::SelfUsage, kernel::lost::Lost, model::tuple::NetnsInode,
    state::live::LiveMetrics,
};

/// See the module documentation.
#[derive(Clone, Debug)]
pub struct MetricsSnapshot {
    pub live: LiveMetrics,
    pub lost: Lost,
    /// Records the agent could not decode.
    pub malformed_records: u64,
    /// The agent's CPU time and memory; `None` when /proc could not be
    /// read (then the families are left out, not reported as 0).
    pub usage: Option<SelfUsage>,
    /// What the last sock_diag listing cost, once one was made.
    pub listing_ns: Option<u64>,
    /// How the metrics name each namespace, when counted apart
    /// (`--metrics-namespaces`): its /run/netns name, or its inode.
    pub namespace_names: BTreeMap<NetnsInode, String>,
}
