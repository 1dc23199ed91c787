//! The agent's JSON records, parsed strictly: every field of the contract
//! must be present with its type, so a malformed record fails the test with
//! the record shown.
use std::net::IpAddr;

use anyhow::{Context, Result, anyhow, bail, ensure};
use serde_json::Value;

use crate::Family;

/// The state names the agent may print (kernel style).
pub const TCP_STATES: &[&str] = &[
    "ESTABLISHED",
    "SYN_SENT",
    "SYN_RECV",
    "FIN_WAIT1",
    "FIN_WAIT2",
    "TIME_WAIT",
    "CLOSE",
    "CLOSE_WAIT",
    "LAST_ACK",
    "LISTEN",
    "CLOSING",
];

/// Where a transition ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskContext {
    Process,
    Softirq,
}

/// A `{"type":"state",...}` record: one TCP state transition.
#[derive(Clone, Debug)]
pub struct Transition {
    pub id: u64,
    pub ts_ns: u64,
    /// The socket's network namespace inode.
    pub netns: u32,
    pub family: Family,
    pub saddr: IpAddr,
    pub sport: u16,
    pub daddr: IpAddr,
    pub dport: u16,
    pub old_state: String,
    pub new_state: String,
    pub pid: Option<u32>,
    pub comm: Option<String>,
    pub context: TaskContext,
    pub old_state_ms: Option<f64>,
    /// The record as printed.
    pub raw: Value,
}

impl Transition {
    /// Parses a `state` record; any deviation from the contract is an error
    /// showing the record.
    pub fn from_value(value: &Value) -> Result<Self> {
        Self::parse(value).with_context(|| format!("malformed state record: {value}"))
    }

    fn parse(value: &Value) -> Result<Self> {
        ensure!(record_type(value) == Some("state"), "not a state record");
        let Endpoints {
            netns,
            family,
            saddr,
            sport,
            daddr,
            dport,
            pid,
            comm,
        } = Endpoints::parse(value)?;
        let context = match str_field(value, "context")? {
            "process" => TaskContext::Process,
            "softirq" => TaskContext::Softirq,
            other => bail!("context {other:?} is neither \"process\" nor \"softirq\""),
        };
        let old_state_ms = match field(value, "old_state_ms")? {
            Value::Null => None,
            Value::Number(number) => {
                let ms = number
                    .as_f64()
                    .ok_or_else(|| anyhow!("old_state_ms is not an f64"))?;
                ensure!(ms.is_finite(), "old_state_ms is not finite");
                Some(ms)
            }
            other => bail!("old_state_ms is {other}, not a number or null"),
        };
        Ok(Transition {
            id: u64_field(value, "id")?,
            ts_ns: u64_field(value, "ts_ns")?,
            netns,
            family,
            saddr,
            sport,
            daddr,
            dport,
            old_state: state_field(value, "old_state")?,
            new_state: state_field(value, "new_state")?,
            pid,
            comm,
            context,
            old_state_ms,
            raw: value.clone(),
        })
    }

    /// `OLD->NEW`, for messages and comparisons.
    pub fn arrow(&self) -> String {
        format!("{}->{}", self.old_state, self.new_state)
    }

    /// Whether this is the transition `old`->`new`.
    pub fn is(&self, old: &str, new: &str) -> bool {
        self.old_state == old && self.new_state == new
    }
}

/// A `{"type":"socket",...}` record: a socket that existed at start-up
/// (`--list-existing`).
#[derive(Clone, Debug)]
pub struct SocketRecord {
    pub id: u64,
    /// The socket's network namespace inode.
    pub netns: u32,
    pub family: Family,
    pub saddr: IpAddr,
    pub sport: u16,
    pub daddr: IpAddr,
    pub dport: u16,
    pub state: String,
    pub pid: Option<u32>,
    pub comm: Option<String>,
    /// The record as printed.
    pub raw: Value,
}

impl SocketRecord {
    /// Parses a `socket` record; any deviation from the contract is an error
    /// showing the record.
    pub fn from_value(value: &Value) -> Result<Self> {
        Self::parse(value).with_context(|| format!("malformed socket record: {value}"))
    }

