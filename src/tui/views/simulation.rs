//! The simulation's learning curves inside the history view: per strategy
//! the mean test score at each budget (table and chart) for one region, with
//! the full-data reference, from `simulate/results.csv`.
//!
//! Imports the app's state, the key table (for its hints), `chart`, the
//! frame's styles and the simulation's summaries; not `history` (the
//! frame picks between the two).

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style, Stylize};
use ratatui::symbols::Marker;
use ratatui::text::Line;
use ratatui::widgets::{Axis, Block, Chart, Dataset, GraphType, LegendPosition, Row, Table};

use super::DIM;
use super::chart::{format_score, line_datasets, metric_name};
use crate::simulate::summary::{self, Metric as SimMetric, cell, contest, curve};
use crate::simulate::{FULL_DATA, Row as Result};
use crate::tui::app::{App, Metric};
use crate::tui::keys;

fn sim_metric(metric: Metric) -> SimMetric {
    match metric {
        Metric::Dice => SimMetric::Dice,
        Metric::Hd95 => SimMetric::Hd95,
    }
}

pub fn render(frame: &mut Frame, area: Rect, app: &App, rows: &[Result]) {
    let regions = summary::regions(rows);
    let region = regions
        .get(app.region % regions.len().max(1))
        .cloned()
        .unwrap_or_default();
    let metric = sim_metric(app.metric);
    let strategies = summary::strategies(rows);
    let budgets = summary::budgets(rows);
    let [table_area, chart_area] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(area);

    let mut header = vec!["strategy".to_string()];
    header.extend(budgets.iter().map(|(_, b)| format!("{b:.1}%")));
    let winners: Vec<Option<f64>> = budgets
        .iter()
        .map(|&(round, _)| contest(rows, round, &region, metric).map(|c| c.best_mean))
        .collect();
    let mut table_rows: Vec<Row> = strategies
        .iter()
        .map(|s| {
            let mut cells = vec![ratatui::widgets::Cell::from(s.clone())];
            for (&(round, _), winner) in budgets.iter().zip(&winners) {
                let v = cell(rows, s, Some(round), &region, metric).mean;
                let text = format_score(v, app.metric);
                cells.push(if *winner == Some(v) {
                    ratatui::widgets::Cell::from(text).bold()
                } else {
                    ratatui::widgets::Cell::from(text)
                });
            }
            Row::new(cells)
        })
        .collect();
    let reference = cell(rows, FULL_DATA, None, &region, metric);
    if reference.n > 0 {
        table_rows.push(
            Row::new(vec![
                "full data (100%)".to_string(),
                format_score(reference.mean, app.metric),
            ])
            .style(Style::new().fg(DIM)),
        );
    }
    let mut widths = vec![Constraint::Length(18)];
    widths.extend(budgets.iter().map(|_| Constraint::Length(7)));
    let seeds = rows
        .iter()
        .map(|r| r.seed)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    frame.render_widget(
        Table::new(table_rows, widths)
            .header(Row::new(header).style(Style::new().bold()))
            .block(
                Block::bordered()
                    .title(format!(
                        " simulation · {region} · mean test {} over {seeds} seed(s) ",
                        metric_name(app.metric)
                    ))
                    .title_bottom(
                        Line::from(format!(
                            " {}: Dice ⇄ HD95 · {}: region · {}: this project ",
                            keys::METRIC.key(),
                            keys::REGION.key(),
                            keys::SIMULATION.key()
                        ))
                        .fg(DIM),
                    ),
            ),
        table_area,
    );

    let series: Vec<Vec<(f64, f64)>> = strategies
        .iter()
        .map(|s| {
            curve(rows, s, &region, metric)
                .into_iter()
                .map(|(x, v)| (x, v.mean))
                .collect()
        })
        .collect();
    let max_budget = budgets.iter().map(|b| b.1).fold(0.1f64, f64::max);
    let reference_line = if reference.n > 0 {
        vec![(0.0, reference.mean), (max_budget, reference.mean)]
    } else {
        Vec::new()
    };
    let mut datasets = line_datasets(&series, &strategies);
    if !reference_line.is_empty() {
        datasets.push(
            Dataset::default()
                .name("full data")
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .style(Style::new().fg(Color::DarkGray))
                .data(&reference_line),
        );
    }
    let top = match metric {
        SimMetric::Dice => 1.0,
        SimMetric::Hd95 => series
            .iter()
            .flatten()
            .map(|p| p.1)
            .chain(reference_line.iter().map(|p| p.1))
            .filter(|v| v.is_finite())
            .fold(1.0f64, f64::max),
    };
    frame.render_widget(
        Chart::new(datasets)
            .block(Block::bordered().title(format!(
                " {region} · test {} vs % of the pool labelled ",
                metric_name(app.metric)
            )))
            .legend_position(Some(LegendPosition::TopLeft))
            .x_axis(
                Axis::default()
                    .title("% labelled")
                    .bounds([0.0, max_budget])
                    .labels(["0".to_string(), format!("{max_budget:.1}")]),
            )
            .y_axis(
                Axis::default()
                    .title(metric_name(app.metric))
                    .bounds([0.0, top])
                    .labels(["0".to_string(), format_score(top, app.metric)]),
            ),
        chart_area,
    );
}
