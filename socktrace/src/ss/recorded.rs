//! `socktrace replay FILE ss --at TIME`: the live state the agent would
//! have held at that moment, played from the recording, listed as `ss`
//! lists its answer.
use anyhow::bail;

use crate::{
    agent::live_consumer::LiveConsumer,
    event_loop::{Consumer, LoopSummary},
    host::listing::HostListing,
    host::sock_diag::{DiagSocket, DumpRequest},
    kernel::event::Event,
    model::tcp_state::TcpState,
    model::tuple::NetnsInode,
    state::listed_socket::ListedSocket,
    support::clock::WallClock,
};

const NS_PER_DAY: i128 = 86_400_000_000_000;

/// The agent's consumer, keeping each listing's listeners aside for their
/// queues, and when the playback ended.
pub struct SocketsAt {
    live: LiveConsumer,
    listeners: Vec<DiagSocket>,
    ended_ns: u64,
}

impl SocketsAt {
    pub fn new(live: LiveConsumer) -> Self {
        SocketsAt {
            live,
            listeners: Vec::new(),
            ended_ns: 0,
        }
    }

    /// The sockets when the playback ended.
    pub fn sockets(&self) -> Vec<ListedSocket> {
        self.live
            .live()
            .known_listing(&self.listeners, self.ended_ns)
    }
}

impl Consumer for SocketsAt {
    fn event(&mut self, event: &Event, out: &mut String) {
        self.live.event(event, out);
    }

    fn listing_request(&self) -> Option<DumpRequest> {
        let listeners = DumpRequest::states(&[TcpState::Listen]).with_memory();
        Some(match self.live.listing_request() {
            Some(request) => request.union(&listeners),
            None => listeners,
        })
    }

    fn listed(&mut self, listing: HostListing, out: &mut String) {
        self.listeners = listing
            .dumps
            .iter()
            .flat_map(|dump| &dump.sockets)
            .filter(|socket| socket.state == TcpState::Listen)
            .cloned()
            .collect();
        if let Some(request) = self.live.listing_request() {
            self.live.listed(listing.narrowed(&request), out);
        }
    }

    fn namespace_gone(&mut self, netns: NetnsInode, now_ns: u64, out: &mut String) {
        self.live.namespace_gone(netns, now_ns, out);
    }

    fn settle(&mut self, now_ns: u64, out: &mut String) {
        self.live.settle(now_ns, out);
    }

    fn finish(&mut self, now_ns: u64, totals: &LoopSummary, out: &mut String) {
        self.live.finish(now_ns, totals, out);
        self.ended_ns = now_ns;
    }
}

/// `--at`: a time of day as the views print it, `HH:MM:SS[.mmm]` (UTC, the
/// first such moment from `started_ns` on), or `+SECS[.mmm]` from
/// `started_ns`; CLOCK_MONOTONIC nanoseconds.
pub fn parse_at(text: &str, started_ns: u64, clock: &WallClock) -> anyhow::Result<u64> {
    let refused =
        || anyhow::anyhow!("--at {text}: not HH:MM:SS[.mmm] (UTC) nor +SECS[.mmm] from the start");
    if let Some(seconds) = text.strip_prefix('+') {
        let ns = nanoseconds(seconds).ok_or_else(refused)?;
        return Ok(started_ns.saturating_add(ns));
    }
    let parts: Vec<&str> = text.split(':').collect();
    let [h, m, s] = parts[..] else {
        return Err(refused());
    };
    let number = |part: &str, below: u64| {
        (part.len() == 2)
            .then(|| part.parse::<u64>().ok())
            .flatten()
            .filter(|&value| value < below)
    };
    let (Some(h), Some(m)) = (number(h, 24), number(m, 60)) else {
        return Err(refused());
    };
    let seconds = nanoseconds(s).filter(|&ns| ns < 60_000_000_000 && s.len() >= 2);
    let Some(seconds) = seconds else {
        return Err(refused());
    };
    let of_day = i128::from((h * 3600 + m * 60) * 1_000_000_000 + seconds);
    let started_wall = i128::from(started_ns) + clock.offset_ns();
    let mut wall = started_wall - started_wall.rem_euclid(NS_PER_DAY) + of_day;
    if wall < started_wall {
        wall += NS_PER_DAY;
    }
    let monotonic = wall - clock.offset_ns();
    match u64::try_from(monotonic) {
        Ok(ns) => Ok(ns),
        Err(_) => bail!("--at {text}: before the machine booted"),
    }
}

/// `SECS[.mmm]`, at most millisecond precision, as nanoseconds.
fn nanoseconds(text: &str) -> Option<u64> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) || fraction.len() > 3 {
        return None;
    }
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let millis = format!("{fraction:0<3}").parse::<u64>().ok()?;
    whole
        .parse::<u64>()
        .ok()?
        .checked_mul(1_000_000_000)?
        .checked_add(millis * 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    /// Started at 23:59:50 UTC (monotonic 100 s).
    fn clock() -> WallClock {
        WallClock::with_offset_ns(i128::from(20_000 * 86_400 * S + 86_390 * S - 100 * S))
    }

    #[test]
    fn seconds_from_the_start_and_times_of_day_after_it() {
        let clock = clock();
        assert_eq!(parse_at("+0", 100 * S, &clock).unwrap(), 100 * S);
        assert_eq!(parse_at("+2.5", 100 * S, &clock).unwrap(), 102 * S + S / 2);
        assert_eq!(clock.time_of_day(100 * S), "23:59:50.000");
        assert_eq!(parse_at("23:59:55", 100 * S, &clock).unwrap(), 105 * S);
        // After midnight: the next day's.
        assert_eq!(
            parse_at("00:00:01.250", 100 * S, &clock).unwrap(),
            111 * S + S / 4
        );
        let at = parse_at("00:00:01.250", 100 * S, &clock).unwrap();
        assert_eq!(clock.time_of_day(at), "00:00:01.250");
    }

    #[test]
    fn anything_else_is_refused_with_the_forms_it_takes() {
        for text in [
            "", "12:00", "24:00:00", "12:60:00", "1:00:00", "12:00:61", "+", "+1.2345", "+x",
            "noon",
        ] {
            let error = parse_at(text, 100 * S, &clock()).unwrap_err().to_string();
            assert!(
                error.contains("not HH:MM:SS[.mmm] (UTC) nor +SECS[.mmm]"),
                "{text}: {error}"
            );
        }
    }
}
