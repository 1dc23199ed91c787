//! How `socktrace handshakes` prints: resolved attempts, retransmits of
//! attempts still in progress, and the summary; aligned columns or one JSON
//! object per line (field names are part of socktrace's interface).
use std::fmt::Write as _;

use serde::Serialize;

use crate::{
    model::owner::Owner,
    model::tuple::SocketTuple,
    render::cells::{decimals, ms, or_missing},
    render::columns::{Column, Columns},
    render::json::{OwnerJson, TupleJson, push_record},
    render::output::{Format, Style, event_cells, event_columns},
    state::handshake_summary::{
        Group, GroupRow, HandshakeSummary, KEPT_PER_SIDE, Merged, RETRANSMIT_BUCKETS,
    },
    state::handshake_tracker::{Handshake, Outcome, Retrying, Side},
    state::top_list::TopList,
    support::errno_name::errno_name,
};

/// The human stream's columns.
fn columns(style: &Style) -> Columns {
    event_columns(style, Some(Column::left("SIDE", 6)))
        .with(Column::left("OUTCOME", 28))
        .with(Column::right("RTX", 4))
        .with(Column::right("MS", 10))
        .with(Column::left("RETRANSMITS_AT_MS", 0).after_gap(2))
}

/// Column header of the human stream.
pub fn header(style: &Style) -> String {
    columns(style).header()
}

/// Appends one resolved attempt.
pub fn write_handshake(out: &mut String, h: &Handshake, format: Format, style: &Style) {
    let offsets_ms = h
        .retransmit_offsets_ns()
        .map(|offsets| offsets.into_iter().map(ms).collect::<Vec<_>>());
    match format {
        Format::Json => push_record(
            out,
            "handshake",
            &HandshakeJson {
                ts_ns: h.ended_ns,
                side: h.side.name(),
                tuple: TupleJson::from(&h.tuple),
                owner: OwnerJson::from(h.owner.as_ref()),
                outcome: h.outcome.name(),
                error: h.errno.map(errno_name),
                retransmits: h.retransmits(),
                retransmit_times_ms: offsets_ms,
                duration_ms: h.duration_ns().map(ms),
            },
        ),
        Format::Human => {
            let outcome = match h.errno {
                Some(errno) => format!("{} ({})", h.outcome.name(), errno_name(errno)),
                None => h.outcome.name().to_owned(),
            };
            let times = match offsets_ms {
                Some(offsets) => offsets
                    .iter()
                    .map(|t| decimals(*t, 0))
                    .collect::<Vec<_>>()
                    .join(","),
                None if h.retransmits_ns.is_empty() => String::new(),
                None => "?".to_owned(),
            };
            let row = Row {
                at_ns: h.ended_ns,
                side: h.side,
                owner: h.owner.clone(),
                tuple: &h.tuple,
                what: &outcome,
                retransmits: h.retransmits(),
                elapsed_ns: h.duration_ns(),
            };
            row.write(out, style, &times);
        }
    }
}

/// Appends one retransmit of an attempt still in progress, like `ss -o`'s
/// `timer:(on,...,N)` but at the moment it happens.
pub fn write_retrying(out: &mut String, r: &Retrying, format: Format, style: &Style) {
    match format {
        Format::Json => push_record(
            out,
            "handshake_retransmit",
            &RetryingJson {
                ts_ns: r.at_ns,
                side: r.side.name(),
                tuple: TupleJson::from(&r.tuple),
                owner: OwnerJson::from(r.owner.as_ref()),
                retransmits: r.retransmits,
                elapsed_ms: r.elapsed_ns.map(ms),
            },
        ),
        Format::Human => {
            let state = match r.side {
                Side::Client => "SYN-SENT retransmit",
                Side::Server => "SYN-RECV retransmit",
            };
            let row = Row {
                at_ns: r.at_ns,
                side: r.side,
                owner: r.owner.clone(),
                tuple: &r.tuple,
                what: state,
                retransmits: r.retransmits,
                elapsed_ns: r.elapsed_ns,
            };
            row.write(out, style, "");
        }
    }
}

