//! What `socktrace top` shows, without a terminal or a clock: the last
//! [`HISTORY`] overviews (one a refresh), the per-second rates between
//! consecutive ones, and what the user chose with the keys: which remote
//! table, sorted how, filtered by what. [`crate::top::screen`] draws it,
//! [`crate::top::terminal`] feeds it overviews and keys.
use std::{collections::VecDeque, net::IpAddr, time::Duration};

use crate::{
    model::tcp_state::TcpState,
    state::overview::{Overview, RemoteCount, Totals},
};

/// Overviews kept for the sparklines: one a refresh.
pub const HISTORY: usize = 60;

/// How often the screen asks for a new overview.
pub const REFRESH: Duration = Duration::from_secs(1);

/// The states shown, in screen order. NEW_SYN_RECV is counted as SYN-RECV
/// and CLOSE is never held, so neither has a line.
pub const STATES: [TcpState; 10] = [
    TcpState::Established,
    TcpState::SynSent,
    TcpState::SynRecv,
    TcpState::FinWait1,
    TcpState::FinWait2,
    TcpState::TimeWait,
    TcpState::CloseWait,
    TcpState::LastAck,
    TcpState::Closing,
    TcpState::Listen,
];

/// A per-second rate of one of the [`Totals`] counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rate {
    /// Connections opened.
    NewConnections,
    /// Handshakes that failed.
    HandshakeFailures,
    /// Connections closed into TIME-WAIT.
    TimeWaitEntries,
    /// Records the kernel could not hand over.
    LostEvents,
}

impl Rate {
    /// Every rate, in screen order.
    pub const ALL: [Rate; 4] = [
        Rate::NewConnections,
        Rate::HandshakeFailures,
        Rate::TimeWaitEntries,
        Rate::LostEvents,
    ];

    /// What the screen calls it.
    pub fn label(self) -> &'static str {
        match self {
            Rate::NewConnections => "new conn/s",
            Rate::HandshakeFailures => "hs failed/s",
            Rate::TimeWaitEntries => "TIME-WAIT/s",
            Rate::LostEvents => "lost events/s",
        }
    }

    fn total(self, totals: &Totals) -> u64 {
        match self {
            Rate::NewConnections => totals.new_connections,
            Rate::HandshakeFailures => totals.handshake_failures,
            Rate::TimeWaitEntries => totals.time_wait_entries,
            Rate::LostEvents => totals.lost_events,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Which of the overview's remote lists the table shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoteTable {
    /// Remote addresses by connections held.
    Remotes,
    /// Remote subnets by connections held.
    Subnets,
    /// Remote subnets by connections opened in the overview's window.
    OpeningSubnets,
}

impl RemoteTable {
    /// The one `Tab` switches to.
    pub fn next(self) -> RemoteTable {
        match self {
            RemoteTable::Remotes => RemoteTable::Subnets,
            RemoteTable::Subnets => RemoteTable::OpeningSubnets,
            RemoteTable::OpeningSubnets => RemoteTable::Remotes,
        }
    }

    /// The table's title.
    pub fn title(self) -> &'static str {
        match self {
            RemoteTable::Remotes => "Remotes holding connections",
            RemoteTable::Subnets => "Subnets holding connections",
            RemoteTable::OpeningSubnets => "Subnets opening connections",
        }
    }

    /// Its entries in `overview`, as the tracer ranked them.
    pub fn entries(self, overview: &Overview) -> &[RemoteCount] {
        match self {
            RemoteTable::Remotes => &overview.top_remotes,
            RemoteTable::Subnets => &overview.top_subnets,
            RemoteTable::OpeningSubnets => &overview.top_opening_subnets,
        }
    }
}

/// The order of the remote table's rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sort {
    /// Most connections first; ties by address.
    Count,
    /// By address (IPv4 before IPv6, numerically), then prefix length.
    Address,
}

impl Sort {
    /// The one `s` switches to.
    pub fn next(self) -> Sort {
        match self {
            Sort::Count => Sort::Address,
            Sort::Address => Sort::Count,
        }
    }

    /// What the table title calls it.
    pub fn label(self) -> &'static str {
        match self {
            Sort::Count => "count",
            Sort::Address => "address",
        }
    }
}

/// A key press, as far as the view cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    /// A printable character.
    Char(char),
    /// Return.
    Enter,
    /// Escape.
    Esc,
    /// Backspace.
    Backspace,
    /// Tab.
    Tab,
    /// Ctrl-C (raw mode delivers it as a key, not as SIGINT).
    CtrlC,
}

/// What the terminal loop does after a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Redraw and go on.
    Continue,
    /// Restore the terminal and return.
    Quit,
}

/// One refresh, as the sparklines need it.
#[derive(Clone, Debug)]
struct Sample {
    states: [u64; TcpState::COUNT],
    /// Per second since the previous sample; `None` for the first one.
    rates: Option<[f64; Rate::ALL.len()]>,
}

/// The state of the `top` screen.
#[derive(Clone, Debug)]
pub struct TopView {
    label: String,
    /// Oldest first, at most [`HISTORY`].
    samples: VecDeque<Sample>,
    latest: Option<Overview>,
    table: RemoteTable,
    sort: Sort,
    filter: String,
    /// The filter being typed after `/`, shown live until Enter or Esc.
    editing: Option<String>,
}

impl TopView {
    /// An empty view; `label` names what is watched (a namespace) in the
    /// title line.
    pub fn new(label: String) -> TopView {
        TopView {
            label,
            samples: VecDeque::with_capacity(HISTORY),
            latest: None,
            table: RemoteTable::Remotes,
            sort: Sort::Count,
            filter: String::new(),
            editing: None,
        }
    }

