//! How `socktrace timewait` prints: ended timewait sockets, confirmed
//! entries (`--entries`), CLOSE-WAIT reports and the summary; aligned
//! columns or one JSON object per line (field names are part of
//! socktrace's interface).
use std::{collections::BTreeMap, fmt::Write as _};

use serde::Serialize;

use crate::{
    model::owner::Owner,
    model::tcp_state::TcpState,
    model::tuple::{NetnsInode, SocketTuple},
    render::cells::{MISSING, decimals, endpoint, ms, or_missing},
    render::columns::{Column, Columns},
    render::json::{OwnerJson, TupleJson, push_record},
    render::output::{Format, Style, event_cells, event_columns},
    state::close_wait_watch::{CloseWaitReport, CloseWaitStatus},
    state::time_wait_summary::TimeWaitReport,
    state::time_wait_tracker::{EndedTimeWait, TimeWaitEnd, TimeWaitSocket},
    state::top_list::TopList,
};

/// The human stream's columns.
fn columns(style: &Style) -> Columns {
    event_columns(style, Some(Column::left("EVENT", 10)))
        .with(Column::right("MS", 14))
        .with(Column::left("DETAIL", 0).after_gap(2))
}

/// Column header of the human stream.
pub fn header(style: &Style) -> String {
    columns(style).header()
}

/// Appends one ended timewait socket.
pub fn write_ended(out: &mut String, e: &EndedTimeWait, format: Format, style: &Style) {
    let socket = &e.socket;
    match format {
        Format::Json => push_record(
            out,
            "time_wait",
            &EndedJson {
                ts_ns: e.ended_ns(),
                tuple: TupleJson::from(&socket.tuple),
                owner: OwnerJson::from(socket.owner.as_ref()),
                end: e.end.name(),
                lifetime_ms: e.lifetime_ns().map(ms),
                lifetime_error_ms: ms(e.uncertainty_ns()),
                entered_ts_ns: socket.entered_ns,
                connection_ms: socket.connection_ns.map(ms),
                state: socket.substate.map(TcpState::name),
                origin: socket.origin.name(),
            },
        ),
        Format::Human => {
            let lifetime = match e.lifetime_ns() {
                Some(ns) if e.uncertainty_ns() > 0 => {
                    format!(
                        "{}±{}",
                        decimals(ms(ns), 0),
                        decimals(ms(e.uncertainty_ns()), 0)
                    )
                }
                Some(ns) => decimals(ms(ns), 1),
                None => MISSING.to_owned(),
            };
            let detail = connection_detail(socket);
            Row {
                at_ns: e.ended_ns(),
                event: e.end.name(),
                owner: socket.owner.clone(),
                tuple: &socket.tuple,
                ms: &lifetime,
                detail: &detail,
            }
            .write(out, style);
        }
    }
}

/// Appends one entry a listing confirmed.
pub fn write_entered(out: &mut String, socket: &TimeWaitSocket, format: Format, style: &Style) {
    let Some(entered_ns) = socket.entered_ns else {
        return;
    };
    match format {
        Format::Json => push_record(
            out,
            "time_wait_entered",
            &EnteredJson {
                ts_ns: entered_ns,
                tuple: TupleJson::from(&socket.tuple),
                owner: OwnerJson::from(socket.owner.as_ref()),
                from: socket.entered_from.map(TcpState::name),
                connection_ms: socket.connection_ns.map(ms),
                state: socket.substate.map(TcpState::name),
            },
        ),
        Format::Human => {
            let detail = connection_detail(socket);
            Row {
                at_ns: entered_ns,
                event: "entered",
                owner: socket.owner.clone(),
                tuple: &socket.tuple,
                ms: MISSING,
                detail: &detail,
            }
            .write(out, style);
        }
    }
}