    fn parse(value: &Value) -> Result<Self> {
        ensure!(record_type(value) == Some("socket"), "not a socket record");
        let Endpoints {
            netns,
            family,
            saddr,
            sport,
            daddr,
            dport,
            pid,
            comm,
        } = Endpoints::parse(value)?;
        Ok(SocketRecord {
            id: u64_field(value, "id")?,
            netns,
            family,
            saddr,
            sport,
            daddr,
            dport,
            state: state_field(value, "state")?,
            pid,
            comm,
            raw: value.clone(),
        })
    }
}

/// A `{"type":"handshake",...}` record: one resolved handshake attempt.
#[derive(Clone, Debug)]
pub struct Handshake {
    pub ts_ns: u64,
    pub side: String,
    /// The socket's network namespace inode.
    pub netns: u32,
    pub family: Family,
    pub saddr: IpAddr,
    pub sport: u16,
    pub daddr: IpAddr,
    pub dport: u16,
    pub pid: Option<u32>,
    pub comm: Option<String>,
    pub outcome: String,
    pub error: Option<String>,
    pub retransmits: u32,
    pub retransmit_times_ms: Option<Vec<f64>>,
    pub duration_ms: Option<f64>,
    /// The record as printed.
    pub raw: Value,
}

/// Outcomes the agent may print.
pub const OUTCOMES: &[&str] = &[
    "established",
    "timeout",
    "refused",
    "unreachable",
    "aborted",
    "no_local_port",
    "completed",
    "expired",
];

impl Handshake {
    /// Parses a `handshake` record; any deviation from the contract is an
    /// error showing the record.
    pub fn from_value(value: &Value) -> Result<Self> {
        Self::parse(value).with_context(|| format!("malformed handshake record: {value}"))
    }

    fn parse(value: &Value) -> Result<Self> {
        ensure!(
            record_type(value) == Some("handshake"),
            "type is not handshake"
        );
        let side = str_field(value, "side")?.to_owned();
        ensure!(side == "client" || side == "server", "side {side:?}");
        let outcome = str_field(value, "outcome")?.to_owned();
        ensure!(OUTCOMES.contains(&outcome.as_str()), "outcome {outcome:?}");
        let Endpoints {
            netns,
            family,
            saddr,
            sport,
            daddr,
            dport,
            pid,
            comm,
        } = Endpoints::parse(value)?;
        let times = match field(value, "retransmit_times_ms")? {
            Value::Null => None,
            Value::Array(items) => Some(
                items
                    .iter()
                    .map(|t| t.as_f64().ok_or_else(|| anyhow!("retransmit time {t}")))
                    .collect::<Result<Vec<_>>>()?,
            ),
            other => bail!("retransmit_times_ms is {other}"),
        };
        let retransmits = u32::try_from(u64_field(value, "retransmits")?)?;
        if let Some(times) = &times {
            ensure!(
                times.len() as u32 <= retransmits,
                "more retransmit times than retransmits"
            );
        }
        Ok(Handshake {
            ts_ns: u64_field(value, "ts_ns")?,
            side,
            netns,
            family,
            saddr,
            sport,
            daddr,
            dport,
            pid,
            comm,
            outcome,
            error: match field(value, "error")? {
                Value::Null => None,
                Value::String(error) => Some(error.clone()),
                other => bail!("error is {other}, not a string or null"),
            },
            retransmits,
            retransmit_times_ms: times,
            duration_ms: match field(value, "duration_ms")? {
                Value::Null => None,
                other => Some(
                    other
                        .as_f64()
                        .ok_or_else(|| anyhow!("duration_ms is {other}"))?,
                ),
            },
            raw: value.clone(),
        })
    }
}

/// A `{"type":"time_wait",...}` record: one timewait socket that is gone.
#[derive(Clone, Debug)]
pub struct TimeWait {
    pub ts_ns: u64,
    /// The socket's network namespace inode.
    pub netns: u32,
    pub family: Family,
    pub saddr: IpAddr,
    pub sport: u16,
    pub daddr: IpAddr,
    pub dport: u16,
    pub pid: Option<u32>,
    pub comm: Option<String>,
    /// `expired`, `reused`, `killed` or `teardown`.
    pub end: String,
    pub lifetime_ms: Option<f64>,
    pub lifetime_error_ms: f64,
    pub entered_ts_ns: Option<u64>,
    /// The record as printed.
    pub raw: Value,
}

/// How a timewait socket may end.
pub const TIME_WAIT_ENDS: &[&str] = &["expired", "reused", "killed", "teardown"];

