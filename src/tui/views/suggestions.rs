//! The suggestions view: the batch awaiting masks (or the last labelled
//! batch) with each slice's provenance — the labelled source slice whose
//! gradient led to it, latent distance and angle — and the selected slice
//! drawn inline.
//!
//! Imports the app's state, the key table (for its hints), the masks'
//! colours and the frame's styles.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table, TableState};
use ratatui_image::Image;

use super::names::short_case_names;
use super::{ACCENT, DIM, GOOD, WARN};
use crate::config::SamplingUnit;
use crate::masks::preview::class_colour;
use crate::tui::app::{App, Overlay};
use crate::tui::keys;

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let rows = app.suggestion_rows();
    // The list gets what its columns need (up to 60%), the picture the rest.
    let list_width = 64.min(area.width * 3 / 5);
    let [list, picture] =
        Layout::horizontal([Constraint::Length(list_width), Constraint::Min(0)]).areas(area);
    let whole = app.snapshot.config.sampling.unit == SamplingUnit::Volume;
    let volumes = rows
        .iter()
        .map(|r| r.key.case.as_str())
        .collect::<std::collections::HashSet<_>>()
        .len();
    let title = match rows.first() {
        Some(r) if !r.labelled && whole => format!(
            " {} slices in {volumes} whole volumes awaiting 3D masks ",
            rows.len()
        ),
        Some(r) if !r.labelled => format!(" {} slices awaiting masks ", rows.len()),
        Some(_) => format!(" last labelled batch · {} slices ", rows.len()),
        None => " no suggestions yet ".to_string(),
    };
    if rows.is_empty() {
        frame.render_widget(
            Paragraph::new(vec![
                Line::from("Nothing suggested yet."),
                Line::from(Span::styled(
                    format!(
                        "Suggestions appear here after seeding {} or suggesting {}.",
                        keys::SEED.hint(),
                        keys::SUGGEST.hint()
                    ),
                    Style::new().fg(DIM),
                )),
            ])
            .block(Block::bordered().title(title)),
            area,
        );
        return;
    }
    // Borders, the fixed columns (#, slice, ":NNN" of the source, dist,
    // angle, mask) and the spacing between the seven columns.
    let fixed = 2 + 3 + 5 + 4 + 6 + 7 + 5 + 6;
    let case_width = (usize::from(list.width).saturating_sub(fixed) / 2).clamp(4, 24);
    let names: Vec<&str> = rows
        .iter()
        .flat_map(|r| {
            std::iter::once(r.key.case.as_str()).chain(r.source.as_ref().map(|s| s.case.as_str()))
        })
        .collect();
    let short = short_case_names(&names, case_width);
    // As wide as the longest label, and at least the header's "volume".
    let case_width = short
        .iter()
        .map(|n| n.chars().count())
        .max()
        .unwrap_or(0)
        .max(6) as u16;
    let mut short = short.into_iter();
    let table_rows: Vec<Row> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let case = short.next().unwrap_or_default();
            let source = match &r.source {
                Some(s) => format!("{}:{}", short.next().unwrap_or_default(), s.slice),
                // A volume's slices that drew no vote came with it.
                None if whole && !r.labelled => "in volume".to_string(),
                None => "random".to_string(),
            };
            let angle = match (r.angle, r.angle_ok) {
                (Some(a), true) => Cell::from(format!("{a:>5.1}°")),
                (Some(a), false) => {
                    Cell::from(Span::styled(format!("{a:>5.1}°*"), Style::new().fg(WARN)))
                }
                (None, _) => Cell::from("     –"),
            };
            Row::new(vec![
                Cell::from(format!("{:>3}", i + 1)),
                Cell::from(case),
                Cell::from(format!("{:>4}", r.key.slice)),
                Cell::from(source),
                Cell::from(r.distance.map_or("    –".into(), |d| format!("{d:>6.3}"))),
                angle,
                if r.labelled {
                    Cell::from(Span::styled("done", Style::new().fg(GOOD)))
                } else {
                    Cell::from(Span::styled("await", Style::new().fg(WARN)))
                },
            ])
        })
        .collect();
    let table =
        Table::new(
            table_rows,
            [
                Constraint::Length(3),
                Constraint::Length(case_width),
                Constraint::Length(5),
                Constraint::Length(case_width + 4),
                Constraint::Length(6),
                Constraint::Length(7),
                Constraint::Length(5),
            ],
        )
        .column_spacing(1)
        .header(
            Row::new([
                "  #", "volume", "slice", "source", "  dist", "  angle", "mask",
            ])
            .style(Style::new().bold()),
        )
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
        .block(Block::bordered().title(title).title_bottom(
            Line::from(" j/k select · * angle over the limit: nearest taken ").fg(DIM),
        ));
    // How far this batch's gradient step moved, under the table.
    let step = app
        .state()
        .and_then(|s| s.gradient_step.as_ref())
        .filter(|_| !rows[0].labelled);
    let [list, step_area] = Layout::vertical([
        Constraint::Min(0),
        Constraint::Length(if step.is_some() { 2 } else { 0 }),
    ])
    .areas(list);
    if let Some(step) = step {
        frame.render_widget(
            Paragraph::new(step.short())
                .wrap(ratatui::widgets::Wrap { trim: true })
                .fg(DIM),
            step_area,
        );
    }
    let mut state = TableState::default().with_selected(Some(app.selected.min(rows.len() - 1)));
    frame.render_stateful_widget(table, list, &mut state);
    draw_picture(frame, picture, app);
}

fn draw_picture(frame: &mut Frame, area: Rect, app: &App) {
    let rows = app.suggestion_rows();
    let Some(row) = rows.get(app.selected) else {
        return;
    };
    let modalities = app.modalities();
    let modality = modalities
        .get(app.modality)
        .cloned()
        .unwrap_or_else(|| "?".into());
    // The expert mask of a slice still awaiting one draws nothing: say so
    // (`o` turns to the U-Net's prediction, said below the picture).
    let overlay = if app.overlay == Overlay::Mask && !row.labelled {
        "no mask yet"
    } else {
        app.overlay.describe()
    };
    let block = Block::bordered()
        .title(format!(" {} · {modality} · {overlay} ", row.key))
        .title_bottom(Line::from(" m modality · o overlay ").fg(DIM))
        .border_style(ACCENT);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [image_area, legend] =
        Layout::vertical([Constraint::Min(0), Constraint::Length(1)]).areas(inner);
    app.picture_cells.set((image_area.width, image_area.height));
    match (&app.picture.shown, &app.picture.error) {
        (Some((request, protocol)), _) if request.key == row.key => {
            frame.render_widget(Image::new(protocol), image_area);
        }
        (_, Some(e)) => frame.render_widget(
            Paragraph::new(format!("cannot show this slice: {e}")).style(Style::new().fg(DIM)),
            image_area,
        ),
        _ => frame.render_widget(
            Paragraph::new("drawing…").style(Style::new().fg(DIM)),
            image_area,
        ),
    }
    let classes = &app.snapshot.config.labels.classes;
    let spans: Vec<Span> = classes
        .iter()
        .enumerate()
        .skip(1)
        .flat_map(|(i, c)| {
            let [r, g, b] = class_colour(i);
            [
                Span::styled("■ ", Style::new().fg(ratatui::style::Color::Rgb(r, g, b))),
                Span::raw(format!("{}  ", c.name)),
            ]
        })
        .collect();
    frame.render_widget(Paragraph::new(Line::from(spans)), legend);
}