/// Appends one CLOSE-WAIT report.
pub fn write_close_wait(out: &mut String, r: &CloseWaitReport, format: Format, style: &Style) {
    match format {
        Format::Json => push_record(
            out,
            "close_wait",
            &CloseWaitJson {
                ts_ns: r.at_ns,
                id: r.id,
                tuple: TupleJson::from(&r.tuple),
                owner: OwnerJson::from(r.owner.as_ref()),
                status: r.status.name(),
                age_ms: ms(r.age_ns),
                age_is_lower_bound: r.age_is_lower_bound,
            },
        ),
        Format::Human => {
            let age = decimals(ms(r.age_ns), 0);
            let (event, detail) = match (r.status, r.age_is_lower_bound) {
                (CloseWaitStatus::Stuck, false) => {
                    ("close-wait", "the application has not closed it")
                }
                (CloseWaitStatus::Stuck, true) => {
                    ("close-wait", "since before tracing: age at least")
                }
                (CloseWaitStatus::Closed, false) => ("closed", "left CLOSE-WAIT at last"),
                (CloseWaitStatus::Closed, true) => {
                    ("closed", "left CLOSE-WAIT at last: age at least")
                }
            };
            Row {
                at_ns: r.at_ns,
                event,
                owner: r.owner.clone(),
                tuple: &r.tuple,
                ms: &age,
                detail,
            }
            .write(out, style);
        }
    }
}

/// "from FIN-WAIT-2 after a 12.3 ms connection", as far as it is known.
fn connection_detail(socket: &TimeWaitSocket) -> String {
    let mut detail = match socket.entered_from {
        Some(state) => format!("from {}", state.ss_name()),
        None => format!("{} before tracing", socket.origin.name()),
    };
    if let Some(ns) = socket.connection_ns {
        let _ = write!(detail, " after a {:.1} ms connection", ms(ns));
    }
    detail
}

/// One line of the human stream, in [`header`]'s columns.
struct Row<'a> {
    at_ns: u64,
    event: &'a str,
    owner: Option<Owner>,
    tuple: &'a SocketTuple,
    ms: &'a str,
    detail: &'a str,
}

impl Row<'_> {
    fn write(&self, out: &mut String, style: &Style) {
        let mut cells = event_cells(
            style,
            self.at_ns,
            Some(self.event),
            self.owner.as_ref(),
            self.tuple,
        );
        cells.push(self.ms.to_owned());
        cells.push(self.detail.to_owned());
        columns(style).push_line(out, &cells);
    }
}

/// Appends the summary.
pub fn write_summary(
    out: &mut String,
    r: &TimeWaitReport,
    format: Format,
    style: &Style,
    now_ns: u64,
) {
    match format {
        Format::Json => push_record(out, "time_wait_summary", &SummaryJson::new(r, now_ns)),
        Format::Human => write_human_summary(out, r, style, now_ns),
    }
}

