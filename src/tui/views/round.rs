//! The round view: where the round is, what to do next, and the current
//! (or last) job: stage, epoch, batch, rate, elapsed, ETA, device and its
//! loss curve.
//!
//! Imports the app's state, the job log's types and the frame's styles.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Style, Stylize};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, Chart, Dataset, GraphType, LineGauge, Paragraph, Wrap};

use super::{ACCENT, BAD, DIM, GOOD, WARN, duration};
use crate::journal::{Job, Phase};
use crate::project::forecast::{Forecast, unet_passes, vae_passes};
use crate::tui::app::App;
use crate::tui::jobs::{JobOutcome, JobRun, Liveness, liveness};

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let [next, job, log] = Layout::vertical([
        Constraint::Length(6),
        Constraint::Min(8),
        Constraint::Length(5),
    ])
    .areas(area);
    next_step(frame, next, app);
    match app.jobs.latest() {
        Some(run) => job_panel(frame, job, app, run),
        None => frame.render_widget(
            Paragraph::new("No job has run in this project yet.")
                .style(Style::new().fg(DIM))
                .block(Block::bordered().title(" job ")),
            job,
        ),
    }
    recent(frame, log, app);
}

fn next_step(frame: &mut Frame, area: Rect, app: &App) {
    let mut lines = vec![Line::from(app.headline().bold())];
    if let Some(state) = app.state() {
        let pool = app
            .snapshot
            .pool
            .as_ref()
            .map_or("pool not built yet".to_string(), |p| {
                format!("pool {} slices", p.pool)
            });
        lines.push(Line::from(Span::styled(
            format!(
                "{} labelled · {} awaiting masks · {pool} · {} test cases held out · round {} of {}",
                state.labelled.len(),
                state.pending.len(),
                state.test_cases.len(),
                state.round,
                app.snapshot.config.sampling.rounds
            ),
            Style::new().fg(DIM),
        )));
    }
    // Only what the keys allow now (while a job runs: cancel); the key bar
    // still lists the rest, dimmed.
    let mut spans = Vec::new();
    for a in app.actions().into_iter().filter(|a| a.enabled) {
        let key_style = Style::new().fg(ACCENT).bold();
        spans.push(Span::styled(format!("{} ", a.binding.hint()), key_style));
        spans.push(Span::raw(format!(
            "{}   ",
            a.binding.next.unwrap_or(a.binding.help)
        )));
    }
    // The spare line: what the next training should cost, else how the
    // U-Net that will steer the next suggestion did on held-out slices,
    // else the VAE's test-slice quality.
    let spare = forecast(app)
        .or_else(|| {
            app.state()
                .filter(|s| s.phase == Phase::Suggesting)
                .and_then(|s| s.history.last()?.validation.as_ref())
                .map(|v| {
                    format!(
                        "round U-Net on held-out labelled slices: Dice {}",
                        v.short()
                    )
                })
        })
        .or_else(|| {
            app.state()
                .and_then(|s| s.vae_quality.as_ref())
                .map(|q| q.short())
        });
    lines.push(Line::from(Span::styled(
        spare.unwrap_or_default(),
        Style::new().fg(DIM),
    )));
    lines.push(Line::from(spans));
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" next ").border_style(ACCENT)),
        area,
    );
}

/// The forecast of the training the project waits for, if one does.
fn forecast(app: &App) -> Option<String> {
    if app.running_job().is_some() {
        return None; // the job panel has its live ETA
    }
    let state = app.state()?;
    let config = &app.snapshot.config;
    let (job, passes, rate) = match state.phase {
        Phase::NeedVae => {
            let pool = app.snapshot.pool.as_ref()?.pool;
            (Job::TrainVae, vae_passes(config, pool), &app.jobs.vae_rate)
        }
        Phase::Training => (
            Job::Train,
            unet_passes(config, state.labelled.len()),
            &app.jobs.unet_rate,
        ),
        _ => return None,
    };
    let forecast = Forecast {
        job,
        slice_passes: passes,
        rate: rate.clone(),
        disk_bytes: None,
    };
    Some(format!("{}: {}", job.name(), forecast.describe()))
}

