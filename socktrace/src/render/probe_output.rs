//! How `socktrace probe` tells a connection: its steps as they happen,
//! with times from the first SYN, then its verdict, and for a run of
//! probes a summary, as lines or JSON records.
use std::net::SocketAddr;

use serde::Serialize;

use crate::{
    probe::narration::{Step, Verdict, What, error_kind},
    probe::report::{ProbeResult, Summary},
    probe::target::{Resolved, Target},
    render::cells::{decimals, endpoint, ms, or_missing},
    render::columns::{Column, Columns},
    render::json::push_record,
    render::output::Format,
    support::errno_name::errno_name,
};

/// A step: its time from the first SYN, then what happened.
fn step_columns() -> Columns {
    Columns::new()
        .with(Column::right("TIME", 13))
        .with(Column::left("STEP", 0).after_gap(2))
}

/// What the name resolved to, when it was a name with more than one
/// address or some left out.
pub fn write_resolved(out: &mut String, target: &Target, resolved: &Resolved, format: Format) {
    let addresses: Vec<String> = resolved
        .addresses
        .iter()
        .map(|a| a.ip().to_string())
        .collect();
    match format {
        Format::Json => {
            #[derive(Serialize)]
            struct ResolvedJson<'a> {
                host: &'a str,
                port: u16,
                addresses: &'a [String],
                left_out: usize,
            }
            push_record(
                out,
                "probe_target",
                &ResolvedJson {
                    host: &target.host,
                    port: target.port,
                    addresses: &addresses,
                    left_out: resolved.left_out,
                },
            );
        }
        Format::Human if addresses.len() > 1 || resolved.left_out > 0 => {
            let left_out = match resolved.left_out {
                0 => String::new(),
                n => format!(" and {n} more, not tried"),
            };
            out.push_str(&format!(
                "{} has {} addresses: {}{left_out}; each is tried until one answers\n",
                target.host,
                addresses.len() + resolved.left_out,
                addresses.join(", "),
            ));
        }
        Format::Human => {}
    }
}

/// The line before a connection's steps.
pub fn write_connecting(out: &mut String, attempt: u32, address: SocketAddr, format: Format) {
    if format == Format::Human {
        out.push_str(&format!(
            "probe {attempt}: connecting to {}\n",
            endpoint(address, false)
        ));
    }
}

pub fn write_step(
    out: &mut String,
    attempt: u32,
    address: SocketAddr,
    step: &Step,
    format: Format,
) {
    match format {
        Format::Human => step_columns().push_line(
            out,
            &[
                or_missing(step.at_ns, |ns| format!("{} ms", decimals(ms(ns), 3))),
                step_text(&step.what),
            ],
        ),
        Format::Json => {
            #[derive(Serialize)]
            struct StepJson {
                attempt: u32,
                address: String,
                /// From the first SYN; null when it was not seen.
                at_ms: Option<f64>,
                step: &'static str,
                local: Option<String>,
                retransmits: Option<u32>,
                errno: Option<String>,
                text: String,
            }
            let (name, local, retransmits, errno) = match &step.what {
                What::SynSent { local } => {
                    ("syn_sent", local.map(|l| endpoint(l, false)), None, None)
                }
                What::SynRetransmit { count } => ("syn_retransmit", None, Some(*count), None),
                What::Established => ("syn_ack_received", None, None, None),
                What::ResetReceived => ("rst_received", None, None, None),
                What::Failed { errno, .. } => ("failed", None, None, errno.map(errno_name)),
                What::NotSent { errno } => {
                    ("not_sent", None, None, Some(errno_name(*errno as u32)))
                }
                What::GaveUp { retransmits } => ("gave_up", None, Some(*retransmits), None),
                What::Closed => ("closed", None, None, None),
            };
            push_record(
                out,
                "probe_step",
                &StepJson {
                    attempt,
                    address: endpoint(address, false),
                    at_ms: step.at_ns.map(ms),
                    step: name,
                    local,
                    retransmits,
                    errno,
                    text: step_text(&step.what),
                },
            );
        }
    }
}

fn step_text(what: &What) -> String {
    match what {
        What::SynSent { local: Some(local) } => {
            format!("SYN sent from {}", endpoint(*local, false))
        }
        What::SynSent { local: None } => "SYN sent".to_owned(),
        What::SynRetransmit { count } => format!("SYN retransmit {count}"),
        What::Established => "SYN-ACK received: connected".to_owned(),
        What::ResetReceived => "RST received".to_owned(),
        What::Failed { errno, .. } => match errno {
            Some(errno) => format!("{} ({})", error_kind(*errno), errno_name(*errno)),
            None => "failed".to_owned(),
        },
        What::NotSent { errno } => format!(
            "no SYN left: connect() failed with {} ({})",
            std::io::Error::from_raw_os_error(*errno).kind(),
            errno_name(*errno as u32)
        ),
        What::GaveUp { retransmits } => {
            format!("no answer after {retransmits} SYN retransmits: gave up (--timeout)")
        }
        What::Closed => "closed".to_owned(),
    }
}

/// The verdict of one probe, with the hint and the TLS report.
pub fn write_result(out: &mut String, target: &Target, result: &ProbeResult, format: Format) {
    match format {
        Format::Human => write_result_human(out, result),
        Format::Json => push_record(out, "probe_result", &ResultJson::new(target, result)),
    }
}