/// One line of the human stream, in [`header`]'s columns.
struct Row<'a> {
    at_ns: u64,
    side: Side,
    owner: Option<Owner>,
    tuple: &'a SocketTuple,
    /// The outcome, or what is happening to an attempt in progress.
    what: &'a str,
    retransmits: u32,
    /// Since the first SYN (or SYN-ACK), when seen.
    elapsed_ns: Option<u64>,
}

impl Row<'_> {
    fn write(&self, out: &mut String, style: &Style, retransmit_times: &str) {
        let mut cells = event_cells(
            style,
            self.at_ns,
            Some(self.side.name()),
            self.owner.as_ref(),
            self.tuple,
        );
        cells.push(self.what.to_owned());
        cells.push(self.retransmits.to_string());
        cells.push(or_missing(self.elapsed_ns, |ns| decimals(ms(ns), 1)));
        cells.push(retransmit_times.to_owned());
        columns(style).push_line(out, &cells);
    }
}

/// Appends the summary: the `top` busiest peers and subnets of each side
/// and the `top` busiest listeners, with the count of those left out.
pub fn write_summary(out: &mut String, summary: &HandshakeSummary, format: Format, top: usize) {
    let peers = summary.peers(top);
    let subnets = summary.subnets(top);
    let listeners = summary.listeners(top);
    match format {
        Format::Json => {
            let peers_merged = summary.peers_merged();
            let subnets_merged = summary.subnets_merged();
            push_record(
                out,
                "handshake_summary",
                &SummaryJson {
                    peers: peers.rows.iter().map(GroupJson::of_row).collect(),
                    peers_omitted: peers.omitted,
                    peers_merged: peers_merged.keys,
                    peers_merged_attempts: peers_merged.attempts,
                    subnets: subnets.rows.iter().map(GroupJson::of_row).collect(),
                    subnets_omitted: subnets.omitted,
                    subnets_merged: subnets_merged.keys,
                    subnets_merged_attempts: subnets_merged.attempts,
                    listeners: listeners
                        .rows
                        .iter()
                        .map(|&(port, listener)| ListenerJson {
                            port,
                            drops: listener.drops,
                            accept_queue_peak: listener.accept_queue_peak,
                            backlog: listener.backlog,
                            group: GroupJson::new(
                                "server",
                                format!("*:{port}"),
                                &listener.group,
                                0,
                            ),
                        })
                        .collect(),
                    listeners_omitted: listeners.omitted,
                    listen_overflows: summary.listen_counters().overflows,
                    listen_drops: summary.listen_counters().drops,
                },
            );
        }
        Format::Human => {
            write_group_table(out, "PEER", &peers, summary.peers_merged(), "peers");
            write_group_table(out, "SUBNET", &subnets, summary.subnets_merged(), "subnets");
            let listener_columns = group_columns("LISTENER")
                .with(Column::right("DROPS", 8))
                .with(Column::right("ACCEPTQ/MAX", 13));
            listener_columns.push_header(out);
            for &(port, listener) in &listeners.rows {
                let mut cells = group_cells("server", &format!("*:{port}"), &listener.group);
                cells.push(listener.drops.to_string());
                cells.push(format!(
                    "{}/{}",
                    listener.accept_queue_peak, listener.backlog
                ));
                listener_columns.push_line(out, &cells);
            }
            write_omitted(out, listeners.omitted, "listening ports");
            let counters = summary.listen_counters();
            let _ = writeln!(
                out,
                "namespace: {} connections refused by full accept queues (TcpExtListenOverflows), {} listen drops in all",
                counters.overflows, counters.drops
            );
        }
    }
}