impl TimeWait {
    /// Parses a `time_wait` record; any deviation from the contract is an
    /// error showing the record.
    pub fn from_value(value: &Value) -> Result<Self> {
        Self::parse(value).with_context(|| format!("malformed time_wait record: {value}"))
    }

    fn parse(value: &Value) -> Result<Self> {
        ensure!(
            record_type(value) == Some("time_wait"),
            "type is not time_wait"
        );
        let end = str_field(value, "end")?.to_owned();
        ensure!(TIME_WAIT_ENDS.contains(&end.as_str()), "end {end:?}");
        let Endpoints {
            netns,
            family,
            saddr,
            sport,
            daddr,
            dport,
            pid,
            comm,
        } = Endpoints::parse(value)?;
        let lifetime_error_ms = f64_field(value, "lifetime_error_ms")?;
        ensure!(lifetime_error_ms >= 0.0, "negative lifetime_error_ms");
        let ts_ns = u64_field(value, "ts_ns")?;
        let entered_ts_ns = optional(value, "entered_ts_ns", Value::as_u64)?;
        let lifetime_ms = optional(value, "lifetime_ms", Value::as_f64)?;
        ensure!(
            lifetime_ms.is_some() == entered_ts_ns.is_some(),
            "a lifetime needs an entry time and the other way round"
        );
        if let Some(entered) = entered_ts_ns {
            ensure!(entered <= ts_ns, "ended before it entered");
        }
        Ok(TimeWait {
            ts_ns,
            netns,
            family,
            saddr,
            sport,
            daddr,
            dport,
            pid,
            comm,
            end,
            lifetime_ms,
            lifetime_error_ms,
            entered_ts_ns,
            raw: value.clone(),
        })
    }
}

/// A `{"type":"close_wait",...}` record: a socket left in CLOSE-WAIT.
#[derive(Clone, Debug)]
pub struct CloseWait {
    pub ts_ns: u64,
    /// The socket's network namespace inode.
    pub netns: u32,
    pub family: Family,
    pub saddr: IpAddr,
    pub sport: u16,
    pub daddr: IpAddr,
    pub dport: u16,
    pub pid: Option<u32>,
    pub comm: Option<String>,
    /// `stuck` or `closed`.
    pub status: String,
    pub age_ms: f64,
    pub age_is_lower_bound: bool,
    pub raw: Value,
}

impl CloseWait {
    pub fn from_value(value: &Value) -> Result<Self> {
        Self::parse(value).with_context(|| format!("malformed close_wait record: {value}"))
    }

    fn parse(value: &Value) -> Result<Self> {
        ensure!(
            record_type(value) == Some("close_wait"),
            "type is not close_wait"
        );
        let status = str_field(value, "status")?.to_owned();
        ensure!(status == "stuck" || status == "closed", "status {status:?}");
        let Endpoints {
            netns,
            family,
            saddr,
            sport,
            daddr,
            dport,
            pid,
            comm,
        } = Endpoints::parse(value)?;
        Ok(CloseWait {
            ts_ns: u64_field(value, "ts_ns")?,
            netns,
            family,
            saddr,
            sport,
            daddr,
            dport,
            pid,
            comm,
            status,
            age_ms: f64_field(value, "age_ms")?,
            age_is_lower_bound: field(value, "age_is_lower_bound")?
                .as_bool()
                .ok_or_else(|| anyhow!("age_is_lower_bound is not a boolean"))?,
            raw: value.clone(),
        })
    }
}

// Loose accessors, for filtering the stream before parsing strictly.

/// The record's `type`.
pub fn record_type(value: &Value) -> Option<&str> {
    value.get("type")?.as_str()
}

/// Whether the record is of type `kind`.
pub fn is_type(value: &Value, kind: &str) -> bool {
    record_type(value) == Some(kind)
}

/// A port field (`sport`/`dport`), if present and a number.
pub fn port(value: &Value, key: &str) -> Option<u64> {
    value.get(key)?.as_u64()
}

/// Whether the record's `family` is `family`.
pub fn has_family(value: &Value, family: Family) -> bool {
    value.get("family").and_then(Value::as_str) == Some(family.json_name())
}

/// A state record with this family and `port` as its local or remote port.
pub fn is_state_on_port(value: &Value, family: Family, port: u16) -> bool {
    let port = u64::from(port);
    is_type(value, "state")
        && has_family(value, family)
        && (self::port(value, "sport") == Some(port) || self::port(value, "dport") == Some(port))
}

