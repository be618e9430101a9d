//! Voxel-to-world affines (NIfTI convention: world is RAS+ millimetres) and the
//! quaternion form NIfTI's qform needs.

use serde::{Deserialize, Serialize};

/// A 4×4 voxel-to-world transform; the last row is always `[0, 0, 0, 1]`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Affine(pub [[f64; 4]; 4]);

/// The qform parameters NIfTI stores: quaternion (b, c, d), offset, spacing, qfac.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Quatern {
    pub b: f64,
    pub c: f64,
    pub d: f64,
    pub offset: [f64; 3],
    pub spacing: [f64; 3],
    pub qfac: f64,
}

impl Default for Affine {
    fn default() -> Self {
        Self::identity()
    }
}

impl Affine {
    pub fn identity() -> Self {
        Self::diagonal([1.0; 3], [0.0; 3])
    }

    /// Axis-aligned scaling plus translation.
    pub fn diagonal(spacing: [f64; 3], offset: [f64; 3]) -> Self {
        let mut m = [[0.0; 4]; 4];
        for i in 0..3 {
            m[i][i] = spacing[i];
            m[i][3] = offset[i];
        }
        m[3][3] = 1.0;
        Affine(m)
    }

    /// Builds an affine from the three NIfTI `srow_*` rows.
    pub fn from_rows(rows: [[f64; 4]; 3]) -> Self {
        Affine([rows[0], rows[1], rows[2], [0.0, 0.0, 0.0, 1.0]])
    }

    pub fn rows(&self) -> [[f64; 4]; 3] {
        [self.0[0], self.0[1], self.0[2]]
    }

    pub fn mul(&self, other: &Affine) -> Affine {
        let mut m = [[0.0; 4]; 4];
        for (i, row) in m.iter_mut().enumerate() {
            for (j, cell) in row.iter_mut().enumerate() {
                *cell = (0..4).map(|k| self.0[i][k] * other.0[k][j]).sum();
            }
        }
        Affine(m)
    }

    /// Maps a voxel coordinate to world millimetres.
    pub fn apply(&self, p: [f64; 3]) -> [f64; 3] {
        let m = &self.0;
        std::array::from_fn(|i| m[i][0] * p[0] + m[i][1] * p[1] + m[i][2] * p[2] + m[i][3])
    }

    /// Length of each voxel axis in world units.
    pub fn spacing(&self) -> [f64; 3] {
        std::array::from_fn(|j| (0..3).map(|i| self.0[i][j].powi(2)).sum::<f64>().sqrt())
    }

    /// Determinant of the linear part; negative for a left-handed voxel grid.
    pub fn determinant(&self) -> f64 {
        let m = &self.0;
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
            - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    }

    /// The same transform shifted so that voxel `origin` becomes voxel 0.
    pub fn translated_voxels(&self, origin: [f64; 3]) -> Affine {
        let mut t = Affine::identity();
        for (i, o) in origin.iter().enumerate() {
            t.0[i][3] = *o;
        }
        self.mul(&t)
    }

    /// True when every entry differs by at most `tol` (world mm for the offsets).
    pub fn approx_eq(&self, other: &Affine, tol: f64) -> bool {
        self.0
            .iter()
            .flatten()
            .zip(other.0.iter().flatten())
            .all(|(a, b)| (a - b).abs() <= tol)
    }

    /// The qform affine NIfTI defines from a quaternion (method 2 of nifti1.h).
    pub fn from_quatern(q: &Quatern) -> Affine {
        let (b, c, d) = (q.b, q.c, q.d);
        let a2 = 1.0 - (b * b + c * c + d * d);
        // Rounding can push a² slightly negative; nifti1_io renormalises (b, c, d) then.
        let (a, b, c, d) = if a2 < 1e-7 {
            let n = (b * b + c * c + d * d).sqrt().max(f64::MIN_POSITIVE);
            (0.0, b / n, c / n, d / n)
        } else {
            (a2.sqrt(), b, c, d)
        };
        let r = [
            [
                a * a + b * b - c * c - d * d,
                2.0 * (b * c - a * d),
                2.0 * (b * d + a * c),
            ],
            [
                2.0 * (b * c + a * d),
                a * a + c * c - b * b - d * d,
                2.0 * (c * d - a * b),
            ],
            [
                2.0 * (b * d - a * c),
                2.0 * (c * d + a * b),
                a * a + d * d - c * c - b * b,
            ],
        ];
        let qfac = if q.qfac < 0.0 { -1.0 } else { 1.0 };
        let scale = [q.spacing[0], q.spacing[1], q.spacing[2] * qfac];
        let mut m = [[0.0; 4]; 4];
        for i in 0..3 {
            for j in 0..3 {
                m[i][j] = r[i][j] * scale[j];
            }
            m[i][3] = q.offset[i];
        }
        m[3][3] = 1.0;
        Affine(m)
    }

