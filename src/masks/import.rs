//! Importing the experts' masks. An import is first planned — every file
//! read and checked, nothing written — and then applied: accepted files are
//! copied into the project (never modified afterwards), the class maps the
//! models train on are derived from them, and the caller adds the returned
//! rows to its round state and commits it last. By default one bad file
//! rejects the whole import; `partial` takes the valid subset.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::fsutil::write_atomic;
use crate::layout::imported_masks_dir;
use crate::store::{SliceKey, StoreMeta, VolumeRecord};
use crate::volume::{Volume, read_labels, to_canonical};

use super::export::{expected_mask_name, key_from_mask_name};
use super::plane::{from_display, plane, plane_shape, to_store_window};
use super::{MaskError, derived_path, png_io};

/// One slice's mask, checked and converted.
pub struct AcceptedMask {
    pub key: SliceKey,
    /// The file it came from (as given).
    pub file: PathBuf,
    /// Class indices on the store's pixel grid for this slice.
    pub classes: Vec<u8>,
}

/// The outcome of checking an import, before anything is written.
#[derive(Default)]
pub struct ImportPlan {
    pub accepted: Vec<AcceptedMask>,
    /// Rejected files and why.
    pub problems: Vec<(PathBuf, String)>,
    /// Suggested slices that this import does not cover.
    pub missing: Vec<SliceKey>,
    /// Files read but not needed (e.g. a case's full label volume when none
    /// of its slices was suggested).
    pub skipped: Vec<(PathBuf, String)>,
}

impl ImportPlan {
    /// A human-readable report.
    pub fn report(&self) -> String {
        let mut out = String::new();
        for m in &self.accepted {
            let _ = writeln!(out, "  ok       {}  ←  {}", m.key, m.file.display());
        }
        for (file, note) in &self.skipped {
            let _ = writeln!(out, "  skipped  {}: {note}", file.display());
        }
        for (file, problem) in &self.problems {
            let _ = writeln!(out, "  REJECTED {}: {problem}", file.display());
        }
        if !self.missing.is_empty() {
            let names: Vec<String> = self.missing.iter().map(expected_mask_name).collect();
            let _ = writeln!(
                out,
                "  still awaited ({}): {}",
                self.missing.len(),
                names.join(", ")
            );
        }
        out
    }
}

fn files_in(paths: &[PathBuf]) -> Result<Vec<PathBuf>, MaskError> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut inside: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| MaskError::Io {
                    path: p.clone(),
                    message: e.to_string(),
                })?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|f| {
                    f.is_file()
                        && !f
                            .file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                })
                .collect();
            inside.sort();
            files.extend(inside);
        } else {
            files.push(p.clone());
        }
    }
    Ok(files)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// What a round awaits, as an import is checked against it.
pub struct Awaited<'a> {
    /// Slices whose masks are awaited.
    pub pending: Vec<&'a SliceKey>,
    /// Slices labelled already, with the round they were suggested in.
    pub labelled: Vec<(&'a SliceKey, usize)>,
}