/// A state record `old`->`new` from local port `sport` to remote port `dport`.
pub fn is_transition(value: &Value, old: &str, new: &str, sport: u16, dport: u16) -> bool {
    is_type(value, "state")
        && value.get("old_state").and_then(Value::as_str) == Some(old)
        && value.get("new_state").and_then(Value::as_str) == Some(new)
        && port(value, "sport") == Some(u64::from(sport))
        && port(value, "dport") == Some(u64::from(dport))
}

// Strict field parsers.

/// The endpoints and owner every socket record carries.
struct Endpoints {
    netns: u32,
    family: Family,
    saddr: IpAddr,
    sport: u16,
    daddr: IpAddr,
    dport: u16,
    pid: Option<u32>,
    comm: Option<String>,
}

impl Endpoints {
    fn parse(value: &Value) -> Result<Self> {
        let family = family_field(value)?;
        let netns = u64_field(value, "netns")?;
        ensure!(netns != 0, "netns 0: the kernel side could not read it");
        Ok(Endpoints {
            netns: u32::try_from(netns).context("netns is not a 32-bit inode")?,
            family,
            saddr: addr_field(value, "saddr", family)?,
            sport: port_field(value, "sport")?,
            daddr: addr_field(value, "daddr", family)?,
            dport: port_field(value, "dport")?,
            pid: pid_field(value)?,
            comm: comm_field(value)?,
        })
    }
}

fn field<'a>(value: &'a Value, key: &str) -> Result<&'a Value> {
    value
        .get(key)
        .ok_or_else(|| anyhow!("field {key:?} is missing"))
}

fn u64_field(value: &Value, key: &str) -> Result<u64> {
    field(value, key)?
        .as_u64()
        .ok_or_else(|| anyhow!("{key} is not an unsigned integer"))
}

fn f64_field(value: &Value, key: &str) -> Result<f64> {
    field(value, key)?
        .as_f64()
        .ok_or_else(|| anyhow!("{key} is not a number"))
}

/// A field that is null or what `get` reads.
fn optional<T>(value: &Value, key: &str, get: impl Fn(&Value) -> Option<T>) -> Result<Option<T>> {
    match field(value, key)? {
        Value::Null => Ok(None),
        other => get(other)
            .map(Some)
            .ok_or_else(|| anyhow!("{key} is {other}")),
    }
}

fn str_field<'a>(value: &'a Value, key: &str) -> Result<&'a str> {
    field(value, key)?
        .as_str()
        .ok_or_else(|| anyhow!("{key} is not a string"))
}

fn port_field(value: &Value, key: &str) -> Result<u16> {
    let port = u64_field(value, key)?;
    u16::try_from(port).map_err(|_| anyhow!("{key} {port} does not fit a u16"))
}

fn family_field(value: &Value) -> Result<Family> {
    match str_field(value, "family")? {
        "ipv4" => Ok(Family::V4),
        "ipv6" => Ok(Family::V6),
        other => bail!("family {other:?} is neither \"ipv4\" nor \"ipv6\""),
    }
}

fn addr_field(value: &Value, key: &str, family: Family) -> Result<IpAddr> {
    let text = str_field(value, key)?;
    let addr: IpAddr = text
        .parse()
        .map_err(|err| anyhow!("{key} {text:?} is not an IP address: {err}"))?;
    ensure!(
        addr.is_ipv4() == (family == Family::V4),
        "{key} {text:?} does not match family {}",
        family.json_name()
    );
    Ok(addr)
}

fn state_field(value: &Value, key: &str) -> Result<String> {
    let state = str_field(value, key)?;
    ensure!(
        TCP_STATES.contains(&state),
        "{key} {state:?} is not a known TCP state"
    );
    Ok(state.to_owned())
}

fn pid_field(value: &Value) -> Result<Option<u32>> {
    match field(value, "pid")? {
        Value::Null => Ok(None),
        pid => {
            let pid = pid
                .as_u64()
                .ok_or_else(|| anyhow!("pid is not an integer or null"))?;
            Ok(Some(
                u32::try_from(pid).map_err(|_| anyhow!("pid {pid} does not fit a u32"))?,
            ))
        }
    }
}

fn comm_field(value: &Value) -> Result<Option<String>> {
    match field(value, "comm")? {
        Value::Null => Ok(None),
        Value::String(comm) => Ok(Some(comm.clone())),
        other => bail!("comm is {other}, not a string or null"),
    }
}