fn job_panel(frame: &mut Frame, area: Rect, app: &App, run: &JobRun) {
    let live = liveness(run, app.snapshot.worker.as_ref(), app.now);
    let (status, colour) = match (&run.outcome, live) {
        (_, Liveness::Died) => (
            "stopped without finishing (killed or crashed) — run the step again to resume"
                .to_string(),
            BAD,
        ),
        (JobOutcome::Running, _) => ("running".to_string(), WARN),
        (JobOutcome::Finished(s), _) => (format!("finished · {s}"), GOOD),
        (JobOutcome::Failed(e), _) => (format!("failed · {e}"), BAD),
        (JobOutcome::Cancelled, _) => (
            "cancelled — its last checkpoint is kept; run it again to resume".into(),
            WARN,
        ),
    };
    let block = Block::bordered().title(Line::from(vec![
        Span::raw(" job: "),
        Span::styled(run.job.name(), Style::new().bold()),
        Span::raw(" "),
    ]));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    // A failure's message wraps, so its remedy (at its end) is never cut.
    let status = Paragraph::new(Line::from(Span::styled(status, Style::new().fg(colour))))
        .wrap(Wrap { trim: true });
    let status_rows = status.line_count(inner.width).clamp(1, 4) as u16;
    let [head, info, gauge, chart] = Layout::vertical([
        Constraint::Length(status_rows),
        Constraint::Length(2 + u16::from(run.overall.is_some())),
        Constraint::Length(1),
        Constraint::Min(0),
    ])
    .areas(inner);
    frame.render_widget(status, head);

    let mut where_ = vec![format!("device {}", or_dash(&run.device))];
    if !run.stage.is_empty() {
        where_.push(format!("stage {}", run.stage));
    }
    if let (Some(e), Some(n)) = (run.epoch, run.epochs) {
        where_.push(format!("epoch {e}/{n}"));
    }
    if run.total > 0 {
        let unit = if run.epoch.is_some() { "batch" } else { "step" };
        where_.push(format!("{unit} {}/{}", run.done, run.total));
    }
    if let Some(detail) = run.detail.as_ref().filter(|_| run.is_running()) {
        where_.push(detail.clone());
    }
    let (rate, eta) = run.rate_and_eta();
    let unit = match (&run.unit, run.epoch) {
        (Some(unit), _) => unit.as_str(),
        (None, Some(_)) => "slices",
        (None, None) => "items",
    };
    let timing = format!(
        "elapsed {} · {}{}",
        duration(Some(run.elapsed(app.now))),
        rate.map_or(String::new(), |r| format!("{r:.1} {unit}/s · ")),
        if run.is_running() {
            format!("ETA {}", duration(eta))
        } else {
            "ended".into()
        }
    );
    let mut lines = vec![Line::from(where_.join(" · ")), Line::from(timing)];
    if let Some(o) = &run.overall {
        let eta = if run.is_running() {
            format!(" · ETA overall {}", duration(run.overall_eta(app.now)))
        } else {
            String::new()
        };
        lines.insert(
            0,
            Line::from(format!(
                "{} · {}/{} trainings done{eta}",
                o.what, o.done, o.total
            )),
        );
    }
    frame.render_widget(Paragraph::new(lines), info);
    let fraction = if matches!(run.outcome, JobOutcome::Finished(_)) {
        1.0
    } else {
        run.fraction()
    };
    frame.render_widget(
        LineGauge::default()
            .filled_style(Style::new().fg(ACCENT))
            .ratio(fraction.clamp(0.0, 1.0))
            .label(format!("{:>3.0}%", 100.0 * fraction)),
        gauge,
    );
    loss_chart(frame, chart, run);
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() { "–" } else { s }
}

fn loss_chart(frame: &mut Frame, area: Rect, run: &JobRun) {
    if area.height < 4 {
        return;
    }
    if run.losses.is_empty() {
        let trains = matches!(run.job, Job::TrainVae | Job::Train | Job::Simulate);
        let text = if run.is_running() && trains {
            "(no loss reported yet)"
        } else {
            "(this job trains nothing: no loss curve)"
        };
        frame.render_widget(Paragraph::new(text).style(Style::new().fg(DIM)), area);
        return;
    }
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for &(_, l) in &run.losses {
        lo = lo.min(l);
        hi = hi.max(l);
    }
    if hi - lo < 1e-9 {
        hi = lo + 1e-3;
    }
    let t_start = run.losses.first().map_or(0.0, |p| p.0);
    let t_end = run.losses.last().map_or(1.0, |p| p.0).max(t_start + 1e-3);
    let data = Dataset::default()
        .name("loss")
        .marker(Marker::Braille)
        .graph_type(GraphType::Line)
        .style(Style::new().fg(ACCENT))
        .data(&run.losses);
    let last = run.losses.last().map_or(f64::NAN, |p| p.1);
    let chart = Chart::new(vec![data])
        .x_axis(
            Axis::default()
                .title("time")
                .bounds([t_start, t_end])
                .labels([duration(Some(t_start)), duration(Some(t_end))]),
        )
        .y_axis(
            Axis::default()
                .bounds([lo, hi])
                .labels([format!("{lo:.3}"), format!("{hi:.3}")]),
        )
        .legend_position(None);
    let [title, plot] = Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(area);
    frame.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled("training loss ", Style::new().bold()),
            Span::styled(format!("(now {last:.4})"), Style::new().fg(DIM)),
        ])),
        title,
    );
    frame.render_widget(chart, plot);
}

fn recent(frame: &mut Frame, area: Rect, app: &App) {
    let rows = area.height.saturating_sub(2) as usize;
    let mut items: Vec<(f64, String)> = app.jobs.transitions.clone();
    for r in &app.jobs.runs {
        if let Some(end) = r.ended {
            let what = match &r.outcome {
                JobOutcome::Finished(s) => format!("{} finished: {s}", r.job),
                JobOutcome::Failed(e) => format!("{} failed: {e}", r.job),
                JobOutcome::Cancelled => format!("{} cancelled", r.job),
                JobOutcome::Running => continue,
            };
            items.push((end, what));
        }
    }
    items.sort_by(|a, b| a.0.total_cmp(&b.0));
    let lines: Vec<Line> = items
        .iter()
        .rev()
        .take(rows)
        .rev()
        .map(|(t, s)| {
            Line::from(vec![
                Span::styled(
                    format!("{} ago  ", duration(Some(app.now - t))),
                    Style::new().fg(DIM),
                ),
                Span::raw(s.clone()),
            ])
        })
        .collect();
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" recent ")),
        area,
    );
}
