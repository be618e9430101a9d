//! The latent map (the paper's Fig. 3/5, live): every pool slice at its VAE
//! latent on two chosen dimensions, the labelled slices, the latest
//! suggestions, and for each suggestion the gradient step from its source
//! (z → z') and the jump to the slice taken (z' → z_j).
//!
//! Imports the app's state, the key table (for its hints) and the frame's
//! styles.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style, Stylize};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::canvas::{Canvas, Line as Segment, Points};
use ratatui::widgets::{Block, Paragraph};

use super::DIM;
use crate::tui::app::App;
use crate::tui::keys;

/// Most pool points drawn: beyond this the map is a solid cloud anyway,
/// and a frame must stay cheap over SSH.
const MAX_POOL_POINTS: usize = 20_000;

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let (ax, ay) = app.axes;
    let block = Block::bordered()
        .title(format!(" latent map · z{ax} (→) vs z{ay} (↑) "))
        .title_bottom(
            Line::from(format!(
                " {}: change dimensions ",
                keys::DIMENSIONS.keys_text()
            ))
            .fg(DIM),
        );
    let Some(latents) = app.snapshot.latents.as_ref().filter(|l| !l.is_empty()) else {
        frame.render_widget(
            Paragraph::new(vec![
                Line::from("No latent map yet."),
                Line::from(format!(
                    "It appears once the VAE is trained {} and the pool encoded.",
                    keys::TRAIN_VAE.hint()
                ))
                .fg(DIM),
            ])
            .block(block),
            area,
        );
        return;
    };
    let dim = latents.dim;
    let (ax, ay) = (ax.min(dim - 1), ay.min(dim - 1));
    // The pool the budget counts: test cases' slices are never suggested.
    let in_pool = app.snapshot.pool.as_ref().map(|p| &p.in_pool);
    let pool_ids: Vec<usize> = (0..latents.len())
        .filter(|&i| in_pool.is_none_or(|p| p.get(i).copied().unwrap_or(false)))
        .collect();
    let n = pool_ids.len();
    let stride = n.div_ceil(MAX_POOL_POINTS).max(1);
    let pool: Vec<(f64, f64)> = pool_ids
        .iter()
        .step_by(stride)
        .map(|&i| {
            let z = &latents.values[i * dim..(i + 1) * dim];
            (z[ax] as f64, z[ay] as f64)
        })
        .collect();
    let (x_bounds, y_bounds) = bounds(&pool);
    let state = app.state();
    let ids = app.snapshot.pool.as_ref().map(|p| &p.ids);
    let labelled: Vec<(f64, f64)> = match (state, ids) {
        (Some(s), Some(ids)) => s
            .labelled
            .iter()
            .filter_map(|l| ids.get(&l.key))
            .filter_map(|&id| latents.get(id))
            .map(|z| (z[ax] as f64, z[ay] as f64))
            .collect(),
        _ => Vec::new(),
    };
    let rows = app.suggestion_rows();
    let suggested: Vec<(f64, f64)> = rows
        .iter()
        .filter(|r| !r.labelled)
        .filter_map(|r| r.id.and_then(|id| latents.get(id)))
        .map(|z| (z[ax] as f64, z[ay] as f64))
        .collect();
    // (z, z', z_j) for each gradient-guided suggestion.
    let arrows: Vec<[(f64, f64); 3]> = rows
        .iter()
        .filter_map(|r| {
            let p = |v: &Option<Vec<f32>>| {
                v.as_ref()
                    .filter(|v| v.len() == dim)
                    .map(|v| (v[ax] as f64, v[ay] as f64))
            };
            Some([p(&r.z)?, p(&r.z_prime)?, p(&r.z_chosen)?])
        })
        .collect();

    let step = state.and_then(|s| s.gradient_step.as_ref());
    let [map, step_line, legend] = Layout::vertical([
        Constraint::Min(0),
        Constraint::Length(u16::from(step.is_some())),
        Constraint::Length(1),
    ])
    .areas(area);
    if let Some(step) = step {
        frame.render_widget(Paragraph::new(step.short()).fg(DIM), step_line);
    }
    let block = block.title(
        Line::from(format!(
            " z{ax} {:.2} … {:.2} · z{ay} {:.2} … {:.2} ",
            x_bounds[0], x_bounds[1], y_bounds[0], y_bounds[1]
        ))
        .right_aligned()
        .fg(DIM),
    );
    let canvas = Canvas::default()
        .block(block)
        .marker(Marker::Braille)
        .x_bounds(x_bounds)
        .y_bounds(y_bounds)
        .paint(|ctx| {
            ctx.draw(&Points {
                coords: &pool,
                color: Color::DarkGray,
            });
            ctx.layer();
            for [z, zp, zj] in &arrows {
                ctx.draw(&Segment::new(z.0, z.1, zp.0, zp.1, Color::Magenta));
                ctx.draw(&Segment::new(zp.0, zp.1, zj.0, zj.1, Color::Cyan));
            }
            ctx.layer();
            ctx.draw(&Points {
                coords: &labelled,
                color: Color::Green,
            });
            ctx.draw(&Points {
                coords: &suggested,
                color: Color::Yellow,
            });
        });
    frame.render_widget(canvas, map);
    let dot = |c: Color, label: String| {
        [
            Span::styled("● ", Style::new().fg(c)),
            Span::raw(format!("{label}   ")),
        ]
    };
    let mut spans = Vec::new();
    spans.extend(dot(Color::DarkGray, format!("pool ({n})")));
    spans.extend(dot(Color::Green, format!("labelled ({})", labelled.len())));
    spans.extend(dot(
        Color::Yellow,
        format!("suggested ({})", suggested.len()),
    ));
    spans.extend([
        Span::styled("― ", Style::new().fg(Color::Magenta)),
        Span::raw("gradient step z→z'   "),
        Span::styled("― ", Style::new().fg(Color::Cyan)),
        Span::raw("z'→slice taken"),
    ]);
    frame.render_widget(Paragraph::new(Line::from(spans)), legend);
}

/// The 0.5th to 99.5th percentile on each axis, padded by 5%: a few
/// outlying slices must not squash the cloud into a corner.
fn bounds(points: &[(f64, f64)]) -> ([f64; 2], [f64; 2]) {
    let axis = |values: Vec<f64>| -> [f64; 2] {
        let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return [-1.0, 1.0];
        }
        v.sort_by(f64::total_cmp);
        let lo = v[v.len() / 200];
        let hi = v[v.len() - 1 - v.len() / 200];
        let pad = ((hi - lo) * 0.05).max(1e-3);
        [lo - pad, hi + pad]
    };
    (
        axis(points.iter().map(|p| p.0).collect()),
        axis(points.iter().map(|p| p.1).collect()),
    )
}