fn write_human_summary(out: &mut String, r: &TimeWaitReport, style: &Style, now_ns: u64) {
    let optional_ms = |v: Option<f64>| or_missing(v, |v| decimals(v, 0));
    let _ = writeln!(
        out,
        "{} TIME-WAIT summary over {:.1} s: {} TIME-WAIT, {} orphans in FIN-WAIT-2, {} not yet listed; entered {:.1}/s, ended {:.1}/s",
        style.clock.time_of_day(now_ns),
        r.interval_ns as f64 / 1e9,
        r.counts.time_wait,
        r.counts.fin_wait2,
        r.counts.unlisted,
        r.entered_per_second(),
        r.ended_per_second(),
    );
    let ends = TimeWaitEnd::ALL
        .iter()
        .map(|end| format!("{}={}", end.name(), r.ends[end.index()]))
        .collect::<Vec<_>>()
        .join(" ");
    let overflows = r
        .observed
        .overflows
        .map_or_else(|| "?".to_owned(), |n| n.to_string());
    let _ = writeln!(
        out,
        "  since start: {ends}; lifetime ms p50 {} p99 {} max {} (listed every {:.1} s); {overflows} not created (TcpExtTCPTimeWaitOverflow)",
        optional_ms(r.lifetime_p50_ms),
        optional_ms(r.lifetime_p99_ms),
        optional_ms(r.lifetime_max_ms),
        r.observed.listing_interval_ns as f64 / 1e9,
    );
    let close_wait = r.observed.close_wait;
    let _ = writeln!(
        out,
        "  CLOSE-WAIT: {} open, {} over the threshold, oldest {} ms",
        close_wait.waiting,
        close_wait.stuck,
        optional_ms(close_wait.oldest_ns.map(ms)),
    );
    let ports = listed(&r.top_local_ports, |(port, n)| format!(":{port} {n}"));
    let _ = writeln!(out, "  by local port: {ports}");
    let remotes = listed(&r.top_remotes, |(remote, n)| {
        format!("{} {n}", endpoint(*remote, false))
    });
    let _ = writeln!(out, "  by remote: {remotes}");
    let owners = listed(&r.top_owners, |(owner, n)| match owner {
        Some(o) => match &o.container {
            Some(label) => format!("{}/{} ({label}) {n}", o.pid, o.comm),
            None => format!("{}/{} {n}", o.pid, o.comm),
        },
        None => format!("unknown {n}"),
    });
    let _ = writeln!(out, "  by process: {owners}");
    let containers = listed(&r.top_containers, |(label, n)| format!("{label} {n}"));
    let _ = writeln!(out, "  by container: {containers}");
    let pressure = listed(&r.port_pressure, |p| {
        let netns = if style.netns_column {
            format!("netns {} ", p.netns)
        } else {
            String::new()
        };
        format!(
            "{netns}{} -> {} {}/{} ({:.1}%)",
            p.local,
            endpoint(p.remote, false),
            p.time_wait,
            p.ephemeral_ports,
            p.ratio() * 100.0
        )
    });
    let _ = writeln!(out, "  ephemeral ports held: {pressure}");
}

/// A top list on one line: `a, b, and 12 more`; `-` when empty.
fn listed<T>(list: &TopList<T>, row: impl Fn(&T) -> String) -> String {
    if list.rows.is_empty() {
        return MISSING.to_owned();
    }
    let mut text = list.rows.iter().map(row).collect::<Vec<_>>().join(", ");
    if list.omitted > 0 {
        let _ = write!(text, ", and {} more", list.omitted);
    }
    text
}

#[derive(Serialize)]
struct EndedJson {
    ts_ns: u64,
    #[serde(flatten)]
    tuple: TupleJson,
    #[serde(flatten)]
    owner: OwnerJson,
    end: &'static str,
    lifetime_ms: Option<f64>,
    lifetime_error_ms: f64,
    entered_ts_ns: Option<u64>,
    connection_ms: Option<f64>,
    /// Substate when last listed: `TIME_WAIT` or `FIN_WAIT2`.
    state: Option<&'static str>,
    origin: &'static str,
}

#[derive(Serialize)]
struct EnteredJson {
    ts_ns: u64,
    #[serde(flatten)]
    tuple: TupleJson,
    #[serde(flatten)]
    owner: OwnerJson,
    from: Option<&'static str>,
    connection_ms: Option<f64>,
    state: Option<&'static str>,
}

#[derive(Serialize)]
struct CloseWaitJson {
    ts_ns: u64,
    id: u64,
    #[serde(flatten)]
    tuple: TupleJson,
    #[serde(flatten)]
    owner: OwnerJson,
    status: &'static str,
    age_ms: f64,
    age_is_lower_bound: bool,
}

#[derive(Serialize)]
struct SummaryJson {
    ts_ns: u64,
    interval_ms: f64,
    time_wait: u64,
    fin_wait2: u64,
    unlisted: u64,
    entered: u64,
    ended: u64,
    entered_per_s: f64,
    ended_per_s: f64,
    ends: BTreeMap<&'static str, u64>,
    lifetime_p50_ms: Option<f64>,
    lifetime_p99_ms: Option<f64>,
    lifetime_max_ms: Option<f64>,
    overflows: Option<u64>,
    close_wait: u64,
    close_wait_stuck: u64,
    close_wait_oldest_ms: Option<f64>,
    listing_interval_ms: f64,
    top_local_ports: Vec<PortCountJson>,
    /// The rows of each list beyond `--top`.
    top_local_ports_omitted: u64,
    top_remotes: Vec<RemoteCountJson>,
    top_remotes_omitted: u64,
    top_processes: Vec<OwnerCountJson>,
    top_processes_omitted: u64,
    top_containers: Vec<ContainerCountJson>,
    top_containers_omitted: u64,
    port_pressure: Vec<PressureJson>,
    port_pressure_omitted: u64,
}

