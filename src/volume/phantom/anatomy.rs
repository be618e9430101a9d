//! The geometry of one synthetic head: a folded, skull-stripped brain with
//! CSF, grey and white matter, ventricles, deep grey nuclei, and optionally
//! gliomas (necrotic core, enhancing rim, oedema spreading along white matter)
//! that push the surrounding anatomy aside. Everything is in world millimetres.

use super::field::{RadialBumps, WaveField};
use crate::rng::Rng;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tissue {
    Background,
    Csf,
    Grey,
    White,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lesion {
    None,
    /// BraTS label 1 in high-grade tumours.
    Necrosis,
    /// BraTS label 1 in low-grade tumours.
    NonEnhancing,
    /// BraTS label 2.
    Oedema,
    /// BraTS label 4.
    Enhancing,
}

/// The reference brain the structure positions below are expressed in (mm).
const REFERENCE_SEMI_AXES: [f64; 3] = [68.0, 84.0, 58.0];

/// An ellipsoid in the brain's local frame, in reference millimetres.
struct Blob {
    centre: [f64; 3],
    semi: [f64; 3],
    tissue: Tissue,
}

const STRUCTURES: [Blob; 7] = [
    // Lateral ventricles (bent outwards in `tissue_at`), third ventricle.
    Blob {
        centre: [-8.0, 2.0, 12.0],
        semi: [7.0, 26.0, 10.0],
        tissue: Tissue::Csf,
    },
    Blob {
        centre: [8.0, 2.0, 12.0],
        semi: [7.0, 26.0, 10.0],
        tissue: Tissue::Csf,
    },
    Blob {
        centre: [0.0, -4.0, 2.0],
        semi: [1.6, 10.0, 8.0],
        tissue: Tissue::Csf,
    },
    // Thalami and lentiform nuclei.
    Blob {
        centre: [-10.0, -10.0, 4.0],
        semi: [8.0, 12.0, 8.0],
        tissue: Tissue::Grey,
    },
    Blob {
        centre: [10.0, -10.0, 4.0],
        semi: [8.0, 12.0, 8.0],
        tissue: Tissue::Grey,
    },
    Blob {
        centre: [-22.0, 8.0, 2.0],
        semi: [5.0, 13.0, 9.0],
        tissue: Tissue::Grey,
    },
    Blob {
        centre: [22.0, 8.0, 2.0],
        semi: [5.0, 13.0, 9.0],
        tissue: Tissue::Grey,
    },
];

struct Tumour {
    centre: [f64; 3],
    oedema_radius: f64,
    core_radius: f64,
    /// Thickness of the enhancing rim; `None` for a low-grade, non-enhancing core.
    rim: Option<f64>,
    core_shape: RadialBumps,
    oedema_shape: RadialBumps,
    oedema_spread: WaveField,
    /// How far (mm) the tumour pushes surrounding tissue outwards.
    mass_effect: f64,
}

pub struct Anatomy {
    centre: [f64; 3],
    /// World → local rotation (rows).
    rotation: [[f64; 3]; 3],
    semi: [f64; 3],
    surface: RadialBumps,
    folds: WaveField,
    sulci: WaveField,
    cortex_thickness: f64,
    ventricle_scale: f64,
    tumours: Vec<Tumour>,
}

/// What lies at one point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Point {
    pub tissue: Tissue,
    pub lesion: Lesion,
}

fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn norm(a: [f64; 3]) -> f64 {
    dot(a, a).sqrt()
}