    /// What is watched, as given to [`TopView::new`].
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Adds the overview of one refresh. Its rates are the counters'
    /// growth since the previous overview, per second. An overview that is
    /// not later than the previous one, or with a counter below the
    /// previous one's (the agent restarted), starts the history over.
    pub fn push(&mut self, overview: Overview) {
        let rates = match &self.latest {
            Some(previous) => rates_between(previous, &overview),
            None => None,
        };
        if rates.is_none() {
            self.samples.clear();
        }
        if self.samples.len() == HISTORY {
            self.samples.pop_front();
        }
        self.samples.push_back(Sample {
            states: overview.states,
            rates,
        });
        self.latest = Some(overview);
    }

    /// The last overview pushed.
    pub fn latest(&self) -> Option<&Overview> {
        self.latest.as_ref()
    }

    /// Sockets in `state` at each refresh kept, oldest first.
    pub fn state_history(&self, state: TcpState) -> Vec<u64> {
        self.samples
            .iter()
            .map(|sample| sample.states[state.index()])
            .collect()
    }

    /// `rate` between the last two overviews; `None` until there are two
    /// (after the first one or a restart).
    pub fn rate(&self, rate: Rate) -> Option<f64> {
        self.samples
            .back()
            .and_then(|sample| sample.rates)
            .map(|rates| rates[rate.index()])
    }

    /// `rate` at each refresh kept that has one, oldest first.
    pub fn rate_history(&self, rate: Rate) -> Vec<f64> {
        self.samples
            .iter()
            .filter_map(|sample| sample.rates)
            .map(|rates| rates[rate.index()])
            .collect()
    }

    /// The remote list shown.
    pub fn table(&self) -> RemoteTable {
        self.table
    }

    /// The order of its rows.
    pub fn sort(&self) -> Sort {
        self.sort
    }

    /// The filter in effect: the text being typed while editing, else the
    /// applied one (empty: none).
    pub fn filter(&self) -> &str {
        self.editing.as_deref().unwrap_or(&self.filter)
    }

    /// Whether a filter is being typed.
    pub fn editing(&self) -> bool {
        self.editing.is_some()
    }

    /// The rows of the remote table: the entries of the latest overview
    /// whose text contains the filter (ignoring ASCII case), sorted.
    pub fn rows(&self) -> Vec<&RemoteCount> {
        let Some(overview) = &self.latest else {
            return Vec::new();
        };
        let filter = self.filter().to_ascii_lowercase();
        let mut rows: Vec<&RemoteCount> = self
            .table
            .entries(overview)
            .iter()
            .filter(|row| row.remote.to_ascii_lowercase().contains(&filter))
            .collect();
        match self.sort {
            Sort::Count => rows.sort_by(|a, b| {
                b.count
                    .cmp(&a.count)
                    .then_with(|| address_key(&a.remote).cmp(&address_key(&b.remote)))
            }),
            Sort::Address => rows.sort_by_cached_key(|row| address_key(&row.remote)),
        }
        rows
    }

    /// Handles a key: `q`, Esc or Ctrl-C quit; `s` switches the sort, Tab
    /// the table, `c` clears the filter; `/` starts typing a filter, which
    /// Enter applies and Esc abandons.
    pub fn key(&mut self, key: Key) -> Action {
        if key == Key::CtrlC {
            return Action::Quit;
        }
        if let Some(text) = &mut self.editing {
            match key {
                Key::Char(c) if !c.is_control() => text.push(c),
                Key::Backspace => {
                    text.pop();
                }
                Key::Enter => self.filter = self.editing.take().unwrap_or_default(),
                Key::Esc => self.editing = None,
                _ => {}
            }
            return Action::Continue;
        }
        match key {
            Key::Char('q') | Key::Esc => return Action::Quit,
            Key::Char('s') => self.sort = self.sort.next(),
            Key::Tab => self.table = self.table.next(),
            Key::Char('/') => self.editing = Some(self.filter.clone()),
            Key::Char('c') => self.filter.clear(),
            _ => {}
        }
        Action::Continue
    }
}

/// Per-second growth of each counter from `previous` to `current`, or
/// `None` if `current` is not a continuation of `previous`.
fn rates_between(previous: &Overview, current: &Overview) -> Option<[f64; Rate::ALL.len()]> {
    let elapsed_ns = current
        .at_ns
        .checked_sub(previous.at_ns)
        .filter(|&ns| ns > 0)?;
    let seconds = elapsed_ns as f64 / 1e9;
    let mut rates = [0.0; Rate::ALL.len()];
    for rate in Rate::ALL {
        let grown = rate
            .total(&current.totals)
            .checked_sub(rate.total(&previous.totals))?;
        rates[rate.index()] = grown as f64 / seconds;
    }
    Some(rates)
}

/// Sort key of an address (`192.0.2.7`) or subnet (`192.0.2.0/24`):
/// numeric where it parses, by text after all addresses otherwise.
fn address_key(remote: &str) -> (bool, Option<(IpAddr, u8)>, &str) {
    let (address, prefix) = remote.split_once('/').unwrap_or((remote, ""));
    let parsed = address.parse::<IpAddr>().ok().and_then(|ip| {
        let prefix = match prefix {
            "" => 128,
            text => text.parse().ok()?,
        };
        Some((ip, prefix))
    });
    (parsed.is_none(), parsed, remote)
}

#[cfg(test)]
mod tests;
