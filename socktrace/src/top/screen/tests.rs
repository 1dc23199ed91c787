//! The screen rendered into a `TestBackend`, read back as text.
use ratatui::{Terminal, backend::TestBackend, buffer::Buffer};

use super::*;
use crate::{
    model::tcp_state::TcpState,
    state::overview::{Overview, RemoteCount, Totals},
    top::view::Key,
};

const SECOND: u64 = 1_000_000_000;

fn buffer(view: &TopView, width: u16, height: u16) -> Buffer {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|frame| draw(frame, view)).unwrap();
    terminal.backend().buffer().clone()
}

fn lines(view: &TopView, width: u16, height: u16) -> Vec<String> {
    let buffer = buffer(view, width, height);
    (0..height)
        .map(|y| (0..width).map(|x| buffer[(x, y)].symbol()).collect())
        .collect()
}

/// The first line containing `text`.
fn line_with(lines: &[String], text: &str) -> String {
    lines
        .iter()
        .find(|line| line.contains(text))
        .unwrap_or_else(|| panic!("no line with {text:?} in\n{}", lines.join("\n")))
        .clone()
}

fn row_of(lines: &[String], text: &str) -> usize {
    lines
        .iter()
        .position(|line| line.contains(text))
        .unwrap_or_else(|| panic!("no line with {text:?} in\n{}", lines.join("\n")))
}

fn remote(remote: &str, count: u64) -> RemoteCount {
    RemoteCount {
        remote: remote.to_string(),
        count,
    }
}

/// Two overviews one second apart: 100 new connections a second, 5
/// handshake failures, 40 TIME-WAIT entries; 256 sockets in TIME-WAIT.
fn busy() -> TopView {
    let mut view = TopView::new("netns host".to_string());
    let mut first = Overview {
        at_ns: 50 * SECOND,
        totals: Totals {
            new_connections: 1_000,
            handshake_failures: 10,
            time_wait_entries: 400,
            lost_events: 0,
        },
        window_secs: 60,
        ..Overview::default()
    };
    first.states[TcpState::Established.index()] = 1_200;
    first.states[TcpState::TimeWait.index()] = 250;
    first.states[TcpState::Listen.index()] = 12;
    view.push(first.clone());

    let mut second = Overview {
        at_ns: 51 * SECOND,
        totals: Totals {
            new_connections: 1_100,
            handshake_failures: 15,
            time_wait_entries: 440,
            lost_events: 0,
        },
        top_remotes: vec![
            remote("192.0.2.1", 40),
            remote("10.0.0.10", 7),
            remote("10.0.0.9", 5),
            remote("2001:db8::1", 3),
        ],
        top_subnets: vec![remote("192.0.2.0/24", 40), remote("10.0.0.0/24", 12)],
        top_opening_subnets: vec![remote("198.51.100.0/24", 80)],
        ..first
    };
    second.states[TcpState::Established.index()] = 1_234;
    second.states[TcpState::TimeWait.index()] = 256;
    view.push(second);
    view
}

#[test]
fn top_screen_shows_state_counts() {
    let screen = lines(&busy(), 80, 24);
    println!("{}", screen.join("\n"));
    let time_wait = line_with(&screen, "TIME-WAIT ");
    assert!(time_wait.contains(" 256 "), "{time_wait:?}");
    assert!(line_with(&screen, "ESTAB").contains(" 1234 "));
    assert!(line_with(&screen, "LISTEN").contains(" 12 "));
    for state in STATES {
        line_with(&screen, state.ss_name());
    }
    assert!(!screen.iter().any(|line| line.contains("UNCONN")));
}

#[test]
fn top_screen_shows_rates_from_two_overviews() {
    let screen = lines(&busy(), 80, 24);
    assert!(line_with(&screen, "new conn/s").ends_with(" 100"));
    assert!(line_with(&screen, "hs failed/s").ends_with(" 5"));
    assert!(line_with(&screen, "TIME-WAIT/s").ends_with(" 40"));
    assert!(!screen.iter().any(|line| line.contains("lost")));
}

#[test]
fn top_screen_shows_no_rate_from_one_overview() {
    let mut view = TopView::new(String::new());
    view.push(Overview::default());
    let screen = lines(&view, 80, 24);
    assert!(line_with(&screen, "new conn/s").ends_with(" -"));
}

#[test]
fn top_screen_highlights_lost_events() {
    let mut view = busy();
    let mut next = view.latest().unwrap().clone();
    next.at_ns += 2 * SECOND;
    next.totals.lost_events = 3;
    view.push(next);
    let screen = lines(&view, 80, 24);
    let lost = line_with(&screen, "lost events/s");
    assert!(lost.ends_with(" 1.5"), "{lost:?}");

    let buffer = buffer(&view, 80, 24);
    let y = row_of(&screen, "lost events/s") as u16;
    let x = screen[usize::from(y)]
        .chars()
        .position(|c| c == 'l')
        .unwrap() as u16;
    assert_eq!(buffer[(x, y)].fg, Color::Red);
}

#[test]
fn top_screen_title_names_the_label_and_the_keys() {
    let screen = lines(&busy(), 80, 24);
    assert!(screen[0].starts_with(" socktrace top │ netns host │ refresh 1 s"));
    assert!(screen[0].contains("q quit"));
    assert!(screen[0].contains("/ filter"));
}

