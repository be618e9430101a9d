//! Exporting the suggested slices for the experts: per slice, a one-slice
//! NIfTI per modality at original intensities that lines up with the source
//! volume, a PNG preview, and `manifest.csv` naming the mask file expected
//! back. Everything goes under `rounds/NNN/export/`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::fsutil::write_atomic;
use crate::store::{SliceKey, StoreMeta, VolumeRecord};
use crate::volume::{NiftiWriter, Volume, read_volume, to_canonical};

use super::MaskError;
use super::plane::{plane, to_display};
use super::png_io::write_gray;

/// The file name the experts should give the mask of `key` (NIfTI form).
pub fn expected_mask_name(key: &SliceKey) -> String {
    format!("{}_s{:03}_mask.nii.gz", key.case, key.slice)
}

/// The same for a PNG mask.
pub fn expected_png_mask_name(key: &SliceKey) -> String {
    format!("{}_s{:03}_mask.png", key.case, key.slice)
}

/// Parses `<case>_s<NNN>_mask.{nii,nii.gz,png}` back to a key.
pub fn key_from_mask_name(name: &str) -> Option<SliceKey> {
    let stem = name
        .strip_suffix(".nii.gz")
        .or_else(|| name.strip_suffix(".nii"))
        .or_else(|| name.strip_suffix(".png"))?;
    let stem = stem.strip_suffix("_mask")?;
    let (case, slice) = stem.rsplit_once("_s")?;
    (!case.is_empty()).then_some(())?;
    Some(SliceKey {
        case: case.to_string(),
        slice: slice.parse().ok()?,
    })
}

/// What an export wrote.
pub struct Exported {
    pub dir: PathBuf,
    pub slices: usize,
    pub files: usize,
}

/// A slice to export, with the labelled slice whose gradient led to it.
pub struct ToExport<'a> {
    pub key: &'a SliceKey,
    pub source: Option<&'a SliceKey>,
}

/// Writes the export for `pending` into `dir`, reading each case's images
/// from `sources` (where discovery finds them now: the data may have moved
/// since the store recorded its paths), else from the store's record.
pub fn export(
    dir: &Path,
    config: &Config,
    meta: &StoreMeta,
    sources: &HashMap<String, Vec<PathBuf>>,
    pending: &[ToExport<'_>],
) -> Result<Exported, MaskError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |e: std::io::Error| MaskError::Io {
            path,
            message: e.to_string(),
        }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let axis = config.slicing.axis;
    let mut manifest = String::from(
        "slice,case,slice_index,axis,source,images,preview,expected_mask,expected_png_mask\n",
    );
    let mut files = 0;
    // Read each volume once for all its suggested slices.
    for (case, list) in by_case(pending) {
        let record = record_of(meta, case)?;
        let volumes: Vec<Volume> = sources
            .get(case)
            .unwrap_or(&record.images)
            .iter()
            .map(|p| read_volume(p).map(to_canonical))
            .collect::<Result<_, _>>()?;
        for p in list {
            let s = p.key.slice as usize;
            let mut image_names = Vec::new();
            let mut tiles: Vec<(usize, usize, Vec<u8>)> = Vec::new();
            for (v, modality) in volumes.iter().zip(&meta.modalities) {
                let slice = plane(v, axis, s);
                let name = format!("{}_s{:03}_{modality}.nii.gz", p.key.case, p.key.slice);
                NiftiWriter::new(slice.dims, slice.affine).write(&dir.join(&name), &slice.data)?;
                image_names.push(name);
                files += 1;
                tiles.push(preview_tile(v, axis, s));
            }
            let preview = format!("{}_s{:03}.png", p.key.case, p.key.slice);
            write_tiles(&dir.join(&preview), &tiles)?;
            files += 1;
            let _ = writeln!(
                manifest,
                "{},{},{},{:?},{},{},{},{},{}",
                p.key,
                p.key.case,
                p.key.slice,
                axis,
                p.source.map(|k| k.to_string()).unwrap_or_default(),
                image_names.join(";"),
                preview,
                expected_mask_name(p.key),
                expected_png_mask_name(p.key),
            );
        }
    }
    let path = dir.join("manifest.csv");
    write_atomic(&path, manifest.as_bytes()).map_err(io(&path))?;
    let path = dir.join("README.txt");
    write_atomic(&path, readme(config).as_bytes()).map_err(io(&path))?;
    Ok(Exported {
        dir: dir.to_path_buf(),
        slices: pending.len(),
        files: files + 2,
    })
}

