//! How `socktrace trace` prints: aligned human columns, or one JSON object
//! per line (field names are part of socktrace's interface).
use serde::Serialize;

use crate::{
    model::owner::Owner,
    model::tcp_state::TcpState,
    model::tuple::{NetnsInode, SocketTuple},
    render::cells::{MISSING, decimals, endpoint, ms, or_missing},
    render::columns::{Column, Columns},
    render::json::{OwnerJson, TupleJson, push_record},
    state::table::{TrackedSocket, Transition},
    support::clock::WallClock,
};

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Human,
    Json,
}

impl Format {
    /// The format a command's `--json` flag asks for.
    pub fn from_json_flag(json: bool) -> Self {
        if json { Format::Json } else { Format::Human }
    }
}

/// How human lines are laid out: wall-clock times, and whether a first
/// column names each socket's network namespace (when more than one can
/// show up).
#[derive(Clone, Copy, Debug)]
pub struct Style {
    pub clock: WallClock,
    pub netns_column: bool,
}

/// Midnight UTC on the monotonic clock, for tests.
#[cfg(test)]
pub(crate) fn test_style(netns_column: bool) -> Style {
    Style {
        clock: WallClock::with_offset_ns(0),
        netns_column,
    }
}

/// A stream's first column, the namespace's inode, when shown.
fn netns_columns(style: &Style) -> Columns {
    let columns = Columns::new();
    if style.netns_column {
        columns.with(Column::left("NETNS", 10))
    } else {
        columns
    }
}

/// The cells of [`netns_columns`].
fn netns_cells(style: &Style, netns: NetnsInode) -> Vec<String> {
    if style.netns_column {
        vec![netns.to_string()]
    } else {
        Vec::new()
    }
}

/// The owner's columns: pid, command and container (or service).
const OWNER_COLUMNS: [Column; 3] = [
    Column::right("PID", 7),
    Column::left("COMM", 15),
    Column::left("CONTAINER", CONTAINER_WIDTH),
];

/// Room for `docker:` and a short container id; longer labels (systemd
/// units, pods) push the rest of the row right.
const CONTAINER_WIDTH: usize = 19;

/// The cells of [`OWNER_COLUMNS`], missing for what is unknown.
fn owner_cells(owner: Option<&Owner>) -> [String; 3] {
    match owner {
        Some(o) => [
            o.pid.to_string(),
            o.comm.to_text(),
            o.container
                .as_ref()
                .map_or(MISSING, |label| label.as_str())
                .to_owned(),
        ],
        None => [MISSING; 3].map(str::to_owned),
    }
}

/// A socket's endpoints, local then remote.
const ENDPOINT_COLUMNS: [Column; 2] = [Column::left("LOCAL", 45), Column::left("REMOTE", 45)];

/// The cells of [`ENDPOINT_COLUMNS`].
fn endpoint_cells(tuple: &SocketTuple) -> [String; 2] {
    [endpoint(tuple.local, false), endpoint(tuple.remote, false)]
}

/// The columns every event stream opens with: the namespace (when shown),
/// the time, the stream's own `kind` column if any, the owner and the
/// endpoints.
pub(crate) fn event_columns(style: &Style, kind: Option<Column>) -> Columns {
    netns_columns(style)
        .with(Column::left("TIME(UTC)", 12))
        .with_all(kind)
        .with_all(OWNER_COLUMNS)
        .with_all(ENDPOINT_COLUMNS)
}

/// The cells of [`event_columns`], for an event at `at_ns`.
pub(crate) fn event_cells(
    style: &Style,
    at_ns: u64,
    kind: Option<&str>,
    owner: Option<&Owner>,
    tuple: &SocketTuple,
) -> Vec<String> {
    let mut cells = netns_cells(style, tuple.netns);
    cells.push(style.clock.time_of_day(at_ns));
    cells.extend(kind.map(str::to_owned));
    cells.extend(owner_cells(owner));
    cells.extend(endpoint_cells(tuple));
    cells
}

/// The human transition stream's columns.
fn transition_columns(style: &Style) -> Columns {
    event_columns(style, None)
        .with(Column::left("OLD -> NEW", 27))
        .with(Column::right("OLD_MS", 10))
}

/// The `--list-existing` table's columns.
fn socket_columns(style: &Style) -> Columns {
    netns_columns(style)
        .with(Column::left("STATE", 12))
        .with_all(ENDPOINT_COLUMNS)
        .with_all(OWNER_COLUMNS)
}

