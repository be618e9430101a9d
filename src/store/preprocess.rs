//! Turning one case into stored slices: read every modality, reorient to RAS,
//! check that images and labels share one grid, z-score over the brain, pick a
//! crop/pad window centred on the brain, and cut slices along the axis.

use crate::config::{Config, NormalisationMethod, NormalisationRegion, SliceAxis, StoreDtype};
use crate::volume::dataset::Case;
use crate::volume::{Affine, Volume, read_labels, read_volume, to_canonical};

use super::StoreError;
use super::format::{SliceEntry, VolumeRecord};
use super::resample::InPlane;

/// A case ready to append to the store.
pub struct PreparedCase {
    pub record: VolumeRecord,
    /// Encoded image values of the kept slices (store dtype, little-endian).
    pub image_bytes: Vec<u8>,
    /// Class indices of the kept slices, if the case has a label map.
    pub labels: Option<Vec<u8>>,
    /// Index entries (volume id filled in by the builder).
    pub entries: Vec<SliceEntry>,
}

/// The in-plane window of the canonical volume that becomes a stored slice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CropWindow {
    pub axis: SliceAxis,
    /// Canonical index of stored (row 0, column 0) along the row and column axes.
    pub origin: [i64; 2],
    /// Stored slice size (height, width).
    pub size: [usize; 2],
}

impl CropWindow {
    /// Centres the window on the brain's bounding box, keeping it inside the
    /// volume when the volume is large enough, else padding evenly.
    pub fn centred_on(mask: &Volume<bool>, axis: SliceAxis, size: [usize; 2]) -> CropWindow {
        let (row_axis, col_axis) = axis.in_plane_axes();
        let bounds = bounding_box(mask);
        let origin = [(row_axis, size[0]), (col_axis, size[1])].map(|(a, n)| {
            let dim = mask.dims[a] as i64;
            let n = n as i64;
            if dim <= n {
                (dim - n).div_euclid(2)
            } else {
                let centre = bounds.map_or(dim / 2, |(lo, hi)| (lo[a] + hi[a]) as i64 / 2);
                (centre - n / 2).clamp(0, dim - n)
            }
        });
        CropWindow { axis, origin, size }
    }

    /// Maps (column, row, slice index) to world, given the canonical affine.
    pub fn grid_affine(&self, canonical: &Affine) -> Affine {
        let (row_axis, col_axis) = self.axis.in_plane_axes();
        let normal = self.axis.normal_axis();
        // Column c, row r, slice s → canonical voxel coordinates.
        let mut m = Affine([[0.0; 4]; 4]);
        m.0[col_axis][0] = 1.0;
        m.0[row_axis][1] = 1.0;
        m.0[normal][2] = 1.0;
        m.0[col_axis][3] = self.origin[1] as f64;
        m.0[row_axis][3] = self.origin[0] as f64;
        m.0[3][3] = 1.0;
        canonical.mul(&m)
    }
}

fn bounding_box(mask: &Volume<bool>) -> Option<([usize; 3], [usize; 3])> {
    let [nx, ny, _, _] = mask.dims;
    let mut lo = [usize::MAX; 3];
    let mut hi = [0usize; 3];
    let mut any = false;
    for (i, _) in mask.data.iter().enumerate().filter(|(_, m)| **m) {
        let p = [i % nx, (i / nx) % ny, i / (nx * ny)];
        for a in 0..3 {
            lo[a] = lo[a].min(p[a]);
            hi[a] = hi[a].max(p[a]);
        }
        any = true;
    }
    any.then_some((lo, hi))
}

/// Copies slice `index` of a canonical 3D volume through `window` into `out`
/// (height × width, row-major), writing `fill` where the window is outside.
pub fn extract_slice<T: Copy>(
    volume: &Volume<T>,
    window: &CropWindow,
    index: usize,
    fill: T,
    out: &mut [T],
) {
    let [nx, ny, _, _] = volume.dims;
    let strides = [1usize, nx, nx * ny];
    let (row_axis, col_axis) = window.axis.in_plane_axes();
    let normal = window.axis.normal_axis();
    let [h, w] = window.size;
    let base = index * strides[normal];
    let (rows, cols) = (volume.dims[row_axis] as i64, volume.dims[col_axis] as i64);
    for r in 0..h {
        let out_row = &mut out[r * w..(r + 1) * w];
        let vr = r as i64 + window.origin[0];
        if vr < 0 || vr >= rows {
            out_row.fill(fill);
            continue;
        }
        let row_base = base + vr as usize * strides[row_axis];
        for (c, o) in out_row.iter_mut().enumerate() {
            let vc = c as i64 + window.origin[1];
            *o = if vc < 0 || vc >= cols {
                fill
            } else {
                volume.data[row_base + vc as usize * strides[col_axis]]
            };
        }
    }
}