/// A summary table keyed by `what` (`PEER`, `SUBNET`): its rows, then
/// what `--top` left out and what the bound merged.
fn write_group_table<K: ToString>(
    out: &mut String,
    what: &'static str,
    rows: &TopList<GroupRow<'_, K>>,
    merged: Merged,
    plural: &str,
) {
    let columns = group_columns(what);
    columns.push_header(out);
    for row in &rows.rows {
        columns.push_line(
            out,
            &group_cells(row.side.name(), &row.key.to_string(), row.group),
        );
    }
    write_omitted(out, rows.omitted, plural);
    write_merged(out, merged, plural);
}

/// `... and 12 more peers (--top)` under a table that left rows out.
fn write_omitted(out: &mut String, omitted: u64, what: &str) {
    if omitted > 0 {
        let _ = writeln!(out, "... and {omitted} more {what} (--top)");
    }
}

/// `... 12 peers merged beyond the 4096 kept per side: 345 attempts in no
/// row` under a table whose bound was reached.
fn write_merged(out: &mut String, merged: Merged, what: &str) {
    if merged.keys > 0 {
        let _ = writeln!(
            out,
            "... {} {what} merged beyond the {KEPT_PER_SIDE} kept per side: {} attempts in no row",
            merged.keys, merged.attempts
        );
    }
}

/// The columns of a summary table whose rows are keyed by `what`.
fn group_columns(what: &'static str) -> Columns {
    Columns::new()
        .with(Column::left("SIDE", 6))
        .with(Column::left(what, 43))
        .with(Column::right("ATTEMPTS", 8))
        .with(Column::right("OK", 6))
        .with(Column::right("FAILED", 6))
        .with(Column::left("OUTCOMES", 40).after_gap(2))
        .with(Column::left("RETRANSMITS 0/1/2/3/4/5/6+", 20))
        .with(Column::right("P50_MS", 9))
        .with(Column::right("P99_MS", 9))
}

/// The cells of [`group_columns`].
fn group_cells(side: &str, key: &str, group: &Group) -> Vec<String> {
    let outcomes = Outcome::ALL
        .iter()
        .filter(|o| group.outcomes[o.index()] > 0)
        .map(|o| format!("{}={}", o.name(), group.outcomes[o.index()]))
        .collect::<Vec<_>>()
        .join(",");
    let retransmits = group
        .retransmits
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join("/");
    let quantile = |q| or_missing(group.latency.quantile_ms(q), |v| decimals(v, 1));
    vec![
        side.to_owned(),
        key.to_owned(),
        group.attempts.to_string(),
        (group.attempts - group.failed()).to_string(),
        group.failed().to_string(),
        outcomes,
        retransmits,
        quantile(0.5),
        quantile(0.99),
    ]
}

#[derive(Serialize)]
struct HandshakeJson {
    ts_ns: u64,
    side: &'static str,
    #[serde(flatten)]
    tuple: TupleJson,
    #[serde(flatten)]
    owner: OwnerJson,
    outcome: &'static str,
    error: Option<String>,
    retransmits: u32,
    retransmit_times_ms: Option<Vec<f64>>,
    duration_ms: Option<f64>,
}

#[derive(Serialize)]
struct RetryingJson {
    ts_ns: u64,
    side: &'static str,
    #[serde(flatten)]
    tuple: TupleJson,
    #[serde(flatten)]
    owner: OwnerJson,
    retransmits: u32,
    elapsed_ms: Option<f64>,
}

#[derive(Serialize)]
struct SummaryJson {
    peers: Vec<GroupJson>,
    /// The rows of each list beyond `--top`.
    peers_omitted: u64,
    /// Peers merged beyond [`KEPT_PER_SIDE`], and their attempts, in no
    /// row.
    peers_merged: u64,
    peers_merged_attempts: u64,
    subnets: Vec<GroupJson>,
    subnets_omitted: u64,
    subnets_merged: u64,
    subnets_merged_attempts: u64,
    listeners: Vec<ListenerJson>,
    listeners_omitted: u64,
    /// `TcpExtListenOverflows` and `TcpExtListenDrops` since tracing
    /// began, summed over the namespaces traced.
    listen_overflows: u64,
    listen_drops: u64,
}