/// Column header of the human transition stream.
pub fn transition_header(style: &Style) -> String {
    transition_columns(style).header()
}

/// Column header of the `--list-existing` table.
pub fn socket_header(style: &Style) -> String {
    socket_columns(style).header()
}

/// Appends one transition, newline terminated.
pub fn write_transition(out: &mut String, t: &Transition, format: Format, style: &Style) {
    match format {
        Format::Json => push_record(
            out,
            "state",
            &StateJson {
                id: t.id,
                ts_ns: t.ts_ns,
                tuple: TupleJson::from(&t.tuple),
                old_state: t.old_state.name(),
                new_state: t.new_state.name(),
                owner: OwnerJson::from(t.owner.as_ref()),
                context: t.context.name(),
                old_state_ms: t.old_state_ns.map(ms),
                lifetime_ms: t.ended.as_ref().and_then(|e| e.lifetime_ns).map(ms),
                state_ms: t.ended.as_ref().map(|e| StateTimes(e.time_in_state_ns)),
            },
        ),
        Format::Human => {
            let mut cells = event_cells(style, t.ts_ns, None, t.owner.as_ref(), &t.tuple);
            cells.push(format!("{} -> {}", t.old_state.name(), t.new_state.name()));
            cells.push(or_missing(t.old_state_ns, |ns| decimals(ms(ns), 3)));
            transition_columns(style).push_line(out, &cells);
        }
    }
}

/// Appends one existing socket, newline terminated.
pub fn write_socket(out: &mut String, s: &TrackedSocket, format: Format, style: &Style) {
    match format {
        Format::Json => push_record(
            out,
            "socket",
            &SocketJson {
                id: s.id,
                tuple: TupleJson::from(&s.tuple),
                state: s.state.name(),
                owner: OwnerJson::from(s.owner.as_ref()),
            },
        ),
        Format::Human => {
            let mut cells = netns_cells(style, s.tuple.netns);
            cells.push(s.state.ss_name().to_owned());
            cells.extend(endpoint_cells(&s.tuple));
            cells.extend(owner_cells(s.owner.as_ref()));
            socket_columns(style).push_line(out, &cells);
        }
    }
}

/// `trace --json`'s last record: what did not reach the output.
#[derive(Serialize)]
pub struct TraceSummary {
    /// Records the kernel could not hand over (full ring).
    pub lost_events: u64,
    /// At least this many transitions never arrived (see the table's gaps).
    pub transitions_missed: u64,
    pub malformed_records: u64,
    /// Lines dropped because stdout was not read fast enough.
    pub output_lines_dropped: u64,
    /// Sockets dropped with their network namespace, their CLOSE unseen.
    pub sockets_torn_down: u64,
}

/// `{"type":"summary",...}`, newline terminated.
pub fn write_trace_summary(out: &mut String, summary: &TraceSummary) {
    push_record(out, "summary", summary);
}

#[derive(Serialize)]
struct StateJson {
    id: u64,
    ts_ns: u64,
    #[serde(flatten)]
    tuple: TupleJson,
    old_state: &'static str,
    new_state: &'static str,
    #[serde(flatten)]
    owner: OwnerJson,
    context: &'static str,
    old_state_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lifetime_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    state_ms: Option<StateTimes>,
}

#[derive(Serialize)]
struct SocketJson {
    id: u64,
    #[serde(flatten)]
    tuple: TupleJson,
    state: &'static str,
    #[serde(flatten)]
    owner: OwnerJson,
}

/// Time spent per state, as a JSON object of the states actually visited.
struct StateTimes([u64; TcpState::COUNT]);

impl Serialize for StateTimes {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let visited = TcpState::ALL.iter().filter(|s| self.0[s.index()] > 0);
        let mut map = serializer.serialize_map(None)?;
        for state in visited {
            map.serialize_entry(state.name(), &ms(self.0[state.index()]))?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        kernel::event::TaskContext,
        model::owner::{Comm, ContainerLabel},
        state::table::{Ended, Opening},
    };

