//! Test-set evaluation: every stored slice of each held-out volume is
//! predicted in one pass, the predictions are put back on the volume's
//! own canonical grid (`native`: slices not stored, having no brain, and
//! voxels outside the crop window are background), and each region is
//! scored there against the case's label file with `eval`: Dice, and HD95
//! in mm from that grid's spacing, with the BraTS conventions for empty
//! regions. The phase does not change.

use std::collections::HashMap;
use std::path::PathBuf;

use burn::tensor::backend::AutodiffBackend;

use super::context::{EngineError, StepContext};
use super::infer::{Pass, UNET_BATCH, class_map, predict};
use super::models::load_unets;
use super::native::NativeScores;
use crate::config::Config;
use crate::eval::{self, Region, RegionScore};
use crate::layout::{EVALUATION_FILE, EVALUATION_FIRST_MEMBER_FILE};
use crate::project::{Project, per_region};

/// Test-set scores: mean over the held-out volumes of each region's Dice
/// and HD95 (mm).
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    pub dice: Vec<(String, f64)>,
    pub hd95: Vec<(String, f64)>,
    pub volumes: usize,
}

impl Evaluation {
    /// One line for the log and the CLI.
    pub fn summary(&self) -> String {
        format!(
            "test-set Dice: {} · HD95 mm: {} ({} volumes)",
            per_region(&self.dice, 3),
            per_region(&self.hd95, 1),
            self.volumes
        )
    }
}

/// Scores the last trained U-Net (or ensemble) on the test volumes; the
/// means go on the last trained round's history entry, the per-volume
/// scores to its `evaluation.csv`.
pub fn evaluate_step<B: AutodiffBackend>(
    project: &Project,
    ctx: &StepContext<'_>,
    device: &B::Device,
) -> Result<Evaluation, EngineError> {
    let state = project.state()?;
    let (store, index) = ctx.open_store(project, &state)?;
    let models = load_unets::<B>(project, &state, device)?;
    let regions = evaluation_regions(&project.config);
    let mut test_ids: Vec<usize> = (0..index.len()).filter(|&i| index.is_test(i)).collect();
    if test_ids.is_empty() {
        return Err(EngineError::NoTestSet);
    }
    if test_ids.iter().any(|&i| !store.has_label(i)) {
        return Err(EngineError::TestWithoutTruth);
    }
    // Volume by volume, so one volume is held in memory at a time.
    test_ids.sort_by_key(|&id| (store.entries()[id].volume, id));
    // Truth from the label files, where discovery finds them now.
    // (Else the paths the store recorded.)
    let labels: HashMap<String, PathBuf> = project
        .discover()
        .map(|d| d.cases)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|c| Some((c.id, c.label?)))
        .collect();
    let axis = project.config.slicing.axis;
    let mut volumes = NativeScores::new(store.meta(), axis, &regions, &labels);
    // An ensemble's first member is also scored alone, so DAL's rows can
    // separate what its selection gains from what ensembling does.
    let mut first =
        (models.len() > 1).then(|| NativeScores::new(store.meta(), axis, &regions, &labels));
    let pass = Pass::new("evaluate", "test volumes", UNET_BATCH);
    pass.run::<B::InnerBackend>(&store, &test_ids, ctx, device, |batch, x| {
        if let Some(first) = first.as_mut() {
            let alone = class_map(predict(&models[..1], x.clone())?)?;
            first.add(&store, batch.ids, batch.real(&alone))?;
        }
        let predicted = class_map(predict(&models, x)?)?;
        volumes.add(&store, batch.ids, batch.real(&predicted))
    })?;
    let scored = volumes.finish()?;

    let mean = |r: usize, pick: fn(&RegionScore) -> f64| {
        let values: Vec<f64> = scored.iter().map(|(_, v)| pick(&v[r])).collect();
        eval::summarize(&values).mean
    };
    let mean_by_region = |pick: fn(&RegionScore) -> f64| -> Vec<(String, f64)> {
        regions
            .iter()
            .enumerate()
            .map(|(r, region)| (region.name.clone(), mean(r, pick)))
            .collect()
    };
    let evaluation = Evaluation {
        dice: mean_by_region(|s| s.dice),
        hd95: mean_by_region(|s| s.hd95),
        volumes: scored.len(),
    };
    // After a suggestion `state.round` has already moved on to the next,
    // untrained round: the scores belong to the last trained one.
    let scored_round = state.history.last().map_or(state.round, |r| r.round);
    if let Some(first) = first {
        let path = project
            .round_dir(scored_round)
            .join(EVALUATION_FIRST_MEMBER_FILE);
        let csv = per_volume_csv(&first.finish()?);
        crate::fsutil::write_atomic(&path, csv.as_bytes()).map_err(EngineError::io(&path))?;
    }
    let csv_path = project.round_dir(scored_round).join(EVALUATION_FILE);
    crate::fsutil::write_atomic(&csv_path, per_volume_csv(&scored).as_bytes())
        .map_err(EngineError::io(&csv_path))?;
    // Patch only that round's entry of the state as it is now.
    let mut now = project.state()?;
    if let Some(record) = now.history.iter_mut().find(|r| r.round == scored_round) {
        record.dice = evaluation.dice.clone();
        record.hd95 = evaluation.hd95.clone();
        now.save(&project.dir)?;
    }
    Ok(evaluation)
}

/// The configured evaluation regions (BraTS: WT, TC, ET), for scoring.
pub(super) fn evaluation_regions(config: &Config) -> Vec<Region> {
    config
        .labels
        .evaluation_regions()
        .into_iter()
        .map(|r| {
            let values: Vec<i64> = r.values.iter().map(|&v| i64::from(v)).collect();
            Region::new(r.name, &values)
        })
        .collect()
}

/// Per volume, for paired comparisons between runs (Wilcoxon by case).
fn per_volume_csv(scored: &[(String, Vec<RegionScore>)]) -> String {
    let mut csv = String::from("case,region,dice,hd95_mm\n");
    for (case, volume) in scored {
        for score in volume {
            csv += &format!("{case},{},{},{}\n", score.region, score.dice, score.hd95);
        }
    }
    csv
}