#[derive(Serialize)]
struct GroupJson {
    side: &'static str,
    key: String,
    attempts: u64,
    outcomes: std::collections::BTreeMap<&'static str, u64>,
    /// Index i: attempts with i retransmits; the last, that many or more.
    retransmits: [u64; RETRANSMIT_BUCKETS],
    latency_p50_ms: Option<f64>,
    latency_p99_ms: Option<f64>,
    /// At most this many more attempts came before the row was kept: 0
    /// unless the bound was reached.
    attempts_uncounted_max: u64,
}

impl GroupJson {
    fn of_row<K: ToString>(row: &GroupRow<'_, K>) -> Self {
        GroupJson::new(
            row.side.name(),
            row.key.to_string(),
            row.group,
            row.attempts_uncounted_max,
        )
    }

    fn new(side: &'static str, key: String, group: &Group, attempts_uncounted_max: u64) -> Self {
        GroupJson {
            side,
            key,
            attempts_uncounted_max,
            attempts: group.attempts,
            outcomes: Outcome::ALL
                .iter()
                .filter(|o| group.outcomes[o.index()] > 0)
                .map(|o| (o.name(), group.outcomes[o.index()]))
                .collect(),
            retransmits: group.retransmits,
            latency_p50_ms: group.latency.quantile_ms(0.5),
            latency_p99_ms: group.latency.quantile_ms(0.99),
        }
    }
}

#[derive(Serialize)]
struct ListenerJson {
    port: u16,
    drops: u64,
    accept_queue_peak: u32,
    backlog: u32,
    #[serde(flatten)]
    group: GroupJson,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::owner::Comm;
    use crate::render::output::test_style;

    const MS: u64 = 1_000_000;

    fn timeout() -> Handshake {
        Handshake {
            side: Side::Client,
            tuple: SocketTuple {
                netns: crate::model::tuple::TEST_NETNS,
                local: "[2001:db8::1]:40000".parse().unwrap(),
                remote: "[2001:db8::2]:443".parse().unwrap(),
            },
            owner: Some(Owner {
                pid: 42,
                comm: Comm::from_text("curl"),
                container: None,
            }),
            outcome: Outcome::Timeout,
            errno: Some(110),
            started_ns: Some(10 * MS),
            ended_ns: 3010 * MS,
            retransmits_ns: vec![1010 * MS, 2010 * MS],
            kernel_retransmits: None,
        }
    }

    fn json(out: &str) -> serde_json::Value {
        assert_eq!(out.lines().count(), 1, "{out}");
        serde_json::from_str(out.trim_end()).unwrap()
    }

    #[test]
    fn handshake_json_has_the_documented_fields() {
        let mut out = String::new();
        write_handshake(&mut out, &timeout(), Format::Json, &test_style(false));
        let value = json(&out);
        assert_eq!(value["type"], "handshake");
        assert_eq!(value["side"], "client");
        assert_eq!(value["family"], "ipv6");
        assert_eq!(value["saddr"], "2001:db8::1");
        assert_eq!(value["sport"], 40000);
        assert_eq!(value["daddr"], "2001:db8::2");
        assert_eq!(value["dport"], 443);
        assert_eq!(value["pid"], 42);
        assert_eq!(value["comm"], "curl");
        assert_eq!(value["outcome"], "timeout");
        assert_eq!(value["error"], "ETIMEDOUT");
        assert_eq!(value["retransmits"], 2);
        assert_eq!(
            value["retransmit_times_ms"],
            serde_json::json!([1000.0, 2000.0])
        );
        assert_eq!(value["duration_ms"], 3000.0);
    }

    #[test]
    fn unknown_start_is_null_not_zero() {
        let mut h = timeout();
        h.started_ns = None;
        h.owner = None;
        let mut out = String::new();
        write_handshake(&mut out, &h, Format::Json, &test_style(false));
        let value = json(&out);
        assert!(value["retransmit_times_ms"].is_null());
        assert!(value["duration_ms"].is_null());
        assert!(value["pid"].is_null());
        assert_eq!(value["retransmits"], 2);
    }

