//! Deterministic synthetic brains for the demo and the tests.
//!
//! `tumour` phantoms mimic BraTS 2019: four co-registered modalities (FLAIR,
//! T1, T1ce, T2) and a label map with necrotic/non-enhancing core (1), oedema
//! (2) and enhancing rim (4), written as `<case>/<case>_<modality>.nii.gz` with
//! BraTS's LPS voxel order. `tissue` phantoms mimic MALC: one T1 image and a
//! CSF/grey/white (1/2/3) label map in the malc preset's layout. The same seed
//! gives byte-identical files.

mod anatomy;
mod contrast;
mod field;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::rng::Rng;
use anatomy::{Anatomy, Lesion, Tissue};
use contrast::{Scanner, TISSUE_MODALITIES, TUMOUR_MODALITIES, blur3};
use field::WaveField;

use super::{Affine, NiftiWriter, VolumeError};
use crate::progress::{Progress, ProgressUpdate};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PhantomKind {
    /// BraTS-like tumour scans: four modalities, labels 0/1/2/4.
    Tumour,
    /// MALC-like tissue scans: T1 only, labels 0/1/2/3 (CSF, grey, white).
    Tissue,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PhantomSpec {
    pub kind: PhantomKind,
    /// At least 1.
    pub subjects: usize,
    /// In-plane voxels (`SIZES` bounds it); the volume is
    /// `size × size × round(size·155/240)`, covering BraTS's 240 × 240 × 155
    /// mm field of view.
    pub size: usize,
    pub seed: u64,
}

/// A generated subject in NIfTI order (x fastest), before writing.
pub struct Subject {
    pub id: String,
    pub dims: [usize; 3],
    pub affine: Affine,
    /// One int16 image per modality, in `modalities()` order.
    pub images: Vec<Vec<i16>>,
    pub labels: Vec<u8>,
}

impl PhantomSpec {
    /// Sizes that make sense: enough voxels for anatomy, small enough to fit
    /// in memory (512 is already 4× BraTS's voxel count).
    pub const SIZES: std::ops::RangeInclusive<usize> = 16..=512;

    pub fn modalities(&self) -> &'static [&'static str] {
        match self.kind {
            PhantomKind::Tumour => &TUMOUR_MODALITIES,
            PhantomKind::Tissue => &TISSUE_MODALITIES,
        }
    }

    pub fn dims(&self) -> [usize; 3] {
        let z = ((self.size as f64) * 155.0 / 240.0).round().max(1.0) as usize;
        [self.size, self.size, z]
    }

    /// BraTS-style geometry: x and y stored right-to-left and anterior-to-
    /// posterior (LPS voxel order), origin at the volume centre.
    pub fn affine(&self) -> Affine {
        let [nx, ny, nz] = self.dims();
        let (sx, sy, sz) = (240.0 / nx as f64, 240.0 / ny as f64, 155.0 / nz as f64);
        Affine::diagonal(
            [-sx, -sy, sz],
            [
                sx * (nx as f64 - 1.0) / 2.0,
                sy * (ny as f64 - 1.0) / 2.0,
                -sz * (nz as f64 - 1.0) / 2.0,
            ],
        )
    }

    pub fn case_id(&self, index: usize) -> String {
        format!("phantom_{:03}", index + 1)
    }

    /// Where subject `index`'s files go: (one path per modality, label path).
    pub fn paths(&self, out: &Path, index: usize) -> (Vec<PathBuf>, PathBuf) {
        let id = self.case_id(index);
        match self.kind {
            PhantomKind::Tumour => {
                let dir = out.join(&id);
                let images = self
                    .modalities()
                    .iter()
                    .map(|m| dir.join(format!("{id}_{m}.nii.gz")))
                    .collect();
                (images, dir.join(format!("{id}_seg.nii.gz")))
            }
            PhantomKind::Tissue => (
                vec![out.join("training-images").join(format!("{id}_3.nii.gz"))],
                out.join("training-labels")
                    .join(format!("{id}_3_glm.nii.gz")),
            ),
        }
    }

    /// Generates subject `index` (independent of every other subject).
    pub fn subject(&self, index: usize) -> Subject {
        let kind_stream = match self.kind {
            PhantomKind::Tumour => 0,
            PhantomKind::Tissue => 1 << 32,
        };
        let mut rng = Rng::new(self.seed, kind_stream + index as u64);
        let anatomy = Anatomy::random(&mut rng, self.kind == PhantomKind::Tumour);
        let scanner = Scanner::random(&mut rng);
        let texture = WaveField::new(&mut rng, 10, 4.0, 12.0);
        let lesion_texture = WaveField::new(&mut rng, 8, 5.0, 15.0);
        let bias = WaveField::new(&mut rng, 4, 180.0, 400.0);

        let dims = self.dims();
        let affine = self.affine();
        let n = dims.iter().product();
        let mut points = Vec::with_capacity(n);
        let mut textures = Vec::with_capacity(n);
        for k in 0..dims[2] {
            for j in 0..dims[1] {
                for i in 0..dims[0] {
                    let p = affine.apply([i as f64, j as f64, k as f64]);
                    let point = anatomy.at(p);
                    let inside = point.tissue != Tissue::Background;
                    let lt = if point.lesion != Lesion::None {
                        lesion_texture.at(p)
                    } else {
                        0.0
                    };
                    let tex = if inside {
                        [texture.at(p), lt, bias.at(p)]
                    } else {
                        [0.0; 3]
                    };
                    points.push(point);
                    textures.push(tex);
                }
            }
        }

        let modalities = self.modalities();
        let images = (0..modalities.len())
            .map(|slot| {
                // Contrast rows follow TUMOUR_MODALITIES; tissue phantoms are T1.
                let m = TUMOUR_MODALITIES
                    .iter()
                    .position(|t| *t == modalities[slot])
                    .unwrap_or(1);
                let mut noise = Rng::new(
                    self.seed,
                    (kind_stream + index as u64) ^ ((slot as u64 + 1) << 40),
                );
                let mut image: Vec<f32> = points
                    .iter()
                    .zip(&textures)
                    .map(|(pt, t)| scanner.intensity(m, *pt, t[0], t[1]) as f32)
                    .collect();
                blur3(&mut image, dims);
                let gain = scanner.gain(m);
                points
                    .iter()
                    .zip(&textures)
                    .zip(&image)
                    .map(|((pt, t), &v)| {
                        if pt.tissue == Tissue::Background {
                            return 0;
                        }
                        let signal =
                            scanner.rician(&mut noise, f64::from(v) * scanner.bias(m, t[2]));
                        (signal * gain).round().clamp(1.0, i16::MAX as f64) as i16
                    })
                    .collect()
            })
            .collect();

        let labels = points
            .iter()
            .map(|pt| match self.kind {
                PhantomKind::Tumour => match pt.lesion {
                    Lesion::None => 0,
                    Lesion::Necrosis | Lesion::NonEnhancing => 1,
                    Lesion::Oedema => 2,
                    Lesion::Enhancing => 4,
                },
                PhantomKind::Tissue => match pt.tissue {
                    Tissue::Background => 0,
                    Tissue::Csf => 1,
                    Tissue::Grey => 2,
                    Tissue::White => 3,
                },
            })
            .collect();
        Subject {
            id: self.case_id(index),
            dims,
            affine,
            images,
            labels,
        }
    }
}

