//! The forecast printed before a training job starts: projected time from
//! the rate this project last measured, and the models it will write.

use burn::backend::Flex;
use burn::module::Module;

use nextslice::config::Config;
use nextslice::journal::{EventLog, Job};
use nextslice::model::{UNetSpec, VaeSpec};
use nextslice::project::forecast::{
    Forecast, duration, measured_rate, training_stage, unet_passes, vae_passes,
};
use nextslice::project::{Phase, Project, SliceIndex};
use nextslice::simulate::{load_plan, runs};
use nextslice::store::SliceStore;

/// Bytes of one U-Net's and one VAE's weights (f32) under `config`.
pub fn model_bytes(config: &Config) -> (u64, u64) {
    let device = Default::default();
    let unet = UNetSpec::from_config(config)
        .init::<Flex>(&device)
        .num_params() as u64
        * 4;
    let vae = VaeSpec::from_config(config)
        .init::<Flex>(&device)
        .num_params() as u64
        * 4;
    (unet, vae)
}

/// Pool slices, once the store exists (a first job builds it).
fn pool_size(project: &Project, test_cases: &[String]) -> Option<usize> {
    let store = SliceStore::open(&project.current_store_dir()?).ok()?;
    Some(SliceIndex::new(&store, test_cases).pool().len())
}

/// The forecast line for `job`, when it trains and its work is known.
pub fn line(project: &Project, job: Job) -> Option<String> {
    let state = project.state().ok()?;
    let events = EventLog::new(&project.dir).read_all().ok()?;
    let config = &project.config;
    let (unet_bytes, vae_bytes) = model_bytes(config);
    match job {
        Job::TrainVae if state.phase == Phase::NeedVae => {
            let Some(pool) = pool_size(project, &state.test_cases) else {
                return Some(
                    "the slice store is built first; the VAE's projected time follows once the pool is known"
                        .into(),
                );
            };
            let forecast = Forecast {
                job,
                slice_passes: vae_passes(config, pool),
                rate: measured_rate(&events, training_stage(true)),
                disk_bytes: Some(vae_bytes),
            };
            Some(format!("train-vae: {}", forecast.describe()))
        }
        Job::Train if state.phase == Phase::Training => {
            let forecast = Forecast {
                job,
                slice_passes: unet_passes(config, state.labelled.len()),
                rate: measured_rate(&events, training_stage(false)),
                disk_bytes: Some(unet_bytes),
            };
            Some(format!("train: {}", forecast.describe()))
        }
        Job::Simulate => {
            let plan = load_plan(project).ok()??;
            let pool = pool_size(project, &state.test_cases)?;
            let passes: u64 = runs(&plan)
                .iter()
                .map(|s| s.slice_passes(&plan, pool))
                .sum();
            let Some(rate) = measured_rate(&events, training_stage(false)) else {
                return Some(format!(
                    "simulate: {passes} slice passes of U-Net training; no rate measured here yet (ETA from the first batches)"
                ));
            };
            Some(format!(
                "simulate: U-Net trainings projected at {} ({passes} slice passes at {:.0} slices/s, measured here on {}), evaluation and suggestion on top",
                duration(passes as f64 / rate.slices_per_second.max(1e-9)),
                rate.slices_per_second,
                rate.device
            ))
        }
        _ => None,
    }
}