fn sub(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

impl Anatomy {
    pub fn random(rng: &mut Rng, with_tumour: bool) -> Anatomy {
        let semi = REFERENCE_SEMI_AXES.map(|a| a * (1.0 + 0.06 * rng.normal().clamp(-2.0, 2.0)));
        let centre = [
            2.5 * rng.normal(),
            3.0 * rng.normal(),
            5.0 + 2.5 * rng.normal(),
        ];
        let (yaw, pitch) = (rng.range(-0.1, 0.1), rng.range(-0.08, 0.08));
        let (cy, sy, cp, sp) = (yaw.cos(), yaw.sin(), pitch.cos(), pitch.sin());
        // Yaw about z, then pitch about x.
        let rotation = [
            [cy, sy, 0.0],
            [-sy * cp, cy * cp, sp],
            [sy * sp, -cy * sp, cp],
        ];
        let mut anatomy = Anatomy {
            centre,
            rotation,
            semi,
            surface: RadialBumps::new(rng, 8, 0.06, 4.0),
            folds: WaveField::new(rng, 12, 14.0, 32.0),
            sulci: WaveField::new(rng, 12, 18.0, 40.0),
            cortex_thickness: rng.range(0.065, 0.085),
            ventricle_scale: rng.range(0.75, 1.5),
            tumours: Vec::new(),
        };
        if with_tumour {
            let count = if rng.chance(0.2) { 2 } else { 1 };
            for i in 0..count {
                let size = if i == 0 { 1.0 } else { 0.5 };
                let tumour = anatomy.random_tumour(rng, size);
                anatomy.tumours.push(tumour);
            }
        }
        anatomy
    }

    fn to_local(&self, p: [f64; 3]) -> [f64; 3] {
        let d = sub(p, self.centre);
        self.rotation.map(|row| dot(row, d))
    }

    fn to_world(&self, l: [f64; 3]) -> [f64; 3] {
        let r = &self.rotation;
        std::array::from_fn(|i| r[0][i] * l[0] + r[1][i] * l[1] + r[2][i] * l[2] + self.centre[i])
    }

    fn random_tumour(&self, rng: &mut Rng, size: f64) -> Tumour {
        // A centre well inside the brain, in the cerebral hemispheres.
        let local = loop {
            let e = [
                rng.range(-0.75, 0.75),
                rng.range(-0.75, 0.75),
                rng.range(-0.35, 0.75),
            ];
            if norm(e) < 0.72 && e[0].abs() > 0.12 {
                break [
                    e[0] * self.semi[0],
                    e[1] * self.semi[1],
                    e[2] * self.semi[2],
                ];
            }
        };
        let oedema_radius = rng.range(9.0, 30.0) * size;
        let core_radius = oedema_radius * rng.range(0.35, 0.65);
        let rim = rng
            .chance(0.75)
            .then(|| rng.range(2.0, 5.0).min(core_radius * 0.6));
        Tumour {
            centre: self.to_world(local),
            oedema_radius,
            core_radius,
            rim,
            core_shape: RadialBumps::new(rng, 6, 0.45, 3.5),
            oedema_shape: RadialBumps::new(rng, 8, 0.45, 4.0),
            oedema_spread: WaveField::new(rng, 8, 10.0, 25.0),
            mass_effect: core_radius * rng.range(0.2, 0.5),
        }
    }

    /// The tissue and lesion at world point `p`.
    pub fn at(&self, p: [f64; 3]) -> Point {
        let outside = Point {
            tissue: Tissue::Background,
            lesion: Lesion::None,
        };
        let Some(rho) = self.brain_radius(p) else {
            return outside;
        };
        if rho >= 1.0 {
            return outside;
        }
        let q = self.displaced(p);
        let tissue = self.tissue_at(q).unwrap_or(Tissue::White);
        let lesion = self.lesion_at(p, tissue);
        Point { tissue, lesion }
    }

    /// Normalised radius of the brain surface through `p` (< 1 inside), or
    /// `None` far outside (a cheap early exit for the background).
    fn brain_radius(&self, p: [f64; 3]) -> Option<f64> {
        let l = self.to_local(p);
        let e = [
            l[0] / self.semi[0],
            l[1] / self.semi[1],
            l[2] / self.semi[2],
        ];
        let r = norm(e);
        if r > 1.4 {
            return None;
        }
        if r < 1e-9 {
            return Some(0.0);
        }
        Some(r / self.surface.at(e.map(|c| c / r)))
    }

    /// Where the anatomy seen at `p` originally was before the tumours grew.
    fn displaced(&self, p: [f64; 3]) -> [f64; 3] {
        let mut q = p;
        for t in &self.tumours {
            let d = sub(q, t.centre);
            let r = norm(d);
            if r < 1e-9 {
                continue;
            }
            let reach = 1.6 * t.oedema_radius;
            let shrink = t.mass_effect * (-(r / reach).powi(2)).exp();
            let scale = (r - shrink).max(0.0) / r;
            q = std::array::from_fn(|i| t.centre[i] + d[i] * scale);
        }
        q
    }

    fn tissue_at(&self, q: [f64; 3]) -> Option<Tissue> {
        let rho = self.brain_radius(q)?;
        if rho >= 1.0 {
            return None;
        }
        let l = self.to_local(q);
        // Local millimetres of the reference brain.
        let r = [
            l[0] * REFERENCE_SEMI_AXES[0] / self.semi[0],
            l[1] * REFERENCE_SEMI_AXES[1] / self.semi[1],
            l[2] * REFERENCE_SEMI_AXES[2] / self.semi[2],
        ];
        for (i, blob) in STRUCTURES.iter().enumerate() {
            let is_ventricle = blob.tissue == Tissue::Csf;
            let s = if is_ventricle {
                self.ventricle_scale
            } else {
                1.0
            };
            // The lateral ventricles curve outwards towards their horns.
            let bend = if i < 2 {
                blob.centre[0].signum() * 0.006 * r[1] * r[1]
            } else {
                0.0
            };
            let c = [
                blob.centre[0] * s.sqrt() + bend,
                blob.centre[1],
                blob.centre[2],
            ];
            let e: f64 = (0..3)
                .map(|k| ((r[k] - c[k]) / (blob.semi[k] * s)).powi(2))
                .sum();
            if e < 1.0 {
                return Some(blob.tissue);
            }
        }
        if rho > 0.975 {
            return Some(Tissue::Csf);
        }
        // The interhemispheric fissure above the corpus callosum.
        if r[2] > 18.0 && r[0].abs() < 1.3 {
            return Some(Tissue::Csf);
        }
        // A cortical ribbon whose inner boundary folds (gyri reach into it as
        // white-matter fingers), cut by thin CSF-filled sulci.
        let t = self.cortex_thickness;
        let depth = t * (1.7 + 1.1 * self.folds.at(q).clamp(-1.2, 1.2));
        if rho > 1.0 - depth {
            let in_sulcus = rho > 1.0 - 0.85 * depth && self.sulci.at(q).abs() < 0.08;
            return Some(if in_sulcus { Tissue::Csf } else { Tissue::Grey });
        }
        Some(Tissue::White)
    }

    fn lesion_at(&self, p: [f64; 3], tissue: Tissue) -> Lesion {
        let mut lesion = Lesion::None;
        for t in &self.tumours {
            let d = sub(p, t.centre);
            let r = norm(d);
            if r > 2.0 * t.oedema_radius {
                continue;
            }
            let u = if r > 1e-9 {
                d.map(|c| c / r)
            } else {
                [0.0, 0.0, 1.0]
            };
            let core = t.core_radius * t.core_shape.at(u);
            if r < core {
                return match t.rim {
                    Some(rim) if r < core - rim => Lesion::Necrosis,
                    Some(_) => Lesion::Enhancing,
                    None => Lesion::NonEnhancing,
                };
            }
            // Oedema follows white matter; it reaches less into grey matter and
            // never into CSF spaces.
            let reach =
                t.oedema_radius * t.oedema_shape.at(u) * (1.0 + 0.3 * t.oedema_spread.at(p));
            let limit = match tissue {
                Tissue::White => reach,
                Tissue::Grey => 0.75 * reach,
                _ => 0.0,
            };
            if r < limit {
                lesion = Lesion::Oedema;
            }
        }
        lesion
    }
}
