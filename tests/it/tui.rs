//! The TUI drawn into ratatui's TestBackend from synthetic project states
//! and event logs: one snapshot per view (insta), and the key handling that
//! turns the guided flow into commands.

use std::path::PathBuf;
use std::sync::Arc;

use image::DynamicImage;
use nextslice::journal::{Event, Job, Logged, ProgressReport};
use nextslice::masks::preview::slice_picture;
use nextslice::masks::{AcceptedMask, ImportPlan};
use nextslice::project::Phase;
use nextslice::tui::app::{App, Command, Modal, Outcome, Tab, Update};
use nextslice::tui::images::fill_cells;
use nextslice::tui::views;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::layout::Rect;
use ratatui_image::Resize;
use ratatui_image::picker::Picker;

use super::tui_fixture::{self as fx, NOW};

fn draw(app: &App, width: u16, height: u16) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("terminal");
    terminal.draw(|f| views::render(f, app)).expect("draw");
    terminal
}

fn press(app: &mut App, code: KeyCode) -> Vec<Command> {
    app.update(Update::Key(KeyEvent::new(code, KeyModifiers::NONE)))
}

fn type_text(app: &mut App, text: &str) {
    for c in text.chars() {
        press(app, KeyCode::Char(c));
    }
}

#[test]
fn round_view_of_a_new_project_says_to_train_the_vae() {
    let app = fx::app(Phase::NeedVae, 0, 1200, &[], None);
    let t = draw(&app, 80, 24);
    insta::assert_snapshot!("round_new_project_80x24", t.backend());
}

#[test]
fn round_view_follows_a_running_job_from_the_event_log() {
    let events = fx::training_events(4242);
    let app = fx::app(Phase::Training, 3, 1200, &events, Some(4242));
    let t = draw(&app, 100, 30);
    insta::assert_snapshot!("round_training_running_100x30", t.backend());
    let text = format!("{}", t.backend());
    assert!(text.contains("epoch 4/10"), "{text}");
    assert!(text.contains("batch 12/38"), "{text}");
    assert!(text.contains("ETA 4m12s"), "{text}");
    assert!(text.contains("CUDA:0"), "{text}");
}

#[test]
fn a_job_whose_worker_vanished_is_reported_dead_not_running() {
    let events = fx::training_events(4242);
    let app = fx::app(Phase::Training, 3, 1200, &events, None);
    let t = draw(&app, 100, 30);
    let text = format!("{}", t.backend());
    assert!(text.contains("stopped without finishing"), "{text}");
    // The step is offered again (it resumes from its checkpoint).
    assert!(app.actions().iter().any(|a| a.key() == "t" && a.enabled));
}

#[test]
fn finished_jobs_show_their_outcome_to_a_tui_opened_later() {
    let mut events = fx::training_events(4242);
    events.push(Logged {
        time: NOW - 5.0,
        event: Event::JobFinished {
            job: Job::Train,
            summary: "round 3: U-Net trained on 18 slices (1.5% of the pool)".into(),
        },
    });
    let app = fx::app(Phase::Suggesting, 3, 1200, &events, None);
    let t = draw(&app, 100, 30);
    insta::assert_snapshot!("round_after_training_100x30", t.backend());
}

/// The app after the suggestions view was drawn once and its picture
/// (a synthetic slice, encoded as half-blocks) delivered.
fn suggestions_with_picture() -> App {
    let mut app = fx::app(Phase::AwaitingMasks, 3, 1200, &[], None);
    press(&mut app, KeyCode::Char('2'));
    draw(&app, 100, 30);
    let commands = app.update(Update::Drawn);
    let Some(Command::Image(request)) = commands.into_iter().next() else {
        panic!("the suggestions view asks for the selected slice's picture");
    };
    assert_eq!(request.key, fx::key(0, 13));
    // A disc with a "tumour" in class 2.
    let (h, w) = (32, 32);
    let mut plane = vec![0f32; h * w];
    let mut mask = vec![0u8; h * w];
    for r in 0..h {
        for c in 0..w {
            let (y, x) = (r as f32 - 15.5, c as f32 - 15.5);
            if x * x + y * y < 14.0 * 14.0 {
                plane[r * w + c] = 1.0 + (x + y) / 30.0;
            }
            if (x - 4.0).powi(2) + (y + 3.0).powi(2) < 16.0 {
                mask[r * w + c] = 2;
            }
        }
    }
    let picker = Picker::halfblocks();
    let picture = fill_cells(
        DynamicImage::ImageRgb8(slice_picture(&plane, h, w, Some(&mask))),
        &picker,
        request.cells,
    );
    let area = Rect::new(0, 0, request.cells.0, request.cells.1);
    let protocol = picker
        .new_protocol(picture, area, Resize::Fit(None))
        .expect("encode");
    app.update(Update::Image(request, Ok(protocol)));
    app
}