    #[test]
    fn human_lines_show_outcome_error_and_retransmit_times() {
        let mut out = String::new();
        write_handshake(&mut out, &timeout(), Format::Human, &test_style(false));
        assert!(out.contains("timeout (ETIMEDOUT)"), "{out}");
        assert!(out.contains("[2001:db8::2]:443"), "{out}");
        assert!(out.trim_end().ends_with("1000,2000"), "{out}");
    }

    #[test]
    fn retransmits_in_progress_are_their_own_record_type() {
        let retry = Retrying {
            side: Side::Server,
            tuple: timeout().tuple,
            owner: None,
            at_ns: 5 * MS,
            retransmits: 3,
            elapsed_ns: Some(7000 * MS),
        };
        let mut out = String::new();
        write_retrying(&mut out, &retry, Format::Json, &test_style(false));
        let value = json(&out);
        assert_eq!(value["type"], "handshake_retransmit");
        assert_eq!(value["side"], "server");
        assert_eq!(value["retransmits"], 3);
        assert_eq!(value["elapsed_ms"], 7000.0);
        out.clear();
        write_retrying(&mut out, &retry, Format::Human, &test_style(false));
        assert!(out.contains("SYN-RECV retransmit"), "{out}");
    }

    #[test]
    fn summary_json_lists_peers_subnets_and_listeners() {
        let mut summary = HandshakeSummary::new();
        summary.record(&timeout());
        let mut out = String::new();
        write_summary(&mut out, &summary, Format::Json, 10);
        let value = json(&out);
        assert_eq!(value["type"], "handshake_summary");
        assert_eq!(value["peers"][0]["key"], "2001:db8::2");
        assert_eq!(value["peers"][0]["outcomes"]["timeout"], 1);
        assert_eq!(value["peers"][0]["retransmits"][2], 1);
        assert!(value["peers"][0]["latency_p50_ms"].is_null());
        assert_eq!(value["subnets"][0]["key"], "2001:db8::/64");
        assert_eq!(value["listeners"], serde_json::json!([]));
        assert_eq!(value["listen_overflows"], 0);
        assert_eq!(value["peers_omitted"], 0);
        out.clear();
        write_summary(&mut out, &summary, Format::Human, 10);
        assert!(out.contains("timeout=1"), "{out}");
        assert!(out.contains("0/0/1/0/0/0/0"), "{out}");
        assert!(!out.contains("more"), "nothing left out: {out}");
    }

    /// With every peer listed, a summary line reached 7.6 MB (with 100,000
    /// peers). Fewer than the bound keeps: every one is counted, not shown.
    #[test]
    fn a_summary_of_four_thousand_peers_stays_small() {
        let mut summary = HandshakeSummary::new();
        let first = u32::from(std::net::Ipv4Addr::new(127, 0, 0, 1));
        for i in 0..4000 {
            let mut attempt = timeout();
            attempt.side = Side::Server;
            attempt.tuple.local = "127.0.0.1:8080".parse().unwrap();
            attempt.tuple.remote = (std::net::Ipv4Addr::from(first + i), 40000).into();
            summary.record(&attempt);
        }
        summary.record(&timeout());
        let mut out = String::new();
        write_summary(&mut out, &summary, Format::Json, 10);
        assert!(out.len() < 8 * 1024, "{} bytes", out.len());
        let value = json(&out);
        let peers = value["peers"].as_array().unwrap();
        assert_eq!(peers.len(), 11, "10 servers' peers and the client's");
        assert_eq!(value["peers_omitted"], 4000 - 10);
        assert_eq!(value["peers_merged"], 0);
        // 127.0.0.1 to 127.0.15.160.
        assert_eq!(value["subnets"].as_array().unwrap().len(), 11);
        assert_eq!(value["subnets_omitted"], 16 - 10);
        assert_eq!(value["listeners"].as_array().unwrap().len(), 1);
        assert_eq!(value["listeners_omitted"], 0);
        out.clear();
        write_summary(&mut out, &summary, Format::Human, 10);
        assert!(out.len() < 8 * 1024, "{} bytes", out.len());
        assert!(out.contains("\n... and 3990 more peers (--top)\n"), "{out}");
        assert!(out.contains("\n... and 6 more subnets (--top)\n"), "{out}");
        assert!(!out.contains("merged"), "{out}");
    }