/// Checks `paths` (files or directories) against the awaited slices.
pub fn plan_import(
    config: &Config,
    meta: &StoreMeta,
    awaited: &Awaited<'_>,
    paths: &[PathBuf],
) -> Result<ImportPlan, MaskError> {
    let axis = config.slicing.axis;
    let pending: HashMap<&SliceKey, ()> = awaited.pending.iter().map(|&k| (k, ())).collect();
    let record_of = |case: &str| meta.volumes.iter().find(|v| v.case == case);
    let mut plan = ImportPlan::default();
    let mut candidates: Vec<(PathBuf, SliceKey, Volume<u8>, MaskGrid)> = Vec::new();

    for file in files_in(paths)? {
        let name = file_name(&file);
        let lower = name.to_ascii_lowercase();
        if !(lower.ends_with(".nii") || lower.ends_with(".nii.gz") || lower.ends_with(".png")) {
            plan.problems.push((
                file,
                "not a mask file (expected .nii, .nii.gz or .png)".into(),
            ));
            continue;
        }
        // `<case>_sNNN_mask` names a slice, unless its "case" is no case of
        // the store and the whole name is a case's volume mask (`IXI_s12_mask`).
        let slice_key = key_from_mask_name(&name).filter(|key| {
            record_of(&key.case).is_some()
                || case_of_volume_mask(&name, meta.volumes.iter().map(|v| v.case.as_str()))
                    .is_none()
        });
        match slice_key {
            Some(key) => {
                if !pending.contains_key(&key) {
                    let why = match awaited.labelled.iter().find(|(k, _)| **k == key) {
                        Some((_, round)) => {
                            format!("slice {key} was already labelled in round {round}")
                        }
                        None => format!(
                            "slice {key} is not among the suggested slices (see manifest.csv)"
                        ),
                    };
                    plan.problems.push((file, why));
                    continue;
                }
                let Some(record) = record_of(&key.case) else {
                    plan.problems.push((
                        file,
                        format!("case `{}` is not in the slice store", key.case),
                    ));
                    continue;
                };
                match read_slice_mask(&file, &lower, &key, record, axis, config.slicing.size) {
                    Ok((mask, grid)) => candidates.push((file, key, mask, grid)),
                    Err(problem) => plan.problems.push((file, problem)),
                }
            }
            None => {
                // A full label volume, named after its case.
                let case = case_of_volume_mask(&name, meta.volumes.iter().map(|v| v.case.as_str()));
                let Some(case) = case else {
                    plan.problems.push((
                        file,
                        "cannot tell which slice this is: name a slice mask <case>_sNNN_mask.nii.gz (see manifest.csv), or a full label volume <case>….nii.gz".into(),
                    ));
                    continue;
                };
                if !awaited.pending.iter().any(|k| k.case == case) {
                    plan.skipped.push((
                        file,
                        format!("no slice of case `{case}` is awaiting a mask"),
                    ));
                    continue;
                }
                let Some(record) = record_of(case) else {
                    continue;
                };
                if lower.ends_with(".png") {
                    plan.problems.push((
                        file,
                        "a PNG holds one slice: name it <case>_sNNN_mask.png".into(),
                    ));
                    continue;
                }
                match read_volume_mask(&file, record) {
                    Ok(volume) => {
                        for &key in awaited.pending.iter().filter(|k| k.case == case) {
                            candidates.push((
                                file.clone(),
                                key.clone(),
                                plane(&volume, axis, key.slice as usize),
                                MaskGrid::Native,
                            ));
                        }
                    }
                    Err(problem) => plan.problems.push((file, problem)),
                }
            }
        }
    }

    // Label values first; then duplicates among the files still standing
    // (a file rejected for its own faults does not make another a duplicate).
    let lut = config.labels.class_lookup();
    let mut bad_files: Vec<PathBuf> = plan.problems.iter().map(|(f, _)| f.clone()).collect();
    for (file, key, mask, _) in &candidates {
        if let Some(bad) = mask
            .data
            .iter()
            .copied()
            .find(|v| lut[*v as usize].is_none())
        {
            let count = mask.data.iter().filter(|v| **v == bad).count();
            plan.problems.push((
                file.clone(),
                format!(
                    "slice {key}: {count} pixels hold {}",
                    config.labels.explain_unexpected(bad)
                ),
            ));
            bad_files.push(file.clone());
        }
    }
    let mut by_key: BTreeMap<SliceKey, Vec<usize>> = BTreeMap::new();
    for (i, (file, key, _, _)) in candidates.iter().enumerate() {
        if !bad_files.contains(file) {
            by_key.entry(key.clone()).or_default().push(i);
        }
    }
    for (key, indices) in &by_key {
        if indices.len() > 1 {
            let files: Vec<String> = indices
                .iter()
                .map(|&i| candidates[i].0.display().to_string())
                .collect();
            for &i in indices {
                plan.problems.push((
                    candidates[i].0.clone(),
                    format!("slice {key} is given more than once ({})", files.join(", ")),
                ));
                bad_files.push(candidates[i].0.clone());
            }
        }
    }
    // A file with any problem contributes nothing.
    let rejected: Vec<&PathBuf> = plan
        .problems
        .iter()
        .map(|(f, _)| f)
        .chain(&bad_files)
        .collect();
    for (file, key, mask, grid) in candidates {
        if rejected.contains(&&file) {
            continue;
        }
        let Some(record) = record_of(&key.case) else {
            continue;
        };
        let classes = store_classes(config, record, &mask, grid, &lut);
        plan.accepted.push(AcceptedMask { key, file, classes });
    }
    plan.problems
        .sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    plan.problems.dedup();
    let covered: Vec<&SliceKey> = plan.accepted.iter().map(|m| &m.key).collect();
    plan.missing = awaited
        .pending
        .iter()
        .filter(|k| !covered.contains(k))
        .map(|&k| k.clone())
        .collect();
    Ok(plan)
}

/// Which grid a checked slice mask is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MaskGrid {
    /// The volume's own (the exported slice's), canonical orientation.
    Native,
    /// The store's: width × height pixels at the stored slice's geometry.
    Store,
}

