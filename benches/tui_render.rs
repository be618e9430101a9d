//! Frame time of every TUI view at 200×60, on a project with a long history
//! (40 rounds), a running job with a full loss curve, and a 50 000-slice
//! latent map — what one redraw costs over SSH. Goal: well under 10 ms.
//!
//! `cargo bench --bench tui_render`

#[path = "../tests/it/tui_fixture.rs"]
mod tui_fixture;

#[path = "common.rs"]
mod common;

use nextslice::project::Phase;
use nextslice::tui::app::{App, Tab, Update};
use nextslice::tui::views;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

fn frame_ms(app: &App, terminal: &mut Terminal<TestBackend>) -> f64 {
    // Each draw diffs against the previous frame, as on a real terminal;
    // clearing first makes every frame a full redraw (the worst case).
    let seconds = common::median_seconds_after(3, 31, || {
        terminal.clear().expect("clear");
        terminal.draw(|f| views::render(f, app)).expect("draw");
    });
    1e3 * seconds
}

fn main() {
    let pool = 50_000;
    let events = tui_fixture::training_events(4242);
    let mut terminal = Terminal::new(TestBackend::new(200, 60)).expect("terminal");
    println!("TUI frame time at 200×60 (median of 31 full redraws; pool {pool} slices, 40 rounds)");
    let cases: [(&str, Phase, Tab, Option<u32>); 5] = [
        (
            "round (job running)",
            Phase::Training,
            Tab::Round,
            Some(4242),
        ),
        ("suggestions", Phase::AwaitingMasks, Tab::Suggestions, None),
        ("history", Phase::Suggesting, Tab::History, None),
        ("latent map", Phase::AwaitingMasks, Tab::Latent, None),
        ("import dialog", Phase::AwaitingMasks, Tab::Round, None),
    ];
    for (name, phase, tab, worker) in cases {
        let mut app = tui_fixture::app(phase, 40, pool, &events, worker);
        app.tab = tab;
        if name == "import dialog" {
            app.update(Update::Key(KeyEvent::new(
                KeyCode::Char('i'),
                KeyModifiers::NONE,
            )));
        }
        let ms = frame_ms(&app, &mut terminal);
        println!(
            "{name:<22} {ms:>7.3} ms/frame  ({:>6.0} frames/s)",
            1e3 / ms
        );
    }
}
