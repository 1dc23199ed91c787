//! Draws a [`TopView`] with ratatui: no terminal, no clock, so tests render
//! it into a `TestBackend`. Laid out for 80x24 (an SSH session) and
//! clipped, never overflowing, below that:
//!
//! - one title line: `socktrace top`, the label, the refresh, the keys;
//! - ten lines of states, each with its count and a sparkline; beside them
//!   the rates per second, each over a sparkline (lost events only once
//!   some were lost, in red);
//! - the remote table the user picked, its title naming it, the sort, the
//!   filter and how many rows show, with as many rows as fit.
use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style, Stylize},
    text::{Line, Span},
    widgets::{Block, Borders, Cell, Padding, Paragraph, Row, Sparkline, Table},
};

use crate::{
    render::cells::or_missing,
    state::opening_window::KEPT_PER_SECOND,
    top::view::{Rate, RemoteTable, STATES, TopView},
};

/// Width of the state and rate names.
const NAME_WIDTH: u16 = 10;
/// Width of the state counts.
const COUNT_WIDTH: u16 = 8;

/// Draws `view` over the whole frame.
pub fn draw(frame: &mut Frame, view: &TopView) {
    let [title, top, table] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(STATES.len() as u16),
        Constraint::Min(0),
    ])
    .areas(frame.area());
    let [states, rates] = Layout::horizontal([Constraint::Fill(3), Constraint::Fill(1)])
        .spacing(1)
        .areas(top);
    let rates_block = Block::new()
        .borders(Borders::LEFT)
        .border_style(Style::new().fg(Color::DarkGray))
        .padding(Padding::left(1));
    draw_title(frame, title, view);
    draw_states(frame, states, view);
    draw_rates(frame, rates_block.inner(rates), view);
    frame.render_widget(rates_block, rates);
    draw_table(frame, table, view);
}

fn draw_title(frame: &mut Frame, area: Rect, view: &TopView) {
    let refresh = crate::top::view::REFRESH.as_secs();
    let name = Line::from(vec![
        " socktrace top".bold(),
        format!(" │ {} │ refresh {refresh} s ", view.label()).into(),
    ]);
    let help = Line::from(if view.editing() {
        "Enter apply  Esc cancel "
    } else {
        "q quit  s sort  Tab table  / filter "
    });
    // Only where it hides nothing of the name.
    let help_fits = name.width() + help.width() <= usize::from(area.width);
    frame.render_widget(Paragraph::new(name).add_modifier(Modifier::REVERSED), area);
    if help_fits {
        frame.render_widget(help.right_aligned(), area);
    }
}

fn draw_states(frame: &mut Frame, area: Rect, view: &TopView) {
    for (state, row) in STATES.iter().zip(rows_of(area, 1)) {
        let [name, count, spark] = Layout::horizontal([
            Constraint::Length(NAME_WIDTH),
            Constraint::Length(COUNT_WIDTH),
            Constraint::Min(0),
        ])
        .spacing(1)
        .areas(row);
        let history = view.state_history(*state);
        let value = or_missing(view.latest(), |o| o.count(*state).to_string());
        frame.render_widget(Paragraph::new(state.ss_name()), name);
        frame.render_widget(Line::from(value).right_aligned(), count);
        frame.render_widget(
            Sparkline::default()
                .data(last(&history, spark.width))
                .style(Style::new().fg(Color::Cyan)),
            spark,
        );
    }
}

fn draw_rates(frame: &mut Frame, area: Rect, view: &TopView) {
    let lost = view.latest().is_some_and(|o| o.totals.lost_events > 0);
    let shown = Rate::ALL
        .into_iter()
        .filter(|rate| *rate != Rate::LostEvents || lost);
    for (rate, lines) in shown.zip(rows_of(area, 2)) {
        let style = if rate == Rate::LostEvents {
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)
        } else {
            Style::new().fg(Color::Green)
        };
        let [text, spark] = Layout::vertical([Constraint::Length(1); 2]).areas(lines);
        let value = or_missing(view.rate(rate), format_rate);
        frame.render_widget(Line::from(rate.label()), text);
        // After the label, so that a narrow panel cuts the label, not the value.
        frame.render_widget(Line::from(format!(" {value}")).right_aligned(), text);
        if rate == Rate::LostEvents {
            frame.buffer_mut().set_style(text, style);
        }
        // Sparklines scale to their largest value: milli-units keep
        // fractional rates visible.
        let history: Vec<u64> = view
            .rate_history(rate)
            .iter()
            .map(|per_second| (per_second * 1000.0).round() as u64)
            .collect();
        frame.render_widget(
            Sparkline::default()
                .data(last(&history, spark.width))
                .style(style),
            spark,
        );
    }
}