    fn transition() -> Transition {
        let mut times = [0u64; TcpState::COUNT];
        times[TcpState::Established.index()] = 2_500_000;
        Transition {
            id: 7,
            ts_ns: 1_000,
            tuple: SocketTuple {
                netns: crate::model::tuple::TEST_NETNS,
                local: "[::1]:40000".parse().unwrap(),
                remote: "[::1]:443".parse().unwrap(),
            },
            old_state: TcpState::FinWait2,
            new_state: TcpState::Close,
            owner: Some(Owner {
                pid: 42,
                comm: Comm::from_text("curl"),
                container: None,
            }),
            context: TaskContext::Softirq,
            old_state_ns: Some(1_500_000),
            ended: Some(Ended {
                lifetime_ns: Some(4_000_000),
                time_in_state_ns: times,
                opening: Some(Opening::Active),
            }),
        }
    }

    #[test]
    fn json_has_the_documented_fields() {
        let mut out = String::new();
        write_transition(&mut out, &transition(), Format::Json, &test_style(false));
        let value: serde_json::Value = serde_json::from_str(out.trim_end()).unwrap();
        assert_eq!(value["type"], "state");
        assert_eq!(value["netns"], crate::model::tuple::TEST_NETNS);
        assert_eq!(value["family"], "ipv6");
        assert_eq!(value["saddr"], "::1");
        assert_eq!(value["sport"], 40000);
        assert_eq!(value["dport"], 443);
        assert_eq!(value["old_state"], "FIN_WAIT2");
        assert_eq!(value["new_state"], "CLOSE");
        assert_eq!(value["pid"], 42);
        assert_eq!(value["comm"], "curl");
        assert_eq!(value["context"], "softirq");
        assert_eq!(value["old_state_ms"], 1.5);
        assert_eq!(value["lifetime_ms"], 4.0);
        assert_eq!(value["state_ms"]["ESTABLISHED"], 2.5);
        assert!(out.ends_with('\n') && out.lines().count() == 1);
    }

    #[test]
    fn unknown_owner_and_time_are_null_not_zero() {
        let mut t = transition();
        t.owner = None;
        t.old_state_ns = None;
        t.ended = None;
        let mut out = String::new();
        write_transition(&mut out, &t, Format::Json, &test_style(false));
        let value: serde_json::Value = serde_json::from_str(out.trim_end()).unwrap();
        assert!(value["pid"].is_null() && value["comm"].is_null());
        assert!(value["container"].is_null());
        assert!(value["old_state_ms"].is_null());
        assert!(value.get("lifetime_ms").is_none());
    }

    #[test]
    fn human_lines_start_with_the_namespace_only_when_several_are_in_play() {
        let mut out = String::new();
        let with = test_style(true);
        write_transition(&mut out, &transition(), Format::Human, &with);
        assert!(out.starts_with("4026531840 00:00:00.000 "), "{out}");
        assert!(transition_header(&with).starts_with("NETNS      TIME(UTC)"));
        assert_eq!(
            transition_header(&with).find("LOCAL"),
            out.find("[::1]:40000"),
            "columns stay aligned"
        );
        out.clear();
        write_transition(&mut out, &transition(), Format::Human, &test_style(false));
        assert!(out.starts_with("00:00:00.000 "), "{out}");
    }

    #[test]
    fn human_lines_use_ss_endpoints() {
        let mut t = transition();
        t.tuple.local = "10.0.0.1:0".parse().unwrap();
        let mut out = String::new();
        write_transition(&mut out, &t, Format::Human, &test_style(false));
        assert!(out.contains("10.0.0.1:*"), "{out}");
        assert!(out.contains("[::1]:443"), "{out}");
        assert!(out.contains("FIN_WAIT2 -> CLOSE"), "{out}");
        assert!(out.contains("1.500"), "{out}");
        assert!(out.contains("42 curl"), "{out}");
    }

    #[test]
    fn the_container_shows_beside_the_owner_in_its_own_column() {
        let mut t = transition();
        if let Some(owner) = &mut t.owner {
            owner.container = Some(ContainerLabel::new("docker:3f2a9c1b7d4e"));
        }
        let mut out = String::new();
        write_transition(&mut out, &t, Format::Human, &test_style(false));
        let header = transition_header(&test_style(false));
        assert_eq!(header.find("CONTAINER"), out.find("docker:3f2a9c1b7d4e"));
        assert_eq!(header.find("LOCAL"), out.find("[::1]:40000"), "aligned");
        out.clear();
        write_transition(&mut out, &t, Format::Json, &test_style(false));
        let value: serde_json::Value = serde_json::from_str(out.trim_end()).unwrap();
        assert_eq!(value["container"], "docker:3f2a9c1b7d4e");
    }
}