#[test]
fn suggestions_view_lists_provenance_and_draws_the_selected_slice() {
    let app = suggestions_with_picture();
    let t = draw(&app, 100, 30);
    insta::assert_snapshot!("suggestions_100x30", t.backend());
    let text = format!("{}", t.backend());
    assert!(text.contains("BraTS19_000:13"), "{text}");
    // How far this batch's gradient step moved, under the table.
    assert!(text.contains("calibrated step α 2.50e4"), "{text}");
    assert!(text.contains("4/5 picks moved by it"), "{text}");
    assert!(
        text.contains('▀') || text.contains('▄'),
        "the slice is drawn"
    );
}

#[test]
fn changing_modality_or_overlay_asks_for_a_new_picture() {
    let mut app = suggestions_with_picture();
    let commands = press(&mut app, KeyCode::Char('m'));
    assert!(
        matches!(&commands[..], [Command::Image(r)] if r.modality == 1),
        "{commands:?}"
    );
    let commands = press(&mut app, KeyCode::Char('j'));
    assert!(
        matches!(&commands[..], [Command::Image(r)] if r.key == fx::key(1, 14)),
        "{commands:?}"
    );
    // Nothing changes: nothing is asked again.
    assert!(app.update(Update::Drawn).is_empty());
}

#[test]
fn history_view_tabulates_and_charts_every_round() {
    let mut app = fx::app(Phase::Suggesting, 6, 1200, &[], None);
    press(&mut app, KeyCode::Char('3'));
    let t = draw(&app, 100, 30);
    insta::assert_snapshot!("history_100x30", t.backend());
    // h switches table and chart to HD95.
    press(&mut app, KeyCode::Char('h'));
    let t = draw(&app, 100, 30);
    insta::assert_snapshot!("history_hd95_100x30", t.backend());
    let text = format!("{}", t.backend());
    assert!(text.contains("HD95 mm"), "{text}");
    assert!(
        text.contains("34.0"),
        "round 0's WT HD95 in the table: {text}"
    );
}

#[test]
fn history_after_one_round_draws_its_point() {
    let mut app = fx::app(Phase::Suggesting, 1, 1200, &[], None);
    press(&mut app, KeyCode::Char('3'));
    let text = format!("{}", draw(&app, 100, 30).backend());
    let chart: String = text
        .lines()
        .filter_map(|l| l.split_once("││").map(|(_, right)| right.to_string()))
        .collect();
    assert!(chart.contains('•'), "round 0's Dice is drawn: {text}");
}

#[test]
fn latent_map_shows_pool_labelled_suggested_and_steps() {
    let mut app = fx::app(Phase::AwaitingMasks, 3, 1200, &[], None);
    press(&mut app, KeyCode::Char('4'));
    let t = draw(&app, 100, 30);
    insta::assert_snapshot!("latent_map_100x30", t.backend());
    let text = format!("{}", t.backend());
    assert!(text.contains("median |z′−z| 1.00× NN distance"), "{text}");
    // Another pair of dimensions is another picture.
    press(&mut app, KeyCode::Char('x'));
    assert_eq!(app.axes, (1, 1));
    press(&mut app, KeyCode::Char('x'));
    assert_eq!(app.axes, (2, 1));
}

fn plan() -> ImportPlan {
    ImportPlan {
        accepted: vec![AcceptedMask {
            key: fx::key(0, 13),
            file: PathBuf::from("/srv/masks/BraTS19_000_slice013_mask.nii.gz"),
            classes: vec![0; 4],
        }],
        problems: vec![(
            PathBuf::from("/srv/masks/BraTS19_001_slice014_mask.nii.gz"),
            "holds label 3, which is not in the label map (0, 1, 2, 4)".into(),
        )],
        missing: vec![fx::key(1, 14)],
        skipped: Vec::new(),
    }
}

