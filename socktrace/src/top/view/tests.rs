//! The view on hand-made overviews: rates, restarts, history length and
//! the keys.
use super::*;

const SECOND: u64 = 1_000_000_000;

fn overview(at_s: u64, new_connections: u64) -> Overview {
    Overview {
        at_ns: 1_000 * SECOND + at_s * SECOND,
        totals: Totals {
            new_connections,
            ..Totals::default()
        },
        ..Overview::default()
    }
}

fn remote(remote: &str, count: u64) -> RemoteCount {
    RemoteCount {
        remote: remote.to_string(),
        count,
    }
}

fn with_remotes() -> TopView {
    let mut view = TopView::new("host".to_string());
    view.push(Overview {
        top_remotes: vec![
            remote("10.0.0.10", 7),
            remote("10.0.0.9", 7),
            remote("192.0.2.1", 30),
            remote("2001:db8::1", 3),
        ],
        top_subnets: vec![remote("10.0.0.0/24", 14), remote("192.0.2.0/24", 30)],
        top_opening_subnets: vec![remote("198.51.100.0/24", 5)],
        ..Overview::default()
    });
    view
}

fn shown(view: &TopView) -> Vec<&str> {
    view.rows().iter().map(|row| row.remote.as_str()).collect()
}

fn type_keys(view: &mut TopView, text: &str) {
    for c in text.chars() {
        assert_eq!(view.key(Key::Char(c)), Action::Continue);
    }
}

#[test]
fn top_view_first_overview_has_no_rate_and_the_second_one_does() {
    let mut view = TopView::new("host".to_string());
    view.push(overview(0, 500));
    assert_eq!(view.rate(Rate::NewConnections), None);
    assert!(view.rate_history(Rate::NewConnections).is_empty());

    view.push(Overview {
        totals: Totals {
            new_connections: 700,
            handshake_failures: 3,
            time_wait_entries: 50,
            lost_events: 0,
        },
        ..overview(2, 0)
    });
    assert_eq!(view.rate(Rate::NewConnections), Some(100.0));
    assert_eq!(view.rate(Rate::HandshakeFailures), Some(1.5));
    assert_eq!(view.rate(Rate::TimeWaitEntries), Some(25.0));
    assert_eq!(view.rate(Rate::LostEvents), Some(0.0));
    assert_eq!(view.rate_history(Rate::NewConnections), [100.0]);
}

#[test]
fn top_view_rates_follow_uneven_refreshes() {
    let mut view = TopView::new(String::new());
    view.push(overview(0, 0));
    view.push(Overview {
        at_ns: overview(0, 0).at_ns + SECOND / 2,
        ..overview(0, 10)
    });
    assert_eq!(view.rate(Rate::NewConnections), Some(20.0));
}

#[test]
fn top_view_counter_going_backwards_starts_over() {
    let mut view = TopView::new(String::new());
    view.push(overview(0, 1_000));
    view.push(overview(1, 1_100));
    assert_eq!(view.rate_history(Rate::NewConnections), [100.0]);

    view.push(overview(2, 5));
    assert_eq!(view.rate(Rate::NewConnections), None);
    assert!(view.rate_history(Rate::NewConnections).is_empty());
    assert_eq!(view.state_history(TcpState::Established).len(), 1);

    view.push(overview(3, 25));
    assert_eq!(view.rate(Rate::NewConnections), Some(20.0));
}

#[test]
fn top_view_clock_not_advancing_starts_over() {
    let mut view = TopView::new(String::new());
    view.push(overview(5, 0));
    view.push(overview(5, 10));
    assert_eq!(view.rate(Rate::NewConnections), None);
    view.push(overview(4, 20));
    assert_eq!(view.rate(Rate::NewConnections), None);
    assert_eq!(view.latest().map(|o| o.totals.new_connections), Some(20));
}

#[test]
fn top_view_keeps_the_last_history_overviews() {
    let mut view = TopView::new(String::new());
    for second in 0..(HISTORY as u64 + 15) {
        let mut o = overview(second, second * 3);
        o.states[TcpState::TimeWait.index()] = second;
        view.push(o);
    }
    let time_wait = view.state_history(TcpState::TimeWait);
    assert_eq!(time_wait.len(), HISTORY);
    assert_eq!(time_wait.first(), Some(&15));
    assert_eq!(time_wait.last(), Some(&(HISTORY as u64 + 14)));
    assert_eq!(view.rate_history(Rate::NewConnections), [3.0; HISTORY]);
}

