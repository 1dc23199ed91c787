//! The filter `ss` accepts after its options, for `socktrace ss`: leading
//! state words (`ss.c`'s `scan_state`) and then an expression
//! (`ssfilter.y`):
//!
//! ```text
//! [state NAME | exclude NAME]... [EXPRESSION]
//! ```
//!
//! `state` and `exclude` choose TCP states ([`StateSet`]). The expression
//! ([`Expr`]) tests addresses and ports: `dst`/`src HOST`, `dport`/`sport
//! [OP] PORT`, combined with `not`, `and` (or plain juxtaposition), `or` and
//! parentheses. `not` binds tighter than `and`, and `and` tighter than `or`
//! (ss's own grammar reads `and` and `or` left to right at one level).
//! Parentheses and `not` nest at most [`MAX_NESTING`] deep.
//! [`parse`] reads the words as the shell split them and points at the
//! offending token when they do not parse ([`FilterError`]).
mod parse;
#[cfg(test)]
mod tests;

use std::{collections::HashMap, net::SocketAddr, ops::Range};

use crate::{model::cidr::Cidr, model::tcp_state::TcpState};

pub use self::parse::{MAX_NESTING, parse};

/// A set of TCP states as `ss` selects them. Its SYN-RECV covers both
/// [`TcpState::SynRecv`] and request sockets ([`TcpState::NewSynRecv`]),
/// which `ss` shows as one state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateSet(u16);

/// The bit of `state`: its [`TcpState::index`], with request sockets on
/// SYN-RECV's bit.
const fn bit(state: TcpState) -> u16 {
    let state = match state {
        TcpState::NewSynRecv => TcpState::SynRecv,
        other => other,
    };
    1 << (state as u16 - 1)
}

impl StateSet {
    /// Every state (`state all`, `ss -a`).
    pub const ALL: StateSet = StateSet::of(&TcpState::ALL);

    /// What `ss` lists without `-a` or `-l`: every state but LISTEN,
    /// CLOSE, TIME-WAIT and SYN-RECV.
    pub const CONNECTED_DEFAULT: StateSet = StateSet::ALL.without(StateSet::of(&[
        TcpState::Listen,
        TcpState::Close,
        TcpState::TimeWait,
        TcpState::SynRecv,
    ]));

    /// What `ss -l` lists: LISTEN and CLOSE.
    pub const LISTENING: StateSet = StateSet::of(&[TcpState::Listen, TcpState::Close]);

    const fn of(states: &[TcpState]) -> StateSet {
        let mut bits = 0;
        let mut i = 0;
        while i < states.len() {
            bits |= bit(states[i]);
            i += 1;
        }
        StateSet(bits)
    }

    const fn union(self, other: StateSet) -> StateSet {
        StateSet(self.0 | other.0)
    }

    const fn without(self, other: StateSet) -> StateSet {
        StateSet(self.0 & !other.0)
    }

    /// Whether sockets in `state` are selected.
    pub fn contains(self, state: TcpState) -> bool {
        self.0 & bit(state) != 0
    }

    /// The state, when exactly one of the states `ss` shows is selected
    /// (`ss` then leaves out its State column). SYN-RECV is
    /// [`TcpState::SynRecv`].
    pub fn single(self) -> Option<TcpState> {
        (self.0.count_ones() == 1).then(|| TcpState::ALL[self.0.trailing_zeros() as usize])
    }

    /// The selected states in kernel order; [`TcpState::NewSynRecv`] comes
    /// with [`TcpState::SynRecv`].
    pub fn iter(self) -> impl Iterator<Item = TcpState> {
        TcpState::ALL
            .into_iter()
            .filter(move |&state| self.contains(state))
    }
}

/// Which end of a connection a condition looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The local end (`src`, `sport`).
    Local,
    /// The remote end (`dst`, `dport`).
    Remote,
}

impl Side {
    fn pick(self, local: SocketAddr, remote: SocketAddr) -> SocketAddr {
        match self {
            Side::Local => local,
            Side::Remote => remote,
        }
    }
}

/// An address prefix and a port, either of which may be any (`*`). IPv4
/// prefixes match IPv4-mapped IPv6 addresses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostCond {
    /// The prefix the address must be in; `None` for any address.
    pub prefix: Option<Cidr>,
    /// The port; `None` for any port.
    pub port: Option<u16>,
}

impl HostCond {
    fn matches(&self, addr: SocketAddr) -> bool {
        self.port.is_none_or(|port| port == addr.port())
            && self.prefix.is_none_or(|prefix| prefix.contains(addr.ip()))
    }
}

/// How `dport`/`sport` compare a port with the given one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortOp {
    /// `<`, `lt`
    Lt,
    /// `<=`, `le`, `leq`
    Le,
    /// `>`, `gt`
    Gt,
    /// `>=`, `ge`, `geq`
    Ge,
}

impl PortOp {
    fn holds(self, port: u16, than: u16) -> bool {
        match self {
            PortOp::Lt => port < than,
            PortOp::Le => port <= than,
            PortOp::Gt => port > than,
            PortOp::Ge => port >= than,
        }
    }
}