#[test]
fn import_goes_prompt_then_report_then_confirm() {
    let mut app = fx::app(Phase::AwaitingMasks, 3, 1200, &[], None);
    assert!(press(&mut app, KeyCode::Char('i')).is_empty());
    type_text(&mut app, "round-3");
    let t = draw(&app, 100, 30);
    insta::assert_snapshot!("import_prompt_100x30", t.backend());

    let commands = press(&mut app, KeyCode::Enter);
    assert_eq!(
        commands,
        vec![Command::CheckImport(vec![PathBuf::from(
            "/srv/masks/round-3"
        )])]
    );
    app.update(Update::Done(Outcome::Checked(Arc::new(plan()))));
    let t = draw(&app, 100, 30);
    insta::assert_snapshot!("import_report_100x30", t.backend());

    // Back to the prompt and forward again changes nothing on disk: only
    // `y` asks to import.
    assert!(press(&mut app, KeyCode::Char('n')).is_empty());
    assert!(matches!(&app.modal, Some(Modal::Import(d)) if d.plan.is_none()));
    press(&mut app, KeyCode::Enter);
    app.update(Update::Done(Outcome::Checked(Arc::new(plan()))));
    assert_eq!(
        press(&mut app, KeyCode::Char('y')),
        vec![Command::ConfirmImport]
    );
    app.update(Update::Done(Outcome::Imported {
        accepted: 1,
        remaining: 4,
    }));
    assert!(app.modal.is_none());
    assert!(
        app.notice
            .as_ref()
            .is_some_and(|n| n.text.contains("4 still awaited"))
    );
}

#[test]
fn help_lists_the_keys() {
    let mut app = fx::app(Phase::NeedVae, 0, 1200, &[], None);
    press(&mut app, KeyCode::Char('?'));
    let t = draw(&app, 80, 24);
    insta::assert_snapshot!("help_80x24", t.backend());
    // Any key closes it.
    press(&mut app, KeyCode::Char('x'));
    assert!(app.modal.is_none());
}

#[test]
fn a_terminal_too_small_says_so() {
    let app = fx::app(Phase::NeedVae, 0, 1200, &[], None);
    let t = draw(&app, 60, 20);
    insta::assert_snapshot!("too_small_60x20", t.backend());
}

#[test]
fn the_guided_flow_offers_only_the_actions_of_the_phase() {
    let keys = |phase, worker| {
        let events = fx::training_events(4242);
        let app = fx::app(phase, 3, 600, &events, worker);
        app.actions()
            .iter()
            .filter(|a| a.enabled)
            .map(|a| a.key())
            .collect::<String>()
    };
    assert_eq!(keys(Phase::NeedVae, None), "va");
    assert_eq!(keys(Phase::Seeding, None), "sa");
    assert_eq!(keys(Phase::AwaitingMasks, None), "eia");
    assert_eq!(keys(Phase::Training, None), "ta");
    assert_eq!(keys(Phase::Suggesting, None), "na");
    assert_eq!(keys(Phase::Done, None), "a");
    // While a worker runs only cancel is live.
    assert_eq!(keys(Phase::Training, Some(4242)), "c");

    let mut app = fx::app(Phase::NeedVae, 0, 600, &[], None);
    assert_eq!(
        press(&mut app, KeyCode::Char('v')),
        vec![Command::Start(Job::TrainVae)]
    );
    // A second press while the first is starting does nothing.
    assert!(press(&mut app, KeyCode::Char('v')).is_empty());
    let mut app = fx::app(Phase::Training, 3, 600, &[], Some(4242));
    assert!(press(&mut app, KeyCode::Char('t')).is_empty());
    assert!(app.notice.as_ref().is_some_and(|n| n.error));
    assert_eq!(press(&mut app, KeyCode::Char('c')), vec![Command::Cancel]);
}