/// A checked mask plane as class indices on the store's pixel grid.
fn store_classes(
    config: &Config,
    record: &VolumeRecord,
    mask: &Volume<u8>,
    grid: MaskGrid,
    lut: &[Option<u8>; 256],
) -> Vec<u8> {
    let classes: Vec<u8> = mask
        .data
        .iter()
        .map(|v| lut[*v as usize].unwrap_or(0))
        .collect();
    if grid == MaskGrid::Store {
        // Column fastest, as the store keeps a slice's rows.
        return classes;
    }
    // A native plane onto the store's grid: resampled as the images were.
    let classes =
        record
            .in_plane(config.slicing.axis)
            .nearest(&Volume::new(mask.dims, mask.affine, classes));
    to_store_window(
        &classes,
        config.slicing.axis,
        record.crop_origin,
        config.slicing.size,
        0,
    )
}

/// The class map of `key` on the grid of the store `meta` describes,
/// derived again from `kept`, the mask file an import accepted and copied
/// into the project (a slice mask, PNG or NIfTI, or the case's 3D label
/// volume): after the store changed, every labelled slice keeps its mask.
pub fn rederive(
    config: &Config,
    meta: &StoreMeta,
    key: &SliceKey,
    kept: &Path,
) -> Result<Vec<u8>, MaskError> {
    let invalid = |problem: String| MaskError::Invalid(format!("{}: {problem}", kept.display()));
    let record = meta
        .volumes
        .iter()
        .find(|v| v.case == key.case)
        .ok_or_else(|| invalid(format!("case `{}` is not in the slice store", key.case)))?;
    let name = file_name(kept);
    let lower = name.to_ascii_lowercase();
    let axis = config.slicing.axis;
    let (mask, grid) = if key_from_mask_name(&name).is_some_and(|k| &k == key) {
        read_slice_mask(kept, &lower, key, record, axis, config.slicing.size).map_err(invalid)?
    } else {
        let volume = read_volume_mask(kept, record).map_err(invalid)?;
        (plane(&volume, axis, key.slice as usize), MaskGrid::Native)
    };
    let lut = config.labels.class_lookup();
    if let Some(bad) = mask.data.iter().find(|v| lut[**v as usize].is_none()) {
        return Err(invalid(config.labels.explain_unexpected(*bad)));
    }
    Ok(store_classes(config, record, &mask, grid, &lut))
}

/// The exported plane of `key` for geometry checks.
fn expected_plane(
    record: &VolumeRecord,
    key: &SliceKey,
    axis: crate::config::SliceAxis,
) -> Volume<u8> {
    let [nx, ny, nz] = record.canonical_dims;
    let empty = Volume::new(
        [nx, ny, nz, 1],
        record.canonical_affine,
        vec![0u8; nx * ny * nz],
    );
    plane(&empty, axis, key.slice as usize)
}

/// A slice mask, checked against the exported slice's grid (or the stored
/// slice's, `size` = the store's height × width).
fn read_slice_mask(
    file: &Path,
    lower: &str,
    key: &SliceKey,
    record: &VolumeRecord,
    axis: crate::config::SliceAxis,
    size: [usize; 2],
) -> Result<(Volume<u8>, MaskGrid), String> {
    let expected = expected_plane(record, key, axis);
    if lower.ends_with(".png") {
        let (rows, cols) = plane_shape(expected.dims, axis);
        let values = png_io::read_labels(file, (cols, rows))?;
        let data = from_display(&values, expected.dims, axis);
        return Ok((
            Volume::new(expected.dims, expected.affine, data),
            MaskGrid::Native,
        ));
    }
    let raw = read_labels(file).map_err(|e| e.problem.to_string())?;
    // A mask drawn on the stored slice itself (its width × height, at the
    // geometry the store records for it) is taken as it is.
    let on_store = record
        .grid_affine
        .translated_voxels([0.0, 0.0, f64::from(key.slice)]);
    if raw.dims[..2] == [size[1], size[0]]
        && raw.dims[2..] == [1, 1]
        && raw.affine.approx_eq(&on_store, 1e-2)
    {
        return Ok((raw, MaskGrid::Store));
    }
    let mask = to_canonical(raw);
    if mask.dims != expected.dims {
        return Err(format!(
            "mask is {:?} voxels, the exported slice is {:?}",
            &mask.dims[..3],
            &expected.dims[..3]
        ));
    }
    if !mask.affine.approx_eq(&expected.affine, 1e-2) {
        return Err("mask is not on the exported slice's grid (its position or spacing differs); segment the exported slice image itself".into());
    }
    Ok((mask, MaskGrid::Native))
}