fn draw_table(frame: &mut Frame, area: Rect, view: &TopView) {
    let rows = view.rows();
    let block = Block::new().borders(Borders::TOP);
    let inner = block.inner(area);
    let fit = usize::from(inner.height.saturating_sub(1));

    // Most important first: a narrow screen cuts the end.
    let mut title = vec![Span::from(format!(" {} ", view.table().title())).bold()];
    if view.latest().is_some() {
        title.push(format!("│ {} of {} ", rows.len().min(fit), rows.len()).into());
    }
    title.push(format!("│ by {} ", view.sort().label()).into());
    if let (RemoteTable::OpeningSubnets, Some(o)) = (view.table(), view.latest())
        && o.opening_subnets_merged > 0
    {
        let merged = o.opening_subnets_merged;
        title.push(format!("│ {merged} merged beyond {KEPT_PER_SECOND}/s ").yellow());
    }
    if view.editing() {
        title.push("│ ".into());
        title.push(format!("filter: {}_", view.filter()).black().on_yellow());
        title.push(" ".into());
    } else if !view.filter().is_empty() {
        title.push("│ ".into());
        title.push(format!("filter: {}", view.filter()).yellow());
        title.push(" (c clears) ".into());
    }
    frame.render_widget(block.title(Line::from(title)), area);

    let counted = match (view.table(), view.latest()) {
        (RemoteTable::OpeningSubnets, Some(o)) => format!("OPENED IN {} s", o.window_secs),
        _ => "CONNECTIONS".to_string(),
    };
    let header = Row::new([
        Cell::from("REMOTE"),
        Cell::from(Line::from(counted).right_aligned()),
    ])
    .style(Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED));
    let body = rows.iter().take(fit).map(|row| {
        Row::new([
            Cell::from(row.remote.as_str()),
            Cell::from(Line::from(row.count.to_string()).right_aligned()),
        ])
    });
    frame.render_widget(
        Table::new(body, [Constraint::Fill(1), Constraint::Length(16)]).header(header),
        inner,
    );

    let empty = if view.latest().is_none() {
        Some("waiting for the first overview")
    } else if rows.is_empty() && !view.filter().is_empty() {
        Some("nothing matches the filter")
    } else if rows.is_empty() {
        Some("none")
    } else {
        None
    };
    if let (Some(text), Some(line)) = (empty, rows_of(inner, 1).nth(1)) {
        frame.render_widget(Line::from(text).dark_gray(), line);
    }
}

/// The consecutive `height`-line slices of `area` that fit in it whole.
fn rows_of(area: Rect, height: u16) -> impl Iterator<Item = Rect> {
    (0..area.height / height).map(move |i| Rect {
        y: area.y + i * height,
        height,
        ..area
    })
}

/// The last `width` values: what a sparkline that wide shows.
fn last(values: &[u64], width: u16) -> &[u64] {
    &values[values.len().saturating_sub(usize::from(width))..]
}

/// A rate in at most six characters: `0.5`, `100`, `12.3k`, `4.1M`.
fn format_rate(per_second: f64) -> String {
    if per_second < 10.0 && per_second.fract() != 0.0 {
        format!("{per_second:.1}")
    } else if per_second < 9_999.5 {
        format!("{per_second:.0}")
    } else if per_second < 999_950.0 {
        format!("{:.1}k", per_second / 1e3)
    } else {
        format!("{:.1}M", per_second / 1e6)
    }
}

#[cfg(test)]
mod tests;
