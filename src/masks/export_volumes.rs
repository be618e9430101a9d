//! Exporting whole volumes for patient-wise annotation
//! (`sampling.unit = "volume"`): per case, each modality as a full 3D NIfTI
//! in the scanner's own orientation and intensities, a PNG preview of its
//! middle suggested slice, and one 3D mask expected back, `<case>_mask.nii.gz`
//! (import takes the suggested slices from it).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::fsutil::write_atomic;
use crate::store::StoreMeta;
use crate::volume::{NiftiWriter, read_volume, to_canonical};

use super::MaskError;
use super::export::{
    Exported, ToExport, by_case, label_lines, preview_tile, record_of, write_tiles,
};

/// The 3D mask the experts return for `case`.
pub fn expected_volume_mask_name(case: &str) -> String {
    format!("{case}_mask.nii.gz")
}

/// Writes the suggested volumes (every case that has a pending slice).
pub fn export_volumes(
    dir: &Path,
    config: &Config,
    meta: &StoreMeta,
    sources: &HashMap<String, Vec<PathBuf>>,
    pending: &[ToExport<'_>],
) -> Result<Exported, MaskError> {
    std::fs::create_dir_all(dir).map_err(|e| MaskError::Io {
        path: dir.to_path_buf(),
        message: e.to_string(),
    })?;
    let axis = config.slicing.axis;
    let mut manifest =
        String::from("case,slices,first_slice,last_slice,axis,images,preview,expected_mask\n");
    let mut files = 0;
    for (case, list) in by_case(pending) {
        let mut slices: Vec<u32> = list.iter().map(|p| p.key.slice).collect();
        slices.sort_unstable();
        let record = record_of(meta, case)?;
        let paths = sources.get(case).unwrap_or(&record.images);
        let middle = slices[slices.len() / 2] as usize;
        let mut image_names = Vec::new();
        let mut tiles = Vec::new();
        for (path, modality) in paths.iter().zip(&meta.modalities) {
            let volume = read_volume(path)?;
            let name = format!("{case}_{modality}.nii.gz");
            NiftiWriter::new(volume.dims, volume.affine).write(&dir.join(&name), &volume.data)?;
            image_names.push(name);
            files += 1;
            tiles.push(preview_tile(&to_canonical(volume), axis, middle));
        }
        let preview = format!("{case}_s{middle:03}.png");
        write_tiles(&dir.join(&preview), &tiles)?;
        files += 1;
        let _ = writeln!(
            manifest,
            "{case},{},{},{},{axis:?},{},{preview},{}",
            slices.len(),
            slices[0],
            slices[slices.len() - 1],
            image_names.join(";"),
            expected_volume_mask_name(case),
        );
    }
    let io = |path: &Path, e: std::io::Error| MaskError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let path = dir.join("manifest.csv");
    write_atomic(&path, manifest.as_bytes()).map_err(|e| io(&path, e))?;
    let path = dir.join("README.txt");
    write_atomic(&path, readme(config).as_bytes()).map_err(|e| io(&path, e))?;
    Ok(Exported {
        dir: dir.to_path_buf(),
        slices: pending.len(),
        files: files + 2,
    })
}

fn readme(config: &Config) -> String {
    let labels = label_lines(config);
    format!(
        "Volumes suggested for annotation by nextslice\n\
         =============================================\n\n\
         For every case listed in manifest.csv:\n\
         - <case>_<modality>.nii.gz are the whole volumes at original intensities and\n\
           orientation. Open them in ITK-SNAP or 3D Slicer.\n\
         - <case>_sNNN.png previews the middle suggested slice (all modalities side by side).\n\n\
         Return one 3D label volume per case on the same voxel grid, named as in the\n\
         expected_mask column (<case>_mask.nii.gz). Segment the whole volume: nextslice\n\
         takes the suggested slices from it (first_slice..last_slice count along the\n\
         RAS-canonical axis, not necessarily the file's own).\n\n\
         Label values:\n{}\n",
        labels
    )
}
