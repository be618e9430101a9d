//! The history view: per round the labelled count and budget, the test
//! Dice per region (table and chart against the budget) and the training
//! loss the round ended with. (The simulation's curves, on the same tab,
//! are `simulation`'s.)
//!
//! Imports the app's state, the key table (for its hints), `chart` and the
//! frame's styles.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Style, Stylize};
use ratatui::text::Line;
use ratatui::widgets::{Axis, Block, Chart, LegendPosition, Paragraph, Row, Table};

use super::DIM;
use super::chart::{format_score, line_datasets, metric_name};
use crate::project::RoundRecord;
use crate::tui::app::{App, Metric};
use crate::tui::keys;

/// The round's scores in the metric shown.
fn scores(r: &RoundRecord, metric: Metric) -> &[(String, f64)] {
    match metric {
        Metric::Dice => &r.dice,
        Metric::Hd95 => &r.hd95,
    }
}

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let Some(state) = app.state() else {
        return;
    };
    if state.history.is_empty() {
        let mut lines = vec![
            Line::from("No round has been trained yet."),
            Line::from("After each U-Net training the round's budget and loss appear here;")
                .fg(DIM),
            Line::from(format!(
                "evaluate {} adds the test Dice per region.",
                keys::EVALUATE.hint()
            ))
            .fg(DIM),
        ];
        if app.snapshot.simulation.is_some() {
            lines.push(Line::from(""));
            lines.push(Line::from(format!(
                "{}: show the simulation's learning curves",
                keys::SIMULATION.key()
            )));
        }
        frame.render_widget(
            Paragraph::new(lines).block(Block::bordered().title(" history ")),
            area,
        );
        return;
    }
    let regions: Vec<String> = {
        let mut names: Vec<String> = Vec::new();
        for r in &state.history {
            for (name, _) in scores(r, app.metric) {
                if !names.contains(name) {
                    names.push(name.clone());
                }
            }
        }
        names
    };
    let [table_area, chart_area] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(area);

    let mut header = vec![
        "round".to_string(),
        "slices".into(),
        "budget".into(),
        "loss".into(),
    ];
    header.extend(regions.iter().cloned());
    let rows: Vec<Row> = state
        .history
        .iter()
        .map(|r| {
            let mut cells = vec![
                r.round.to_string(),
                r.labelled.to_string(),
                format!("{:.2}%", 100.0 * r.budget),
                r.train_losses
                    .last()
                    .map_or("–".into(), |l| format!("{l:.4}")),
            ];
            for name in &regions {
                cells.push(
                    scores(r, app.metric)
                        .iter()
                        .find(|(n, _)| n == name)
                        .map_or("–".into(), |(_, d)| format_score(*d, app.metric)),
                );
            }
            Row::new(cells)
        })
        .collect();
    let mut widths = vec![
        Constraint::Length(5),
        Constraint::Length(6),
        Constraint::Length(6),
        Constraint::Length(7),
    ];
    widths.extend(regions.iter().map(|_| Constraint::Length(6)));
    let visible = table_area.height.saturating_sub(3) as usize;
    let skip = rows.len().saturating_sub(visible);
    frame.render_widget(
        Table::new(rows.into_iter().skip(skip), widths)
            .header(Row::new(header).style(Style::new().bold()))
            .block(
                Block::bordered()
                    .title(format!(
                        " rounds · test {} per region ",
                        metric_name(app.metric)
                    ))
                    .title_bottom(
                        Line::from(if app.snapshot.simulation.is_some() {
                            format!(
                                " {}: Dice ⇄ HD95 · {}: simulation ",
                                keys::METRIC.key(),
                                keys::SIMULATION.key()
                            )
                        } else {
                            format!(" {}: Dice ⇄ HD95 ", keys::METRIC.key())
                        })
                        .fg(DIM),
                    ),
            ),
        table_area,
    );
    metric_chart(frame, chart_area, app, &regions);
}

fn metric_chart(frame: &mut Frame, area: Rect, app: &App, regions: &[String]) {
    let Some(state) = app.state() else {
        return;
    };
    let series: Vec<Vec<(f64, f64)>> = regions
        .iter()
        .map(|name| {
            state
                .history
                .iter()
                .filter_map(|r| {
                    scores(r, app.metric)
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, d)| (100.0 * r.budget, *d))
                })
                .collect()
        })
        .collect();
    let name = metric_name(app.metric);
    let block = Block::bordered().title(format!(" test {name} vs % of the pool labelled "));
    if series.iter().all(Vec::is_empty) {
        frame.render_widget(
            Paragraph::new(format!(
                "Evaluate {} to see {name} per region here.",
                keys::EVALUATE.hint()
            ))
            .style(Style::new().fg(DIM))
            .block(block),
            area,
        );
        return;
    }
    let max_budget = state
        .history
        .iter()
        .map(|r| 100.0 * r.budget)
        .fold(0.0f64, f64::max)
        .max(0.1);
    let datasets = line_datasets(&series, regions);
    // The legend where the curves are not: Dice rises from the bottom
    // left, HD95 falls from the top left (a corner on the right hid the
    // first round's low Dice, and later rounds' low HD95).
    let legend = match app.metric {
        Metric::Dice => LegendPosition::TopLeft,
        Metric::Hd95 => LegendPosition::BottomLeft,
    };
    frame.render_widget(
        Chart::new(datasets)
            .block(block)
            .legend_position(Some(legend))
            .x_axis(
                Axis::default()
                    .title("% labelled")
                    .bounds([0.0, max_budget])
                    .labels(["0".to_string(), format!("{max_budget:.1}")]),
            )
            .y_axis(match app.metric {
                Metric::Dice => Axis::default().title("Dice").bounds([0.0, 1.0]).labels([
                    "0".to_string(),
                    "0.5".into(),
                    "1".into(),
                ]),
                Metric::Hd95 => {
                    let top = series
                        .iter()
                        .flatten()
                        .map(|p| p.1)
                        .filter(|v| v.is_finite())
                        .fold(1.0f64, f64::max);
                    Axis::default()
                        .title("HD95 mm")
                        .bounds([0.0, top])
                        .labels(["0".to_string(), format!("{top:.0}")])
                }
            }),
        area,
    );
}
