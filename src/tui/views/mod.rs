//! Drawing: a pure function of the app's state onto a frame. One file per
//! view; this one draws the frame around them (title, tabs, keys, notices)
//! and the overlays (help, import), and picks the view for the tab
//! (the history tab shows either `history` or `simulation`).
//!
//! Views import the app's state, the key table (`keys`, for every key they
//! name) and `chart`; this file imports the views. No view imports another.

mod chart;
mod history;
mod import;
mod latent;
mod names;
mod round;
mod simulation;
mod suggestions;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Tabs, Wrap};

use super::app::{App, Modal, Tab};
use super::keys::{self, TABLE};

/// The smallest terminal the layout is designed for.
pub const MIN_SIZE: (u16, u16) = (80, 24);

pub const ACCENT: Color = Color::Cyan;
pub const DIM: Color = Color::DarkGray;
pub const GOOD: Color = Color::Green;
pub const BAD: Color = Color::Red;
pub const WARN: Color = Color::Yellow;

pub fn render(frame: &mut Frame, app: &App) {
    let area = frame.area();
    if area.width < MIN_SIZE.0 || area.height < MIN_SIZE.1 {
        too_small(frame, area);
        return;
    }
    let [top, body, keys, notice] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    title_bar(frame, top, app);
    match app.tab {
        Tab::Round => round::render(frame, body, app),
        Tab::Suggestions => suggestions::render(frame, body, app),
        Tab::History => match (&app.snapshot.simulation, app.show_simulation) {
            (Some(rows), true) => simulation::render(frame, body, app, rows),
            _ => history::render(frame, body, app),
        },
        Tab::Latent => latent::render(frame, body, app),
    }
    key_bar(frame, keys, app);
    notice_bar(frame, notice, app);
    match &app.modal {
        Some(Modal::Help) => help(frame, area),
        Some(Modal::Import(dialog)) => import::render(frame, area, app, dialog),
        None => {}
    }
}

fn too_small(frame: &mut Frame, area: Rect) {
    let text = vec![
        Line::from("nextslice needs a terminal of at least 80×24.".bold()),
        Line::from(format!("This one is {}×{}.", area.width, area.height)),
        Line::from(format!(
            "Enlarge the window (the job goes on meanwhile), or {} to quit.",
            keys::QUIT.key()
        )),
    ];
    frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: true }), area);
}

fn title_bar(frame: &mut Frame, area: Rect, app: &App) {
    let name = format!(" nextslice · {} ", app.snapshot.name());
    let width = (name.chars().count() as u16).min(area.width / 2);
    let [left, right] =
        Layout::horizontal([Constraint::Length(width), Constraint::Min(0)]).areas(area);
    frame.render_widget(
        Paragraph::new(name).style(Style::new().fg(Color::Black).bg(ACCENT).bold()),
        left,
    );
    let titles = Tab::ALL
        .iter()
        .enumerate()
        .map(|(i, t)| format!("{} {}", i + 1, t.title()));
    let selected = Tab::ALL.iter().position(|t| *t == app.tab);
    frame.render_widget(
        Tabs::new(titles)
            .select(selected)
            .highlight_style(
                Style::new()
                    .fg(ACCENT)
                    .add_modifier(Modifier::BOLD | Modifier::REVERSED),
            )
            .divider(" "),
        right,
    );
}

/// The phase's actions offered now (dimmed while they cannot run), then
/// the navigation keys that have a key-bar word.
fn key_bar(frame: &mut Frame, area: Rect, app: &App) {
    let key = Style::new().fg(ACCENT).bold();
    let mut spans = Vec::new();
    for a in app.actions() {
        let (key_style, word_style) = if a.enabled {
            (key, Style::new())
        } else {
            (Style::new().fg(DIM), Style::new().fg(DIM))
        };
        spans.push(Span::styled(format!("{} ", a.key()), key_style));
        spans.push(Span::styled(
            format!("{}  ", a.binding.bar.unwrap_or_default()),
            word_style,
        ));
    }
    for b in TABLE.iter().filter(|b| !b.is_action()) {
        if let Some(word) = b.bar {
            spans.push(Span::styled(format!("{} ", b.key()), key));
            spans.push(Span::raw(format!("{word}  ")));
        }
    }
    let line = Line::from(spans);
    frame.render_widget(Paragraph::new(line), area);
}

fn notice_bar(frame: &mut Frame, area: Rect, app: &App) {
    let line = if let Some(action) = &app.short_action {
        Line::from(Span::styled(format!("… {action}"), Style::new().fg(WARN)))
    } else if let Some(n) = &app.notice {
        Line::from(Span::styled(
            n.text.clone(),
            Style::new().fg(if n.error { BAD } else { GOOD }),
        ))
    } else {
        Line::from(Span::styled(
            app.snapshot
                .state
                .as_ref()
                .map(|s| format!("next: {}", s.phase.describe()))
                .unwrap_or_default(),
            Style::new().fg(DIM),
        ))
    };
    frame.render_widget(Paragraph::new(line), area);
}

/// A centred rectangle of at most `width`×`height`.
pub fn centred(area: Rect, width: u16, height: u16) -> Rect {
    let w = width.min(area.width);
    let h = height.min(area.height);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}

/// Under the keys in the help overlay.
const HELP_NOTE: [&str; 2] = [
    "Jobs run in a detached worker: closing the TUI or losing",
    "SSH stops nothing. Re-open with `nextslice` in the project.",
];

/// The help overlay: every row of the key table, then the note.
fn help(frame: &mut Frame, area: Rect) {
    let rows: Vec<(String, &str)> = TABLE.iter().map(|b| (b.keys_text(), b.help)).collect();
    let width = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    let key = Style::new().fg(ACCENT).bold();
    let mut lines: Vec<Line> = rows
        .into_iter()
        .map(|(k, what)| {
            Line::from(vec![
                Span::styled(format!("{k:>width$}  "), key),
                Span::raw(what),
            ])
        })
        .collect();
    lines.push(Line::from(""));
    lines.extend(
        HELP_NOTE
            .iter()
            .map(|note| Line::from(format!("{:width$}  {note}", ""))),
    );
    let rect = centred(area, 76, lines.len() as u16 + 2);
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" keys ").border_style(ACCENT)),
        rect,
    );
}

/// "1m05s", or "–" when unknown.
pub fn duration(seconds: Option<f64>) -> String {
    match seconds {
        Some(s) if s.is_finite() && s >= 0.0 => {
            crate::progress::format_duration(std::time::Duration::from_secs_f64(s))
        }
        _ => "–".into(),
    }
}

#[cfg(test)]
mod tests {
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    use super::*;

    #[test]
    fn the_help_overlay_lists_every_row_of_the_key_table() {
        let mut terminal = Terminal::new(TestBackend::new(MIN_SIZE.0, MIN_SIZE.1)).unwrap();
        terminal.draw(|f| help(f, f.area())).unwrap();
        let screen: Vec<String> = terminal
            .backend()
            .buffer()
            .content()
            .chunks(MIN_SIZE.0 as usize)
            .map(|row| row.iter().map(|c| c.symbol()).collect())
            .collect();
        for b in TABLE {
            let line = format!("{}  {}", b.keys_text(), b.help);
            assert!(
                screen.iter().any(|row| row.contains(&line)),
                "{line:?} is not in the help:\n{}",
                screen.join("\n")
            );
        }
        for note in HELP_NOTE {
            assert!(screen.iter().any(|row| row.contains(note)), "{note}");
        }
    }
}
