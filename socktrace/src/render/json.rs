//! The one JSON envelope: every JSON line socktrace prints is
//! `{"type":KIND,...}`, and a record about a socket carries the same tuple
//! and owner fields (field names are part of socktrace's interface).
use serde::Serialize;

use crate::{model::owner::Owner, model::tuple::NetnsInode, model::tuple::SocketTuple};

/// Appends `{"type":kind, ...record's fields}` and a newline.
pub fn push_record(out: &mut String, kind: &'static str, record: &impl Serialize) {
    #[derive(Serialize)]
    struct Envelope<'a, T> {
        r#type: &'static str,
        #[serde(flatten)]
        record: &'a T,
    }
    // Serializing plain structs of strings and numbers cannot fail.
    if let Ok(line) = serde_json::to_string(&Envelope {
        r#type: kind,
        record,
    }) {
        out.push_str(&line);
        out.push('\n');
    }
}

/// `netns`, `family`, `saddr`, `sport`, `daddr`, `dport`: a socket's
/// network namespace inode and its endpoints.
#[derive(Serialize)]
pub struct TupleJson {
    netns: NetnsInode,
    family: &'static str,
    saddr: String,
    sport: u16,
    daddr: String,
    dport: u16,
}

impl From<&SocketTuple> for TupleJson {
    fn from(tuple: &SocketTuple) -> Self {
        Self {
            netns: tuple.netns,
            family: tuple.family_name(),
            saddr: tuple.local.ip().to_string(),
            sport: tuple.local.port(),
            daddr: tuple.remote.ip().to_string(),
            dport: tuple.remote.port(),
        }
    }
}

/// `pid`, `comm` and `container`, null when unknown.
#[derive(Serialize)]
pub struct OwnerJson {
    pid: Option<u32>,
    comm: Option<String>,
    /// The container or service label (`docker:3f2a9c1b7d4e`).
    container: Option<String>,
}

impl From<Option<&Owner>> for OwnerJson {
    fn from(owner: Option<&Owner>) -> Self {
        Self {
            pid: owner.map(|o| o.pid),
            comm: owner.map(|o| o.comm.to_text()),
            container: owner
                .and_then(|o| o.container.as_ref())
                .map(|label| label.as_str().to_owned()),
        }
    }
}
