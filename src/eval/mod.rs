//! Evaluation of segmentations against ground truth: Dice and HD95 per
//! region, summaries over volumes, and paired tests between strategies.
//!
//! Everything here is plain arithmetic on label arrays in NIfTI order (x
//! fastest, then y, then z), so it runs on the CPU next to the models
//! without touching burn. Conventions for empty masks follow the BraTS
//! evaluation, so numbers are comparable with published BraTS tables.
//!
//! Imports only volume and rng.

mod dice;
mod edt;
mod error;
mod hausdorff;
mod normal;
mod region;
mod score;
mod summary;
mod wilcoxon;

pub use dice::{dice, dice_region};
pub use edt::squared_edt;
pub use error::EvalError;
pub use hausdorff::{hausdorff_percentile, hd95, hd95_region};
pub use normal::normal_sf;
pub use region::{Grid, Region};
pub use score::{RegionScore, score_volume};
pub use summary::{Summary, summarize};
pub use wilcoxon::{PValueMethod, Wilcoxon, wilcoxon_differences, wilcoxon_paired};