/// Generates and writes every subject, using all cores, reporting each one.
/// Returns the case ids in order.
pub fn write_phantom(
    out: &Path,
    spec: &PhantomSpec,
    progress: &dyn Progress,
) -> Result<Vec<String>, VolumeError> {
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    progress.update(&ProgressUpdate {
        stage: "phantom",
        done: 0,
        total: spec.subjects as u64,
        unit: "subjects",
        detail: "",
    });
    // ~48 bytes per voxel are live while a subject is generated; keep all
    // threads' subjects within about 8 GiB.
    let voxels: usize = spec.dims().iter().product();
    let by_memory = ((8usize << 30) / (48 * voxels.max(1))).max(1);
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8)
        .min(by_memory)
        .min(spec.subjects.max(1));
    let failed = std::sync::atomic::AtomicBool::new(false);
    let results: Vec<Result<(), VolumeError>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| -> Result<(), VolumeError> {
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        if index >= spec.subjects || failed.load(Ordering::Relaxed) {
                            return Ok(());
                        }
                        if let Err(e) = write_subject(out, spec, index) {
                            failed.store(true, Ordering::Relaxed);
                            return Err(e);
                        }
                        let finished = done.fetch_add(1, Ordering::Relaxed) + 1;
                        progress.update(&ProgressUpdate {
                            stage: "phantom",
                            done: finished as u64,
                            total: spec.subjects as u64,
                            unit: "subjects",
                            detail: &spec.case_id(index),
                        });
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    results.into_iter().collect::<Result<(), _>>()?;
    Ok((0..spec.subjects).map(|i| spec.case_id(i)).collect())
}

fn write_subject(out: &Path, spec: &PhantomSpec, index: usize) -> Result<(), VolumeError> {
    let subject = spec.subject(index);
    let (image_paths, label_path) = spec.paths(out, index);
    let [nx, ny, nz] = subject.dims;
    let writer = NiftiWriter::new([nx, ny, nz, 1], subject.affine);
    for (path, image) in image_paths.iter().zip(&subject.images) {
        writer.write(path, image)?;
    }
    writer.write(&label_path, &subject.labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_have_tumours_and_tumour_free_slices() {
        let spec = PhantomSpec {
            kind: PhantomKind::Tumour,
            subjects: 3,
            size: 48,
            seed: 3,
        };
        let [nx, ny, nz] = spec.dims();
        for i in 0..3 {
            let s = spec.subject(i);
            let count = |v: u8| s.labels.iter().filter(|&&l| l == v).count();
            assert!(count(2) > 0, "subject {i} has no oedema");
            assert!(count(1) > 0, "subject {i} has no core");
            let slice_has_tumour: Vec<bool> = (0..nz)
                .map(|z| {
                    s.labels[z * nx * ny..(z + 1) * nx * ny]
                        .iter()
                        .any(|&l| l > 0)
                })
                .collect();
            assert!(
                slice_has_tumour.iter().any(|t| !t),
                "every slice has tumour"
            );
            let brain = s.images[0].iter().filter(|&&v| v > 0).count();
            // BraTS brains fill ~16% of the 240 × 240 × 155 mm field of view.
            assert!(
                brain > nx * ny * nz / 12 && brain < nx * ny * nz * 3 / 10,
                "brain {brain}"
            );
        }
        assert_ne!(spec.subject(0).images[1], spec.subject(1).images[1]);
    }

    #[test]
    fn tissue_phantom_has_all_three_tissues() {
        let spec = PhantomSpec {
            kind: PhantomKind::Tissue,
            subjects: 1,
            size: 40,
            seed: 1,
        };
        let s = spec.subject(0);
        assert_eq!(s.images.len(), 1);
        for v in 1..=3u8 {
            assert!(s.labels.contains(&v), "label {v} missing");
        }
        assert!(!s.labels.contains(&4));
    }
}
