//! The `socktrace top` terminal loop: raw mode and the alternate screen for
//! as long as it runs (restored on return, error, panic, SIGINT and
//! SIGTERM), a new overview every [`REFRESH`], keys handled while waiting
//! for it. The view and the drawing are [`crate::top::view`] and
//! [`crate::top::screen`].
use std::{future::Future, pin::pin, time::Duration};

use anyhow::Context;
use ratatui::{
    DefaultTerminal,
    crossterm::{
        event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers},
        terminal,
    },
};
use tokio::{
    signal::unix::{Signal, SignalKind, signal},
    time::MissedTickBehavior,
};

use crate::{
    state::overview::Overview,
    top::screen,
    top::view::{Action, Key, REFRESH, TopView},
};

/// How long to wait between looks for keys: short enough to feel
/// immediate, long enough to leave the runtime alone.
const KEY_POLL: Duration = Duration::from_millis(50);

/// Where the overviews come from: the agent, or a tracer in this process.
pub trait OverviewSource {
    /// The state now.
    fn overview(&mut self) -> impl Future<Output = anyhow::Result<Overview>>;
}

/// Runs the full-screen view of `source` until the user quits or SIGINT or
/// SIGTERM arrives (both `Ok`), or `source` fails (its error). `label`
/// names what is watched in the title line.
pub async fn run(source: &mut impl OverviewSource, label: String) -> anyhow::Result<()> {
    let sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    // Declared before the terminal, so dropped after it, whatever happens;
    // ratatui's panic hook restores it before a panic message too.
    let _restore = Restore;
    let terminal = ratatui::try_init().context("cannot set up the terminal")?;
    let mut screen = Screen {
        terminal,
        view: TopView::new(label),
        sigint,
        sigterm,
    };
    screen.draw()?;
    let mut refresh = tokio::time::interval(REFRESH);
    refresh.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        if screen.until(refresh.tick()).await?.is_none() {
            return Ok(());
        }
        let Some(overview) = screen.until(source.overview()).await? else {
            return Ok(());
        };
        screen.view.push(overview?);
        screen.draw()?;
    }
}

/// Leaves raw mode and the alternate screen when dropped, unless already
/// done: a second leave would move the cursor back over what was printed
/// since (ratatui's panic hook restores before the panic message).
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        if terminal::is_raw_mode_enabled().unwrap_or(true) {
            ratatui::restore();
        }
    }
}

struct Screen {
    terminal: DefaultTerminal,
    view: TopView,
    sigint: Signal,
    sigterm: Signal,
}

impl Screen {
    fn draw(&mut self) -> anyhow::Result<()> {
        self.terminal
            .draw(|frame| screen::draw(frame, &self.view))
            .context("cannot draw")?;
        Ok(())
    }

    /// Awaits `work` while handling keys and signals: `None` if the user
    /// quit or a signal came first.
    async fn until<T>(&mut self, work: impl Future<Output = T>) -> anyhow::Result<Option<T>> {
        let mut work = pin!(work);
        loop {
            tokio::select! {
                done = &mut work => return Ok(Some(done)),
                _ = self.sigint.recv() => return Ok(None),
                _ = self.sigterm.recv() => return Ok(None),
                () = tokio::time::sleep(KEY_POLL) => {
                    if self.keys()? == Action::Quit {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Hands the pending keys to the view, without waiting for any, and
    /// redraws if one or a resize came.
    fn keys(&mut self) -> anyhow::Result<Action> {
        let mut redraw = false;
        while event::poll(Duration::ZERO).context("cannot read the terminal")? {
            match event::read().context("cannot read the terminal")? {
                Event::Key(event) => {
                    if let Some(key) = key(event) {
                        if self.view.key(key) == Action::Quit {
                            return Ok(Action::Quit);
                        }
                        redraw = true;
                    }
                }
                Event::Resize(..) => redraw = true,
                _ => {}
            }
        }
        if redraw {
            self.draw()?;
        }
        Ok(Action::Continue)
    }
}

/// The view's name for a key press; `None` for releases and keys it
/// does not use.
fn key(event: KeyEvent) -> Option<Key> {
    if event.kind == KeyEventKind::Release {
        return None;
    }
    let control = event.modifiers.contains(KeyModifiers::CONTROL);
    Some(match event.code {
        KeyCode::Char('c') if control => Key::CtrlC,
        KeyCode::Char(_) if control || event.modifiers.contains(KeyModifiers::ALT) => return None,
        KeyCode::Char(c) => Key::Char(c),
        KeyCode::Enter => Key::Enter,
        KeyCode::Esc => Key::Esc,
        KeyCode::Backspace => Key::Backspace,
        KeyCode::Tab => Key::Tab,
        _ => return None,
    })
}
