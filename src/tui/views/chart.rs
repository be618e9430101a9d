//! What the history and simulation views share: the metric's name and
//! number format, and the coloured line per series of their charts.
//!
//! A leaf among the views: imports ratatui and the app's `Metric` only.

use ratatui::style::{Color, Style};
use ratatui::symbols::Marker;
use ratatui::widgets::{Dataset, GraphType};

use crate::tui::app::Metric;

/// The metric as axis and titles name it.
pub(super) fn metric_name(metric: Metric) -> &'static str {
    match metric {
        Metric::Dice => "Dice",
        Metric::Hd95 => "HD95 mm",
    }
}

/// A score in the metric's precision; "–" for none (NaN).
pub(super) fn format_score(v: f64, metric: Metric) -> String {
    if v.is_nan() {
        return "–".into();
    }
    match metric {
        Metric::Dice => format!("{v:.3}"),
        Metric::Hd95 => format!("{v:.1}"),
    }
}

/// One braille line per series, named and coloured in order; a series of
/// one point (the first round) as a dot, which a line cannot draw.
pub(super) fn line_datasets<'a>(
    series: &'a [Vec<(f64, f64)>],
    names: &[String],
) -> Vec<Dataset<'a>> {
    series
        .iter()
        .zip(names)
        .enumerate()
        .map(|(i, (points, name))| {
            let (marker, graph) = match points.len() {
                1 => (Marker::Dot, GraphType::Scatter),
                _ => (Marker::Braille, GraphType::Line),
            };
            Dataset::default()
                .name(name.clone())
                .marker(marker)
                .graph_type(graph)
                .style(Style::new().fg(SERIES[i % SERIES.len()]))
                .data(points)
        })
        .collect()
}

const SERIES: [Color; 6] = [
    Color::Cyan,
    Color::Magenta,
    Color::Yellow,
    Color::Green,
    Color::Blue,
    Color::Red,
];