    /// A spoofed SYN flood: each SYN from another address (and /24), never
    /// completed. Every peer and subnet was kept for the life of the
    /// command; the summary keeps at most its bound of each per side, the
    /// peers that keep coming back still rank first, and it says how many
    /// it merged.
    #[test]
    fn a_flood_of_a_million_peers_stays_within_the_bound_and_says_so() {
        const FLOOD: u32 = 1_000_000;
        const KEPT: u64 = KEPT_PER_SIDE as u64;
        let mut summary = HandshakeSummary::new();
        let expired = |remote: std::net::Ipv4Addr| {
            let mut attempt = timeout();
            attempt.side = Side::Server;
            attempt.outcome = Outcome::Expired;
            attempt.tuple.local = "10.9.9.9:443".parse().unwrap();
            attempt.tuple.remote = (remote, 40000).into();
            attempt
        };
        // Three peers that keep coming back, 3000, 2000 and 1000 times,
        // through the whole flood.
        let heavy: [std::net::Ipv4Addr; 3] = [
            "192.0.2.1".parse().unwrap(),
            "192.0.2.2".parse().unwrap(),
            "192.0.2.3".parse().unwrap(),
        ];
        let first = u32::from(std::net::Ipv4Addr::new(10, 0, 0, 0));
        for i in 0..FLOOD {
            summary.record(&expired(std::net::Ipv4Addr::from(first + i * 256)));
            for (rank, peer) in heavy.iter().enumerate() {
                if i % 1000 < 3 - rank as u32 {
                    summary.record(&expired(*peer));
                }
            }
        }
        let mut out = String::new();
        write_summary(&mut out, &summary, Format::Json, 10);
        assert!(out.len() < 8 * 1024, "{} bytes", out.len());
        let value = json(&out);
        let peers = value["peers"].as_array().unwrap();
        let keys: Vec<&str> = peers[..3]
            .iter()
            .map(|p| p["key"].as_str().unwrap())
            .collect();
        assert_eq!(keys, ["192.0.2.1", "192.0.2.2", "192.0.2.3"]);
        let attempts: Vec<u64> = peers[..3]
            .iter()
            .map(|p| p["attempts"].as_u64().unwrap())
            .collect();
        assert_eq!(
            attempts,
            [3000, 2000, 1000],
            "kept from their first attempt"
        );
        assert_eq!(value["subnets"][0]["key"], "192.0.2.0/24");
        assert_eq!(value["subnets"][0]["attempts"], 6000);
        let kept = peers.len() as u64 + value["peers_omitted"].as_u64().unwrap();
        assert_eq!(kept, KEPT, "peers kept");
        let kept = value["subnets"].as_array().unwrap().len() as u64
            + value["subnets_omitted"].as_u64().unwrap();
        assert_eq!(kept, KEPT, "subnets kept");
        let distinct = u64::from(FLOOD) + 3;
        assert_eq!(value["peers_merged"], distinct - KEPT);
        assert_eq!(value["subnets_merged"], u64::from(FLOOD) + 1 - KEPT);
        let merged_attempts = value["peers_merged_attempts"].as_u64().unwrap();
        assert!(
            (u64::from(FLOOD) - KEPT..u64::from(FLOOD)).contains(&merged_attempts),
            "{merged_attempts}"
        );
        out.clear();
        write_summary(&mut out, &summary, Format::Human, 10);
        assert!(out.len() < 8 * 1024, "{} bytes", out.len());
        let said = format!(
            "\n... {} peers merged beyond the {KEPT} kept per side: {merged_attempts} attempts in no row\n",
            distinct - KEPT
        );
        assert!(out.contains(&said), "{out}");
    }
}
