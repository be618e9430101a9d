//! Test-set evaluation: every stored slice of each held-out volume is
//! predicted in one pass, the slices are stacked back into 3D on the
//! store's grid (slices not stored, having no brain, are background in
//! both), and each region is scored with `eval`: Dice, and HD95 in mm from
//! the grid's spacing, with the BraTS conventions for empty regions. The
//! phase does not change.

use burn::tensor::backend::AutodiffBackend;

use super::context::{EngineError, StepContext};
use super::infer::{Pass, class_map, predict};
use super::models::load_unets;
use crate::config::Config;
use crate::eval::{self, Grid, Region, RegionScore};
use crate::layout::{EVALUATION_FILE, EVALUATION_FIRST_MEMBER_FILE};
use crate::project::Project;
use crate::store::{SliceStore, StoreMeta};

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
        let dice: Vec<String> = self
            .dice
            .iter()
            .map(|(r, d)| format!("{r} {d:.3}"))
            .collect();
        let hd: Vec<String> = self
            .hd95
            .iter()
            .map(|(r, d)| format!("{r} {d:.1}"))
            .collect();
        format!(
            "test-set Dice: {} · HD95 mm: {} ({} volumes)",
            dice.join(", "),
            hd.join(", "),
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
    let depth_axis = project.config.slicing.axis.normal_axis();
    let mut volumes = VolumeStack::new(store.meta(), depth_axis, &regions);
    // An ensemble's first member is also scored alone, so DAL's rows can
    // separate what its selection gains from what ensembling does.
    let mut first =
        (models.len() > 1).then(|| VolumeStack::new(store.meta(), depth_axis, &regions));
    let pass = Pass::new("evaluate", "test volumes", 16).with_labels(true);
    pass.run::<B::InnerBackend>(&store, &test_ids, ctx, device, |chunk, x, labels| {
        if let Some(first) = first.as_mut() {
            let alone = class_map(predict(&models[..1], x.clone())?)?;
            first.add(&store, chunk, &alone, labels)?;
        }
        let predicted = class_map(predict(&models, x)?)?;
        volumes.add(&store, chunk, &predicted, labels)
    })?;
    let scored = volumes.finish()?;

    let mean = |r: usize, pick: fn(&RegionScore) -> f64| {
        let values: Vec<f64> = scored.iter().map(|(_, v)| pick(&v[r])).collect();
        eval::summarize(&values).mean
    };
    let per_region = |pick: fn(&RegionScore) -> f64| -> Vec<(String, f64)> {
        regions
            .iter()
            .enumerate()
            .map(|(r, region)| (region.name.clone(), mean(r, pick)))
            .collect()
    };
    let evaluation = Evaluation {
        dice: per_region(|s| s.dice),
        hd95: per_region(|s| s.hd95),
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

/// Predicted and true class maps stacked into the current volume, scored
/// when the pass moves on to the next one.
struct VolumeStack<'a> {
    meta: &'a StoreMeta,
    depth_axis: usize,
    regions: &'a [Region],
    current: Option<Stacked>,
    scored: Vec<(String, Vec<RegionScore>)>,
}

struct Stacked {
    volume: u32,
    depth: usize,
    predicted: Vec<u8>,
    truth: Vec<u8>,
}

impl<'a> VolumeStack<'a> {
    fn new(meta: &'a StoreMeta, depth_axis: usize, regions: &'a [Region]) -> Self {
        VolumeStack {
            meta,
            depth_axis,
            regions,
            current: None,
            scored: Vec::new(),
        }
    }

    /// Places a batch's class maps (store ids `chunk`) into their volumes.
    fn add(
        &mut self,
        store: &SliceStore,
        chunk: &[usize],
        predicted: &[u8],
        truth: &[u8],
    ) -> Result<(), EngineError> {
        let meta = self.meta;
        let plane = meta.height * meta.width;
        let value = |class: u8| meta.label_values.get(class as usize).copied().unwrap_or(0);
        for (j, &id) in chunk.iter().enumerate() {
            let entry = &store.entries()[id];
            if self
                .current
                .as_ref()
                .is_none_or(|c| c.volume != entry.volume)
            {
                self.score_current()?;
                let record = self.record(entry.volume)?;
                let depth = record.canonical_dims[self.depth_axis];
                self.current = Some(Stacked {
                    volume: entry.volume,
                    depth,
                    predicted: vec![0; plane * depth],
                    truth: vec![0; plane * depth],
                });
            }
            let s = entry.slice as usize;
            let Some(current) = self.current.as_mut() else {
                continue;
            };
            if s >= current.depth {
                return Err(EngineError::StoreMismatch(format!(
                    "slice {s} of volume {} is outside its {} slices",
                    entry.volume, current.depth
                )));
            }
            for k in 0..plane {
                current.predicted[s * plane + k] = value(predicted[j * plane + k]);
                current.truth[s * plane + k] = value(truth[j * plane + k]);
            }
        }
        Ok(())
    }

    fn record(&self, volume: u32) -> Result<&'a crate::store::VolumeRecord, EngineError> {
        self.meta
            .volumes
            .get(volume as usize)
            .ok_or_else(|| EngineError::StoreMismatch(format!("no volume record {volume}")))
    }

    fn score_current(&mut self) -> Result<(), EngineError> {
        let Some(done) = self.current.take() else {
            return Ok(());
        };
        let record = self.record(done.volume)?;
        let score_error = |e: &dyn std::fmt::Display| EngineError::Score {
            case: record.case.clone(),
            message: e.to_string(),
        };
        // Stored pixel (row, column) of slice s is voxel (column, row, s).
        let grid = Grid::new(
            [self.meta.width, self.meta.height, done.depth],
            record.grid_affine.spacing(),
        )
        .map_err(|e| score_error(&e))?;
        let scores = eval::score_volume(&done.predicted, &done.truth, &grid, self.regions)
            .map_err(|e| score_error(&e))?;
        self.scored.push((record.case.clone(), scores));
        Ok(())
    }

    /// Scores the last volume; (case, region scores) per volume, in order.
    fn finish(mut self) -> Result<Vec<(String, Vec<RegionScore>)>, EngineError> {
        self.score_current()?;
        Ok(self.scored)
    }
}