fn case_error(case: &Case, message: String) -> StoreError {
    StoreError::Case {
        case: case.id.clone(),
        message,
    }
}

/// Reads one 3D image, in canonical orientation.
fn read_canonical(path: &std::path::Path, case: &Case) -> Result<Volume, StoreError> {
    let v = read_volume(path)?;
    if v.dims[3] != 1 {
        return Err(case_error(
            case,
            format!(
                "{} is 4D ({} frames); each modality must be one 3D image",
                path.display(),
                v.dims[3]
            ),
        ));
    }
    Ok(to_canonical(v))
}

fn same_grid(a: &Affine, b: &Affine, dims_a: [usize; 4], dims_b: [usize; 4]) -> bool {
    // Co-registered files share one header; allow float noise of 0.01 mm.
    dims_a == dims_b && a.approx_eq(b, 1e-2)
}

/// Preprocesses `case` according to `config`.
pub fn prepare_case(case: &Case, config: &Config) -> Result<PreparedCase, StoreError> {
    let mut images = Vec::with_capacity(case.images.len());
    for (path, modality) in case.images.iter().zip(&config.dataset.modalities) {
        let v = read_canonical(path, case)?;
        if let Some(first) = images.first() {
            let first: &Volume = first;
            if !same_grid(&first.affine, &v.affine, first.dims, v.dims) {
                return Err(case_error(
                    case,
                    format!(
                        "{modality} ({}) is not on the same voxel grid as {} (dimensions {:?} vs {:?}); co-register the modalities first",
                        path.display(),
                        config.dataset.modalities[0],
                        v.dims,
                        first.dims
                    ),
                ));
            }
        }
        images.push(v);
    }
    let reference = images
        .first()
        .ok_or_else(|| case_error(case, "no images".into()))?;
    let (dims, affine) = (reference.dims, reference.affine);

    let labels = match &case.label {
        None => None,
        Some(path) => {
            let l = to_canonical(read_labels(path)?);
            if !same_grid(&affine, &l.affine, dims, l.dims) {
                return Err(case_error(
                    case,
                    format!(
                        "label map {} is not on the images' voxel grid (dimensions {:?} vs {:?})",
                        path.display(),
                        l.dims,
                        dims
                    ),
                ));
            }
            Some(to_classes(l, config, case)?)
        }
    };

    let resampling = match config.slicing.spacing {
        Some(spacing) => InPlane::to_spacing(config.slicing.axis, &affine, spacing),
        None => InPlane::identity(config.slicing.axis),
    };
    let brain: Vec<bool> = (0..reference.data.len())
        .map(|i| images.iter().any(|v| v.data[i] != 0.0))
        .collect();
    if !brain.iter().any(|&b| b) {
        return Err(case_error(
            case,
            "every image is zero: no brain voxels".into(),
        ));
    }
    let brain = Volume::new(dims, affine, brain);

    let mut normalisation = Vec::with_capacity(images.len());
    for (v, modality) in images.iter_mut().zip(&config.dataset.modalities) {
        let stats = normalise(v, &brain, config)
            .map_err(|m| case_error(case, format!("{modality}: {m}")))?;
        normalisation.push(stats);
    }

    // Normalised at the native resolution (its statistics do not depend
    // on the store's grid), then resampled in-plane.
    let resampled = resampling.dims(dims);
    let (row, col) = config.slicing.axis.in_plane_axes();
    if resampled[row] > 4096 || resampled[col] > 4096 {
        return Err(case_error(
            case,
            format!(
                "resampling to slicing.spacing {:?} mm would make slices of {}×{} voxels (at most 4096 per side); choose a coarser spacing",
                config.slicing.spacing.unwrap_or_default(),
                resampled[row],
                resampled[col]
            ),
        ));
    }
    let (images, labels, brain) = if resampling.is_identity() {
        (images, labels, brain)
    } else {
        (
            images.iter().map(|v| resampling.linear(v)).collect(),
            labels.map(|l| resampling.nearest(&l)),
            resampling.nearest(&brain),
        )
    };
    let grid_affine = brain.affine;
    let window = CropWindow::centred_on(&brain, config.slicing.axis, config.slicing.size);
    let normal = config.slicing.axis.normal_axis();
    let [h, w] = config.slicing.size;
    let pixels = h * w;
    let mut entries = Vec::new();
    let mut image_bytes = Vec::new();
    let mut label_out = labels.as_ref().map(|_| Vec::new());
    let mut mask_slice = vec![false; pixels];
    let mut plane = vec![0f32; pixels];
    let mut label_plane = vec![0u8; pixels];
    for s in 0..dims[normal] {
        extract_slice(&brain, &window, s, false, &mut mask_slice);
        let brain_fraction = mask_slice.iter().filter(|&&b| b).count() as f32 / pixels as f32;
        let keep = !config.slicing.drop_empty
            || (brain_fraction > 0.0
                && f64::from(brain_fraction) >= config.slicing.min_brain_fraction);
        if !keep {
            continue;
        }
        for v in &images {
            extract_slice(v, &window, s, 0.0, &mut plane);
            encode(&plane, config.store.dtype, &mut image_bytes);
        }
        let foreground_fraction = match (&labels, &mut label_out) {
            (Some(l), Some(out)) => {
                extract_slice(l, &window, s, 0, &mut label_plane);
                out.extend_from_slice(&label_plane);
                Some(label_plane.iter().filter(|&&c| c != 0).count() as f32 / pixels as f32)
            }
            _ => None,
        };
        entries.push(SliceEntry {
            volume: 0,
            slice: s as u32,
            brain_fraction,
            foreground_fraction,
        });
    }

    let record = VolumeRecord {
        case: case.id.clone(),
        images: case.images.clone(),
        label: case.label.clone(),
        canonical_dims: [dims[0], dims[1], dims[2]],
        canonical_affine: affine,
        crop_origin: window.origin,
        resampled: (!resampling.is_identity()).then_some(resampling),
        grid_affine: window.grid_affine(&grid_affine),
        normalisation,
        first_slice: 0,
        slice_count: entries.len(),
    };
    Ok(PreparedCase {
        record,
        image_bytes,
        labels: label_out,
        entries,
    })
}