#[test]
fn top_screen_table_title_names_table_sort_and_filter() {
    let mut view = busy();
    let screen = lines(&view, 80, 24);
    let title = line_with(&screen, "Remotes holding connections");
    assert!(title.contains("by count"), "{title:?}");
    assert!(title.contains("4 of 4"), "{title:?}");

    view.key(Key::Tab);
    view.key(Key::Tab);
    view.key(Key::Char('s'));
    let screen = lines(&view, 80, 24);
    let title = line_with(&screen, "Subnets opening connections");
    assert!(title.contains("by address"), "{title:?}");
    assert!(line_with(&screen, "REMOTE").contains("OPENED IN 60 s"));
    assert!(line_with(&screen, "198.51.100.0/24").ends_with(" 80"));
    assert!(!title.contains("merged"), "{title:?}");
}

/// A scan past the opening window's bound: the table says how many
/// subnets it could not count.
#[test]
fn top_screen_says_how_many_opening_subnets_were_merged() {
    let mut view = busy();
    let mut flooded = view.latest().unwrap().clone();
    flooded.at_ns += SECOND;
    flooded.opening_subnets_merged = 995_000;
    view.push(flooded);
    let screen = lines(&view, 80, 24);
    assert!(!line_with(&screen, "Remotes holding").contains("merged"));
    view.key(Key::Tab);
    view.key(Key::Tab);
    let screen = lines(&view, 80, 24);
    let title = line_with(&screen, "Subnets opening connections");
    assert!(title.contains("995000 merged beyond 1024/s"), "{title:?}");
}

#[test]
fn top_screen_filter_narrows_the_rows() {
    let mut view = busy();
    view.key(Key::Char('/'));
    for c in "10.0.".chars() {
        view.key(Key::Char(c));
    }
    let screen = lines(&view, 80, 24);
    assert!(line_with(&screen, "holding connections").contains("filter: 10.0._"));
    assert!(screen[0].contains("Enter apply"));

    view.key(Key::Enter);
    let screen = lines(&view, 80, 24);
    let title = line_with(&screen, "holding connections");
    assert!(title.contains("filter: 10.0. (c clears)"), "{title:?}");
    assert!(title.contains("2 of 2"), "{title:?}");
    line_with(&screen, "10.0.0.10");
    line_with(&screen, "10.0.0.9");
    assert!(!screen.iter().any(|line| line.contains("192.0.2.1")));
    assert!(!screen.iter().any(|line| line.contains("2001:db8::1")));

    view.key(Key::Char('/'));
    view.key(Key::Char('x'));
    view.key(Key::Enter);
    line_with(&lines(&view, 80, 24), "nothing matches the filter");
}

#[test]
fn top_screen_sort_changes_row_order() {
    let mut view = busy();
    let screen = lines(&view, 80, 24);
    assert!(row_of(&screen, "192.0.2.1") < row_of(&screen, "10.0.0.10"));
    assert!(row_of(&screen, "10.0.0.10") < row_of(&screen, "10.0.0.9"));
    assert!(line_with(&screen, "192.0.2.1").ends_with(" 40"));

    view.key(Key::Char('s'));
    let screen = lines(&view, 80, 24);
    assert!(row_of(&screen, "10.0.0.9") < row_of(&screen, "10.0.0.10"));
    assert!(row_of(&screen, "10.0.0.10") < row_of(&screen, "192.0.2.1"));
    assert!(row_of(&screen, "192.0.2.1") < row_of(&screen, "2001:db8::1"));
}

#[test]
fn top_screen_shows_as_many_rows_as_fit() {
    let mut view = busy();
    let mut next = view.latest().unwrap().clone();
    next.at_ns += SECOND;
    next.top_remotes = (0..50)
        .map(|i| remote(&format!("203.0.113.{i}"), 100 - i))
        .collect();
    view.push(next);
    let screen = lines(&view, 80, 24);
    assert!(line_with(&screen, "holding connections").contains("11 of 50"));
    assert!(screen[23].starts_with("203.0.113.10 "), "{:?}", screen[23]);
}

#[test]
fn top_screen_before_the_first_overview() {
    let screen = lines(&TopView::new("host".to_string()), 80, 24);
    line_with(&screen, "waiting for the first overview");
    assert!(line_with(&screen, "TIME-WAIT ").contains(" - "));
}

#[test]
fn top_screen_fits_small_terminals() {
    let mut editing = busy();
    editing.key(Key::Char('/'));
    for view in [busy(), editing, TopView::new("a long label ".repeat(20))] {
        for (width, height) in [
            (40, 10),
            (80, 24),
            (1, 1),
            (10, 3),
            (200, 5),
            (20, 60),
            (0, 0),
        ] {
            let screen = lines(&view, width, height);
            assert_eq!(screen.len(), usize::from(height));
        }
    }
    let screen = lines(&busy(), 40, 10);
    assert!(screen[0].starts_with(" socktrace top"));
    assert!(
        !screen[0].contains("q quit"),
        "help is left out when it does not fit"
    );
    assert!(line_with(&screen, "ESTAB").contains("1234"));
}

#[test]
fn top_screen_formats_rates_compactly() {
    assert_eq!(format_rate(0.0), "0");
    assert_eq!(format_rate(0.33), "0.3");
    assert_eq!(format_rate(1.5), "1.5");
    assert_eq!(format_rate(100.0), "100");
    assert_eq!(format_rate(123.4), "123");
    assert_eq!(format_rate(9_999.0), "9999");
    assert_eq!(format_rate(12_345.0), "12.3k");
    assert_eq!(format_rate(4_100_000.0), "4.1M");
}