impl SummaryJson {
    fn new(r: &TimeWaitReport, now_ns: u64) -> Self {
        SummaryJson {
            ts_ns: now_ns,
            interval_ms: ms(r.interval_ns),
            time_wait: r.counts.time_wait,
            fin_wait2: r.counts.fin_wait2,
            unlisted: r.counts.unlisted,
            entered: r.entered,
            ended: r.ended,
            entered_per_s: r.entered_per_second(),
            ended_per_s: r.ended_per_second(),
            ends: TimeWaitEnd::ALL
                .iter()
                .map(|end| (end.name(), r.ends[end.index()]))
                .collect(),
            lifetime_p50_ms: r.lifetime_p50_ms,
            lifetime_p99_ms: r.lifetime_p99_ms,
            lifetime_max_ms: r.lifetime_max_ms,
            overflows: r.observed.overflows,
            close_wait: r.observed.close_wait.waiting,
            close_wait_stuck: r.observed.close_wait.stuck,
            close_wait_oldest_ms: r.observed.close_wait.oldest_ns.map(ms),
            listing_interval_ms: ms(r.observed.listing_interval_ns),
            top_local_ports: r
                .top_local_ports
                .rows
                .iter()
                .map(|&(port, count)| PortCountJson { port, count })
                .collect(),
            top_local_ports_omitted: r.top_local_ports.omitted,
            top_remotes: r
                .top_remotes
                .rows
                .iter()
                .map(|(remote, count)| RemoteCountJson {
                    addr: remote.ip().to_string(),
                    port: remote.port(),
                    count: *count,
                })
                .collect(),
            top_remotes_omitted: r.top_remotes.omitted,
            top_processes: r
                .top_owners
                .rows
                .iter()
                .map(|(owner, count)| OwnerCountJson {
                    owner: OwnerJson::from(owner.as_ref()),
                    count: *count,
                })
                .collect(),
            top_processes_omitted: r.top_owners.omitted,
            top_containers: r
                .top_containers
                .rows
                .iter()
                .map(|(label, count)| ContainerCountJson {
                    container: label.as_str().to_owned(),
                    count: *count,
                })
                .collect(),
            top_containers_omitted: r.top_containers.omitted,
            port_pressure: r
                .port_pressure
                .rows
                .iter()
                .map(|p| PressureJson {
                    netns: p.netns,
                    saddr: p.local.to_string(),
                    daddr: p.remote.ip().to_string(),
                    dport: p.remote.port(),
                    time_wait: p.time_wait,
                    ephemeral_ports: p.ephemeral_ports,
                    ratio: p.ratio(),
                })
                .collect(),
            port_pressure_omitted: r.port_pressure.omitted,
        }
    }
}

#[derive(Serialize)]
struct PortCountJson {
    port: u16,
    count: u64,
}

#[derive(Serialize)]
struct RemoteCountJson {
    addr: String,
    port: u16,
    count: u64,
}

#[derive(Serialize)]
struct OwnerCountJson {
    #[serde(flatten)]
    owner: OwnerJson,
    count: u64,
}

#[derive(Serialize)]
struct ContainerCountJson {
    container: String,
    count: u64,
}

#[derive(Serialize)]
struct PressureJson {
    netns: NetnsInode,
    saddr: String,
    daddr: String,
    dport: u16,
    time_wait: u64,
    ephemeral_ports: u32,
    ratio: f64,
}

#[cfg(test)]
mod tests;