/// Label values → class indices, rejecting values outside the label map.
fn to_classes(labels: Volume<u8>, config: &Config, case: &Case) -> Result<Volume<u8>, StoreError> {
    let lut = config.labels.class_lookup();
    let mut counts = [0usize; 256];
    for &v in &labels.data {
        counts[v as usize] += 1;
    }
    if let Some(bad) = (0..256).find(|&v| counts[v] > 0 && lut[v].is_none()) {
        return Err(case_error(
            case,
            format!(
                "{}: {} voxels hold {}",
                case.label
                    .as_ref()
                    .map_or(String::new(), |p| p.display().to_string()),
                counts[bad],
                config.labels.explain_unexpected(bad as u8)
            ),
        ));
    }
    let data = labels
        .data
        .iter()
        .map(|&v| lut[v as usize].unwrap_or(0))
        .collect();
    Ok(Volume::new(labels.dims, labels.affine, data))
}

/// Z-scores `v` in place; returns the (mean, std) used.
fn normalise(v: &mut Volume, brain: &Volume<bool>, config: &Config) -> Result<[f64; 2], String> {
    let method = config.normalisation.method;
    let masked = config.normalisation.region == NormalisationRegion::Brain;
    let included = |i: usize| !masked || brain.data[i];
    if method == NormalisationMethod::None {
        return Ok([0.0, 1.0]);
    }
    let (mut n, mut sum, mut sum_sq) = (0u64, 0f64, 0f64);
    for (i, &x) in v.data.iter().enumerate() {
        if included(i) {
            let x = f64::from(x);
            n += 1;
            sum += x;
            sum_sq += x * x;
        }
    }
    let mean = sum / n.max(1) as f64;
    let std = (sum_sq / n.max(1) as f64 - mean * mean).max(0.0).sqrt();
    if !std.is_finite() || std < 1e-8 * mean.abs().max(1.0) {
        return Err(format!(
            "intensity is constant ({mean}) over the brain; cannot z-score"
        ));
    }
    let (m, inv) = (mean as f32, (1.0 / std) as f32);
    for (i, x) in v.data.iter_mut().enumerate() {
        *x = if included(i) { (*x - m) * inv } else { 0.0 };
    }
    Ok([mean, std])
}

fn encode(values: &[f32], dtype: StoreDtype, out: &mut Vec<u8>) {
    match dtype {
        StoreDtype::F32 => out.extend(values.iter().flat_map(|v| v.to_le_bytes())),
        StoreDtype::F16 => out.extend(
            values
                .iter()
                .flat_map(|v| half::f16::from_f32(*v).to_le_bytes()),
        ),
    }
}
