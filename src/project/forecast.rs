//! Honest cost up front: before a training starts, how long it should take
//! at the rate this project last measured for that network, and what it
//! will write. The work is counted in slice passes (slices × epochs, times
//! the members of an ensemble); the rate is the slices/s the worker
//! logged during the last training of the same network, on the device it
//! ran on. Without such a measurement the forecast says so instead of
//! guessing.

use crate::config::{Config, Strategy};
use crate::journal::{Event, Job, Logged};

/// A training rate read back from the event log.
#[derive(Clone, Debug, PartialEq)]
pub struct MeasuredRate {
    pub slices_per_second: f64,
    /// The device the measuring job ran on, as its start event named it.
    pub device: String,
}

/// What a training job is expected to cost.
#[derive(Clone, Debug, PartialEq)]
pub struct Forecast {
    pub job: Job,
    /// Slices × epochs (× ensemble members) it will train on.
    pub slice_passes: u64,
    pub rate: Option<MeasuredRate>,
    /// Bytes of models it will write, when known.
    pub disk_bytes: Option<u64>,
}

impl Forecast {
    pub fn seconds(&self) -> Option<f64> {
        self.rate
            .as_ref()
            .filter(|r| r.slices_per_second > 0.0)
            .map(|r| self.slice_passes as f64 / r.slices_per_second)
    }

    /// One line for the CLI and the TUI.
    pub fn describe(&self) -> String {
        let time = match (&self.rate, self.seconds()) {
            (Some(rate), Some(s)) => format!(
                "projected {} for {} slice passes at {:.0} slices/s (measured here on {})",
                duration(s),
                self.slice_passes,
                rate.slices_per_second,
                rate.device
            ),
            _ => format!(
                "{} slice passes; no rate measured here yet (ETA from the first batches)",
                self.slice_passes
            ),
        };
        match self.disk_bytes {
            Some(b) => format!("{time}; writes ~{:.1} MB of models", b as f64 / 1e6),
            None => time,
        }
    }
}

/// "45 s", "12 min", "3.4 h".
pub fn duration(seconds: f64) -> String {
    if seconds < 90.0 {
        format!("~{seconds:.0} s")
    } else if seconds < 5400.0 {
        format!("~{:.0} min", seconds / 60.0)
    } else {
        format!("~{:.1} h", seconds / 3600.0)
    }
}

/// The progress stage a network's training reports under.
pub fn training_stage(vae: bool) -> &'static str {
    if vae {
        "VAE training"
    } else {
        "U-Net training"
    }
}

/// The median slices/s of the most recent job that trained `stage`, and
/// the device it ran on.
pub fn measured_rate(events: &[Logged], stage: &str) -> Option<MeasuredRate> {
    let last = events.iter().rposition(|e| match &e.event {
        Event::Progress(p) => p.stage == stage && p.rate.is_some_and(|r| r > 0.0),
        _ => false,
    })?;
    let start = events[..=last]
        .iter()
        .rposition(|e| matches!(e.event, Event::JobStarted { .. }))?;
    let device = match &events[start].event {
        Event::JobStarted { device, .. } => device.clone(),
        _ => String::new(),
    };
    let mut rates: Vec<f64> = events[start..=last]
        .iter()
        .filter_map(|e| match &e.event {
            Event::Progress(p) if p.stage == stage => p.rate.filter(|r| *r > 0.0),
            _ => None,
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    Some(MeasuredRate {
        slices_per_second: rates[rates.len() / 2],
        device,
    })
}

/// Slice passes of the VAE's training over a pool of `pool` slices.
pub fn vae_passes(config: &Config, pool: usize) -> u64 {
    (config.vae.epochs * pool) as u64
}

/// Slice passes of one round's U-Net training on `labelled` slices (DAL
/// trains its whole ensemble).
pub fn unet_passes(config: &Config, labelled: usize) -> u64 {
    let members = if config.sampling.strategy == Strategy::Dal {
        config.sampling.dal_models
    } else {
        1
    };
    (config.unet.epochs_for(labelled) * labelled * members) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Preset;
    use crate::journal::ProgressReport;

    fn logged(event: Event) -> Logged {
        Logged { time: 0.0, event }
    }

    fn progress(stage: &str, rate: f64) -> Logged {
        logged(Event::Progress(ProgressReport {
            rate: Some(rate),
            ..ProgressReport::stage(Job::Train, stage, 1, 2)
        }))
    }

    #[test]
    fn the_rate_is_the_median_of_the_last_training_of_that_network_on_its_device() {
        let events = vec![
            logged(Event::JobStarted {
                job: Job::Train,
                pid: 1,
                device: "CPU (2 threads)".into(),
            }),
            progress("U-Net training", 10.0),
            logged(Event::JobStarted {
                job: Job::Train,
                pid: 2,
                device: "CUDA 0".into(),
            }),
            progress("U-Net training", 300.0),
            progress("U-Net training", 100.0),
            progress("U-Net training", 200.0),
            progress("evaluate", 900.0),
        ];
        let rate = measured_rate(&events, "U-Net training").unwrap();
        assert_eq!(rate.slices_per_second, 200.0);
        assert_eq!(rate.device, "CUDA 0");
        assert_eq!(measured_rate(&events, "VAE training"), None);
    }

    #[test]
    fn forecasts_count_epochs_members_and_say_when_no_rate_is_known() {
        let demo = Config::preset(Preset::Demo);
        // 9 slices: 50 epochs (100 steps of 2 batches) of 9 slices.
        assert_eq!(unet_passes(&demo, 9), 450);
        let mut dal = demo.clone();
        dal.sampling.strategy = Strategy::Dal;
        assert_eq!(unet_passes(&dal, 9), 4 * 450);
        assert_eq!(vae_passes(&demo, 100), 800);
        let mut f = Forecast {
            job: Job::Train,
            slice_passes: 450,
            rate: None,
            disk_bytes: Some(2_000_000),
        };
        assert!(
            f.describe().contains("no rate measured"),
            "{}",
            f.describe()
        );
        f.rate = Some(MeasuredRate {
            slices_per_second: 3.0,
            device: "CPU".into(),
        });
        assert_eq!(f.seconds(), Some(150.0));
        assert!(
            f.describe()
                .starts_with("projected ~2 min for 450 slice passes")
        );
        assert!(f.describe().ends_with("writes ~2.0 MB of models"));
    }
}