#[test]
fn top_view_rows_sort_by_count_then_by_address() {
    let mut view = with_remotes();
    assert_eq!(view.sort(), Sort::Count);
    assert_eq!(
        shown(&view),
        ["192.0.2.1", "10.0.0.9", "10.0.0.10", "2001:db8::1"]
    );

    assert_eq!(view.key(Key::Char('s')), Action::Continue);
    assert_eq!(view.sort(), Sort::Address);
    assert_eq!(
        shown(&view),
        ["10.0.0.9", "10.0.0.10", "192.0.2.1", "2001:db8::1"]
    );

    view.key(Key::Char('s'));
    assert_eq!(view.sort(), Sort::Count);
}

#[test]
fn top_view_address_sort_puts_unparsed_text_last() {
    let mut view = TopView::new(String::new());
    view.push(Overview {
        top_remotes: vec![
            remote("other", 1),
            remote("10.0.1.0/24", 1),
            remote("10.0.0.0/24", 1),
        ],
        ..Overview::default()
    });
    view.key(Key::Char('s'));
    assert_eq!(shown(&view), ["10.0.0.0/24", "10.0.1.0/24", "other"]);
}

#[test]
fn top_view_tab_cycles_the_tables() {
    let mut view = with_remotes();
    assert_eq!(view.table(), RemoteTable::Remotes);
    view.key(Key::Tab);
    assert_eq!(view.table(), RemoteTable::Subnets);
    assert_eq!(shown(&view), ["192.0.2.0/24", "10.0.0.0/24"]);
    view.key(Key::Tab);
    assert_eq!(view.table(), RemoteTable::OpeningSubnets);
    assert_eq!(shown(&view), ["198.51.100.0/24"]);
    view.key(Key::Tab);
    assert_eq!(view.table(), RemoteTable::Remotes);
}

#[test]
fn top_view_filter_is_typed_applied_and_cleared() {
    let mut view = with_remotes();
    view.key(Key::Char('/'));
    assert!(view.editing());
    // Keys that mean something else are text while typing.
    type_keys(&mut view, "10.0.0.q");
    assert_eq!(view.filter(), "10.0.0.q");
    assert!(shown(&view).is_empty());
    view.key(Key::Backspace);
    // The rows follow the text being typed.
    assert_eq!(shown(&view), ["10.0.0.9", "10.0.0.10"]);
    view.key(Key::Enter);
    assert!(!view.editing());
    assert_eq!(view.filter(), "10.0.0.");
    assert_eq!(shown(&view), ["10.0.0.9", "10.0.0.10"]);

    // The filter survives switching tables.
    view.key(Key::Tab);
    assert_eq!(shown(&view), ["10.0.0.0/24"]);

    view.key(Key::Char('c'));
    assert_eq!(view.filter(), "");
    assert_eq!(shown(&view), ["192.0.2.0/24", "10.0.0.0/24"]);
}

#[test]
fn top_view_filter_ignores_case() {
    let mut view = with_remotes();
    view.key(Key::Char('/'));
    type_keys(&mut view, "DB8");
    view.key(Key::Enter);
    assert_eq!(shown(&view), ["2001:db8::1"]);
}

#[test]
fn top_view_esc_abandons_the_filter_being_typed() {
    let mut view = with_remotes();
    view.key(Key::Char('/'));
    type_keys(&mut view, "192");
    view.key(Key::Enter);

    view.key(Key::Char('/'));
    assert_eq!(view.filter(), "192", "editing starts from the filter");
    view.key(Key::Backspace);
    view.key(Key::Backspace);
    view.key(Key::Backspace);
    type_keys(&mut view, "2001");
    assert_eq!(shown(&view), ["2001:db8::1"]);
    assert_eq!(view.key(Key::Esc), Action::Continue);
    assert!(!view.editing());
    assert_eq!(view.filter(), "192");
    assert_eq!(shown(&view), ["192.0.2.1"]);
}

#[test]
fn top_view_quit_keys() {
    for key in [Key::Char('q'), Key::Esc, Key::CtrlC] {
        assert_eq!(with_remotes().key(key), Action::Quit, "{key:?}");
    }
    let mut view = with_remotes();
    view.key(Key::Char('/'));
    assert_eq!(view.key(Key::Char('q')), Action::Continue);
    assert_eq!(view.key(Key::CtrlC), Action::Quit);
    assert_eq!(view.key(Key::Char('x')), Action::Continue);
}

#[test]
fn top_view_without_an_overview_has_no_rows() {
    let view = TopView::new("netns 4026531840".to_string());
    assert_eq!(view.label(), "netns 4026531840");
    assert!(view.latest().is_none());
    assert!(view.rows().is_empty());
    assert!(view.state_history(TcpState::Established).is_empty());
}