    /// The closest qform to this affine (exact for rotations, reflections and
    /// scaling; shear is dropped, which is why we always write the sform too).
    pub fn to_quatern(&self) -> Quatern {
        let spacing = self.spacing();
        let mut r = [[0.0; 3]; 3];
        for (j, s) in spacing.iter().enumerate() {
            let s = if *s > 0.0 { *s } else { 1.0 };
            for (i, row) in r.iter_mut().enumerate() {
                row[j] = self.0[i][j] / s;
            }
        }
        let det = r[0][0] * (r[1][1] * r[2][2] - r[1][2] * r[2][1])
            - r[0][1] * (r[1][0] * r[2][2] - r[1][2] * r[2][0])
            + r[0][2] * (r[1][0] * r[2][1] - r[1][1] * r[2][0]);
        let qfac = if det < 0.0 {
            for row in &mut r {
                row[2] = -row[2];
            }
            -1.0
        } else {
            1.0
        };
        // A sheared sform has no exact rotation: use the closest one (polar
        // decomposition), as nifti1_io does, so the quaternion is a unit one.
        let r = closest_rotation(r);
        let (mut a, mut b, mut c, mut d);
        let trace = r[0][0] + r[1][1] + r[2][2] + 1.0;
        if trace > 0.5 {
            a = 0.5 * trace.sqrt();
            b = 0.25 * (r[2][1] - r[1][2]) / a;
            c = 0.25 * (r[0][2] - r[2][0]) / a;
            d = 0.25 * (r[1][0] - r[0][1]) / a;
        } else {
            let xd = 1.0 + r[0][0] - (r[1][1] + r[2][2]);
            let yd = 1.0 + r[1][1] - (r[0][0] + r[2][2]);
            let zd = 1.0 + r[2][2] - (r[0][0] + r[1][1]);
            if xd > 1.0 {
                b = 0.5 * xd.sqrt();
                c = 0.25 * (r[0][1] + r[1][0]) / b;
                d = 0.25 * (r[0][2] + r[2][0]) / b;
                a = 0.25 * (r[2][1] - r[1][2]) / b;
            } else if yd > 1.0 {
                c = 0.5 * yd.sqrt();
                b = 0.25 * (r[0][1] + r[1][0]) / c;
                d = 0.25 * (r[1][2] + r[2][1]) / c;
                a = 0.25 * (r[0][2] - r[2][0]) / c;
            } else {
                d = 0.5 * zd.sqrt();
                b = 0.25 * (r[0][2] + r[2][0]) / d;
                c = 0.25 * (r[1][2] + r[2][1]) / d;
                a = 0.25 * (r[1][0] - r[0][1]) / d;
            }
            if a < 0.0 {
                (a, b, c, d) = (-a, -b, -c, -d);
            }
        }
        let _ = a;
        Quatern {
            b,
            c,
            d,
            offset: [self.0[0][3], self.0[1][3], self.0[2][3]],
            spacing,
            qfac,
        }
    }
}

/// The orthogonal matrix closest to `m` (Newton iteration of the polar
/// decomposition: R ← (R + R⁻ᵀ) / 2); `m` must have a positive determinant.
fn closest_rotation(mut m: [[f64; 3]; 3]) -> [[f64; 3]; 3] {
    for _ in 0..30 {
        let det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
            - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
        if det.abs() < 1e-12 {
            return m;
        }
        // Inverse transpose = cofactor matrix / det.
        let cof = |i: usize, j: usize| {
            let (a, b) = ((i + 1) % 3, (i + 2) % 3);
            let (c, d) = ((j + 1) % 3, (j + 2) % 3);
            m[a][c] * m[b][d] - m[a][d] * m[b][c]
        };
        let mut next = [[0.0; 3]; 3];
        let mut change = 0.0f64;
        for i in 0..3 {
            for j in 0..3 {
                next[i][j] = 0.5 * (m[i][j] + cof(i, j) / det);
                change = change.max((next[i][j] - m[i][j]).abs());
            }
        }
        m = next;
        if change < 1e-14 {
            break;
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quaternion_round_trip_for_flips_and_rotations() {
        let cases = [
            Affine::diagonal([-1.0, -1.0, 1.0], [120.0, 120.0, -77.0]),
            Affine::diagonal([0.9, 1.1, 3.0], [1.0, 2.0, 3.0]),
            Affine::diagonal([-2.0, 2.0, 2.0], [0.0; 3]),
            // 90° about z, then a reflection of the third axis.
            Affine::from_rows([
                [0.0, -1.5, 0.0, 10.0],
                [1.5, 0.0, 0.0, -4.0],
                [0.0, 0.0, -2.0, 7.0],
            ]),
        ];
        for affine in cases {
            let back = Affine::from_quatern(&affine.to_quatern());
            assert!(back.approx_eq(&affine, 1e-9), "{affine:?} -> {back:?}");
        }
    }

    #[test]
    fn sheared_affines_get_a_unit_quaternion() {
        let sheared = Affine::from_rows([
            [1.0, 0.2, 0.0, 0.0],
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.0],
        ]);
        let q = sheared.to_quatern();
        assert!(q.b * q.b + q.c * q.c + q.d * q.d <= 1.0 + 1e-12);
        let back = Affine::from_quatern(&q);
        // Still the same axis directions, to within the shear.
        assert!(back.approx_eq(&sheared, 0.25));
        assert!((back.determinant() - sheared.spacing().iter().product::<f64>()).abs() < 1e-9);
    }

    #[test]
    fn apply_and_translate_agree() {
        let a = Affine::diagonal([2.0, 3.0, 4.0], [1.0, 1.0, 1.0]);
        let t = a.translated_voxels([5.0, -2.0, 1.0]);
        assert_eq!(t.apply([0.0, 0.0, 0.0]), a.apply([5.0, -2.0, 1.0]));
        assert!((a.determinant() - 24.0).abs() < 1e-12);
    }
}
