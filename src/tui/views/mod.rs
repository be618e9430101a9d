//! Drawing: a pure function of the app's state onto a frame. One file per
//! view; this one draws the frame around them (title, tabs, keys, notices)
//! and the overlays (help, import), and picks the view for the tab
//! (the history tab shows either `history` or `simulation`).
//!
//! Views import the app's state and `chart`; this file imports the views.
//! No view imports another.

mod chart;
mod history;
mod import;
mod latent;
mod round;
mod simulation;
mod suggestions;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Tabs, Wrap};

use super::app::{App, Modal, Tab};

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
        Line::from("Enlarge the window (the job goes on meanwhile), or q to quit."),
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

fn key_bar(frame: &mut Frame, area: Rect, app: &App) {
    let mut spans = Vec::new();
    for a in app.actions() {
        let style = if a.enabled {
            Style::new().fg(ACCENT).bold()
        } else {
            Style::new().fg(DIM)
        };
        spans.push(Span::styled(format!("{} ", a.key), style));
        spans.push(Span::styled(
            format!("{}  ", a.short),
            if a.enabled {
                Style::new()
            } else {
                Style::new().fg(DIM)
            },
        ));
    }
    spans.push(Span::styled("1-4 ", Style::new().fg(ACCENT).bold()));
    spans.push(Span::raw("views  "));
    spans.push(Span::styled("? ", Style::new().fg(ACCENT).bold()));
    spans.push(Span::raw("keys  "));
    spans.push(Span::styled("q ", Style::new().fg(ACCENT).bold()));
    spans.push(Span::raw("quit"));
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
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

const KEYS: [(&str, &str); 19] = [
    ("1 2 3 4, Tab", "Round · Suggestions · History · Latent map"),
    ("v", "train the VAE on every slice of the pool"),
    ("s", "draw the random seed batch (round 0)"),
    ("e", "export the suggested slices for the annotators"),
    ("i", "import masks (path prompt, Tab completes)"),
    ("t", "train the U-Net on the labelled slices"),
    ("n", "suggest the next batch (gradient-guided)"),
    ("a", "evaluate Dice on the held-out test cases"),
    ("c", "cancel the running job (keeps its checkpoint)"),
    ("j k, ↑ ↓", "select a suggested slice"),
    ("m", "next modality"),
    ("o", "overlay: expert mask → prediction → truth → none"),
    (
        "h r ← →",
        "history: Dice ⇄ HD95 · project ⇄ simulation · region",
    ),
    ("x y, ← →", "latent map: change the plotted dimensions"),
    ("?", "this help (any key closes it)"),
    ("q, Ctrl-C", "quit (running jobs go on)"),
    ("", ""),
    (
        "",
        "Jobs run in a detached worker: closing the TUI or losing",
    ),
    (
        "",
        "SSH stops nothing. Re-open with `nextslice` in the project.",
    ),
];

fn help(frame: &mut Frame, area: Rect) {
    let rect = centred(area, 76, KEYS.len() as u16 + 2);
    frame.render_widget(Clear, rect);
    let lines: Vec<Line> = KEYS
        .iter()
        .map(|(k, what)| {
            Line::from(vec![
                Span::styled(format!("{k:>12}  "), Style::new().fg(ACCENT).bold()),
                Span::raw(*what),
            ])
        })
        .collect();
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