/// A filter expression over a socket's two ends. Chains of `and` and `or`
/// are one node each, so a tree is no deeper than the filter's nesting of
/// `(` and `not` ([`MAX_NESTING`]): matching and dropping it recurse that
/// deep at most.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expr {
    /// One end is in the prefix and on the port: `dst`/`src HOST`, and
    /// `dport`/`sport` with `=` or no operator.
    Host(Side, HostCond),
    /// One end's port compares with the given one: `dport > :1024`.
    Port(Side, PortOp, u16),
    /// `not`, `!`; also `!=` and its spellings.
    Not(Box<Expr>),
    /// Two or more terms joined by `and`, `&&`, `&`, or side by side.
    And(Vec<Expr>),
    /// Two or more terms joined by `or`, `||`, `|`.
    Or(Vec<Expr>),
}

impl Expr {
    /// Whether a socket with these ends passes.
    pub fn matches(&self, local: SocketAddr, remote: SocketAddr) -> bool {
        match self {
            Expr::Host(side, cond) => cond.matches(side.pick(local, remote)),
            Expr::Port(side, op, port) => op.holds(side.pick(local, remote).port(), *port),
            Expr::Not(inner) => !inner.matches(local, remote),
            Expr::And(terms) => terms.iter().all(|term| term.matches(local, remote)),
            Expr::Or(terms) => terms.iter().any(|term| term.matches(local, remote)),
        }
    }
}

/// A parsed `ss` filter: the states, and the expression if one was given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SsQuery {
    /// The states selected by `state`/`exclude`, or the caller's default.
    pub states: StateSet,
    /// The address and port expression; `None` passes every socket.
    pub expr: Option<Expr>,
}

impl SsQuery {
    /// Whether a socket in `state` with these ends passes.
    pub fn matches(&self, state: TcpState, local: SocketAddr, remote: SocketAddr) -> bool {
        self.states.contains(state)
            && self
                .expr
                .as_ref()
                .is_none_or(|expr| expr.matches(local, remote))
    }
}

/// Why the filter words did not parse: a one-line message naming the
/// offending token, and where that token is in the words joined with single
/// spaces.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FilterError {
    message: String,
    span: Range<usize>,
    text: String,
}

impl FilterError {
    /// The byte range of the offending token in [`FilterError::text`];
    /// empty, at the end of the text, when something is missing there.
    pub fn span(&self) -> Range<usize> {
        self.span.clone()
    }

    /// The filter words joined with single spaces.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Two lines: the text, and `^` under the offending token.
    pub fn pointer(&self) -> String {
        let indent = self.text[..self.span.start].chars().count();
        let width = self.text[self.span.clone()].chars().count().max(1);
        format!("{}\n{}{}", self.text, " ".repeat(indent), "^".repeat(width))
    }
}

/// Common TCP services, for when `/etc/services` cannot be read.
const BUILTIN_SERVICES: &[(&str, u16)] = &[
    ("ftp-data", 20),
    ("ftp", 21),
    ("ssh", 22),
    ("telnet", 23),
    ("smtp", 25),
    ("domain", 53),
    ("http", 80),
    ("www", 80),
    ("kerberos", 88),
    ("pop3", 110),
    ("sunrpc", 111),
    ("imap2", 143),
    ("imap", 143),
    ("bgp", 179),
    ("ldap", 389),
    ("https", 443),
    ("microsoft-ds", 445),
    ("submissions", 465),
    ("submission", 587),
    ("ldaps", 636),
    ("domain-s", 853),
    ("rsync", 873),
    ("imaps", 993),
    ("pop3s", 995),
    ("mysql", 3306),
    ("postgresql", 5432),
    ("http-alt", 8080),
];

/// Resolves TCP service names and aliases (`https`, `www`) through
/// `/etc/services`, read once here, or through a built-in table of common
/// services when that file cannot be read.
pub fn system_services() -> impl Fn(&str) -> Option<u16> {
    let services = std::fs::read_to_string("/etc/services")
        .map(|text| services_from(&text))
        .unwrap_or_else(|_| {
            BUILTIN_SERVICES
                .iter()
                .map(|&(name, port)| (name.to_owned(), port))
                .collect()
        });
    move |name| services.get(name).copied()
}

/// The TCP names and aliases of a file in the `/etc/services` format; the
/// first entry for a name wins, as with `getservbyname`.
fn services_from(text: &str) -> HashMap<String, u16> {
    let mut services = HashMap::new();
    for line in text.lines() {
        let line = line.split_once('#').map_or(line, |(entry, _)| entry);
        let mut fields = line.split_whitespace();
        let (Some(name), Some(port)) = (fields.next(), fields.next()) else {
            continue;
        };
        let Some(port) = port.strip_suffix("/tcp").and_then(|p| p.parse().ok()) else {
            continue;
        };
        for name in std::iter::once(name).chain(fields) {
            services.entry(name.to_owned()).or_insert(port);
        }
    }
    services
}