#[test]
fn tabs_cycle_and_quit_is_q() {
    let mut app = fx::app(Phase::NeedVae, 0, 600, &[], None);
    press(&mut app, KeyCode::Tab);
    assert_eq!(app.tab, Tab::Suggestions);
    press(&mut app, KeyCode::BackTab);
    press(&mut app, KeyCode::BackTab);
    assert_eq!(app.tab, Tab::Latent);
    assert!(!app.quit);
    press(&mut app, KeyCode::Char('q'));
    assert!(app.quit);
}

#[test]
fn q_is_typed_in_the_import_prompt_where_ctrl_c_still_quits() {
    let mut app = fx::app(Phase::AwaitingMasks, 3, 600, &[], None);
    press(&mut app, KeyCode::Char('i'));
    type_text(&mut app, "q");
    assert!(matches!(&app.modal, Some(Modal::Import(d)) if d.input.ends_with('q')));
    assert!(!app.quit);
    app.update(Update::Key(KeyEvent::new(
        KeyCode::Char('c'),
        KeyModifiers::CONTROL,
    )));
    assert!(app.quit);
    // Over the help, q quits too (any other key closes it).
    let mut app = fx::app(Phase::AwaitingMasks, 3, 600, &[], None);
    press(&mut app, KeyCode::Char('?'));
    press(&mut app, KeyCode::Char('q'));
    assert!(app.quit);
}

#[test]
fn the_import_prompt_starts_where_told() {
    let mut app = fx::app(Phase::AwaitingMasks, 3, 600, &[], None);
    press(&mut app, KeyCode::Char('i'));
    assert!(matches!(&app.modal, Some(Modal::Import(d)) if d.input == "/srv/masks/"));
    press(&mut app, KeyCode::Esc);
    app.import_prefill = Some("/data/demo/*/*_seg.nii.gz".into());
    press(&mut app, KeyCode::Char('i'));
    assert_eq!(
        press(&mut app, KeyCode::Enter),
        vec![Command::CheckImport(vec![PathBuf::from(
            "/data/demo/*/*_seg.nii.gz"
        )])]
    );
}

/// Results of a small simulation: gradient climbs faster than random.
fn simulation_rows() -> Vec<nextslice::simulate::Row> {
    let mut rows = Vec::new();
    for seed in 0..2 {
        for case in ["c1", "c2"] {
            for (region, scale) in [("WT", 1.0), ("TC", 0.6)] {
                for round in 0..3 {
                    for (strategy, gain) in [("gradient", 0.2), ("random", 0.12)] {
                        rows.push(nextslice::simulate::Row {
                            strategy: strategy.into(),
                            seed,
                            round,
                            labelled: 7 * (round + 1),
                            budget_percent: 2.0 * (round + 1) as f64,
                            case: case.into(),
                            region: region.into(),
                            dice: scale * (0.2 + gain * round as f64),
                            hd95_mm: 40.0 - 10.0 * gain * round as f64,
                        });
                    }
                }
                rows.push(nextslice::simulate::Row {
                    strategy: nextslice::simulate::FULL_DATA.into(),
                    seed,
                    round: 0,
                    labelled: 330,
                    budget_percent: 100.0,
                    case: case.into(),
                    region: region.into(),
                    dice: scale * 0.8,
                    hd95_mm: 8.0,
                });
            }
        }
    }
    rows
}

#[test]
fn history_view_switches_to_the_simulation_curves() {
    let mut app = fx::app(Phase::NeedVae, 0, 1200, &[], None);
    app.update(Update::Simulation(Some(Arc::new(simulation_rows()))));
    press(&mut app, KeyCode::Char('3'));
    let text = format!("{}", draw(&app, 100, 30).backend());
    assert!(text.contains("r: show the simulation"), "{text}");
    press(&mut app, KeyCode::Char('r'));
    let t = draw(&app, 100, 30);
    insta::assert_snapshot!("history_simulation_100x30", t.backend());
    let text = format!("{}", t.backend());
    assert!(text.contains("simulation · WT"), "{text}");
    assert!(text.contains("0.600"), "gradient's last WT Dice: {text}");
    assert!(
        text.contains("full data (100%)   0.800"),
        "the full-data reference: {text}"
    );
    // → shows the next region.
    press(&mut app, KeyCode::Right);
    let text = format!("{}", draw(&app, 100, 30).backend());
    assert!(text.contains("simulation · TC"), "{text}");
    press(&mut app, KeyCode::Char('r'));
    let text = format!("{}", draw(&app, 100, 30).backend());
    assert!(!text.contains("simulation ·"), "{text}");
}

