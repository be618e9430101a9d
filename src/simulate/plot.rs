//! Learning curves as a PNG: mean Dice against the share of the pool
//! labelled, one panel per region, one line per strategy, the full-data
//! reference as a grey line.

use std::path::Path;
use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use crate::fsutil::write_atomic;

use super::SimulateError;
use super::plan::FULL_DATA;
use super::results::Row;
use super::summary::{Metric, cell, curve, regions, strategies};

pub const CURVES_FILE: &str = "curves.png";

const PANEL_WIDTH: u32 = 520;
const HEIGHT: u32 = 440;

/// Line colours, picked by strategy order.
const COLOURS: [RGBColor; 8] = [
    RGBColor(214, 39, 40),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];

/// Embedded DejaVu Sans, registered once: plotters' ab_glyph text backend
/// knows no fonts of its own.
fn fonts() -> Result<(), SimulateError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular()).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(SimulateError::Plot(
            "the embedded font is unreadable".into(),
        ))
    }
}

fn plot_error(e: impl std::fmt::Display) -> SimulateError {
    SimulateError::Plot(e.to_string())
}

/// Draws the curves into an RGB buffer and returns it as PNG bytes.
pub fn render(rows: &[Row]) -> Result<Vec<u8>, SimulateError> {
    fonts()?;
    let regions = regions(rows);
    let strategies = strategies(rows);
    let panels = regions.len().max(1) as u32;
    let (width, height) = (PANEL_WIDTH * panels, HEIGHT);
    let mut pixels = vec![0u8; (width * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let max_budget = rows
            .iter()
            .filter(|r| r.strategy != FULL_DATA)
            .map(|r| r.budget_percent)
            .fold(0.0f64, f64::max);
        let x_range = 0.0..(max_budget * 1.1).max(1.0);
        for (area, region) in root.split_evenly((1, panels as usize)).iter().zip(&regions) {
            let mut chart = ChartBuilder::on(area)
                .caption(format!("{region} · test-set Dice"), ("sans-serif", 20))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(48)
                .build_cartesian_2d(x_range.clone(), 0.0..1.0f64)
                .map_err(plot_error)?;
            chart
                .configure_mesh()
                .x_desc("% of the pool labelled")
                .y_desc("Dice")
                .label_style(("sans-serif", 14))
                .draw()
                .map_err(plot_error)?;
            let reference = cell(rows, FULL_DATA, None, region, Metric::Dice);
            if reference.n > 0 {
                let grey = RGBColor(120, 120, 120);
                chart
                    .draw_series(LineSeries::new(
                        [
                            (x_range.start, reference.mean),
                            (x_range.end, reference.mean),
                        ],
                        grey.stroke_width(1),
                    ))
                    .map_err(plot_error)?
                    .label("full data")
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], grey));
            }
            for (k, strategy) in strategies.iter().enumerate() {
                let colour = COLOURS[k % COLOURS.len()];
                let points: Vec<(f64, f64)> = curve(rows, strategy, region, Metric::Dice)
                    .into_iter()
                    .map(|(x, s)| (x, s.mean))
                    .collect();
                chart
                    .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))
                    .map_err(plot_error)?
                    .label(strategy.as_str())
                    .legend(move |(x, y)| {
                        PathElement::new([(x, y), (x + 18, y)], colour.stroke_width(2))
                    });
                chart
                    .draw_series(points.iter().map(|&p| Circle::new(p, 3, colour.filled())))
                    .map_err(plot_error)?;
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::MiddleLeft)
                .label_font(("sans-serif", 14))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(plot_error)?;
        }
        root.present().map_err(plot_error)?;
    }
    let mut png = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut png, width, height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(plot_error)?;
        writer.write_image_data(&pixels).map_err(plot_error)?;
    }
    Ok(png)
}

pub fn write(path: &Path, rows: &[Row]) -> Result<(), SimulateError> {
    let png = render(rows)?;
    write_atomic(path, &png).map_err(|source| SimulateError::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_a_png_with_a_line_per_strategy() {
        let row = |strategy: &str, round: usize, dice: f64| Row {
            strategy: strategy.into(),
            seed: 0,
            round,
            labelled: round + 1,
            budget_percent: 2.0 * (round + 1) as f64,
            case: "a".into(),
            region: "WT".into(),
            dice,
            hd95_mm: 1.0,
        };
        let rows = vec![
            row("gradient", 0, 0.2),
            row("gradient", 1, 0.6),
            row("random", 0, 0.2),
            row("random", 1, 0.4),
            row(FULL_DATA, 0, 0.8),
        ];
        let png = render(&rows).expect("a plot");
        let decoder = png::Decoder::new(std::io::Cursor::new(png));
        let mut reader = decoder.read_info().expect("a PNG");
        let mut pixels = vec![0; reader.output_buffer_size().expect("a size")];
        let info = reader.next_frame(&mut pixels).expect("a frame");
        assert_eq!((info.width, info.height), (PANEL_WIDTH, HEIGHT));
        // The first strategy's red is drawn somewhere.
        let red = pixels
            .chunks(3)
            .filter(|p| p[0] == 214 && p[1] == 39 && p[2] == 40)
            .count();
        assert!(red > 50, "{red} red pixels");
    }
}
