//! Reorientation to one canonical voxel order (RAS: the first voxel axis runs
//! towards the patient's Right, the second Anterior, the third Superior), so
//! that images and masks from any scanner or tool line up slice for slice.
//! Only axis permutations and flips are applied — no resampling.

use super::{Affine, Volume};

/// For each voxel axis: the world axis it runs along (0 = x, 1 = y, 2 = z) and
/// whether it runs in the negative world direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Orientation {
    pub world_axis: [usize; 3],
    pub flipped: [bool; 3],
}

impl Orientation {
    /// The closest axis-aligned orientation of an affine (like nibabel's
    /// `io_orientation`): repeatedly take the largest remaining direction
    /// cosine, so oblique acquisitions still map each voxel axis to a distinct
    /// world axis.
    pub fn of(affine: &Affine) -> Orientation {
        let spacing = affine.spacing();
        let mut cos = [[0.0f64; 3]; 3]; // cos[world][voxel]
        for (w, row) in cos.iter_mut().enumerate() {
            for (v, c) in row.iter_mut().enumerate() {
                *c = if spacing[v] > 0.0 {
                    affine.0[w][v] / spacing[v]
                } else {
                    0.0
                };
            }
        }
        let mut world_axis = [0usize; 3];
        let mut flipped = [false; 3];
        let mut used_world = [false; 3];
        let mut used_voxel = [false; 3];
        for _ in 0..3 {
            let mut best = (0usize, 0usize, -1.0f64);
            for (w, row) in cos.iter().enumerate() {
                for (v, c) in row.iter().enumerate() {
                    if !used_world[w] && !used_voxel[v] && c.abs() > best.2 {
                        best = (w, v, c.abs());
                    }
                }
            }
            let (w, v, _) = best;
            used_world[w] = true;
            used_voxel[v] = true;
            world_axis[v] = w;
            flipped[v] = cos[w][v] < 0.0;
        }
        Orientation {
            world_axis,
            flipped,
        }
    }

    pub fn is_canonical(&self) -> bool {
        self.world_axis == [0, 1, 2] && self.flipped == [false; 3]
    }
}

/// Axis codes as in radiology software: the direction each voxel axis
/// increases towards, e.g. `['L', 'P', 'S']` for BraTS files.
pub fn axis_codes(affine: &Affine) -> [char; 3] {
    let o = Orientation::of(affine);
    std::array::from_fn(|v| {
        let (pos, neg) = [('R', 'L'), ('A', 'P'), ('S', 'I')][o.world_axis[v]];
        if o.flipped[v] { neg } else { pos }
    })
}

/// Permutes and flips voxel axes so the image is RAS, updating the affine so
/// every voxel keeps its world position. Works on every frame of a 4D image.
pub fn to_canonical<T: Copy>(volume: Volume<T>) -> Volume<T> {
    let o = Orientation::of(&volume.affine);
    if o.is_canonical() {
        return volume;
    }
    let [nx, ny, nz, nt] = volume.dims;
    let in_dims = [nx, ny, nz];
    let in_strides = [1, nx, nx * ny];
    // Output axis w is input axis v where world_axis[v] == w.
    let mut out_dims = [0usize; 3];
    let mut step = [0isize; 3]; // input offset per output step along each output axis
    let mut base = 0isize; // input offset of output voxel (0, 0, 0)
    // Output index → input index, as a 4×4 matrix, to update the affine.
    let mut out_to_in = Affine([[0.0; 4]; 4]);
    out_to_in.0[3][3] = 1.0;
    for v in 0..3 {
        let w = o.world_axis[v];
        out_dims[w] = in_dims[v];
        let stride = in_strides[v] as isize;
        if o.flipped[v] {
            step[w] = -stride;
            base += (in_dims[v] as isize - 1) * stride;
            out_to_in.0[v][w] = -1.0;
            out_to_in.0[v][3] = (in_dims[v] - 1) as f64;
        } else {
            step[w] = stride;
            out_to_in.0[v][w] = 1.0;
        }
    }
    let frame = nx * ny * nz;
    let mut data = Vec::with_capacity(volume.data.len());
    for t in 0..nt {
        let src = &volume.data[t * frame..(t + 1) * frame];
        for z in 0..out_dims[2] {
            for y in 0..out_dims[1] {
                let row = base + z as isize * step[2] + y as isize * step[1];
                if step[0] == 1 {
                    let start = row as usize;
                    data.extend_from_slice(&src[start..start + out_dims[0]]);
                } else if step[0] == -1 {
                    // x stored right-to-left (BraTS, most DICOM conversions).
                    let end = row as usize + 1;
                    data.extend(src[end - out_dims[0]..end].iter().rev());
                } else {
                    data.extend(
                        (0..out_dims[0]).map(|x| src[(row + x as isize * step[0]) as usize]),
                    );
                }
            }
        }
    }
    Volume::new(
        [out_dims[0], out_dims[1], out_dims[2], nt],
        volume.affine.mul(&out_to_in),
        data,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(dims: [usize; 4], affine: Affine) -> Volume {
        let n = dims.iter().product();
        Volume::new(dims, affine, (0..n).map(|i| i as f32).collect())
    }

    #[test]
    fn lps_becomes_ras_and_voxels_keep_their_world_position() {
        let affine = Affine::diagonal([-1.0, -2.0, 3.0], [10.0, 20.0, -5.0]);
        let v = ramp([4, 3, 2, 1], affine);
        assert_eq!(axis_codes(&v.affine), ['L', 'P', 'S']);
        let c = to_canonical(v.clone());
        assert_eq!(axis_codes(&c.affine), ['R', 'A', 'S']);
        for z in 0..2 {
            for y in 0..3 {
                for x in 0..4 {
                    let world = v.affine.apply([x as f64, y as f64, z as f64]);
                    let inv = [3 - x, 2 - y, z];
                    let back = c.affine.apply(inv.map(|i| i as f64));
                    assert_eq!(world, back);
                    assert_eq!(
                        v.data[v.index(x, y, z)],
                        c.data[c.index(inv[0], inv[1], inv[2])]
                    );
                }
            }
        }
    }

    #[test]
    fn permuted_axes_are_reordered() {
        // Voxel axes stored as (S, R, A).
        let affine = Affine::from_rows([
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.0],
            [1.0, 0.0, 0.0, 0.0],
        ]);
        let v = ramp([2, 3, 4, 1], affine);
        assert_eq!(axis_codes(&affine), ['S', 'R', 'A']);
        let c = to_canonical(v.clone());
        assert_eq!(c.dims, [3, 4, 2, 1]);
        // canonical (x=r, y=a, z=s) comes from input (s, r, a).
        assert_eq!(c.data[c.index(2, 1, 1)], v.data[v.index(1, 2, 1)]);
        assert!(Orientation::of(&c.affine).is_canonical());
    }
}