fn read_volume_mask(file: &Path, record: &VolumeRecord) -> Result<Volume<u8>, String> {
    let volume = to_canonical(read_labels(file).map_err(|e| e.problem.to_string())?);
    let dims = [
        record.canonical_dims[0],
        record.canonical_dims[1],
        record.canonical_dims[2],
        1,
    ];
    if volume.dims != dims {
        return Err(format!(
            "label volume is {:?} voxels, case `{}` is {:?}",
            &volume.dims[..3],
            record.case,
            &dims[..3]
        ));
    }
    if !volume.affine.approx_eq(&record.canonical_affine, 1e-2) {
        return Err(format!(
            "label volume is not on case `{}`'s voxel grid",
            record.case
        ));
    }
    Ok(volume)
}

/// A mask written into the project: the row its round state gains.
#[derive(Clone, Debug, PartialEq)]
pub struct ImportedMask {
    pub key: SliceKey,
    /// The copied mask file, relative to the project.
    pub mask: PathBuf,
}

/// Writes an accepted plan's masks into the project (copies under
/// `masks/round-NNN/`, class maps under `masks/derived/`) and returns the
/// rows to add; the caller updates its state and saves it (the commit
/// point) after any other change it makes.
pub fn apply_import(
    project: &Path,
    round: usize,
    plan: &ImportPlan,
) -> Result<Vec<ImportedMask>, MaskError> {
    let round_dir = imported_masks_dir(project, round);
    let mut copied: HashMap<PathBuf, PathBuf> = HashMap::new();
    for m in &plan.accepted {
        if !copied.contains_key(&m.file) {
            let target = round_dir.join(file_name(&m.file));
            let bytes = std::fs::read(&m.file).map_err(|e| MaskError::Io {
                path: m.file.clone(),
                message: e.to_string(),
            })?;
            write_atomic(&target, &bytes).map_err(|e| MaskError::Io {
                path: target.clone(),
                message: e.to_string(),
            })?;
            copied.insert(m.file.clone(), target);
        }
        let derived = derived_path(project, &m.key);
        write_atomic(&derived, &m.classes).map_err(|e| MaskError::Io {
            path: derived.clone(),
            message: e.to_string(),
        })?;
    }
    crate::failpoint::hit("import-before-commit");
    Ok(plan
        .accepted
        .iter()
        .map(|m| {
            let target = &copied[&m.file];
            ImportedMask {
                key: m.key.clone(),
                mask: target.strip_prefix(project).unwrap_or(target).to_path_buf(),
            }
        })
        .collect())
}

/// The case a full label volume is named after: `<case>.nii.gz`,
/// `<case>_<anything>` or `<case>-<anything>` (BraTS 2023's `-seg`),
/// matched exactly (`X_1_seg` is case `X_1`, never `X_10`); the longest
/// such case when several match.
fn case_of_volume_mask<'a>(name: &str, cases: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    cases
        .filter(|c| {
            name.strip_prefix(c)
                .is_some_and(|rest| rest.starts_with(['_', '-', '.']))
        })
        .max_by_key(|c| c.len())
}

#[cfg(test)]
mod tests {
    use super::case_of_volume_mask;

    #[test]
    fn a_volume_mask_names_its_case_exactly() {
        let cases = ["X_1", "X_10", "X_1_b"];
        let of = |name| case_of_volume_mask(name, cases.iter().copied());
        assert_eq!(of("X_1_seg.nii.gz"), Some("X_1"));
        assert_eq!(of("X_10_seg.nii.gz"), Some("X_10"));
        assert_eq!(of("X_1.nii.gz"), Some("X_1"));
        assert_eq!(of("X_1_b_seg.nii.gz"), Some("X_1_b"));
        assert_eq!(of("X_100_seg.nii.gz"), None);
        assert_eq!(of("X_1extra.nii.gz"), None);
        let dashed = ["BraTS-GLI-00000-000", "BraTS-GLI-00000-0001"];
        let of = |name| case_of_volume_mask(name, dashed.iter().copied());
        assert_eq!(
            of("BraTS-GLI-00000-000-seg.nii.gz"),
            Some("BraTS-GLI-00000-000")
        );
        assert_eq!(
            of("BraTS-GLI-00000-0001-seg.nii.gz"),
            Some("BraTS-GLI-00000-0001")
        );
    }
}
