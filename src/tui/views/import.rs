//! The import dialog: a path prompt with completion, then the engine's
//! validation report and a confirm; nothing changes before the confirm.
//! The dialog's own keys (written here and in `App::on_import_key`) are
//! not in the key table: they apply only inside it.
//!
//! Imports the app's state and the frame's styles.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};

use super::{ACCENT, BAD, DIM, GOOD, WARN, centred};
use crate::tui::app::{App, ImportDialog};

pub fn render(frame: &mut Frame, area: Rect, app: &App, dialog: &ImportDialog) {
    let rect = centred(
        area,
        area.width.saturating_sub(8).max(60),
        area.height.saturating_sub(4),
    );
    frame.render_widget(Clear, rect);
    let awaited = app.state().map_or(0, |s| s.pending.len());
    let block = Block::bordered()
        .title(format!(" import masks · {awaited} slices awaiting "))
        .border_style(ACCENT);
    let inner = block.inner(rect);
    frame.render_widget(block, rect);
    let [prompt, body, keys] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(inner);

    frame.render_widget(
        Paragraph::new(vec![
            Line::from("Mask files or folders (NIfTI or PNG, named as in the export's manifest):")
                .fg(DIM),
            Line::from(vec![
                Span::styled("> ", Style::new().fg(ACCENT).bold()),
                Span::raw(dialog.input.clone()),
                Span::styled(
                    if dialog.plan.is_none() && !dialog.checking {
                        "█"
                    } else {
                        ""
                    },
                    Style::new().fg(ACCENT),
                ),
            ]),
        ])
        .wrap(Wrap { trim: false }),
        prompt,
    );

    let (lines, hint): (Vec<Line>, Line) = if let Some(plan) = &dialog.plan {
        let mut lines = Vec::new();
        let rejected = plan.problems.len();
        lines.push(Line::from(vec![
            Span::styled(
                format!("{} valid", plan.accepted.len()),
                Style::new().fg(GOOD).bold(),
            ),
            Span::raw(" · "),
            Span::styled(
                format!("{rejected} rejected"),
                Style::new().fg(if rejected > 0 { BAD } else { DIM }).bold(),
            ),
            Span::raw(format!(
                " · {} skipped · {} still awaited after this import",
                plan.skipped.len(),
                plan.missing.len()
            )),
        ]));
        for line in plan.report().lines() {
            let style = if line.trim_start().starts_with("REJECTED") {
                Style::new().fg(BAD)
            } else if line.trim_start().starts_with("ok") {
                Style::new().fg(GOOD)
            } else {
                Style::new().fg(DIM)
            };
            lines.push(Line::from(Span::styled(line.to_string(), style)));
        }
        let hint = if plan.accepted.is_empty() {
            Line::from("No valid mask here. n/Esc: back to the prompt").fg(WARN)
        } else if rejected > 0 {
            Line::from(format!(
                "y: import the {} valid masks only (the rejected files change nothing) · n/Esc: back",
                plan.accepted.len()
            ))
            .fg(WARN)
        } else {
            Line::from(format!(
                "y/Enter: import these {} masks · n/Esc: back",
                plan.accepted.len()
            ))
            .fg(ACCENT)
        };
        (lines, hint)
    } else if dialog.checking {
        (
            vec![Line::from("checking the masks against the suggestions…").fg(WARN)],
            Line::from("Esc: close").fg(DIM),
        )
    } else {
        let mut lines: Vec<Line> = dialog
            .choices
            .iter()
            .map(|c| Line::from(c.clone()).fg(DIM))
            .collect();
        if lines.is_empty() {
            lines.push(Line::from("Nothing is imported until you confirm the report.").fg(DIM));
        }
        (
            lines,
            Line::from("Enter: check · Tab: complete · Ctrl-U: clear · Esc: close").fg(DIM),
        )
    };
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), body);
    frame.render_widget(Paragraph::new(hint), keys);
}