fn write_result_human(out: &mut String, result: &ProbeResult) {
    let errno = or_missing(result.errno, errno_name);
    let detail = match result.verdict {
        Verdict::Reachable => format!(
            "handshake {} ms",
            or_missing(result.handshake_ns, |ns| decimals(ms(ns), 3))
        ),
        Verdict::Refused => format!("{errno}: a RST answered the SYN"),
        Verdict::Timeout => format!("no answer, {} SYN retransmits", result.syn_retransmits),
        Verdict::Unreachable | Verdict::NoLocalPort => match result.errno {
            Some(code) => format!("{} ({errno})", error_kind(code)),
            None => errno,
        },
    };
    out.push_str(&format!(
        "{} {}: {detail}\n",
        endpoint(result.address, false),
        result.verdict.name().replace('_', " "),
    ));
    if let Some(hint) = &result.hint {
        out.push_str(&format!("  {hint}\n"));
    }
    match &result.tls {
        Some(Ok(tls)) => {
            out.push_str(&format!(
                "  TLS: {} {}, handshake {} ms\n  certificate: {}, issued by {}, {}\n  trust: {}\n",
                tls.protocol,
                tls.cipher,
                decimals(ms(tls.handshake_ns), 3),
                tls.subject,
                tls.issuer,
                expiry(tls.days_left),
                match &tls.trust {
                    Ok(()) => "trusted for this name".to_owned(),
                    Err(why) => format!("NOT trusted: {why}"),
                },
            ));
        }
        Some(Err(why)) => out.push_str(&format!("  TLS failed: {why}\n")),
        None => {}
    }
}

fn expiry(days_left: i64) -> String {
    if days_left < 0 {
        format!("expired {} days ago", -days_left)
    } else {
        format!("expires in {days_left} days")
    }
}

#[derive(Serialize)]
struct ResultJson {
    attempt: u32,
    host: String,
    address: String,
    local: Option<String>,
    verdict: &'static str,
    exit_status: u8,
    handshake_ms: Option<f64>,
    syn_retransmits: u32,
    errno: Option<String>,
    hint: Option<String>,
    tls: Option<TlsJson>,
}

#[derive(Serialize)]
struct TlsJson {
    /// Why the handshake failed; the rest is null then.
    error: Option<String>,
    protocol: Option<String>,
    cipher: Option<String>,
    handshake_ms: Option<f64>,
    subject: Option<String>,
    issuer: Option<String>,
    days_left: Option<i64>,
    trusted: bool,
    /// Why the certificate is not trusted.
    untrusted_because: Option<String>,
}

impl ResultJson {
    fn new(target: &Target, result: &ProbeResult) -> Self {
        ResultJson {
            attempt: result.attempt,
            host: target.host.clone(),
            address: endpoint(result.address, false),
            local: result.local.map(|l| endpoint(l, false)),
            verdict: result.verdict.name(),
            exit_status: result.exit_status(),
            handshake_ms: result.handshake_ns.map(ms),
            syn_retransmits: result.syn_retransmits,
            errno: result.errno.map(errno_name),
            hint: result.hint.clone(),
            tls: result.tls.as_ref().map(|tls| match tls {
                Ok(tls) => TlsJson {
                    error: None,
                    protocol: Some(tls.protocol.clone()),
                    cipher: Some(tls.cipher.clone()),
                    handshake_ms: Some(ms(tls.handshake_ns)),
                    subject: Some(tls.subject.clone()),
                    issuer: Some(tls.issuer.clone()),
                    days_left: Some(tls.days_left),
                    trusted: tls.trust.is_ok(),
                    untrusted_because: tls.trust.clone().err(),
                },
                Err(why) => TlsJson {
                    error: Some(why.clone()),
                    protocol: None,
                    cipher: None,
                    handshake_ms: None,
                    subject: None,
                    issuer: None,
                    days_left: None,
                    trusted: false,
                    untrusted_because: None,
                },
            }),
        }
    }
}

/// The end of a run of probes, as ping ends.
pub fn write_summary(out: &mut String, target: &Target, summary: &Summary, format: Format) {
    match format {
        Format::Human => {
            let verdicts: Vec<String> = summary
                .verdicts
                .iter()
                .map(|(verdict, count)| format!("{count} {}", verdict.name().replace('_', " ")))
                .collect();
            let times = [summary.min_ms, summary.median_ms, summary.max_ms]
                .map(|value| or_missing(value, |ms| decimals(ms, 3)))
                .join("/");
            out.push_str(&format!(
                "--- {}:{}: {} probes, {}; handshake min/median/max {times} ms\n",
                target.host,
                target.port,
                summary.probes,
                verdicts.join(", "),
            ));
        }
        Format::Json => {
            #[derive(Serialize)]
            struct SummaryJson {
                host: String,
                port: u16,
                probes: usize,
                verdicts: std::collections::BTreeMap<&'static str, usize>,
                min_ms: Option<f64>,
                median_ms: Option<f64>,
                max_ms: Option<f64>,
                exit_status: u8,
            }
            push_record(
                out,
                "probe_summary",
                &SummaryJson {
                    host: target.host.clone(),
                    port: target.port,
                    probes: summary.probes,
                    verdicts: summary
                        .verdicts
                        .iter()
                        .map(|(v, n)| (v.name(), *n))
                        .collect(),
                    min_ms: summary.min_ms,
                    median_ms: summary.median_ms,
                    max_ms: summary.max_ms,
                    exit_status: summary.exit_status,
                },
            );
        }
    }
}