/// `pending` grouped by case, cases in their first-seen order, so each
/// volume is read once for all its suggested slices.
pub(super) fn by_case<'a, 'b>(
    pending: &'b [ToExport<'a>],
) -> Vec<(&'a str, Vec<&'b ToExport<'a>>)> {
    let mut groups: Vec<(&'a str, Vec<&'b ToExport<'a>>)> = Vec::new();
    for p in pending {
        match groups.iter_mut().find(|(c, _)| *c == p.key.case) {
            Some((_, list)) => list.push(p),
            None => groups.push((&p.key.case, vec![p])),
        }
    }
    groups
}

/// The store's record of `case`.
pub(super) fn record_of<'m>(
    meta: &'m StoreMeta,
    case: &str,
) -> Result<&'m VolumeRecord, MaskError> {
    meta.volumes
        .iter()
        .find(|v| v.case == case)
        .ok_or_else(|| MaskError::Invalid(format!("case `{case}` is not in the slice store")))
}

/// One modality's slice `s` as shown in the preview: display orientation,
/// 8 bits.
pub(super) fn preview_tile(
    canonical: &Volume,
    axis: crate::config::SliceAxis,
    s: usize,
) -> (usize, usize, Vec<u8>) {
    let (rows, cols, shown) = to_display(&plane(canonical, axis, s), axis);
    (rows, cols, to_gray(&shown))
}

/// The modalities' tiles side by side, as one grey PNG.
pub(super) fn write_tiles(path: &Path, tiles: &[(usize, usize, Vec<u8>)]) -> Result<(), MaskError> {
    let Some(&(rows, cols, _)) = tiles.first() else {
        return Ok(());
    };
    let width = cols * tiles.len();
    let mut pixels = vec![0u8; rows * width];
    for (t, (_, _, tile)) in tiles.iter().enumerate() {
        for r in 0..rows {
            pixels[r * width + t * cols..r * width + (t + 1) * cols]
                .copy_from_slice(&tile[r * cols..(r + 1) * cols]);
        }
    }
    write_gray(path, width, rows, &pixels).map_err(|e| MaskError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Scales intensities to 8 bits between the 0.5th and 99.5th percentiles of
/// the non-zero pixels (the background stays black).
fn to_gray(values: &[f32]) -> Vec<u8> {
    let mut inside: Vec<f32> = values
        .iter()
        .copied()
        .filter(|v| *v != 0.0 && v.is_finite())
        .collect();
    if inside.is_empty() {
        return vec![0; values.len()];
    }
    inside.sort_by(f32::total_cmp);
    let lo = inside[inside.len() / 200];
    let hi = inside[inside.len() - 1 - inside.len() / 200].max(lo + 1e-6);
    values
        .iter()
        .map(|&v| {
            if v == 0.0 {
                0
            } else {
                (((v - lo) / (hi - lo)).clamp(0.0, 1.0) * 255.0).round() as u8
            }
        })
        .collect()
}

/// The label values the experts may use, one `  value = name` line each.
pub(super) fn label_lines(config: &Config) -> String {
    let labels: Vec<String> = config
        .labels
        .classes
        .iter()
        .map(|c| format!("  {} = {}", c.value, c.name))
        .collect();
    labels.join("\n")
}

fn readme(config: &Config) -> String {
    let labels = label_lines(config);
    format!(
        "Slices suggested for annotation by nextslice\n\
         ============================================\n\n\
         For every slice listed in manifest.csv:\n\
         - <case>_sNNN_<modality>.nii.gz are single-slice images at original intensities.\n\
           Open them over the full volume in ITK-SNAP or 3D Slicer: they line up.\n\
         - <case>_sNNN.png is a preview (all modalities side by side, radiological view).\n\n\
         Return one mask per slice, named as in the expected_mask column:\n\
         - a NIfTI label image on the same single-slice grid (save the segmentation of the\n\
           slice image in ITK-SNAP), or\n\
         - a full 3D label volume named <case>*.nii.gz (the suggested slices are taken from it), or\n\
         - an 8-bit indexed or grayscale PNG named as in expected_png_mask, same size and view\n\
           as the preview of one modality.\n\n\
         Label values:\n{}\n",
        labels
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_names_round_trip() {
        let key = SliceKey {
            case: "BraTS19_A_1".into(),
            slice: 77,
        };
        assert_eq!(expected_mask_name(&key), "BraTS19_A_1_s077_mask.nii.gz");
        assert_eq!(
            key_from_mask_name(&expected_mask_name(&key)),
            Some(key.clone())
        );
        assert_eq!(key_from_mask_name(&expected_png_mask_name(&key)), Some(key));
        assert_eq!(key_from_mask_name("BraTS19_A_1_seg.nii.gz"), None);
    }
}
