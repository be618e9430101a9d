//! One test volume scored on every region: the row a results table is built
//! from.

use super::{EvalError, Grid, Region, dice_region, hd95_region};

#[derive(Clone, Debug, PartialEq)]
pub struct RegionScore {
    pub region: String,
    pub dice: f64,
    /// mm; the field-of-view diagonal when exactly one mask is empty.
    pub hd95: f64,
}

/// Dice and HD95 of each region between a predicted and a true label volume.
pub fn score_volume<L: Copy + Into<i64>>(
    pred: &[L],
    truth: &[L],
    grid: &Grid,
    regions: &[Region],
) -> Result<Vec<RegionScore>, EvalError> {
    grid.check("the prediction", pred.len())?;
    grid.check("the truth", truth.len())?;
    regions
        .iter()
        .map(|region| {
            Ok(RegionScore {
                region: region.name.clone(),
                dice: dice_region(pred, truth, region)?,
                hd95: hd95_region(pred, truth, grid, region)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Label 1 from an ellipsoid (prediction) and a box plus an edge blob
    /// (truth) on a 14×12×9 grid, spacing (0.8, 1.0, 2.5), arrays [x, y, z].
    /// Reference from NumPy/SciPy 1.17.1 (MedPy's algorithm, see
    /// hausdorff.rs): Dice 0.6685236768802229, HD95 2.5612496949731396.
    /// Label 2 marks one voxel in the truth only; label 4 is absent.
    #[test]
    fn regions_of_a_reference_case() {
        let dims = [14, 12, 9];
        let grid = Grid::new(dims, [0.8, 1.0, 2.5]).unwrap();
        let (mut pred, mut truth) = (Vec::new(), Vec::new());
        for z in 0..9i64 {
            for y in 0..12i64 {
                for x in 0..14i64 {
                    let ellipsoid =
                        9 * (x - 6).pow(2) + 16 * (y - 5).pow(2) + 36 * (z - 4).pow(2) <= 180;
                    let boxed =
                        (4..=10).contains(&x) && (3..=8).contains(&y) && (2..=6).contains(&z);
                    let blob = x == 13 && y <= 2 && z <= 1;
                    pred.push(i32::from(ellipsoid));
                    truth.push(if (x, y, z) == (0, 11, 8) {
                        2
                    } else {
                        i32::from(boxed || blob)
                    });
                }
            }
        }
        let regions = [
            Region::new("one", &[1]),
            Region::new("two", &[2]),
            Region::new("four", &[4]),
        ];
        let scores = score_volume(&pred, &truth, &grid, &regions).unwrap();
        assert_eq!(scores[0].region, "one");
        assert!((scores[0].dice - 0.668_523_676_880_222_9).abs() < 1e-12);
        assert!((scores[0].hd95 - 2.561_249_694_973_139_6).abs() < 1e-9);
        assert_eq!((scores[1].dice, scores[1].hd95), (0.0, grid.diagonal_mm()));
        assert_eq!((scores[2].dice, scores[2].hd95), (1.0, 0.0));
        assert!(score_volume(&pred[1..], &truth, &grid, &regions).is_err());
    }
}