fn progress(time: f64, done: u64, what: &str) -> Logged {
    Logged {
        time,
        event: Event::Progress(ProgressReport {
            epoch: Some(3),
            epochs: Some(20),
            loss: Some(-0.3),
            rate: Some(30.0),
            eta_seconds: Some(20.0),
            overall: Some(nextslice::journal::Overall {
                done,
                total: 40,
                what: what.into(),
            }),
            ..ProgressReport::stage(Job::Simulate, "U-Net training", 1, 2)
        }),
    }
}

#[test]
fn a_simulation_job_shows_its_overall_progress() {
    let start = NOW - 600.0;
    let events = vec![
        Logged {
            time: start,
            event: Event::JobStarted {
                job: Job::Simulate,
                pid: 77,
                device: "CPU (2 threads)".into(),
            },
        },
        // Resumed: four trainings were done by an earlier worker.
        progress(start, 4, "run 2/12: random · seed 0 · round 0 · suggest"),
        progress(
            start + 600.0,
            14,
            "run 3/12: oracle · seed 0 · round 2 · train",
        ),
    ];
    let app = fx::app(Phase::NeedVae, 0, 1200, &events, Some(77));
    let text = format!("{}", draw(&app, 100, 30).backend());
    assert!(text.contains("run 3/12: oracle"), "{text}");
    assert!(text.contains("14/40 trainings done"), "{text}");
    // 600 s for this worker's 10 trainings: 26 to go take 26 minutes.
    assert!(text.contains("ETA overall 26m"), "{text}");
}

#[test]
fn a_gpu_job_tuning_kernels_shows_the_stage_count_and_eta() {
    let start = NOW - 40.0;
    let events = vec![
        Logged {
            time: start,
            event: Event::JobStarted {
                job: Job::TrainVae,
                pid: 91,
                device: "CUDA:0 (NVIDIA H200)".into(),
            },
        },
        Logged {
            time: NOW - 1.0,
            event: Event::Progress(ProgressReport {
                unit: Some("workloads".into()),
                rate: Some(0.1),
                eta_seconds: Some(30.0),
                detail: Some(
                    "U-Net training step, batch 8; 12 kernels tuned · latest Conv2d".into(),
                ),
                ..ProgressReport::stage(Job::TrainVae, nextslice::engine::TUNING_STAGE, 2, 5)
            }),
        },
    ];
    let app = fx::app(Phase::NeedVae, 0, 1200, &events, Some(91));
    let text = format!("{}", draw(&app, 120, 30).backend());
    assert!(text.contains("stage tuning GPU kernels"), "{text}");
    assert!(text.contains("step 2/5"), "{text}");
    assert!(text.contains("12 kernels tuned"), "{text}");
    assert!(text.contains("ETA 30s"), "{text}");
    assert!(text.contains("CUDA:0 (NVIDIA H200)"), "{text}");
}

#[test]
fn a_job_that_ran_out_of_gpu_memory_shows_the_remedy_whole() {
    let mut events = fx::training_events(4242);
    events.push(Logged {
        time: NOW - 5.0,
        event: Event::JobFailed {
            job: Job::Train,
            error: "the job crashed: can't allocate buffer of size: 4294967296 (4.3 GB), in thread DSD-0-0; the device ran out of memory: lower unet.batch_size (or vae.batch_size) in project.toml, then run the step again. The job's own error followed: Error while reading data: An error happened during execution".into(),
        },
    });
    let app = fx::app(Phase::Training, 3, 1200, &events, None);
    let text = format!("{}", draw(&app, 100, 30).backend());
    let joined: String = text
        .lines()
        .map(|l| l.trim_matches(|c: char| c == '│' || c == '"' || c.is_whitespace()))
        .collect::<Vec<_>>()
        .join(" ");
    assert!(joined.contains("4.3 GB"), "{text}");
    assert!(
        joined.contains("lower unet.batch_size (or vae.batch_size) in project.toml"),
        "{text}"
    );
}
